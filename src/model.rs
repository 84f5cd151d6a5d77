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
    /// What the client set.
    pub spec: TaskSpec,
    pub next_run_at: Option<Timestamp>,
    pub last_run_at: Option<Timestamp>,
    pub last_status: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by a database trigger on every user-visible change, whoever
    /// made it; the poller reads rows whose revision it has not seen.
    pub revision: i64,
    /// Set when the stored row holds a value of the wrong type or a broken
    /// `env` (an edit made by hand); such a task is not scheduled.
    pub problem: Option<String>,
    /// The fields `problem` is about: an update must set each of them, so
    /// that nothing stored is replaced by a default without being asked.
    pub broken_fields: Vec<&'static str>,
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
    pub policy: Policy,
}

/// How a task's command runs and what happens to occurrences that clash
/// with a run or come late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Extra environment variables, in order.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    /// None: the service-wide `EDGECRON_MISFIRE_GRACE_SECONDS`.
    pub misfire_grace_seconds: Option<i64>,
    /// With `catch_up: all`, at most this many missed occurrences run.
    pub catch_up_limit: i64,
}

/// What an occurrence does when the task's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Record it as skipped.
    Skip,
    /// Run it when the current run ends; at most one waits.
    Queue,
    /// Stop the current run and start this one.
    Replace,
}

/// What happens to occurrences missed while the service was down or the
/// clock jumped forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    None,
    Latest,
    All,
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
    /// The command's process group and its leader's start time (ticks
    /// since boot), recorded while it runs.
    pub pid: Option<i64>,
    pub pid_start_ticks: Option<i64>,
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
    /// Waiting for the task's current run to end (overlap `queue`, or a
    /// catch-up backlog).
    Queued,
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
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
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
            RunStatus::Queued => "queued",
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

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            env: Vec::new(),
            working_dir: None,
            overlap: Overlap::Skip,
            catch_up: CatchUp::Latest,
            misfire_grace_seconds: None,
            catch_up_limit: 10,
        }
    }
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }

    pub fn parse(s: &str) -> Option<Overlap> {
        [Overlap::Skip, Overlap::Queue, Overlap::Replace]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<CatchUp> {
        [CatchUp::None, CatchUp::Latest, CatchUp::All]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// Stores an environment as `KEY=value` lines, the form of an environment
/// file, so it stays readable and editable with the `sqlite3` shell.
/// Values never hold a newline (validation refuses them).
pub fn encode_env(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads `encode_env`'s form. Blank lines are skipped; a line without
/// `KEY=` (a bad hand edit) is an error naming the line.
pub fn decode_env(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("line {} is not KEY=value", n + 1)),
        })
        .collect()
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
    fn env_round_trips_through_its_text_form() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B_2".to_string(), "x=y z".to_string()),
        ];
        assert_eq!(encode_env(&env), "A=1\nB_2=x=y z");
        assert_eq!(decode_env(&encode_env(&env)), Ok(env));
        assert_eq!(decode_env(""), Ok(vec![]));
        assert_eq!(
            decode_env("K=v\n\njunk"),
            Err("line 3 is not KEY=value".to_string())
        );
        assert_eq!(decode_env("=1").unwrap_err(), "line 1 is not KEY=value");
    }

    #[test]
    fn run_status_names_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
    }
}
