//! The records edgecron keeps: tasks, runs and dead letters, and the
//! instant format they are stored and shown in.
//!
//! These are plain data. Reading and writing them is the store's job;
//! deciding when they change is the scheduler's.

use jiff::Timestamp;

/// A scheduled task, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub schedule: String,
    pub command: String,
    pub timezone: String,
    pub max_retries: i64,
    pub retry_delay_seconds: i64,
    pub timeout_seconds: i64,
    pub status: TaskStatus,
    pub pause_on_dead_letter: bool,
    pub next_run_at: Option<Timestamp>,
    pub last_run_at: Option<Timestamp>,
    pub last_status: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by a database trigger on every user-visible change, whoever
    /// made it; the poller reads rows whose revision it has not seen.
    pub revision: i64,
}

/// The fields a client sets; the store assigns the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    pub description: String,
    pub schedule: String,
    pub command: String,
    pub timezone: String,
    pub max_retries: i64,
    pub retry_delay_seconds: i64,
    pub timeout_seconds: i64,
    pub status: TaskStatus,
    pub pause_on_dead_letter: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Enabled,
    Disabled,
}

/// One attempt at running a task's command.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub task_id: i64,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub attempt: i64,
    pub status: RunStatus,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i64>,
    pub output: String,
    pub output_dropped_bytes: i64,
    pub error: Option<String>,
    /// When a failed run will be retried; cleared once the retry starts.
    pub retry_at: Option<Timestamp>,
}

/// What made a run start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Retry,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// The service stopped (crash, power loss, shutdown) while it ran.
    Interrupted,
    /// The occurrence came while the previous run was still going.
    Skipped,
    /// The occurrence passed while the service was down or the clock jumped,
    /// outside the catch-up window.
    Missed,
}

/// A run that failed and has no retries left.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub task_id: i64,
    pub run_id: i64,
    pub scheduled_for: Timestamp,
    pub failed_at: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub exit_code: Option<i64>,
    pub output: String,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Enabled => "enabled",
            TaskStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        match s {
            "enabled" => Some(TaskStatus::Enabled),
            "disabled" => Some(TaskStatus::Disabled),
            _ => None,
        }
    }
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Retry => "retry",
            Trigger::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        match s {
            "schedule" => Some(Trigger::Schedule),
            "retry" => Some(Trigger::Retry),
            "manual" => Some(Trigger::Manual),
            _ => None,
        }
    }
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Interrupted,
        RunStatus::Skipped,
        RunStatus::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
            RunStatus::Missed => "missed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// Whether a run that ended this way is retried (or dead-lettered).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Interrupted
        )
    }
}

/// Formats an instant as RFC 3339 UTC with millisecond precision.
///
/// One fixed width everywhere, so that stored instants also sort as text.
pub fn format_instant(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses any RFC 3339 instant (any offset); used for stored values and
/// for what users type.
pub fn parse_instant(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_at_millisecond_precision() {
        let ts: Timestamp = "2025-03-09T07:00:00.250Z".parse().unwrap();
        assert_eq!(format_instant(ts), "2025-03-09T07:00:00.250Z");
        assert_eq!(parse_instant(&format_instant(ts)), Some(ts));
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let ts = parse_instant("2025-01-01T02:00:00+02:00").unwrap();
        assert_eq!(format_instant(ts), "2025-01-01T00:00:00.000Z");
    }

    #[test]
    fn run_status_names_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
    }
}
