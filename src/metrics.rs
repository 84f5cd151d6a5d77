//! Counters and the Prometheus text exposition of them.
//!
//! `Metrics` is owned by the scheduler thread, so plain integers suffice.
//! Gauges that live in the database (tasks by status) are read at scrape
//! time by the caller and passed in. `HttpCounters` count what the HTTP
//! side refuses before a request reaches the scheduler; they are atomics
//! shared by the connection threads.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::RunStatus;

/// Upper bounds (seconds) of the run duration histogram's buckets.
const DURATION_BUCKETS: [f64; 11] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub success_total: u64,
    pub failure_total: u64,
    pub retries_total: u64,
    pub dead_letters_total: u64,
    pub skipped_total: u64,
    pub missed_total: u64,
    pub timeouts_total: u64,
    pub interrupted_total: u64,
    pub db_errors_total: u64,
    pub poll_changes_total: u64,
    pub http_requests_total: u64,
    pub http_errors_total: u64,
    duration_buckets: [u64; DURATION_BUCKETS.len()],
    duration_count: u64,
    duration_sum: f64,
}

/// Requests and connections refused on the HTTP side.
#[derive(Debug, Default)]
pub struct HttpCounters {
    pub unauthorized: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub connections_refused: AtomicU64,
}

/// Values read at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tasks_by_status: Vec<(String, i64)>,
    pub running: usize,
    pub scheduled: usize,
    pub uptime_seconds: u64,
    pub db_healthy: bool,
}

impl Metrics {
    /// Counts a finished run (not skipped or missed occurrences).
    pub fn record_run(&mut self, status: RunStatus, seconds: f64) {
        match status {
            RunStatus::Succeeded => self.success_total += 1,
            RunStatus::TimedOut => {
                self.timeouts_total += 1;
                self.failure_total += 1;
            }
            RunStatus::Interrupted => {
                self.interrupted_total += 1;
                self.failure_total += 1;
            }
            _ => self.failure_total += 1,
        }
        for (bucket, bound) in self.duration_buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.duration_count += 1;
        self.duration_sum += seconds;
    }

    /// Renders the Prometheus text format (version 0.0.4).
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, u64); 12] = [
            (
                "task_executions_success_total",
                "Runs that exited 0.",
                self.success_total,
            ),
            (
                "task_executions_failure_total",
                "Runs that failed, timed out or were interrupted.",
                self.failure_total,
            ),
            (
                "task_execution_retries_total",
                "Retries started after a failed run.",
                self.retries_total,
            ),
            (
                "edgecron_dead_letters_total",
                "Runs moved to the dead-letter table.",
                self.dead_letters_total,
            ),
            (
                "edgecron_occurrences_skipped_total",
                "Occurrences skipped because the previous run was still going.",
                self.skipped_total,
            ),
            (
                "edgecron_occurrences_missed_total",
                "Occurrences missed while the service was down or the clock jumped.",
                self.missed_total,
            ),
            (
                "edgecron_runs_timed_out_total",
                "Runs killed by their timeout.",
                self.timeouts_total,
            ),
            (
                "edgecron_runs_interrupted_total",
                "Runs cut short by a shutdown or crash.",
                self.interrupted_total,
            ),
            (
                "edgecron_db_errors_total",
                "Database operations that failed.",
                self.db_errors_total,
            ),
            (
                "edgecron_poll_changes_total",
                "Task changes picked up from the database by the poller.",
                self.poll_changes_total,
            ),
            (
                "edgecron_http_requests_total",
                "HTTP requests answered.",
                self.http_requests_total,
            ),
            (
                "edgecron_http_errors_total",
                "HTTP requests answered with a 4xx or 5xx status.",
                self.http_errors_total,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }

        self.render_durations(&mut out);

        let _ = writeln!(
            out,
            "# HELP edgecron_tasks Tasks by status.\n# TYPE edgecron_tasks gauge"
        );
        for status in ["enabled", "disabled"] {
            let count = snap
                .tasks_by_status
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "edgecron_tasks{{status=\"{status}\"}} {count}");
        }
        let gauges: [(&str, &str, u64); 4] = [
            (
                "edgecron_runs_in_progress",
                "Runs currently going.",
                snap.running as u64,
            ),
            (
                "edgecron_tasks_scheduled",
                "Tasks with a next occurrence in the timer heap.",
                snap.scheduled as u64,
            ),
            (
                "edgecron_uptime_seconds",
                "Seconds since the service started.",
                snap.uptime_seconds,
            ),
            (
                "edgecron_db_up",
                "1 when the last database write succeeded.",
                u64::from(snap.db_healthy),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP edgecron_build_info Build information.\n# TYPE edgecron_build_info gauge\n\
             edgecron_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    fn render_durations(&self, out: &mut String) {
        let name = "edgecron_run_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Wall time of finished runs.\n# TYPE {name} histogram"
        );
        for (count, bound) in self.duration_buckets.iter().zip(DURATION_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.duration_count);
        let _ = writeln!(out, "{name}_sum {}", self.duration_sum);
        let _ = writeln!(out, "{name}_count {}", self.duration_count);
    }
}

impl HttpCounters {
    /// Appends these counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let counters = [
            (
                "edgecron_http_unauthorized_total",
                "Requests refused for a missing or wrong bearer token.",
                &self.unauthorized,
            ),
            (
                "edgecron_http_read_timeouts_total",
                "Requests not received whole within the read timeout.",
                &self.read_timeouts,
            ),
            (
                "edgecron_http_connections_refused_total",
                "Connections refused because every connection slot was taken.",
                &self.connections_refused,
            ),
        ];
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut m = Metrics::default();
        m.record_run(RunStatus::Succeeded, 0.05);
        m.record_run(RunStatus::Failed, 2.0);
        let text = m.render(&Snapshot::default());
        assert!(text.contains("edgecron_run_duration_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("edgecron_run_duration_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("edgecron_run_duration_seconds_count 2\n"));
        assert!(text.contains("task_executions_success_total 1\n"));
        assert!(text.contains("task_executions_failure_total 1\n"));
    }
}
