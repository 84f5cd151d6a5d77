//! The scheduling loop: one thread owns the store, the timer heap and the
//! running commands, and reacts to timers, API requests, finished runs,
//! the database poller and signals, one event at a time.
//!
//! Decisions live here (when an occurrence fires, is skipped or missed,
//! whether a failure is retried or dead-lettered); the store records them
//! and the executor carries them out. Nothing here writes SQL or parses
//! HTTP.

mod catchup;
mod commands;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};

use crate::config::Config;
use crate::cron::Schedule;
use crate::exec::{self, Outcome, RunSpec, StopReason};
use crate::metrics::Metrics;
use crate::model::{Run, RunStatus, Task, TaskStatus, Trigger};
use crate::store::{RunEnd, RunFollowUp, RunStart, Store, StoreError};

pub use commands::{ApiError, TaskPatch};

/// The longest the loop sleeps, so that a wall-clock jump is noticed
/// within this time even when nothing is due.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How often old runs are pruned and the database file compacted.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// A request from the HTTP side, answered through `reply`.
pub struct ApiCall {
    pub request: crate::api::Request,
    pub reply: std::sync::mpsc::SyncSender<crate::api::Response>,
}

pub struct Scheduler {
    store: Store,
    config: Config,
    executor: Rc<LocalExecutor<'static>>,
    tasks: HashMap<i64, Entry>,
    heap: BinaryHeap<Reverse<Due>>,
    running: HashMap<i64, Running>,
    done_tx: async_channel::Sender<RunDone>,
    done_rx: async_channel::Receiver<RunDone>,
    metrics: Metrics,
    /// Change revision of the tasks table last read by the poller.
    revision: i64,
    data_version: i64,
    started: Instant,
    db_healthy: bool,
    /// Wall and monotonic clocks at the last loop turn, to detect jumps.
    last_wall: Timestamp,
    last_mono: Instant,
}

/// A task as the scheduler holds it.
struct Entry {
    task: Task,
    /// None when the stored expression or zone does not parse (a bad edit
    /// made directly in the database); such a task never fires.
    schedule: Option<Schedule>,
    /// Bumped whenever the task's schedule changes, so that heap entries
    /// pushed before the change are recognised as stale.
    generation: u64,
}

/// One timer in the heap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Timestamp,
    task_id: i64,
    kind: DueKind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DueKind {
    Fire { generation: u64 },
    Retry { failed_run: i64 },
}

/// A command in flight.
struct Running {
    run_id: i64,
    stop: async_channel::Sender<StopReason>,
}

/// Sent by a run's future when its command has ended.
struct RunDone {
    task_id: i64,
    run: Run,
    outcome: Outcome,
}

enum ShutdownEvent {
    Done(Box<RunDone>),
    Hurry,
    Deadline,
}

enum Event {
    Tick,
    Api(ApiCall),
    Done(RunDone),
    Signal,
    ApiClosed,
}

impl Scheduler {
    /// Opens the schedule from the store: settles runs a previous process
    /// left behind, loads tasks and pending retries.
    pub fn new(
        store: Store,
        config: Config,
        executor: Rc<LocalExecutor<'static>>,
    ) -> Result<Scheduler, StoreError> {
        let (done_tx, done_rx) = async_channel::unbounded();
        let now = Timestamp::now();
        let data_version = store.data_version()?;
        let mut scheduler = Scheduler {
            store,
            config,
            executor,
            tasks: HashMap::new(),
            heap: BinaryHeap::new(),
            running: HashMap::new(),
            done_tx,
            done_rx,
            metrics: Metrics::default(),
            revision: 0,
            data_version,
            started: Instant::now(),
            db_healthy: true,
            last_wall: now,
            last_mono: Instant::now(),
        };
        scheduler.settle_interrupted_runs(now)?;
        scheduler.load_tasks()?;
        scheduler.load_pending_retries()?;
        scheduler.store.heartbeat(now)?;
        Ok(scheduler)
    }

    /// Runs until SIGTERM or SIGINT, then drains running commands.
    pub async fn run(mut self, api: async_channel::Receiver<ApiCall>) {
        let mut signals = match async_signal::Signals::new([
            async_signal::Signal::Term,
            async_signal::Signal::Int,
        ]) {
            Ok(signals) => Some(signals),
            Err(err) => {
                log::error!("event=signal_setup_failed error=\"{err}\"");
                None
            }
        };
        let mut next_poll = Instant::now() + self.config.poll_interval;
        let mut next_maintenance = Instant::now() + Duration::from_secs(60);
        let mut api_open = true;
        let watchdog = crate::notify::watchdog_interval().map(|d| d / 2);
        let mut next_watchdog = Instant::now();
        crate::notify::ready();

        loop {
            let sleep = self
                .sleep_time()
                .min(next_poll.saturating_duration_since(Instant::now()));
            let event = self
                .next_event(sleep, &api, api_open, signals.as_mut())
                .await;
            match event {
                Event::Tick => {}
                Event::Api(call) => self.answer(call),
                Event::Done(done) => self.on_run_done(done),
                Event::ApiClosed => api_open = false,
                Event::Signal => break,
            }
            self.check_clock();
            self.fire_due();
            if Instant::now() >= next_poll {
                self.poll();
                next_poll = Instant::now() + self.config.poll_interval;
            }
            if Instant::now() >= next_maintenance {
                self.maintain();
                next_maintenance = Instant::now() + MAINTENANCE_EVERY;
            }
            if let Some(every) = watchdog
                && Instant::now() >= next_watchdog
            {
                crate::notify::watchdog();
                next_watchdog = Instant::now() + every;
            }
        }
        self.shutdown(signals.as_mut()).await;
    }

    async fn next_event(
        &self,
        sleep: Duration,
        api: &async_channel::Receiver<ApiCall>,
        api_open: bool,
        signals: Option<&mut async_signal::Signals>,
    ) -> Event {
        let tick = async {
            Timer::after(sleep).await;
            Event::Tick
        };
        let done = async {
            match self.done_rx.recv().await {
                Ok(done) => Event::Done(done),
                Err(_) => futures_lite::future::pending().await,
            }
        };
        let call = async {
            if !api_open {
                return futures_lite::future::pending().await;
            }
            match api.recv().await {
                Ok(call) => Event::Api(call),
                Err(_) => Event::ApiClosed,
            }
        };
        let signal = async {
            match signals {
                Some(signals) => {
                    let _ = signals.next().await;
                    Event::Signal
                }
                None => futures_lite::future::pending().await,
            }
        };
        signal.or(done).or(call).or(tick).await
    }

    /// Time until the earliest heap entry, capped at `MAX_SLEEP`.
    fn sleep_time(&self) -> Duration {
        let Some(Reverse(due)) = self.heap.peek() else {
            return MAX_SLEEP;
        };
        let until = due.at.duration_since(Timestamp::now());
        if until.is_negative() {
            return Duration::ZERO;
        }
        Duration::try_from(until)
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    // ----- startup -----

    /// Runs a previous process left `running` were cut short by a crash or
    /// power loss: record them as interrupted and retry or dead-letter them
    /// like any other failure.
    fn settle_interrupted_runs(&mut self, now: Timestamp) -> Result<(), StoreError> {
        for run in self.store.running_runs()? {
            let task = self.store.task(run.task_id)?;
            let end = RunEnd {
                status: RunStatus::Interrupted,
                finished_at: now,
                duration_ms: run
                    .started_at
                    .map_or(0, |s| now.duration_since(s).as_millis() as i64),
                exit_code: None,
                output: run.output.clone(),
                output_dropped_bytes: run.output_dropped_bytes,
                error: Some(
                    "edgecron stopped while the run was going (crash or power loss)".into(),
                ),
            };
            let follow_up = follow_up_for(task.as_ref(), &run, RunStatus::Interrupted, now);
            self.store.finish_run(run.id, &end, &follow_up)?;
            self.metrics.interrupted_total += 1;
            log::warn!(
                "event=run_interrupted task={} run={} attempt={} follow_up={}",
                run.task_id,
                run.id,
                run.attempt,
                describe(&follow_up)
            );
        }
        Ok(())
    }

    fn load_tasks(&mut self) -> Result<(), StoreError> {
        let (tasks, revision) = self.store.all_tasks()?;
        self.revision = revision;
        let now = Timestamp::now();
        for task in tasks {
            self.install(task, now, false);
        }
        log::info!(
            "event=schedule_loaded tasks={} scheduled={}",
            self.tasks.len(),
            self.heap.len()
        );
        Ok(())
    }

    fn load_pending_retries(&mut self) -> Result<(), StoreError> {
        for run in self.store.pending_retries()? {
            if let Some(at) = run.retry_at {
                self.push(Due {
                    at,
                    task_id: run.task_id,
                    kind: DueKind::Retry { failed_run: run.id },
                });
            }
        }
        Ok(())
    }

    /// Puts `task` into the in-memory schedule, replacing any older copy.
    /// `reschedule` forces the next occurrence to be computed from now
    /// (after an edit); otherwise a stored `next_run_at` is resumed.
    fn install(&mut self, task: Task, now: Timestamp, reschedule: bool) {
        let generation = self.tasks.get(&task.id).map_or(0, |e| e.generation + 1);
        let schedule = match Schedule::parse(&task.schedule, &task.timezone) {
            Ok(schedule) => Some(schedule),
            Err(err) => {
                log::error!("event=task_unschedulable task={} error=\"{err}\"", task.id);
                None
            }
        };
        let mut entry = Entry {
            task,
            schedule,
            generation,
        };
        // A disabled or unparseable task has no next occurrence.
        let next = match (&entry.schedule, entry.task.status) {
            (Some(schedule), TaskStatus::Enabled) => match entry.task.next_run_at {
                Some(stored) if !reschedule => Some(stored),
                _ => schedule.next_after(now),
            },
            _ => None,
        };
        if next != entry.task.next_run_at {
            entry.task.next_run_at = next;
            self.note_db(self.store.set_next_run(entry.task.id, next));
        }
        if let Some(at) = next {
            let kind = DueKind::Fire { generation };
            self.push(Due {
                at,
                task_id: entry.task.id,
                kind,
            });
        }
        self.tasks.insert(entry.task.id, entry);
    }

    fn push(&mut self, due: Due) {
        self.heap.push(Reverse(due));
    }

    // ----- firing -----

    fn fire_due(&mut self) {
        let now = Timestamp::now();
        while let Some(Reverse(due)) = self.heap.peek() {
            if due.at > now {
                break;
            }
            let Some(Reverse(due)) = self.heap.pop() else {
                break;
            };
            match due.kind {
                DueKind::Fire { generation } => self.fire(due.task_id, generation, due.at, now),
                DueKind::Retry { failed_run } => self.retry(due.task_id, failed_run, due.at, now),
            }
        }
    }

    /// Handles the occurrence of `task_id` at `at`: runs it, or records it
    /// as skipped or missed, and schedules the next one.
    fn fire(&mut self, task_id: i64, generation: u64, at: Timestamp, now: Timestamp) {
        let Some(entry) = self.tasks.get(&task_id) else {
            return;
        };
        if entry.generation != generation || entry.task.status != TaskStatus::Enabled {
            return;
        }
        let Some(schedule) = entry.schedule.clone() else {
            return;
        };

        let plan = catchup::plan(&schedule, at, now, self.config.misfire_grace);
        let next = plan.next;
        if let Some(missed) = &plan.missed {
            self.metrics.missed_total += missed.count;
            let reason = missed.describe();
            log::warn!("event=occurrences_missed task={task_id} {reason}");
            let result =
                self.store
                    .record_unrun(task_id, missed.first, RunStatus::Missed, &reason, next);
            self.note_db(result);
        }
        if let Some(occurrence) = plan.run {
            self.start_occurrence(task_id, occurrence, next, now);
        } else if plan.missed.is_none() {
            self.note_db(self.store.set_next_run(task_id, next));
        }

        if let Some(entry) = self.tasks.get_mut(&task_id) {
            entry.task.next_run_at = next;
        }
        if let Some(at) = next {
            self.push(Due {
                at,
                task_id,
                kind: DueKind::Fire { generation },
            });
        }
    }

    fn start_occurrence(
        &mut self,
        task_id: i64,
        at: Timestamp,
        next: Option<Timestamp>,
        now: Timestamp,
    ) {
        if self.running.contains_key(&task_id) {
            self.metrics.skipped_total += 1;
            let reason = "previous run still going";
            log::info!(
                "event=occurrence_skipped task={task_id} scheduled_for={at} reason=\"{reason}\""
            );
            let result = self
                .store
                .record_unrun(task_id, at, RunStatus::Skipped, reason, next);
            self.note_db(result);
            return;
        }
        let start = RunStart {
            task_id,
            scheduled_for: at,
            trigger: Trigger::Schedule,
            attempt: 1,
            started_at: now,
        };
        match self.store.start_run(&start, next) {
            Ok(Some(run)) => self.launch(run),
            Ok(None) => {
                log::info!("event=occurrence_already_run task={task_id} scheduled_for={at}");
                self.note_db(self.store.set_next_run(task_id, next));
            }
            Err(err) => self.db_error("start_run", &err),
        }
    }

    fn retry(&mut self, task_id: i64, failed_run: i64, at: Timestamp, now: Timestamp) {
        if !self.tasks.contains_key(&task_id) {
            log::info!(
                "event=retry_dropped task={task_id} run={failed_run} reason=\"task deleted\""
            );
            self.note_db(self.store.clear_retry(failed_run));
            return;
        }
        if self.running.contains_key(&task_id) {
            // Never two runs of a task at once: try again when it may be free.
            let later = now + SignedDuration::from_secs(1);
            self.push(Due {
                at: later,
                task_id,
                kind: DueKind::Retry { failed_run },
            });
            return;
        }
        let failed = match self.store.run(failed_run) {
            Ok(Some(run)) if run.retry_at.is_some() => run,
            Ok(_) => return,
            Err(err) => return self.db_error("load_failed_run", &err),
        };
        let start = RunStart {
            task_id,
            scheduled_for: failed.scheduled_for,
            trigger: Trigger::Retry,
            attempt: failed.attempt + 1,
            started_at: now,
        };
        match self.store.start_retry(failed_run, &start) {
            Ok(Some(run)) => {
                self.metrics.retries_total += 1;
                log::info!(
                    "event=retry_started task={task_id} run={} attempt={} due={at}",
                    run.id,
                    run.attempt
                );
                self.launch(run);
            }
            Ok(None) => log::info!("event=retry_already_run task={task_id} run={failed_run}"),
            Err(err) => {
                self.db_error("start_retry", &err);
                // Keep the failure's consequence: try again shortly.
                let later = now + SignedDuration::from_secs(5);
                self.push(Due {
                    at: later,
                    task_id,
                    kind: DueKind::Retry { failed_run },
                });
            }
        }
    }

    /// Spawns the command of a run the store has just started.
    fn launch(&mut self, run: Run) {
        let Some(entry) = self.tasks.get(&run.task_id) else {
            return;
        };
        let task = &entry.task;
        let spec = RunSpec {
            command: task.command.clone(),
            timeout: Duration::from_secs(task.timeout_seconds.max(1) as u64),
            kill_grace: exec::TIMEOUT_KILL_GRACE,
            env: run_environment(task, &run),
        };
        log::info!(
            "event=run_started task={} run={} trigger={} attempt={} scheduled_for={}",
            run.task_id,
            run.id,
            run.trigger.as_str(),
            run.attempt,
            run.scheduled_for
        );
        let (stop_tx, stop_rx) = async_channel::bounded(2);
        self.running.insert(
            run.task_id,
            Running {
                run_id: run.id,
                stop: stop_tx,
            },
        );
        let done = self.done_tx.clone();
        let task_id = run.task_id;
        self.executor
            .spawn(async move {
                let outcome = exec::execute(spec, stop_rx).await;
                let _ = done
                    .send(RunDone {
                        task_id,
                        run,
                        outcome,
                    })
                    .await;
            })
            .detach();
    }

    fn on_run_done(&mut self, done: RunDone) {
        let RunDone {
            task_id,
            run,
            outcome,
        } = done;
        if self
            .running
            .get(&task_id)
            .is_some_and(|r| r.run_id == run.id)
        {
            self.running.remove(&task_id);
        }
        let now = Timestamp::now();
        let task = self.tasks.get(&task_id).map(|e| &e.task);
        let follow_up = follow_up_for(task, &run, outcome.status, now);
        let end = RunEnd {
            status: outcome.status,
            finished_at: now,
            duration_ms: outcome.duration.as_millis() as i64,
            exit_code: outcome.exit_code,
            output: outcome.output,
            output_dropped_bytes: outcome.output_dropped_bytes,
            error: outcome.error,
        };
        self.metrics
            .record_run(end.status, outcome.duration.as_secs_f64());
        self.log_run_end(&run, &end, &follow_up);

        match self.store.finish_run(run.id, &end, &follow_up) {
            Ok(_) => self.apply_follow_up(task_id, run.id, &follow_up),
            Err(err) => self.db_error("finish_run", &err),
        }
        let keep_after = now - SignedDuration::from_hours(24 * self.config.keep_days);
        self.note_db(
            self.store
                .prune_runs(task_id, self.config.keep_runs, keep_after)
                .map(|_| ()),
        );
    }

    fn log_run_end(&self, run: &Run, end: &RunEnd, follow_up: &RunFollowUp) {
        let line = format!(
            "event=run_finished task={} run={} attempt={} status={} exit_code={} duration_ms={} \
             dropped_bytes={} follow_up={}",
            run.task_id,
            run.id,
            run.attempt,
            end.status.as_str(),
            end.exit_code.map_or("none".into(), |c| c.to_string()),
            end.duration_ms,
            end.output_dropped_bytes,
            describe(follow_up),
        );
        if end.status == RunStatus::Succeeded {
            log::info!("{line}");
        } else {
            log::warn!("{line} error=\"{}\"", end.error.as_deref().unwrap_or(""));
        }
    }

    fn apply_follow_up(&mut self, task_id: i64, run_id: i64, follow_up: &RunFollowUp) {
        match follow_up {
            RunFollowUp::Nothing => {}
            RunFollowUp::RetryAt(at) => {
                log::info!("event=retry_scheduled task={task_id} run={run_id} at={at}");
                self.push(Due {
                    at: *at,
                    task_id,
                    kind: DueKind::Retry { failed_run: run_id },
                });
            }
            RunFollowUp::DeadLetter { pause_task } => {
                self.metrics.dead_letters_total += 1;
                log::error!("event=dead_lettered task={task_id} run={run_id} paused={pause_task}");
                if *pause_task {
                    self.reload_task(task_id);
                }
            }
        }
    }

    /// Re-reads one task after the scheduler changed it in the store.
    fn reload_task(&mut self, task_id: i64) {
        match self.store.task(task_id) {
            Ok(Some(task)) => self.install(task, Timestamp::now(), true),
            Ok(None) => {
                self.tasks.remove(&task_id);
            }
            Err(err) => self.db_error("reload_task", &err),
        }
    }

    // ----- the poller and the clock -----

    /// Picks up task changes made directly in the database.
    fn poll(&mut self) {
        let now = Timestamp::now();
        self.note_db(self.store.heartbeat(now));
        let version = match self.store.data_version() {
            Ok(version) => version,
            Err(err) => return self.db_error("data_version", &err),
        };
        if version == self.data_version {
            return;
        }
        let changes = match self.store.task_changes(self.revision) {
            Ok(changes) => changes,
            Err(err) => return self.db_error("task_changes", &err),
        };
        self.data_version = version;
        self.revision = changes.revision;
        for task in changes.changed {
            if self
                .tasks
                .get(&task.id)
                .is_some_and(|e| e.task.revision == task.revision)
            {
                continue;
            }
            self.metrics.poll_changes_total += 1;
            log::info!(
                "event=task_changed_in_db task={} status={}",
                task.id,
                task.status.as_str()
            );
            let reschedule = self.schedule_changed(&task);
            self.install(task, now, reschedule);
        }
        for id in changes.deleted {
            if self.tasks.remove(&id).is_some() {
                self.metrics.poll_changes_total += 1;
                log::info!("event=task_deleted_in_db task={id}");
            }
        }
    }

    /// Whether an edit made elsewhere changes when the task fires, so its
    /// stored next occurrence cannot be trusted.
    fn schedule_changed(&self, task: &Task) -> bool {
        match self.tasks.get(&task.id) {
            Some(old) => {
                old.task.schedule != task.schedule
                    || old.task.timezone != task.timezone
                    || old.task.status != task.status
            }
            None => task.next_run_at.is_none(),
        }
    }

    /// Notices a wall-clock jump (the wall clock moved differently from the
    /// monotonic clock) and recomputes every task's next occurrence.
    fn check_clock(&mut self) {
        let wall = Timestamp::now();
        let mono = Instant::now();
        let wall_elapsed = wall.duration_since(self.last_wall).as_secs_f64();
        let mono_elapsed = mono.duration_since(self.last_mono).as_secs_f64();
        self.last_wall = wall;
        self.last_mono = mono;
        let drift = wall_elapsed - mono_elapsed;
        if drift.abs() < 2.0 {
            return;
        }
        log::warn!("event=clock_jump seconds={drift:.0}");
        if drift < 0.0 {
            // Backwards: keep each task's next occurrence as it is, so nothing
            // already run runs again; but one far ahead (set while the clock
            // was wrong) is brought back to the next real occurrence.
            self.reschedule_all(wall, false);
        } else {
            // Forwards: occurrences now in the past fire through the
            // catch-up rule at the next turn.
        }
    }

    /// Recomputes next occurrences after a backward jump: any stored next
    /// occurrence later than the schedule's real next one is pulled in.
    fn reschedule_all(&mut self, now: Timestamp, _force: bool) {
        let ids: Vec<i64> = self.tasks.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.tasks.get(&id) else {
                continue;
            };
            let (Some(schedule), Some(stored)) = (&entry.schedule, entry.task.next_run_at) else {
                continue;
            };
            let real = schedule.next_after(now);
            if real.is_some_and(|r| r < stored) {
                let task = entry.task.clone();
                self.install(
                    Task {
                        next_run_at: real,
                        ..task
                    },
                    now,
                    false,
                );
            }
        }
    }

    fn maintain(&mut self) {
        let cutoff = Timestamp::now() - SignedDuration::from_hours(24 * self.config.keep_days);
        match self.store.prune_all_before(cutoff) {
            Ok(pruned) if pruned > 0 => log::info!("event=runs_pruned count={pruned}"),
            Ok(_) => {}
            Err(err) => self.db_error("prune", &err),
        }
        self.note_db(self.store.compact());
    }

    // ----- shutdown -----

    async fn shutdown(&mut self, signals: Option<&mut async_signal::Signals>) {
        crate::notify::stopping();
        let running = self.running.len();
        log::info!("event=shutdown_started running={running}");
        for run in self.running.values() {
            let _ = run.stop.try_send(StopReason::Shutdown {
                grace: self.config.shutdown_grace,
            });
        }
        let deadline = Instant::now() + self.config.shutdown_grace + Duration::from_secs(5);
        let mut signals = signals;
        while !self.running.is_empty() && Instant::now() < deadline {
            match self
                .next_shutdown_event(deadline, signals.as_deref_mut())
                .await
            {
                ShutdownEvent::Done(done) => self.on_run_done(*done),
                ShutdownEvent::Hurry => {
                    // A second signal shortens the wait: every run is killed now.
                    log::warn!("event=shutdown_hurried");
                    for run in self.running.values() {
                        let _ = run.stop.try_send(StopReason::Kill);
                    }
                }
                ShutdownEvent::Deadline => break,
            }
        }
        log::info!("event=shutdown_finished unfinished={}", self.running.len());
    }

    async fn next_shutdown_event(
        &self,
        deadline: Instant,
        signals: Option<&mut async_signal::Signals>,
    ) -> ShutdownEvent {
        let done = async {
            match self.done_rx.recv().await {
                Ok(done) => ShutdownEvent::Done(Box::new(done)),
                Err(_) => futures_lite::future::pending().await,
            }
        };
        let timeout = async {
            Timer::at(deadline).await;
            ShutdownEvent::Deadline
        };
        let signal = async {
            match signals {
                Some(signals) => {
                    let _ = signals.next().await;
                    ShutdownEvent::Hurry
                }
                None => futures_lite::future::pending().await,
            }
        };
        done.or(signal).or(timeout).await
    }

    // ----- helpers -----

    fn note_db(&mut self, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.db_healthy = true,
            Err(err) => self.db_error("write", &err),
        }
    }

    /// Logs and counts a database failure; the loop carries on.
    fn db_error(&mut self, op: &str, err: &StoreError) {
        self.metrics.db_errors_total += 1;
        if err.is_transient() {
            self.db_healthy = false;
        }
        log::error!("event=db_error op={op} error=\"{err}\"");
    }
}

/// What follows a run that ended with `status`, under `task`'s retry policy.
/// A run of a deleted task has no follow-up.
fn follow_up_for(task: Option<&Task>, run: &Run, status: RunStatus, now: Timestamp) -> RunFollowUp {
    let Some(task) = task else {
        return RunFollowUp::Nothing;
    };
    if !status.is_failure() {
        return RunFollowUp::Nothing;
    }
    // A retry of a dead letter (attempt beyond the budget) is one more try.
    if run.attempt <= task.max_retries {
        let delay = SignedDuration::from_secs(task.retry_delay_seconds.max(0));
        RunFollowUp::RetryAt(now + delay)
    } else {
        RunFollowUp::DeadLetter {
            pause_task: task.pause_on_dead_letter,
        }
    }
}

fn describe(follow_up: &RunFollowUp) -> String {
    match follow_up {
        RunFollowUp::Nothing => "none".into(),
        RunFollowUp::RetryAt(at) => format!("retry_at:{at}"),
        RunFollowUp::DeadLetter { .. } => "dead_letter".into(),
    }
}

/// The variables a command sees on top of the service's environment, so a
/// script can tell which occurrence it serves and make itself idempotent.
fn run_environment(task: &Task, run: &Run) -> Vec<(String, String)> {
    vec![
        ("EDGECRON_TASK_ID".into(), task.id.to_string()),
        ("EDGECRON_TASK_NAME".into(), task.name.clone()),
        ("EDGECRON_RUN_ID".into(), run.id.to_string()),
        ("EDGECRON_ATTEMPT".into(), run.attempt.to_string()),
        ("EDGECRON_TRIGGER".into(), run.trigger.as_str().into()),
        (
            "EDGECRON_SCHEDULED_FOR".into(),
            crate::model::format_instant(run.scheduled_for),
        ),
    ]
}
