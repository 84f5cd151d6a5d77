//! The operations the API offers, carried out on the scheduler's state so
//! that a change takes effect at once: create, change and delete tasks, run
//! one now, read runs and dead letters, retry a dead letter.
//!
//! Validation of values (not of JSON shape) lives here, so every way of
//! changing a task obeys the same rules.

use std::fmt;

use jiff::Timestamp;

use super::Scheduler;
use crate::cron::Schedule;
use crate::metrics::Snapshot;
use crate::model::{
    CatchUp, DeadLetter, Overlap, Policy, Run, Task, TaskSpec, TaskStatus, Trigger,
};
use crate::store::{RunStart, StoreError};

/// Longest accepted values, so that one request cannot fill the disk.
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
pub const MAX_RETRIES: i64 = 100;
pub const MAX_DELAY_SECONDS: i64 = 7 * 86_400;
pub const MAX_TIMEOUT_SECONDS: i64 = 7 * 86_400;
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
pub const MAX_WORKING_DIR_BYTES: usize = 4096;
pub const MAX_MISFIRE_GRACE_SECONDS: i64 = 366 * 86_400;
pub const MAX_CATCH_UP_LIMIT: i64 = 1000;

/// Why an operation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The input is wrong; the message names the field.
    Invalid(String),
    NotFound(String),
    /// The request is valid but clashes with the current state.
    Conflict(String),
    /// The database failed; worth trying again.
    Unavailable(String),
}

/// Fields of a task a request sets; `None` leaves a field as it is (or at
/// its default, on create).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub command: Option<String>,
    pub timezone: Option<String>,
    pub max_retries: Option<i64>,
    pub retry_delay_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub status: Option<TaskStatus>,
    pub pause_on_dead_letter: Option<bool>,
    pub env: Option<Vec<(String, String)>>,
    /// `Some(None)` clears it.
    pub working_dir: Option<Option<String>>,
    pub overlap: Option<Overlap>,
    pub catch_up: Option<CatchUp>,
    /// `Some(None)` returns to the service-wide default.
    pub misfire_grace_seconds: Option<Option<i64>>,
    pub catch_up_limit: Option<i64>,
}

/// What `/health` reports.
pub struct Health {
    pub db_writable: bool,
    pub error: Option<String>,
    pub uptime_seconds: u64,
}

type Result<T> = std::result::Result<T, ApiError>;

impl Scheduler {
    pub fn create_task(&mut self, patch: TaskPatch) -> Result<Task> {
        for (field, missing) in [
            ("name", patch.name.is_none()),
            ("schedule", patch.schedule.is_none()),
            ("command", patch.command.is_none()),
        ] {
            if missing {
                return Err(ApiError::Invalid(format!("{field}: required")));
            }
        }
        let mut spec = patch.apply(self.default_spec());
        let schedule = validate(&spec, self.config.max_env_entries)?;
        canonical_zone(&mut spec);
        let now = crate::clock::now();
        let next = next_for(&spec, &schedule, now);
        let task = self
            .store
            .insert_task(&spec, next)
            .map_err(|e| self.store_failed("insert_task", &e))?;
        log::info!(
            "event=task_created task={} name={:?} schedule={:?}",
            task.id,
            task.spec.name,
            task.spec.schedule
        );
        self.install(task.clone(), now, false);
        Ok(task)
    }

    pub fn update_task(&mut self, id: i64, patch: TaskPatch) -> Result<Task> {
        let current = self.task(id)?;
        // A value broken by a hand edit reads as a default; writing the row
        // back would store that default silently.
        if let Some(field) = current.broken_fields.iter().find(|f| !patch.sets(f)) {
            let why = current.problem.as_deref().unwrap_or_default();
            return Err(ApiError::Conflict(format!(
                "task {id}: its stored {field} is invalid ({why}); set {field} in this change to replace it"
            )));
        }
        let mut spec = patch.apply(current.spec.clone());
        let schedule = validate(&spec, self.config.max_env_entries)?;
        canonical_zone(&mut spec);
        let now = crate::clock::now();
        let timing_changed = spec.schedule != current.spec.schedule
            || spec.timezone != current.spec.timezone
            || spec.status != current.spec.status;
        let next = match current.next_run_at {
            Some(stored) if !timing_changed && spec.status == TaskStatus::Enabled => Some(stored),
            _ => next_for(&spec, &schedule, now),
        };
        let task = self
            .store
            .update_task(id, &spec, next)
            .map_err(|e| self.store_failed("update_task", &e))?
            .ok_or_else(|| not_found("task", id))?;
        log::info!(
            "event=task_updated task={id} status={} next_run_at={:?}",
            task.spec.status.as_str(),
            next
        );
        self.install(task.clone(), now, false);
        Ok(task)
    }

    /// Deletes a task. A run in progress finishes on its own and is
    /// recorded; no retry or dead letter follows it.
    pub fn delete_task(&mut self, id: i64) -> Result<()> {
        let deleted = self
            .store
            .delete_task(id)
            .map_err(|e| self.store_failed("delete_task", &e))?;
        if !deleted {
            return Err(not_found("task", id));
        }
        self.drop_backlog(id, "task deleted");
        self.tasks.remove(&id);
        log::info!("event=task_deleted task={id}");
        Ok(())
    }

    /// A task as stored, with `problem` saying why it cannot be scheduled
    /// when it cannot (also for reasons the row's types do not show: a
    /// schedule or a value out of range edited in by hand).
    pub fn task(&mut self, id: i64) -> Result<Task> {
        let task = self
            .store
            .task(id)
            .map_err(|e| self.store_failed("task", &e))?;
        let task = task.ok_or_else(|| not_found("task", id))?;
        Ok(self.explained(task))
    }

    fn explained(&mut self, mut task: Task) -> Task {
        if task.problem.is_none()
            && let Err(why) = self.schedule_for(&task)
        {
            task.problem = Some(why);
        }
        task
    }

    pub fn tasks(
        &mut self,
        status: Option<TaskStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Task>> {
        let tasks = self
            .store
            .list_tasks(status, limit, offset)
            .map_err(|e| self.store_failed("list_tasks", &e))?;
        Ok(tasks.into_iter().map(|task| self.explained(task)).collect())
    }

    /// Starts a run of task `id` now, outside its schedule.
    pub fn run_now(&mut self, id: i64) -> Result<Run> {
        self.task(id)?;
        if self.running.contains_key(&id) {
            return Err(ApiError::Conflict(format!("task {id} is already running")));
        }
        if self.at_capacity() {
            return Err(self.capacity_error());
        }
        let task = self.task(id)?;
        if let Err(why) = self.schedule_for(&task) {
            return Err(ApiError::Conflict(format!("task {id} cannot run: {why}")));
        }
        let now = crate::clock::now();
        let start = RunStart {
            task_id: id,
            scheduled_for: now,
            trigger: Trigger::Manual,
            attempt: 1,
            started_at: now,
        };
        let run = self
            .store
            .start_run(&start, None)
            .map_err(|e| self.store_failed("start_run", &e))?;
        let run = run.ok_or_else(|| ApiError::Conflict(format!("task {id} was just started")))?;
        self.launch(run.clone());
        Ok(run)
    }

    /// A task's runs, newest first. History outlives the task: runs of a
    /// deleted task are still listed until retention removes them.
    pub fn runs(&mut self, task_id: i64, limit: i64, offset: i64) -> Result<Vec<Run>> {
        let runs = self
            .store
            .runs_of_task(task_id, limit, offset)
            .map_err(|e| self.store_failed("runs_of_task", &e))?;
        if runs.is_empty() && offset == 0 {
            self.task(task_id)?;
        }
        Ok(runs)
    }

    pub fn run_by_id(&mut self, id: i64) -> Result<Run> {
        let run = self
            .store
            .run(id)
            .map_err(|e| self.store_failed("run", &e))?;
        run.ok_or_else(|| not_found("run", id))
    }

    pub fn dead_letters(
        &mut self,
        task_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<DeadLetter>> {
        self.store
            .dead_letters(task_id, limit, offset)
            .map_err(|e| self.store_failed("dead_letters", &e))
    }

    pub fn dead_letter(&mut self, id: i64) -> Result<DeadLetter> {
        let letter = self
            .store
            .dead_letter(id)
            .map_err(|e| self.store_failed("dead_letter", &e))?;
        letter.ok_or_else(|| not_found("dead letter", id))
    }

    /// Gives a dead letter's occurrence one more attempt; the dead letter
    /// is removed when the attempt starts. If it fails again, a new dead
    /// letter records it.
    pub fn retry_dead_letter(&mut self, id: i64) -> Result<Run> {
        let letter = self.dead_letter(id)?;
        if !self.tasks.contains_key(&letter.task_id) {
            return Err(ApiError::Conflict(format!(
                "task {} no longer exists",
                letter.task_id
            )));
        }
        if self.running.contains_key(&letter.task_id) {
            return Err(ApiError::Conflict(format!(
                "task {} is already running",
                letter.task_id
            )));
        }
        if self.at_capacity() {
            return Err(self.capacity_error());
        }
        let run = self
            .store
            .retry_dead_letter(&letter, crate::clock::now())
            .map_err(|e| self.store_failed("retry_dead_letter", &e))?
            .ok_or_else(|| ApiError::Conflict(format!("dead letter {id} was already retried")))?;
        self.metrics.retries_total += 1;
        log::info!(
            "event=dead_letter_retried dead_letter={id} task={} run={}",
            run.task_id,
            run.id
        );
        self.launch(run.clone());
        Ok(run)
    }

    pub fn delete_dead_letter(&mut self, id: i64) -> Result<()> {
        let deleted = self
            .store
            .delete_dead_letter(id)
            .map_err(|e| self.store_failed("delete_dead_letter", &e))?;
        if !deleted {
            return Err(not_found("dead letter", id));
        }
        log::info!("event=dead_letter_deleted dead_letter={id}");
        Ok(())
    }

    /// Checks that the database can be written (the heartbeat is a write).
    pub fn health(&mut self) -> Health {
        let result = self.store.heartbeat(crate::clock::now());
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Err(err) = &result {
            self.db_error("heartbeat", err);
        } else {
            self.db_ok();
        }
        Health {
            db_writable: error.is_none(),
            error,
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }

    pub fn metrics_text(&mut self) -> String {
        let tasks_by_status = self.store.count_tasks_by_status().unwrap_or_default();
        let snapshot = Snapshot {
            tasks_by_status,
            running: self.running.len(),
            scheduled: self
                .tasks
                .values()
                .filter(|e| e.task.next_run_at.is_some())
                .count(),
            uptime_seconds: self.started.elapsed().as_secs(),
            db_healthy: self.db_healthy,
        };
        self.metrics.render(&snapshot)
    }

    /// Counts an API-visible request for the metrics.
    pub fn count_request(&mut self, status: u16) {
        self.metrics.http_requests_total += 1;
        if status >= 400 {
            self.metrics.http_errors_total += 1;
        }
    }

    /// The zone schedules are read in when a task names none.
    pub fn default_timezone(&self) -> &str {
        &self.config.default_timezone
    }

    fn capacity_error(&self) -> ApiError {
        ApiError::Conflict(format!(
            "{} commands are running, the limit (EDGECRON_MAX_RUNNING); try again later",
            self.running.len()
        ))
    }

    fn default_spec(&self) -> TaskSpec {
        TaskSpec {
            name: String::new(),
            description: String::new(),
            schedule: String::new(),
            command: String::new(),
            timezone: self.config.default_timezone.clone(),
            max_retries: self.config.default_max_retries,
            retry_delay_seconds: self.config.default_retry_delay,
            timeout_seconds: self.config.default_timeout,
            status: TaskStatus::Enabled,
            pause_on_dead_letter: false,
            policy: Policy::default(),
        }
    }

    fn store_failed(&mut self, op: &str, err: &StoreError) -> ApiError {
        self.db_error(op, err);
        ApiError::Unavailable(err.to_string())
    }

    pub(super) fn answer(&mut self, call: super::ApiCall) {
        let response = crate::api::routes::handle(self, &call.request);
        self.count_request(response.status);
        // The HTTP thread may have given up waiting; nothing more to do then.
        let _ = call.reply.try_send(response);
    }
}

impl TaskPatch {
    /// Whether this change sets the field named `field`.
    fn sets(&self, field: &str) -> bool {
        match field {
            "name" => self.name.is_some(),
            "description" => self.description.is_some(),
            "schedule" => self.schedule.is_some(),
            "command" => self.command.is_some(),
            "timezone" => self.timezone.is_some(),
            "max_retries" => self.max_retries.is_some(),
            "retry_delay_seconds" => self.retry_delay_seconds.is_some(),
            "timeout_seconds" => self.timeout_seconds.is_some(),
            "status" => self.status.is_some(),
            "pause_on_dead_letter" => self.pause_on_dead_letter.is_some(),
            "env" => self.env.is_some(),
            "working_dir" => self.working_dir.is_some(),
            "overlap" => self.overlap.is_some(),
            "catch_up" => self.catch_up.is_some(),
            "misfire_grace_seconds" => self.misfire_grace_seconds.is_some(),
            "catch_up_limit" => self.catch_up_limit.is_some(),
            _ => false,
        }
    }

    fn apply(self, mut spec: TaskSpec) -> TaskSpec {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { spec.$field = v; } )* };
        }
        set!(
            name,
            description,
            schedule,
            command,
            timezone,
            max_retries,
            retry_delay_seconds,
            timeout_seconds,
            status,
            pause_on_dead_letter
        );
        let policy = &mut spec.policy;
        macro_rules! set_policy {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { policy.$field = v; } )* };
        }
        set_policy!(
            env,
            working_dir,
            overlap,
            catch_up,
            misfire_grace_seconds,
            catch_up_limit
        );
        spec
    }
}

/// Checks every value of `spec`; returns the parsed schedule.
fn validate(spec: &TaskSpec, max_env_entries: usize) -> Result<Schedule> {
    validate_fields(spec, max_env_entries)?;
    Schedule::parse(&spec.schedule, &spec.timezone)
        .map_err(|err| ApiError::Invalid(err.under("schedule")))
}

/// Checks every value but the schedule; also applied to rows read from
/// the database, which may have been edited by hand.
pub(super) fn validate_fields(spec: &TaskSpec, max_env_entries: usize) -> Result<()> {
    let invalid = |msg: String| Err(ApiError::Invalid(msg));
    for (field, text) in [
        ("name", &spec.name),
        ("description", &spec.description),
        ("schedule", &spec.schedule),
        ("timezone", &spec.timezone),
    ] {
        if text.contains('\0') {
            return invalid(format!("{field}: contains a NUL character"));
        }
    }
    if spec.name.trim().is_empty() {
        return invalid("name: must not be empty".into());
    }
    if spec.name.chars().count() > MAX_NAME_CHARS {
        return invalid(format!("name: longer than {MAX_NAME_CHARS} characters"));
    }
    if spec.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return invalid(format!(
            "description: longer than {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if spec.command.trim().is_empty() {
        return invalid("command: must not be empty".into());
    }
    if spec.command.len() > MAX_COMMAND_BYTES {
        return invalid(format!("command: longer than {MAX_COMMAND_BYTES} bytes"));
    }
    if spec.command.contains('\0') {
        return invalid("command: contains a NUL character".into());
    }
    check_range("max_retries", spec.max_retries, 0, MAX_RETRIES)?;
    check_range(
        "retry_delay_seconds",
        spec.retry_delay_seconds,
        0,
        MAX_DELAY_SECONDS,
    )?;
    check_range(
        "timeout_seconds",
        spec.timeout_seconds,
        1,
        MAX_TIMEOUT_SECONDS,
    )?;
    validate_policy(&spec.policy, max_env_entries)
}

fn validate_policy(policy: &Policy, max_env_entries: usize) -> Result<()> {
    let invalid = |msg: String| Err(ApiError::Invalid(msg));
    if policy.env.len() > max_env_entries {
        return invalid(format!(
            "env: {} entries, more than the {max_env_entries} allowed (EDGECRON_MAX_ENV_ENTRIES)",
            policy.env.len()
        ));
    }
    for (key, value) in &policy.env {
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key || key.len() > 256 {
            return invalid(format!(
                "env: {key:?} is not a variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        if value.contains(['\n', '\r', '\0']) {
            return invalid(format!("env.{key}: contains a newline or NUL character"));
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return invalid(format!(
                "env.{key}: longer than {MAX_ENV_VALUE_BYTES} bytes"
            ));
        }
    }
    if let Some(dir) = &policy.working_dir
        && (!dir.starts_with('/') || dir.contains('\0') || dir.len() > MAX_WORKING_DIR_BYTES)
    {
        return invalid(format!("working_dir: {dir:?} is not an absolute path"));
    }
    if let Some(grace) = policy.misfire_grace_seconds {
        check_range("misfire_grace_seconds", grace, 0, MAX_MISFIRE_GRACE_SECONDS)?;
    }
    check_range(
        "catch_up_limit",
        policy.catch_up_limit,
        1,
        MAX_CATCH_UP_LIMIT,
    )
}

/// Stores a zone under its database name (`utc` becomes `UTC`), so tasks
/// read the same whoever typed them.
fn canonical_zone(spec: &mut TaskSpec) {
    let canonical = crate::cron::parse_zone(&spec.timezone)
        .ok()
        .and_then(|zone| zone.iana_name().map(str::to_string));
    if let Some(name) = canonical {
        spec.timezone = name;
    }
}

fn check_range(field: &str, value: i64, min: i64, max: i64) -> Result<()> {
    if value < min || value > max {
        return Err(ApiError::Invalid(format!(
            "{field}: {value} is out of range {min}-{max}"
        )));
    }
    Ok(())
}

fn next_for(spec: &TaskSpec, schedule: &Schedule, now: Timestamp) -> Option<Timestamp> {
    match spec.status {
        TaskStatus::Enabled => schedule.next_after(now),
        TaskStatus::Disabled => None,
    }
}

fn not_found(what: &str, id: i64) -> ApiError {
    ApiError::NotFound(format!("{what} {id} not found"))
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Invalid(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => f.write_str(m),
        }
    }
}
