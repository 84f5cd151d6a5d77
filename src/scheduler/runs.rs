//! Firing and finishing runs: what an occurrence or a retry does when it
//! comes due (start, queue, replace, skip), launching the command, and what
//! a run's end leads to (nothing, a retry, a dead letter, the next queued
//! run).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::catchup::{self, Rule};
use super::{Due, DueKind, RunDone, Running, Scheduler};
use crate::exec::{self, RunSpec, StopReason};
use crate::model::{Overlap, Run, RunStatus, Task, TaskStatus, Trigger};
use crate::store::{RunEnd, RunFollowUp, RunStart};

/// How soon a database write that failed is tried again.
const DB_RETRY_DELAY: SignedDuration = SignedDuration::from_secs(2);

/// How long a replaced run gets between TERM and KILL.
const REPLACE_GRACE: Duration = Duration::from_secs(5);

/// Directories searched for commands when the service's own environment
/// has no PATH (as under some init systems).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A run's end that could not be written yet (the database was busy or
/// full); written again at each loop turn until it sticks.
pub(super) struct UnwrittenEnd {
    pub task_id: i64,
    pub run_id: i64,
    pub end: RunEnd,
    pub follow_up: RunFollowUp,
}

impl Scheduler {
    pub(super) fn fire_due(&mut self) {
        self.write_pending_ends();
        if !self.clock_synced() {
            return;
        }
        let now = crate::clock::now();
        while let Some(std::cmp::Reverse(due)) = self.heap.peek() {
            if due.at > now {
                break;
            }
            let Some(std::cmp::Reverse(due)) = self.heap.pop() else {
                break;
            };
            match due.kind {
                DueKind::Fire { generation } => self.fire(due.task_id, generation, due.at, now),
                DueKind::Retry { failed_run } => self.retry(due.task_id, failed_run, due.at, now),
                DueKind::Again { scheduled_for } => self.again(due.task_id, scheduled_for, now),
            }
        }
    }

    /// Handles the occurrence of `task_id` at `at`: applies the catch-up
    /// rule, offers what runs, records what is missed, schedules the next.
    fn fire(&mut self, task_id: i64, generation: u64, at: Timestamp, now: Timestamp) {
        let Some(entry) = self.tasks.get(&task_id) else {
            return;
        };
        if entry.generation != generation || entry.task.spec.status != TaskStatus::Enabled {
            return;
        }
        if !entry.schedulable {
            return;
        }
        let spec = &entry.task.spec;
        let Ok(schedule) = self.schedules.get(&spec.schedule, &spec.timezone) else {
            return;
        };
        let policy = &entry.task.spec.policy;
        let grace = self.grace_of(&entry.task);
        let rule = Rule {
            catch_up: policy.catch_up,
            grace,
            limit: policy.catch_up_limit as usize,
        };

        let plan = catchup::plan(&schedule, at, now, rule);
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
        for (index, occurrence) in plan.run.iter().enumerate() {
            // A catch-up backlog waits its turn whatever the overlap rule.
            self.offer(task_id, *occurrence, next, now, index > 0);
        }
        if plan.run.is_empty() && plan.missed.is_none() {
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

    /// One occurrence that should run: start it now, or apply the task's
    /// overlap rule if its previous run is still going.
    fn offer(
        &mut self,
        task_id: i64,
        at: Timestamp,
        next: Option<Timestamp>,
        now: Timestamp,
        backlog: bool,
    ) {
        let busy = self.running.contains_key(&task_id)
            || self
                .tasks
                .get(&task_id)
                .is_some_and(|e| !e.backlog.is_empty());
        if !busy && !self.at_capacity() {
            return self.start_occurrence(task_id, at, next, now);
        }
        if !busy {
            // Every slot is taken: the occurrence waits its turn.
            return self.enqueue(task_id, at, next);
        }
        let overlap = self
            .tasks
            .get(&task_id)
            .map_or(Overlap::Skip, |e| e.task.spec.policy.overlap);
        let waiting = self.tasks.get(&task_id).map_or(0, |e| e.backlog.len());
        match overlap {
            _ if backlog => self.enqueue(task_id, at, next),
            Overlap::Skip => self.skip(task_id, at, next, "previous run still going"),
            Overlap::Queue if waiting == 0 => self.enqueue(task_id, at, next),
            Overlap::Queue => self.skip(task_id, at, next, "a run is already queued"),
            Overlap::Replace => {
                self.drop_backlog(task_id, "replaced by a newer occurrence");
                self.enqueue(task_id, at, next);
                self.replace_running(task_id);
            }
        }
    }

    fn skip(&mut self, task_id: i64, at: Timestamp, next: Option<Timestamp>, reason: &str) {
        self.metrics.skipped_total += 1;
        log::info!(
            "event=occurrence_skipped task={task_id} scheduled_for={at} reason=\"{reason}\""
        );
        let result = self
            .store
            .record_unrun(task_id, at, RunStatus::Skipped, reason, next);
        self.note_db(result);
    }

    fn enqueue(&mut self, task_id: i64, at: Timestamp, next: Option<Timestamp>) {
        match self.store.queue_run(task_id, at, next) {
            Ok(Some(run)) => {
                log::info!(
                    "event=occurrence_queued task={task_id} run={} scheduled_for={at}",
                    run.id
                );
                if let Some(entry) = self.tasks.get_mut(&task_id) {
                    entry.backlog.push_back(run.id);
                }
                if !self.running.contains_key(&task_id) {
                    self.start_next_queued(task_id);
                }
            }
            Ok(None) => {
                log::info!("event=occurrence_already_run task={task_id} scheduled_for={at}")
            }
            Err(err) => self.db_error("queue_run", &err),
        }
    }

    /// Stops the task's current run so that the waiting one can start.
    fn replace_running(&mut self, task_id: i64) {
        if let Some(running) = self.running.get_mut(&task_id) {
            running.replaced = true;
            let _ = running.stop.try_send(StopReason::Replace {
                grace: REPLACE_GRACE,
            });
            log::info!("event=run_replacing task={task_id} run={}", running.run_id);
        }
    }

    /// Marks every queued run of a task as skipped.
    pub(super) fn drop_backlog(&mut self, task_id: i64, reason: &str) {
        let Some(entry) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let dropped: Vec<i64> = entry.backlog.drain(..).collect();
        for run_id in dropped {
            self.metrics.skipped_total += 1;
            log::info!("event=queued_run_dropped task={task_id} run={run_id} reason=\"{reason}\"");
            self.note_db(self.store.drop_queued(run_id, RunStatus::Skipped, reason));
        }
    }

    /// Starts the oldest queued run of a task that has none running.
    pub(super) fn start_next_queued(&mut self, task_id: i64) {
        let enabled = self
            .tasks
            .get(&task_id)
            .is_some_and(|e| e.task.spec.status == TaskStatus::Enabled);
        if !enabled {
            self.drop_backlog(task_id, "task disabled or deleted");
            return;
        }
        if self.at_capacity() {
            if !self.waiting_for_slot.contains(&task_id) {
                log::info!(
                    "event=run_waiting_for_slot task={task_id} running={}",
                    self.running.len()
                );
                self.waiting_for_slot.push_back(task_id);
            }
            return;
        }
        while let Some(run_id) = self
            .tasks
            .get_mut(&task_id)
            .and_then(|e| e.backlog.pop_front())
        {
            match self.store.start_queued(run_id, crate::clock::now()) {
                Ok(Some(run)) => return self.launch(run),
                Ok(None) => continue,
                Err(err) => {
                    self.db_error("start_queued", &err);
                    if let Some(entry) = self.tasks.get_mut(&task_id) {
                        entry.backlog.push_front(run_id);
                    }
                    return;
                }
            }
        }
    }

    fn start_occurrence(
        &mut self,
        task_id: i64,
        at: Timestamp,
        next: Option<Timestamp>,
        now: Timestamp,
    ) {
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
            Err(err) => {
                self.db_error("start_run", &err);
                // The occurrence is not lost: it is offered again shortly.
                let later = now + DB_RETRY_DELAY;
                self.push(Due {
                    at: later,
                    task_id,
                    kind: DueKind::Again { scheduled_for: at },
                });
            }
        }
    }

    /// Offers again an occurrence whose start failed, unless it has become
    /// older than the task's misfire grace.
    fn again(&mut self, task_id: i64, scheduled_for: Timestamp, now: Timestamp) {
        let Some(entry) = self.tasks.get(&task_id) else {
            return;
        };
        if entry.task.spec.status != TaskStatus::Enabled {
            return;
        }
        let next = entry.task.next_run_at;
        let grace =
            SignedDuration::try_from(self.grace_of(&entry.task)).unwrap_or(SignedDuration::MAX);
        if now.duration_since(scheduled_for) > grace {
            self.metrics.missed_total += 1;
            let reason = "missed=1 reason=\"database unavailable past the misfire grace\"";
            log::warn!(
                "event=occurrences_missed task={task_id} scheduled_for={scheduled_for} {reason}"
            );
            let result =
                self.store
                    .record_unrun(task_id, scheduled_for, RunStatus::Missed, reason, next);
            return self.note_db(result);
        }
        self.offer(task_id, scheduled_for, next, now, false);
    }

    fn grace_of(&self, task: &Task) -> Duration {
        task.spec
            .policy
            .misfire_grace_seconds
            .map_or(self.config.misfire_grace, |s| {
                Duration::from_secs(s.max(0) as u64)
            })
    }

    /// A failed run's retry came due. When the task is busy it waits for
    /// the current run to end (overlap `skip` or `queue`), or replaces it
    /// (`replace`).
    fn retry(&mut self, task_id: i64, failed_run: i64, at: Timestamp, now: Timestamp) {
        let Some(entry) = self.tasks.get(&task_id) else {
            log::info!(
                "event=retry_dropped task={task_id} run={failed_run} reason=\"task deleted\""
            );
            return self.note_db(self.store.clear_retry(failed_run));
        };
        let overlap = entry.task.spec.policy.overlap;
        if self.at_capacity() && !self.running.contains_key(&task_id) {
            // No free slot: look again in a second.
            let later = now + SignedDuration::from_secs(1);
            return self.push(Due {
                at: later,
                task_id,
                kind: DueKind::Retry { failed_run },
            });
        }
        if self.running.contains_key(&task_id) {
            // Skipping a retry would drop a failure's consequence, so a
            // retry waits for the current run under `skip` and `queue`.
            if overlap == Overlap::Replace {
                self.replace_running(task_id);
            }
            // Wait for the current run to end; look again in a second.
            let later = now + SignedDuration::from_secs(1);
            return self.push(Due {
                at: later,
                task_id,
                kind: DueKind::Retry { failed_run },
            });
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
    pub(super) fn launch(&mut self, run: Run) {
        let Some(entry) = self.tasks.get(&run.task_id) else {
            return;
        };
        let task = &entry.task;
        let spec = RunSpec {
            command: task.spec.command.clone(),
            timeout: Duration::from_secs(task.spec.timeout_seconds.max(1) as u64),
            kill_grace: exec::TIMEOUT_KILL_GRACE,
            env: run_environment(task, &run),
            working_dir: task.spec.policy.working_dir.clone(),
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
                replaced: false,
            },
        );
        // Started here, not in the future, so the process group is on
        // record before anything else happens.
        let process = match exec::start(&spec) {
            Ok(process) => {
                let pgid = process.pgid();
                let ticks = exec::start_ticks(pgid);
                self.note_db(self.store.set_run_process(run.id, pgid, ticks));
                Ok(process)
            }
            Err(outcome) => Err(outcome),
        };
        let done = self.done_tx.clone();
        let task_id = run.task_id;
        self.executor
            .spawn(async move {
                let outcome = match process {
                    Ok(process) => exec::supervise(process, &spec, stop_rx).await,
                    Err(outcome) => outcome,
                };
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

    pub(super) fn on_run_done(&mut self, done: RunDone) {
        let RunDone {
            task_id,
            run,
            outcome,
        } = done;
        let replaced = match self.running.get(&task_id) {
            Some(r) if r.run_id == run.id => {
                self.running.remove(&task_id).is_some_and(|r| r.replaced)
            }
            _ => false,
        };
        let now = crate::clock::now();
        let task = self.tasks.get(&task_id).map(|e| &e.task);
        // A run stopped to make way for a newer occurrence is not a failure.
        let follow_up = if replaced {
            RunFollowUp::Nothing
        } else {
            follow_up_for(task, &run, outcome.status, now)
        };
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
        self.write_end(UnwrittenEnd {
            task_id,
            run_id: run.id,
            end,
            follow_up,
        });

        let keep_after = now - SignedDuration::from_hours(24 * self.config.keep_days);
        self.note_db(
            self.store
                .prune_runs(task_id, self.config.keep_runs, keep_after)
                .map(|_| ()),
        );
        if !self.shutting_down {
            let has_backlog = self
                .tasks
                .get(&task_id)
                .is_some_and(|e| !e.backlog.is_empty());
            if has_backlog && !self.waiting_for_slot.contains(&task_id) {
                self.waiting_for_slot.push_back(task_id);
            }
            self.fill_free_slots();
        }
    }

    /// Whether `max_running` commands are going.
    pub(super) fn at_capacity(&self) -> bool {
        self.running.len() >= self.config.max_running
    }

    /// Starts waiting queued runs, first come first served, while slots
    /// are free.
    fn fill_free_slots(&mut self) {
        while !self.at_capacity() {
            let Some(task_id) = self.waiting_for_slot.pop_front() else {
                return;
            };
            if !self.running.contains_key(&task_id) {
                self.start_next_queued(task_id);
            }
        }
    }

    /// Writes a run's end and its consequence; keeps it for another try if
    /// the database refuses.
    fn write_end(&mut self, pending: UnwrittenEnd) {
        match self
            .store
            .finish_run(pending.run_id, &pending.end, &pending.follow_up)
        {
            Ok(_) => {
                self.db_ok();
                self.apply_follow_up(pending.task_id, pending.run_id, &pending.follow_up);
            }
            Err(err) if err.is_transient() => {
                self.db_error("finish_run", &err);
                self.unwritten.push(pending);
            }
            // Not worth another try (the run's row was deleted by hand, say):
            // logged once and dropped, rather than retried forever.
            Err(err) => {
                self.db_error("finish_run", &err);
                log::error!(
                    "event=run_end_lost task={} run={} status={}",
                    pending.task_id,
                    pending.run_id,
                    pending.end.status.as_str()
                );
            }
        }
    }

    fn write_pending_ends(&mut self) {
        if self.unwritten.is_empty() {
            return;
        }
        for pending in std::mem::take(&mut self.unwritten) {
            self.write_end(pending);
        }
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
            Ok(Some(task)) => self.install(task, crate::clock::now(), true),
            Ok(None) => {
                self.tasks.remove(&task_id);
            }
            Err(err) => self.db_error("reload_task", &err),
        }
    }
}

/// What follows a run that ended with `status`, under `task`'s retry policy.
/// A run of a deleted task has no follow-up.
pub(super) fn follow_up_for(
    task: Option<&Task>,
    run: &Run,
    status: RunStatus,
    now: Timestamp,
) -> RunFollowUp {
    let Some(task) = task else {
        return RunFollowUp::Nothing;
    };
    if !status.is_failure() {
        return RunFollowUp::Nothing;
    }
    // A retry of a dead letter (attempt beyond the budget) is one more try.
    if run.attempt <= task.spec.max_retries {
        // Clamped: a hand-edited row may hold any number.
        let delay = task
            .spec
            .retry_delay_seconds
            .clamp(0, super::commands::MAX_DELAY_SECONDS);
        let at = now
            .checked_add(SignedDuration::from_secs(delay))
            .unwrap_or(Timestamp::MAX);
        RunFollowUp::RetryAt(at)
    } else {
        RunFollowUp::DeadLetter {
            pause_task: task.spec.pause_on_dead_letter,
        }
    }
}

pub(super) fn describe(follow_up: &RunFollowUp) -> String {
    match follow_up {
        RunFollowUp::Nothing => "none".into(),
        RunFollowUp::RetryAt(at) => format!("retry_at:{}", crate::model::format_instant(*at)),
        RunFollowUp::DeadLetter { .. } => "dead_letter".into(),
    }
}

/// The variables a command sees on top of the service's environment and
/// the task's `env`, so a script can tell which occurrence it serves and
/// make itself idempotent. Ours come last: a task cannot fake them.
fn run_environment(task: &Task, run: &Run) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if std::env::var_os("PATH").is_none() {
        env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    env.extend(task.spec.policy.env.iter().cloned());
    env.extend([
        ("EDGECRON_TASK_ID".into(), task.id.to_string()),
        ("EDGECRON_TASK_NAME".into(), task.spec.name.clone()),
        ("EDGECRON_RUN_ID".into(), run.id.to_string()),
        ("EDGECRON_ATTEMPT".into(), run.attempt.to_string()),
        ("EDGECRON_TRIGGER".into(), run.trigger.as_str().into()),
        (
            "EDGECRON_SCHEDULED_FOR".into(),
            crate::model::format_instant(run.scheduled_for),
        ),
    ]);
    env
}
