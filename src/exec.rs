//! Running one task's command: a `/bin/sh -c` child in its own process
//! group, its stdout and stderr read through one pipe (so they interleave
//! as written) into a bounded tail, a timeout that stops the whole group.
//!
//! This module knows nothing of retries or the database: it turns a
//! `RunSpec` into an `Outcome`.

use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, FutureExt};
use rustix::process::{Pid, Signal, kill_process_group};

use crate::model::RunStatus;

/// How much of a run's output is kept: the last 64 KiB.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// Between TERM and KILL when a run times out.
pub const TIMEOUT_KILL_GRACE: Duration = Duration::from_secs(5);

/// How long output is still read after the command itself exits, for
/// background children that inherited the pipe. After that the group is
/// killed: a run owns nothing once it has ended.
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub command: String,
    pub timeout: Duration,
    /// Between TERM and KILL when the run is stopped or times out.
    pub kill_grace: Duration,
    /// Extra environment for the command, on top of the service's.
    pub env: Vec<(String, String)>,
    /// Where the command starts; the service's own directory when None.
    pub working_dir: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: RunStatus,
    pub exit_code: Option<i64>,
    pub output: String,
    pub output_dropped_bytes: i64,
    pub error: Option<String>,
    pub duration: Duration,
}

/// Why a running command is being stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The service is shutting down: TERM, then KILL after the grace.
    Shutdown { grace: Duration },
    /// A newer occurrence replaces this run: TERM, then KILL after the grace.
    Replace { grace: Duration },
    /// Kill now (a second shutdown signal).
    Kill,
}

/// A started command: the child, the read end of its output pipe, and
/// what identifies its process group after a crash of the service.
pub struct Process {
    child: async_process::Child,
    reader: Async<io::PipeReader>,
    started: Instant,
}

impl Process {
    /// The process group id (the shell's pid).
    pub fn pgid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// Runs `spec` to its end. `stop` resolving asks for an early stop (TERM,
/// then KILL after a grace period); the outcome is then `interrupted`.
pub async fn execute(spec: RunSpec, stop: async_channel::Receiver<StopReason>) -> Outcome {
    match start(&spec) {
        Ok(process) => supervise(process, &spec, stop).await,
        Err(outcome) => outcome,
    }
}

/// Starts the command; a command that cannot start is already an outcome.
pub fn start(spec: &RunSpec) -> Result<Process, Outcome> {
    let started = Instant::now();
    match spawn(spec) {
        Ok((child, reader)) => Ok(Process {
            child,
            reader,
            started,
        }),
        Err(err) => Err(Outcome {
            status: RunStatus::Failed,
            exit_code: None,
            output: String::new(),
            output_dropped_bytes: 0,
            error: Some(match &spec.working_dir {
                Some(dir) => format!("could not start the command in working_dir {dir}: {err}"),
                None => format!("could not start /bin/sh: {err}"),
            }),
            duration: started.elapsed(),
        }),
    }
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); with the pid it names a process across pid reuse.
pub fn start_ticks(pid: i32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Kills what is left of a run's process group after the service died
/// while it ran. Returns whether a group was signalled.
///
/// Linux never reuses a pid while a process group of that id exists, so a
/// live group with the run's pgid is the run's, unless its leader's pid was
/// reused, which `start_ticks` tells apart.
pub fn kill_leftover_group(pgid: i32, leader_start_ticks: Option<i64>) -> bool {
    if let Some(recorded) = leader_start_ticks
        && start_ticks(pgid).is_some_and(|now| now != recorded)
    {
        return false;
    }
    let Some(pid) = Pid::from_raw(pgid) else {
        return false;
    };
    kill_process_group(pid, Signal::KILL).is_ok()
}

fn spawn(spec: &RunSpec) -> io::Result<(async_process::Child, Async<io::PipeReader>)> {
    use std::os::unix::process::CommandExt;

    let (reader, writer) = io::pipe()?;
    let mut std_command = std::process::Command::new("/bin/sh");
    std_command
        .arg("-c")
        .arg(&spec.command)
        .envs(spec.env.iter().cloned());
    // Its own process group, so a timeout can stop everything the command
    // started, and a Ctrl-C at the service's terminal does not reach it.
    std_command.process_group(0);
    if let Some(dir) = &spec.working_dir {
        std_command.current_dir(dir);
    }

    let mut command = async_process::Command::from(std_command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer.try_clone()?))
        .stderr(Stdio::from(writer));
    let child = command.spawn()?;
    // `command` still holds the pipe's write ends; dropping it lets the read
    // side see end-of-file when the child's group closes theirs.
    drop(command);
    Ok((child, Async::new(reader)?))
}

enum Event {
    Exited(io::Result<std::process::ExitStatus>),
    TimedOut,
    Stopped(StopReason),
}

/// Waits for a started command to end, reading its output meanwhile.
pub async fn supervise(
    process: Process,
    spec: &RunSpec,
    stop: async_channel::Receiver<StopReason>,
) -> Outcome {
    let Process {
        mut child,
        mut reader,
        started,
    } = process;
    let pgid = Pid::from_raw(child.id() as i32);
    let mut tail = Tail::default();

    // Read output while waiting for the first of: exit, timeout, stop.
    let event = {
        let wait = async { Event::Exited(child.status().await) };
        let timeout = async {
            Timer::after(spec.timeout).await;
            Event::TimedOut
        };
        let stopped = async {
            // A closed channel means nobody can ask us to stop: never resolve.
            match stop.recv().await {
                Ok(reason) => Event::Stopped(reason),
                Err(_) => futures_lite::future::pending().await,
            }
        };
        let read = async {
            tail.read_all(&mut reader).await;
            futures_lite::future::pending::<Event>().await
        };
        wait.or(timeout).or(stopped).or(read).await
    };

    let (status, exit_code, error) = match event {
        Event::Exited(Ok(status)) => {
            // Collect what is still in the pipe, then end the group.
            let _ = async { tail.read_all(&mut reader).await }
                .or(async {
                    Timer::after(LINGER_AFTER_EXIT).await;
                })
                .await;
            signal_group(pgid, Signal::KILL);
            exit_outcome(status)
        }
        Event::Exited(Err(err)) => {
            signal_group(pgid, Signal::KILL);
            (
                RunStatus::Failed,
                None,
                Some(format!("waiting for the command failed: {err}")),
            )
        }
        Event::TimedOut => {
            let status = stop_group(
                &mut child,
                pgid,
                spec.kill_grace,
                &stop,
                &mut tail,
                &mut reader,
            )
            .await;
            let secs = spec.timeout.as_secs();
            (
                RunStatus::TimedOut,
                status.and_then(exit_code),
                Some(format!("timed out after {secs} s; process group killed")),
            )
        }
        Event::Stopped(reason) => {
            let (grace, error) = match reason {
                StopReason::Shutdown { grace } => (grace, "stopped by edgecron shutdown"),
                StopReason::Replace { grace } => (grace, "stopped: replaced by a newer occurrence"),
                StopReason::Kill => (Duration::ZERO, "killed by edgecron shutdown"),
            };
            let status = stop_group(&mut child, pgid, grace, &stop, &mut tail, &mut reader).await;
            (
                RunStatus::Interrupted,
                status.and_then(exit_code),
                Some(error.to_string()),
            )
        }
    };

    // Drain whatever the killed group left, without waiting for more.
    let _ = async { tail.read_all(&mut reader).await }
        .or(async {
            Timer::after(Duration::from_millis(100)).await;
        })
        .await;
    let (output, dropped) = tail.finish();
    Outcome {
        status,
        exit_code,
        output,
        output_dropped_bytes: dropped,
        error,
        duration: started.elapsed(),
    }
}

/// TERM to the group, KILL after the grace period (or at once on a second
/// stop request), and reap the child; returns how the shell ended.
async fn stop_group(
    child: &mut async_process::Child,
    pgid: Option<Pid>,
    grace: Duration,
    stop: &async_channel::Receiver<StopReason>,
    tail: &mut Tail,
    reader: &mut Async<io::PipeReader>,
) -> Option<std::process::ExitStatus> {
    signal_group(pgid, Signal::TERM);
    let exited = async { child.status().await.is_ok() };
    let read = async {
        tail.read_all(reader).await;
        futures_lite::future::pending::<bool>().await
    };
    let grace = async {
        Timer::after(grace).await;
        false
    };
    let hurry = async {
        match stop.recv().await {
            Ok(_) => false,
            Err(_) => futures_lite::future::pending().await,
        }
    };
    exited.or(read).or(grace).or(hurry).await;
    // Background children may outlive the shell; the group goes either way.
    signal_group(pgid, Signal::KILL);
    child.status().await.ok()
}

/// The exit code as a shell reports it: the code, or 128 plus the signal.
fn exit_code(status: std::process::ExitStatus) -> Option<i64> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Some(i64::from(code)),
        (None, Some(signal)) => Some(128 + i64::from(signal)),
        (None, None) => None,
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    let Some(pgid) = pgid else { return };
    // ESRCH (the group is already gone) is the normal case after an exit.
    if let Err(err) = kill_process_group(pgid, signal)
        && err != rustix::io::Errno::SRCH
    {
        log::debug!(
            "event=signal_failed pgid={} error=\"{err}\"",
            pgid.as_raw_nonzero()
        );
    }
}

fn exit_outcome(status: std::process::ExitStatus) -> (RunStatus, Option<i64>, Option<String>) {
    use std::os::unix::process::ExitStatusExt;
    let code = exit_code(status);
    match (status.code(), status.signal()) {
        (Some(0), _) => (RunStatus::Succeeded, code, None),
        (Some(c), _) => (RunStatus::Failed, code, Some(format!("exit code {c}"))),
        (None, Some(signal)) => (
            RunStatus::Failed,
            code,
            Some(format!("killed by signal {signal}")),
        ),
        (None, None) => (
            RunStatus::Failed,
            code,
            Some("ended without exit code".into()),
        ),
    }
}

/// The last `OUTPUT_TAIL_BYTES` of a stream and a count of what fell off.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    /// Reads until end-of-file or error; memory stays bounded by trimming
    /// the front whenever the buffer reaches twice the tail size.
    async fn read_all(&mut self, reader: &mut Async<io::PipeReader>) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => self.push(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 2 * OUTPUT_TAIL_BYTES {
            let excess = self.buf.len() - OUTPUT_TAIL_BYTES;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    fn finish(mut self) -> (String, i64) {
        if self.buf.len() > OUTPUT_TAIL_BYTES {
            let excess = self.buf.len() - OUTPUT_TAIL_BYTES;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        (text, self.dropped as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, timeout_ms: u64) -> RunSpec {
        RunSpec {
            command: command.into(),
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_secs(1),
            working_dir: None,
            env: vec![("EDGECRON_TEST_VAR".into(), "hello".into())],
        }
    }

    fn run(command: &str, timeout_ms: u64) -> Outcome {
        let (_tx, rx) = async_channel::bounded(1);
        futures_lite::future::block_on(execute(spec(command, timeout_ms), rx))
    }

    #[test]
    fn success_keeps_interleaved_output() {
        let out = run("echo one; echo two >&2; echo $EDGECRON_TEST_VAR", 10_000);
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.output, "one\ntwo\nhello\n");
        assert_eq!(out.output_dropped_bytes, 0);
    }

    #[test]
    fn failure_reports_exit_code() {
        let out = run("echo bad; exit 3", 10_000);
        assert_eq!(out.status, RunStatus::Failed);
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.error.as_deref(), Some("exit code 3"));
    }

    #[test]
    fn timeout_kills_the_group() {
        let started = Instant::now();
        let out = run("sleep 30 & sleep 30", 300);
        assert_eq!(out.status, RunStatus::TimedOut);
        assert_eq!(out.exit_code, Some(128 + 15), "the shell died of TERM");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn only_the_tail_of_a_flood_is_kept() {
        // 1 MiB of 'x' then a marker line.
        let out = run("head -c 1048576 /dev/zero | tr '\\0' x; echo END", 30_000);
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(out.output.len(), OUTPUT_TAIL_BYTES);
        assert!(out.output.ends_with("xEND\n"));
        assert_eq!(
            out.output_dropped_bytes as usize,
            1_048_576 + 4 - OUTPUT_TAIL_BYTES
        );
    }

    #[test]
    fn tail_bookkeeping_adds_up() {
        let mut tail = Tail::default();
        for _ in 0..10 {
            tail.push(&[b'a'; 50_000]);
        }
        let (text, dropped) = tail.finish();
        assert_eq!(text.len(), OUTPUT_TAIL_BYTES);
        assert_eq!(dropped as usize + text.len(), 500_000);
    }
}
