//! The scheduling loop: one thread owns the store, the timer heap and the
//! running commands, and reacts to timers, API requests, finished runs,
//! the database poller and signals, one event at a time.
//!
//! Decisions live here (when an occurrence fires, is skipped or missed,
//! whether a failure is retried or dead-lettered); the store records them
//! and the executor carries them out. Nothing here writes SQL or parses
//! HTTP.

mod cache;
mod catchup;
mod commands;
mod runs;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};

use crate::config::Config;
use crate::cron::Schedule;
use crate::exec::{Outcome, StopReason};
use crate::metrics::Metrics;
use crate::model::{Run, RunStatus, Task, TaskStatus};
use crate::store::{RunEnd, Store, StoreError};
use runs::{describe, follow_up_for};

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
    schedules: cache::ScheduleCache,
    /// While loading, `next_run_at` writes are collected here and written
    /// in one transaction.
    deferred_next: Option<Vec<(i64, Option<Timestamp>)>>,
    /// Tasks with a queued run waiting for a free slot under
    /// `max_running`, in the order they started waiting.
    waiting_for_slot: VecDeque<i64>,
    /// Run ends the database refused, written again each turn.
    unwritten: Vec<runs::UnwrittenEnd>,
    shutting_down: bool,
    /// A file whose existence means the clock is synchronised; firing waits
    /// for it. None once it has appeared, or when not asked to wait.
    clock_sync_file: Option<PathBuf>,
}

/// A task as the scheduler holds it.
struct Entry {
    task: Task,
    /// False when the stored expression or zone does not parse (a bad
    /// edit made directly in the database); such a task never fires.
    schedulable: bool,
    /// Bumped whenever the task's schedule changes, so that heap entries
    /// pushed before the change are recognised as stale.
    generation: u64,
    /// Queued runs waiting for the current one to end, oldest first.
    backlog: VecDeque<i64>,
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
    Fire {
        generation: u64,
    },
    Retry {
        failed_run: i64,
    },
    /// An occurrence whose start the database refused; tried again.
    Again {
        scheduled_for: Timestamp,
    },
}

/// A command in flight.
struct Running {
    run_id: i64,
    stop: async_channel::Sender<StopReason>,
    /// Stopped to make way for a newer occurrence (overlap `replace`).
    replaced: bool,
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
    Done(Box<RunDone>),
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
        let now = crate::clock::now();
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
            unwritten: Vec::new(),
            waiting_for_slot: VecDeque::new(),
            schedules: cache::ScheduleCache::default(),
            deferred_next: None,
            shutting_down: false,
            clock_sync_file: None,
        };
        scheduler.clock_sync_file = scheduler.config.clock_sync_file.clone();
        scheduler.settle_interrupted_runs(now)?;
        scheduler.load_tasks()?;
        scheduler.load_pending_retries()?;
        scheduler.load_queued_runs()?;
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
            if matches!(event, Event::Signal) {
                break;
            }
            if matches!(event, Event::ApiClosed) {
                api_open = false;
            }
            // A bug in one turn must not end the service: the panic is
            // logged and counted, and the schedule is rebuilt from the
            // database in case the turn left it half changed.
            let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.turn(event, &mut next_poll, &mut next_maintenance);
            }));
            if let Err(panic) = turn {
                self.recover_from_panic(panic.as_ref());
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

    /// One turn of the loop after an event: handle it, then the clock, the
    /// due timers, and the poller and maintenance when their time comes.
    fn turn(&mut self, event: Event, next_poll: &mut Instant, next_maintenance: &mut Instant) {
        match event {
            Event::Api(call) => self.answer(call),
            Event::Done(done) => self.on_run_done(*done),
            Event::Tick | Event::ApiClosed | Event::Signal => {}
        }
        self.check_clock();
        self.fire_due();
        if Instant::now() >= *next_poll {
            self.poll();
            *next_poll = Instant::now() + self.config.poll_interval;
        }
        if Instant::now() >= *next_maintenance {
            self.maintain();
            *next_maintenance = Instant::now() + MAINTENANCE_EVERY;
        }
    }

    fn recover_from_panic(&mut self, panic: &(dyn std::any::Any + Send)) {
        let what = crate::logging::panic_message(panic);
        self.metrics.loop_panics_total += 1;
        log::error!("event=loop_panic panic={what:?} action=\"schedule reloaded\"");
        self.heap.clear();
        let reloaded = self.load_tasks().and_then(|()| self.load_pending_retries());
        if let Err(err) = reloaded {
            self.db_error("reload_after_panic", &err);
        }
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
                Ok(done) => Event::Done(Box::new(done)),
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
        let until = due.at.duration_since(crate::clock::now());
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
            // The dead service's command may still be running: it must not
            // overlap its own retry, and nothing a run starts outlives it.
            if let Some(pgid) = run.pid.and_then(|p| i32::try_from(p).ok())
                && crate::exec::kill_leftover_group(pgid, run.pid_start_ticks)
            {
                log::warn!(
                    "event=leftover_process_group_killed task={} run={} pgid={pgid}",
                    run.task_id,
                    run.id
                );
            }
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
        let now = crate::clock::now();
        self.deferred_next = Some(Vec::new());
        for task in tasks {
            self.install(task, now, false);
        }
        let writes = self.deferred_next.take().unwrap_or_default();
        self.store.set_next_runs(&writes)?;
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

    /// Queued runs survive a restart: they go back into their task's
    /// backlog and start at the first turn, oldest first.
    fn load_queued_runs(&mut self) -> Result<(), StoreError> {
        let queued = self.store.queued_runs()?;
        for run in &queued {
            match self.tasks.get_mut(&run.task_id) {
                Some(entry) => entry.backlog.push_back(run.id),
                None => self
                    .store
                    .drop_queued(run.id, RunStatus::Skipped, "task deleted")?,
            }
        }
        let mut task_ids: Vec<i64> = queued.iter().map(|r| r.task_id).collect();
        task_ids.dedup();
        for task_id in task_ids {
            self.start_next_queued(task_id);
        }
        Ok(())
    }

    /// Whether firing may start: the clock-sync file (if one was asked for)
    /// exists. Checked each turn until it appears.
    fn clock_synced(&mut self) -> bool {
        let Some(path) = &self.clock_sync_file else {
            return true;
        };
        if !path.exists() {
            return false;
        }
        log::info!("event=clock_synchronised file={}", path.display());
        self.clock_sync_file = None;
        // Occurrences computed from the unsynchronised clock are recomputed.
        self.reschedule_all(crate::clock::now());
        true
    }

    /// Puts `task` into the in-memory schedule, replacing any older copy.
    /// `reschedule` forces the next occurrence to be computed from now
    /// (after an edit); otherwise a stored `next_run_at` is resumed.
    fn install(&mut self, mut task: Task, now: Timestamp, reschedule: bool) {
        let old = self.tasks.remove(&task.id);
        let generation = old.as_ref().map_or(0, |e| e.generation + 1);
        let backlog = old.map(|e| e.backlog).unwrap_or_default();
        let schedule = match self.schedule_for(&task) {
            Ok(schedule) => Some(schedule),
            Err(why) => {
                log::error!("event=task_unschedulable task={} error={why:?}", task.id);
                None
            }
        };

        // A disabled or unparseable task has no next occurrence.
        let next = match (&schedule, task.spec.status) {
            (Some(schedule), TaskStatus::Enabled) => {
                let real = schedule.next_after(now);
                match task.next_run_at {
                    // A stored occurrence later than the schedule's real next
                    // one was computed while the clock ran ahead (or the
                    // schedule was edited without it): the real one wins.
                    Some(stored) if !reschedule && real.is_none_or(|r| stored <= r) => Some(stored),
                    _ => real,
                }
            }
            _ => None,
        };
        if next != task.next_run_at {
            task.next_run_at = next;
            match &mut self.deferred_next {
                Some(writes) => writes.push((task.id, next)),
                None => self.note_db(self.store.set_next_run(task.id, next)),
            }
        }
        if let Some(at) = next {
            self.push(Due {
                at,
                task_id: task.id,
                kind: DueKind::Fire { generation },
            });
        }
        let entry = Entry {
            schedulable: schedule.is_some(),
            task,
            generation,
            backlog,
        };
        self.tasks.insert(entry.task.id, entry);
    }

    /// The task's parsed schedule, or why the stored task cannot be
    /// scheduled: a value of the wrong type, out of range or unparseable, as
    /// a hand edit can leave it. Such a task stays listed but never fires
    /// until the row is fixed.
    fn schedule_for(&mut self, task: &Task) -> Result<Rc<Schedule>, String> {
        if let Some(problem) = &task.problem {
            return Err(problem.clone());
        }
        commands::validate_fields(&task.spec, self.config.max_env_entries)
            .map_err(|err| err.to_string())?;
        self.schedules
            .get(&task.spec.schedule, &task.spec.timezone)
            .map_err(|err| err.to_string())
    }

    fn push(&mut self, due: Due) {
        self.heap.push(Reverse(due));
    }

    // ----- the poller and the clock -----

    /// Picks up task changes made directly in the database.
    fn poll(&mut self) {
        let now = crate::clock::now();
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
                task.spec.status.as_str()
            );
            let reschedule = self.schedule_changed(&task);
            self.install(task, now, reschedule);
        }
        for id in changes.deleted {
            self.drop_backlog(id, "task deleted");
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
                old.task.spec.schedule != task.spec.schedule
                    || old.task.spec.timezone != task.spec.timezone
                    || old.task.spec.status != task.spec.status
            }
            None => task.next_run_at.is_none(),
        }
    }

    /// Notices a wall-clock jump (the wall clock moved differently from the
    /// monotonic clock) and recomputes every task's next occurrence.
    fn check_clock(&mut self) {
        let wall = crate::clock::now();
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
            self.reschedule_all(wall);
        } else {
            // Forwards: occurrences now in the past fire through the
            // catch-up rule at the next turn.
        }
    }

    /// Recomputes next occurrences after a backward jump: a stored next
    /// occurrence later than the schedule's real next one is pulled in
    /// (`install` keeps the earlier of the two). Occurrences already run are
    /// not run again: the database refuses a second run of one.
    fn reschedule_all(&mut self, now: Timestamp) {
        let mut stale = Vec::new();
        for entry in self.tasks.values() {
            let Some(stored) = entry.task.next_run_at else {
                continue;
            };
            let Ok(schedule) = self
                .schedules
                .get(&entry.task.spec.schedule, &entry.task.spec.timezone)
            else {
                continue;
            };
            if schedule.next_after(now).is_some_and(|real| real < stored) {
                stale.push(entry.task.clone());
            }
        }
        for task in stale {
            self.install(task, now, false);
        }
    }

    fn maintain(&mut self) {
        let cutoff = crate::clock::now() - SignedDuration::from_hours(24 * self.config.keep_days);
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
        self.shutting_down = true;
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
            Ok(()) => self.db_ok(),
            Err(err) => self.db_error("write", &err),
        }
    }

    /// A write went through: the database is healthy again, and writes may
    /// wait for locks again.
    fn db_ok(&mut self) {
        if !self.db_healthy {
            self.store.set_lock_wait(true);
            log::info!("event=db_recovered");
        }
        self.db_healthy = true;
    }

    /// Logs and counts a database failure; the loop carries on.
    fn db_error(&mut self, op: &str, err: &StoreError) {
        self.metrics.db_errors_total += 1;
        if err.is_transient() {
            // While the database stays locked, every write would wait the
            // busy timeout and hold the loop (and /health) up: fail fast
            // until a write succeeds again.
            if self.db_healthy {
                self.store.set_lock_wait(false);
            }
            self.db_healthy = false;
        }
        log::error!("event=db_error op={op} error=\"{err}\"");
    }
}
