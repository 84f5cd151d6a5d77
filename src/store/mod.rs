//! Persistence: the only code that writes SQL.
//!
//! `Store` is the narrow interface the scheduler and API use; this file
//! implements it on SQLite (WAL mode, numbered migrations). It never decides
//! anything about scheduling: callers pass in every instant and outcome, so
//! the same calls can later be served by a PostgreSQL store.

mod schema;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use crate::model::{
    CatchUp, DeadLetter, Overlap, Policy, Run, RunStatus, Task, TaskSpec, TaskStatus, Trigger,
    decode_env, encode_env, format_instant, parse_instant,
};

/// How long a statement waits for another connection's lock (for example an
/// operator's `sqlite3` shell) before it reports busy. Short, because the
/// scheduling loop waits with it: a failed write is retried at a later
/// turn, while a long wait would hold up every task and `/health`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// A failed database operation.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Locked, busy, full or read-only: worth trying again later.
    Transient,
    /// A uniqueness or check constraint refused the write.
    Conflict,
    /// Anything else: corruption, a schema newer than this binary, a bug.
    Other,
}

/// What a finished run leads to, decided by the scheduler and written by the
/// store in one transaction with the run's end.
#[derive(Debug, Clone, PartialEq)]
pub enum RunFollowUp {
    Nothing,
    RetryAt(Timestamp),
    DeadLetter { pause_task: bool },
}

/// The end of a run, as the executor saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub finished_at: Timestamp,
    pub duration_ms: i64,
    pub exit_code: Option<i64>,
    pub output: String,
    pub output_dropped_bytes: i64,
    pub error: Option<String>,
}

/// A run about to start.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    pub task_id: i64,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub attempt: i64,
    pub started_at: Timestamp,
}

/// Tasks changed since a revision, as the poller sees them.
#[derive(Debug, Default)]
pub struct TaskChanges {
    pub changed: Vec<Task>,
    pub deleted: Vec<i64>,
    pub revision: i64,
}

pub struct Store {
    conn: Connection,
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets an operator read with the sqlite3 shell while runs are
        // written; NORMAL sync is durable across a process crash and loses
        // at most the last commits on power loss, which the at-least-once
        // promise already covers.
        // Must come before anything writes the file's header (WAL does), or
        // it only takes effect after a full VACUUM.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("event=db_journal_mode mode={mode} msg=\"WAL not available\"");
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let latest = schema::MIGRATIONS.len() as i64;
        if version > latest {
            return Err(StoreError::other(format!(
                "database schema version {version} is newer than this edgecron knows ({latest})"
            )));
        }
        for (index, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
            log::info!("event=db_migrated version={}", index + 1);
        }
        Ok(())
    }

    // ----- tasks -----

    pub fn insert_task(&self, spec: &TaskSpec, next_run_at: Option<Timestamp>) -> Result<Task> {
        let values = spec_values(spec, next_run_at);
        self.conn.execute(
            "INSERT INTO tasks (name, description, schedule, command, timezone, max_retries,
                retry_delay_seconds, timeout_seconds, status, pause_on_dead_letter, next_run_at,
                created_at, updated_at, env, working_dir, overlap, catch_up,
                misfire_grace_seconds, catch_up_limit)
             VALUES (:name, :description, :schedule, :command, :timezone, :max_retries,
                :retry_delay_seconds, :timeout_seconds, :status, :pause_on_dead_letter,
                :next_run_at, :now, :now, :env, :working_dir, :overlap, :catch_up,
                :misfire_grace_seconds, :catch_up_limit)",
            values.as_params().as_slice(),
        )?;
        self.task_or_err(self.conn.last_insert_rowid())
    }

    /// Replaces a task's client-set fields; returns the updated task, or
    /// None if it does not exist.
    pub fn update_task(
        &self,
        id: i64,
        spec: &TaskSpec,
        next_run_at: Option<Timestamp>,
    ) -> Result<Option<Task>> {
        let mut values = spec_values(spec, next_run_at);
        values.0.push((":id", Box::new(id)));
        let changed = self.conn.execute(
            "UPDATE tasks SET name = :name, description = :description, schedule = :schedule,
                command = :command, timezone = :timezone, max_retries = :max_retries,
                retry_delay_seconds = :retry_delay_seconds, timeout_seconds = :timeout_seconds,
                status = :status, pause_on_dead_letter = :pause_on_dead_letter,
                next_run_at = :next_run_at, updated_at = :now, env = :env,
                working_dir = :working_dir, overlap = :overlap, catch_up = :catch_up,
                misfire_grace_seconds = :misfire_grace_seconds, catch_up_limit = :catch_up_limit
             WHERE id = :id",
            values.as_params().as_slice(),
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.task(id)
    }

    pub fn delete_task(&self, id: i64) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM tasks WHERE id = ?1", [id])? > 0)
    }

    pub fn task(&self, id: i64) -> Result<Option<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], task_from_row).optional()?)
    }

    fn task_or_err(&self, id: i64) -> Result<Task> {
        self.task(id)?
            .ok_or_else(|| StoreError::other(format!("task {id} vanished")))
    }

    /// Tasks ordered by id, optionally only those with `status`.
    pub fn list_tasks(
        &self,
        status: Option<TaskStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR status = ?1)
             ORDER BY id LIMIT ?2 OFFSET ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![status.map(|s| s.as_str()), limit, offset],
            task_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every task and the current change revision, read in one snapshot.
    pub fn all_tasks(&mut self) -> Result<(Vec<Task>, i64)> {
        let tx = self.conn.transaction()?;
        let revision = current_revision(&tx)?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY id");
        let tasks = {
            let mut stmt = tx.prepare(&sql)?;
            let rows = stmt.query_map([], task_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.commit()?;
        Ok((tasks, revision))
    }

    /// Tasks inserted, changed or deleted after `since`, by anyone.
    pub fn task_changes(&mut self, since: i64) -> Result<TaskChanges> {
        let tx = self.conn.transaction()?;
        let revision = current_revision(&tx)?;
        if revision == since {
            return Ok(TaskChanges {
                revision,
                ..TaskChanges::default()
            });
        }
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE revision > ?1 ORDER BY id");
        let changed = {
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map([since], task_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let deleted = {
            let mut stmt =
                tx.prepare_cached("SELECT task_id FROM task_tombstones WHERE revision > ?1")?;
            let rows = stmt.query_map([since], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<i64>>>()?
        };
        tx.execute("DELETE FROM task_tombstones WHERE revision <= ?1", [since])?;
        tx.commit()?;
        Ok(TaskChanges {
            changed,
            deleted,
            revision,
        })
    }

    /// SQLite's counter of commits made by other connections; unchanged
    /// means there is nothing new to poll.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Records the next occurrence the scheduler will fire, so that a
    /// restart resumes from it.
    pub fn set_next_run(&self, task_id: i64, next: Option<Timestamp>) -> Result<()> {
        self.conn.execute(
            "UPDATE tasks SET next_run_at = ?2 WHERE id = ?1",
            params![task_id, next.map(format_instant)],
        )?;
        Ok(())
    }

    /// `set_next_run` for many tasks in one transaction (startup).
    pub fn set_next_runs(&mut self, writes: &[(i64, Option<Timestamp>)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("UPDATE tasks SET next_run_at = ?2 WHERE id = ?1")?;
            for (task_id, next) in writes {
                stmt.execute(params![task_id, next.map(format_instant)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets a task's status on the scheduler's behalf (pausing after a dead
    /// letter); returns the updated task.
    pub fn set_task_status(&self, task_id: i64, status: TaskStatus) -> Result<Option<Task>> {
        self.conn.execute(
            "UPDATE tasks SET status = ?2, updated_at = ?3,
                next_run_at = CASE WHEN ?2 = 'enabled' THEN next_run_at END WHERE id = ?1",
            params![
                task_id,
                status.as_str(),
                format_instant(crate::clock::now())
            ],
        )?;
        self.task(task_id)
    }

    // ----- runs -----

    /// Starts a run: inserts it as running, takes the task's lock and moves
    /// its next occurrence, in one transaction. Returns None when this
    /// occurrence and attempt already has a run (a restart replaying it).
    pub fn start_run(&mut self, start: &RunStart, next: Option<Timestamp>) -> Result<Option<Run>> {
        let tx = self.conn.transaction()?;
        let run = start_run_in(&tx, start, next)?;
        tx.commit()?;
        Ok(run)
    }

    /// Starts the retry of `failed_run`, clearing its pending retry mark in
    /// the same transaction so that a restart cannot start it twice.
    pub fn start_retry(&mut self, failed_run: i64, start: &RunStart) -> Result<Option<Run>> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE runs SET retry_at = NULL WHERE id = ?1",
            [failed_run],
        )?;
        let run = start_run_in(&tx, start, None)?;
        tx.commit()?;
        Ok(run)
    }

    /// Records an occurrence that waits for the task's current run to end.
    /// None when the occurrence already has a run.
    pub fn queue_run(
        &mut self,
        task_id: i64,
        scheduled_for: Timestamp,
        next: Option<Timestamp>,
    ) -> Result<Option<Run>> {
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO runs (task_id, scheduled_for, trigger, attempt, status)
             VALUES (?1, ?2, 'schedule', 1, 'queued') ON CONFLICT DO NOTHING",
            params![task_id, format_instant(scheduled_for)],
        )?;
        let run = if inserted == 0 {
            None
        } else {
            run_in(&tx, tx.last_insert_rowid())?
        };
        tx.execute(
            "UPDATE tasks SET next_run_at = ?2 WHERE id = ?1",
            params![task_id, next.map(format_instant)],
        )?;
        tx.commit()?;
        Ok(run)
    }

    /// Starts a queued run: it becomes running and takes the task's lock.
    pub fn start_queued(&mut self, run_id: i64, started_at: Timestamp) -> Result<Option<Run>> {
        let tx = self.conn.transaction()?;
        let started = format_instant(started_at);
        let changed = tx.execute(
            "UPDATE runs SET status = 'running', started_at = ?2
             WHERE id = ?1 AND status = 'queued'",
            params![run_id, started],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let run = run_in(&tx, run_id)?;
        if let Some(run) = &run {
            tx.execute(
                "UPDATE tasks SET locked_at = ?2, last_run_at = ?2 WHERE id = ?1",
                params![run.task_id, started],
            )?;
        }
        tx.commit()?;
        Ok(run)
    }

    /// Runs waiting for their task, oldest occurrence first.
    pub fn queued_runs(&self) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued'
             ORDER BY task_id, scheduled_for"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks a queued run as not run after all (its task was deleted or
    /// disabled, or a newer occurrence replaced it).
    pub fn drop_queued(&self, run_id: i64, status: RunStatus, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, error = ?3 WHERE id = ?1 AND status = 'queued'",
            params![run_id, status.as_str(), reason],
        )?;
        Ok(())
    }

    /// Records an occurrence that did not run (skipped or missed).
    pub fn record_unrun(
        &mut self,
        task_id: i64,
        scheduled_for: Timestamp,
        status: RunStatus,
        reason: &str,
        next: Option<Timestamp>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (task_id, scheduled_for, trigger, attempt, status, error, finished_at)
             VALUES (?1, ?2, 'schedule', 1, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                task_id,
                format_instant(scheduled_for),
                status.as_str(),
                reason,
                // Retention ages the row from when it was written, so a
                // summary of a month's downtime is not pruned at once.
                format_instant(crate::clock::now()),
            ],
        )?;
        tx.execute(
            "UPDATE tasks SET next_run_at = ?2 WHERE id = ?1",
            params![task_id, next.map(format_instant)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Ends a run and writes what follows from it (a pending retry, or a
    /// dead letter and perhaps a paused task) in one transaction, so a crash
    /// never leaves a failure without its consequence.
    pub fn finish_run(
        &mut self,
        run_id: i64,
        end: &RunEnd,
        follow_up: &RunFollowUp,
    ) -> Result<Run> {
        let tx = self.conn.transaction()?;
        let retry_at = match follow_up {
            RunFollowUp::RetryAt(at) => Some(format_instant(*at)),
            _ => None,
        };
        tx.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, duration_ms = ?4, exit_code = ?5,
                output = ?6, output_dropped_bytes = ?7, error = ?8, retry_at = ?9
             WHERE id = ?1",
            params![
                run_id,
                end.status.as_str(),
                format_instant(end.finished_at),
                end.duration_ms,
                end.exit_code,
                end.output,
                end.output_dropped_bytes,
                end.error,
                retry_at,
            ],
        )?;
        let run = run_in(&tx, run_id)?
            .ok_or_else(|| StoreError::other(format!("run {run_id} vanished")))?;
        tx.execute(
            "UPDATE tasks SET locked_at = NULL, last_status = ?2 WHERE id = ?1",
            params![run.task_id, end.status.as_str()],
        )?;
        if let RunFollowUp::DeadLetter { pause_task } = follow_up {
            insert_dead_letter(&tx, &run)?;
            if *pause_task {
                tx.execute(
                    "UPDATE tasks SET status = 'disabled', next_run_at = NULL, updated_at = ?2
                     WHERE id = ?1",
                    params![run.task_id, format_instant(end.finished_at)],
                )?;
            }
        }
        tx.commit()?;
        Ok(run)
    }

    pub fn run(&self, id: i64) -> Result<Option<Run>> {
        run_in(&self.conn, id)
    }

    /// A task's runs, newest first.
    pub fn runs_of_task(&self, task_id: i64, limit: i64, offset: i64) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![task_id, limit, offset], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records the process group of a run that has just started.
    pub fn set_run_process(&self, run_id: i64, pid: i32, start_ticks: Option<i64>) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET pid = ?2, pid_start_ticks = ?3 WHERE id = ?1",
            params![run_id, pid, start_ticks],
        )?;
        Ok(())
    }

    /// Runs left `running` by a process that is gone.
    pub fn running_runs(&self) -> Result<Vec<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Failed runs whose retry has not started yet.
    pub fn pending_retries(&self) -> Result<Vec<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE retry_at IS NOT NULL ORDER BY id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a task's oldest finished runs beyond `keep` and those that
    /// finished before `older_than`. Returns how many went.
    pub fn prune_runs(&self, task_id: i64, keep: i64, older_than: Timestamp) -> Result<usize> {
        let pruned = self.conn.execute(
            "DELETE FROM runs WHERE task_id = ?1 AND status NOT IN ('running', 'queued') AND retry_at IS NULL
               AND (id < (SELECT COALESCE(MIN(id), 0) FROM
                          (SELECT id FROM runs WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2))
                    OR COALESCE(finished_at, scheduled_for) < ?3)",
            params![task_id, keep, format_instant(older_than)],
        )?;
        Ok(pruned)
    }

    /// Deletes finished runs of every task (deleted ones included) that
    /// ended before `older_than`.
    pub fn prune_all_before(&self, older_than: Timestamp) -> Result<usize> {
        let pruned = self.conn.execute(
            "DELETE FROM runs WHERE status NOT IN ('running', 'queued') AND retry_at IS NULL
               AND COALESCE(finished_at, scheduled_for) < ?1",
            [format_instant(older_than)],
        )?;
        Ok(pruned)
    }

    /// Drops a pending retry (its task was deleted).
    pub fn clear_retry(&self, run_id: i64) -> Result<()> {
        self.conn
            .execute("UPDATE runs SET retry_at = NULL WHERE id = ?1", [run_id])?;
        Ok(())
    }

    // ----- dead letters -----

    pub fn dead_letters(
        &self,
        task_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<DeadLetter>> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE (?1 IS NULL OR task_id = ?1)
             ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![task_id, limit, offset], dead_letter_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>> {
        let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1");
        Ok(self
            .conn
            .query_row(&sql, [id], dead_letter_from_row)
            .optional()?)
    }

    pub fn delete_dead_letter(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM dead_letters WHERE id = ?1", [id])?
            > 0)
    }

    /// Replaces a dead letter by a new attempt of its occurrence, in one
    /// transaction. None if the attempt already exists.
    pub fn retry_dead_letter(
        &mut self,
        letter: &DeadLetter,
        started_at: Timestamp,
    ) -> Result<Option<Run>> {
        let start = RunStart {
            task_id: letter.task_id,
            scheduled_for: letter.scheduled_for,
            trigger: Trigger::Retry,
            attempt: letter.attempts + 1,
            started_at,
        };
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM dead_letters WHERE id = ?1", [letter.id])?;
        let run = start_run_in(&tx, &start, None)?;
        if run.is_some() {
            tx.commit()?;
        }
        Ok(run)
    }

    // ----- health and housekeeping -----

    /// Whether statements wait up to the busy timeout for another
    /// connection's lock (true) or fail at once (false).
    pub fn set_lock_wait(&self, wait: bool) {
        let timeout = if wait { BUSY_TIMEOUT } else { Duration::ZERO };
        if let Err(err) = self.conn.busy_timeout(timeout) {
            log::warn!("event=db_busy_timeout_failed error=\"{err}\"");
        }
    }

    /// Proves the database can be written, and records when the service was
    /// last alive (read at the next start to tell how long it was down).
    pub fn heartbeat(&self, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('heartbeat', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [format_instant(now)],
        )?;
        Ok(())
    }

    pub fn last_heartbeat(&self) -> Result<Option<Timestamp>> {
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'heartbeat'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value.and_then(|v| parse_instant(&v)))
    }

    /// Returns freed pages to the file system and folds the WAL back into
    /// the database, so the file stops growing under a steady load.
    pub fn compact(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA incremental_vacuum(1000);")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn count_tasks_by_status(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, COUNT(*) FROM tasks GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

const TASK_COLUMNS: &str = "id, name, description, schedule, command, timezone, max_retries,
    retry_delay_seconds, timeout_seconds, status, pause_on_dead_letter, next_run_at, last_run_at,
    last_status, created_at, updated_at, revision, env, working_dir, overlap, catch_up,
    misfire_grace_seconds, catch_up_limit";

const RUN_COLUMNS: &str = "id, task_id, scheduled_for, trigger, attempt, status, started_at,
    finished_at, duration_ms, exit_code, output, output_dropped_bytes, error, retry_at, pid, pid_start_ticks";

const DEAD_LETTER_COLUMNS: &str =
    "id, task_id, run_id, scheduled_for, failed_at, attempts, last_error, exit_code, output";

/// A task's client-set fields as named SQL parameters, shared by insert
/// and update so the two cannot drift apart.
struct SpecValues(Vec<(&'static str, Box<dyn ToSql>)>);

impl SpecValues {
    fn as_params(&self) -> Vec<(&str, &dyn ToSql)> {
        self.0
            .iter()
            .map(|(name, value)| (*name, value.as_ref()))
            .collect()
    }
}

fn spec_values(spec: &TaskSpec, next_run_at: Option<Timestamp>) -> SpecValues {
    let policy = &spec.policy;
    SpecValues(vec![
        (":name", Box::new(spec.name.clone())),
        (":description", Box::new(spec.description.clone())),
        (":schedule", Box::new(spec.schedule.clone())),
        (":command", Box::new(spec.command.clone())),
        (":timezone", Box::new(spec.timezone.clone())),
        (":max_retries", Box::new(spec.max_retries)),
        (":retry_delay_seconds", Box::new(spec.retry_delay_seconds)),
        (":timeout_seconds", Box::new(spec.timeout_seconds)),
        (":status", Box::new(spec.status.as_str())),
        (":pause_on_dead_letter", Box::new(spec.pause_on_dead_letter)),
        (":next_run_at", Box::new(next_run_at.map(format_instant))),
        (":now", Box::new(format_instant(crate::clock::now()))),
        (":env", Box::new(encode_env(&policy.env))),
        (":working_dir", Box::new(policy.working_dir.clone())),
        (":overlap", Box::new(policy.overlap.as_str())),
        (":catch_up", Box::new(policy.catch_up.as_str())),
        (
            ":misfire_grace_seconds",
            Box::new(policy.misfire_grace_seconds),
        ),
        (":catch_up_limit", Box::new(policy.catch_up_limit)),
    ])
}

fn current_revision(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT seq FROM change_seq WHERE id = 1", [], |r| r.get(0))
}

/// Inserts a running run and takes the task's lock; see `Store::start_run`.
fn start_run_in(
    conn: &Connection,
    start: &RunStart,
    next: Option<Timestamp>,
) -> Result<Option<Run>> {
    let started = format_instant(start.started_at);
    let inserted = conn.execute(
        "INSERT INTO runs (task_id, scheduled_for, trigger, attempt, status, started_at)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5)
         ON CONFLICT DO NOTHING",
        params![
            start.task_id,
            format_instant(start.scheduled_for),
            start.trigger.as_str(),
            start.attempt,
            started,
        ],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    let run_id = conn.last_insert_rowid();
    if start.trigger == Trigger::Schedule {
        conn.execute(
            "UPDATE tasks SET locked_at = ?2, last_run_at = ?2, next_run_at = ?3 WHERE id = ?1",
            params![start.task_id, started, next.map(format_instant)],
        )?;
    } else {
        conn.execute(
            "UPDATE tasks SET locked_at = ?2, last_run_at = ?2 WHERE id = ?1",
            params![start.task_id, started],
        )?;
    }
    run_in(conn, run_id)
}

fn run_in(conn: &Connection, id: i64) -> Result<Option<Run>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], run_from_row).optional()?)
}

fn insert_dead_letter(conn: &Connection, run: &Run) -> Result<()> {
    conn.execute(
        "INSERT INTO dead_letters (task_id, run_id, scheduled_for, failed_at, attempts,
            last_error, exit_code, output)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            run.task_id,
            run.id,
            format_instant(run.scheduled_for),
            run.finished_at.map(format_instant),
            run.attempt,
            run.error,
            run.exit_code,
            run.output,
        ],
    )?;
    Ok(())
}

/// Reads a stored instant. Rows edited by hand may hold anything; a value
/// that does not parse reads as absent rather than failing the whole query.
fn instant(row: &Row, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    let text: Option<String> = row.get(index)?;
    Ok(text.as_deref().and_then(parse_instant))
}

fn required_instant(row: &Row, index: usize) -> rusqlite::Result<Timestamp> {
    instant(row, index).map(|ts| ts.unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Reads a task row without trusting its types: a row edited by hand may
/// hold text where a number belongs. Such a value reads as a default and
/// is named in `Task::problem`, so one bad row neither fails every query
/// that reads tasks nor gets scheduled.
fn task_from_row(row: &Row) -> rusqlite::Result<Task> {
    let mut r = Lenient {
        row,
        problems: Vec::new(),
        broken: Vec::new(),
    };
    let status = r.text(9, "status");
    let overlap = r.text(19, "overlap");
    let catch_up = r.text(20, "catch_up");
    let env_text = r.text(17, "env");
    let spec = TaskSpec {
        name: r.text(1, "name"),
        description: r.text(2, "description"),
        schedule: r.text(3, "schedule"),
        command: r.text(4, "command"),
        timezone: r.text(5, "timezone"),
        max_retries: r.int(6, "max_retries"),
        retry_delay_seconds: r.int(7, "retry_delay_seconds"),
        timeout_seconds: r.int(8, "timeout_seconds"),
        status: r
            .parsed(&status, "status", TaskStatus::parse)
            .unwrap_or(TaskStatus::Disabled),
        pause_on_dead_letter: r.int(10, "pause_on_dead_letter") != 0,
        policy: Policy {
            env: Vec::new(),
            working_dir: r.optional_text(18, "working_dir"),
            overlap: r
                .parsed(&overlap, "overlap", Overlap::parse)
                .unwrap_or(Overlap::Skip),
            catch_up: r
                .parsed(&catch_up, "catch_up", CatchUp::parse)
                .unwrap_or(CatchUp::Latest),
            misfire_grace_seconds: r.optional_int(21, "misfire_grace_seconds"),
            catch_up_limit: r.int(22, "catch_up_limit"),
        },
    };
    let mut task = Task {
        id: row.get(0)?,
        spec,
        next_run_at: instant(row, 11)?,
        last_run_at: instant(row, 12)?,
        last_status: r.optional_text(13, "last_status"),
        created_at: required_instant(row, 14)?,
        updated_at: required_instant(row, 15)?,
        revision: row.get(16)?,
        problem: None,
        broken_fields: Vec::new(),
    };
    match decode_env(&env_text) {
        Ok(env) => task.spec.policy.env = env,
        Err(err) => {
            r.broken.push("env");
            r.problems.push(format!("env: {err}"));
        }
    }
    task.problem = (!r.problems.is_empty()).then(|| r.problems.join("; "));
    task.broken_fields = r.broken;
    Ok(task)
}

/// Typed reads that note a wrong type instead of failing.
struct Lenient<'r, 's> {
    row: &'r Row<'s>,
    problems: Vec<String>,
    /// The fields the problems are about.
    broken: Vec<&'static str>,
}

impl Lenient<'_, '_> {
    fn value(&mut self, index: usize) -> ValueRef<'_> {
        self.row.get_ref(index).unwrap_or(ValueRef::Null)
    }

    fn wrong(&mut self, name: &'static str, expected: &str) {
        self.broken.push(name);
        self.problems
            .push(format!("{name}: stored value is not {expected}"));
    }

    fn int(&mut self, index: usize, name: &'static str) -> i64 {
        match self.value(index) {
            ValueRef::Integer(n) => n,
            _ => {
                self.wrong(name, "a whole number");
                0
            }
        }
    }

    fn optional_int(&mut self, index: usize, name: &'static str) -> Option<i64> {
        match self.value(index) {
            ValueRef::Integer(n) => Some(n),
            ValueRef::Null => None,
            _ => {
                self.wrong(name, "a whole number");
                None
            }
        }
    }

    fn text(&mut self, index: usize, name: &'static str) -> String {
        self.optional_text(index, name).unwrap_or_default()
    }

    fn optional_text(&mut self, index: usize, name: &'static str) -> Option<String> {
        match self.value(index) {
            ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            ValueRef::Null => None,
            _ => {
                self.wrong(name, "text");
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        text: &str,
        name: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let value = parse(text);
        if value.is_none() {
            self.broken.push(name);
            self.problems.push(format!(
                "{name}: stored value {text:?} is not one of its choices"
            ));
        }
        value
    }
}

fn run_from_row(row: &Row) -> rusqlite::Result<Run> {
    let trigger: String = row.get(3)?;
    let status: String = row.get(5)?;
    Ok(Run {
        id: row.get(0)?,
        task_id: row.get(1)?,
        scheduled_for: required_instant(row, 2)?,
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Manual),
        attempt: row.get(4)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        started_at: instant(row, 6)?,
        finished_at: instant(row, 7)?,
        duration_ms: row.get(8)?,
        exit_code: row.get(9)?,
        output: row.get(10)?,
        output_dropped_bytes: row.get(11)?,
        error: row.get(12)?,
        retry_at: instant(row, 13)?,
        pid: row.get(14)?,
        pid_start_ticks: row.get(15)?,
    })
}

fn dead_letter_from_row(row: &Row) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get(0)?,
        task_id: row.get(1)?,
        run_id: row.get(2)?,
        scheduled_for: required_instant(row, 3)?,
        failed_at: required_instant(row, 4)?,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        exit_code: row.get(7)?,
        output: row.get(8)?,
    })
}

impl StoreError {
    fn other(message: String) -> StoreError {
        StoreError {
            kind: StoreErrorKind::Other,
            message,
        }
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let kind = match err.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen,
            ) => StoreErrorKind::Transient,
            Some(ErrorCode::ConstraintViolation) => StoreErrorKind::Conflict,
            _ => StoreErrorKind::Other,
        };
        StoreError {
            kind,
            message: err.to_string(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database: {}", self.message)
    }
}

impl std::error::Error for StoreError {}
