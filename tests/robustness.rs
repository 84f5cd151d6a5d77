//! Faults edgecron must survive, reproduced through the real binary:
//! commands that outlive their shell or flood their output, a service
//! killed or stopped mid-run, downtime and clock jumps, edits during a run,
//! overlap rules, and a command's environment.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use jiff::{SignedDuration, Timestamp};

/// A schedule that never fires during a test; runs are started by hand.
const NEVER: &str = "0 0 1 1 *";

const FINAL: [&str; 4] = ["succeeded", "failed", "timed_out", "interrupted"];

// ----- timeouts and process groups -----

#[test]
fn timeout_kills_the_process_group_with_its_background_children() {
    let dir = TempDir::new("timeout-group");
    let server = Server::start(&dir);
    let d = dir.path().display();
    let _reaper = GroupReaper(vec![dir.path().join("pg")]);
    let command = format!("sleep 300 & echo $! > {d}/bg; echo $$ > {d}/pg; sleep 300");
    let id = create(
        &server,
        NEVER,
        &command,
        r#""timeout_seconds":1,"max_retries":0"#,
    );

    let run_id = run_now(&server, id);
    let bg = read_pid(&dir.path().join("bg"));
    let pg = read_pid(&dir.path().join("pg"));
    assert!(is_running(bg), "the background child should be running");
    let run = wait_final(&server, run_id, Duration::from_secs(15));

    assert_eq!(run.str_of("status"), "timed_out", "{run:?}");
    assert!(run.str_of("error").contains("timed out"), "{run:?}");
    let leftovers = wait_for(Duration::from_secs(2), || {
        let live = live_group_members(pg);
        live.is_empty().then_some(())
    });
    assert!(
        leftovers.is_some(),
        "process group {pg} still has live members: {:?}",
        live_group_members(pg)
    );
    assert!(
        !is_running(bg),
        "background child {bg} survived the timeout"
    );
}

#[test]
fn a_background_child_holding_the_output_pipe_does_not_hold_the_run() {
    let dir = TempDir::new("linger");
    let server = Server::start(&dir);
    let d = dir.path().display();
    let _reaper = GroupReaper(vec![dir.path().join("pg")]);
    let command = format!("sleep 300 & echo $! > {d}/bg; echo $$ > {d}/pg; echo started");
    let id = create(&server, NEVER, &command, r#""max_retries":0"#);

    let run_id = run_now(&server, id);
    let run = wait_final(&server, run_id, Duration::from_secs(10));

    assert_eq!(run.str_of("status"), "succeeded", "{run:?}");
    assert_eq!(run.str_of("output"), "started\n");
    let bg = read_pid(&dir.path().join("bg"));
    let pg = read_pid(&dir.path().join("pg"));
    let gone = wait_for(Duration::from_secs(2), || {
        (!is_running(bg) && live_group_members(pg).is_empty()).then_some(())
    });
    assert!(gone.is_some(), "background child {bg} outlived its run");
}

#[test]
fn an_output_flood_on_both_streams_keeps_a_bounded_tail_and_memory() {
    const EACH: u64 = 200 * 1024 * 1024;
    let dir = TempDir::new("flood");
    let server = Server::start(&dir);
    let command =
        format!("yes | head -c {EACH} & yes | head -c {EACH} >&2; wait; echo done >/dev/null");
    let id = create(&server, NEVER, &command, r#""max_retries":0"#);

    let started = Instant::now();
    let run_id = run_now(&server, id);
    let run = wait_final(&server, run_id, Duration::from_secs(120));
    let elapsed = started.elapsed().as_secs_f64();

    assert_eq!(
        run.str_of("status"),
        "succeeded",
        "error: {:?}",
        run.get("error")
    );
    let output = run.str_of("output");
    let dropped = run.i64_of("output_dropped_bytes") as u64;
    assert_eq!(output.len(), 65536);
    assert_eq!(dropped + 65536, 2 * EACH);
    assert!(output.bytes().all(|b| b == b'y' || b == b'\n'));
    let hwm_kib = vm_hwm_kib(server.pid());
    println!(
        "flood: {} MiB in {elapsed:.1} s ({:.0} MiB/s), run duration {} ms, VmHWM {} KiB",
        (2 * EACH) >> 20,
        ((2 * EACH) >> 20) as f64 / elapsed,
        run.i64_of("duration_ms"),
        hwm_kib
    );
    assert!(hwm_kib < 64 * 1024, "edgecron's peak memory {hwm_kib} KiB");
}

// ----- a killed service -----

#[test]
fn kill_9_mid_run_leaves_an_interrupted_run_that_is_retried_or_dead_lettered() {
    let dir = TempDir::new("kill9");
    let db = dir.path().join("edgecron.db");
    let d = dir.path().display();
    // Commands of the killed service outlive it; clean them up whatever happens.
    let _reaper = GroupReaper(vec![dir.path().join("pg-a"), dir.path().join("pg-b")]);
    let at = seconds_from_now(1);
    let (retried, lettered);
    {
        let mut server = Server::start_with(Options::new(&db));
        let command = format!(
            "if [ \"$EDGECRON_ATTEMPT\" = 1 ]; then echo $$ > {d}/pg-a; sleep 30; fi; \
             echo attempt $EDGECRON_ATTEMPT"
        );
        retried = create(
            &server,
            &once_at(at),
            &command,
            r#""max_retries":1,"retry_delay_seconds":1"#,
        );
        let command = format!("echo $$ > {d}/pg-b; sleep 30");
        lettered = create(&server, &once_at(at), &command, r#""max_retries":0"#);
        for id in [retried, lettered] {
            wait_for(Duration::from_secs(10), || {
                let runs = server.runs(id);
                runs.iter()
                    .any(|r| r.str_of("status") == "running")
                    .then_some(())
            })
            .expect("the run started");
        }
        server.kill();
    }
    let server = Server::start_with(Options::new(&db));

    // Retries left: attempt 2 of the same occurrence runs and succeeds.
    let runs = wait_for(Duration::from_secs(10), || {
        let runs = server.runs(retried);
        (runs.len() == 2 && runs[1].str_of("status") == "succeeded").then_some(runs)
    })
    .unwrap_or_else(|| panic!("no successful retry: {:?}", server.runs(retried)));
    let (first, second) = (&runs[0], &runs[1]);
    assert_eq!(first.str_of("status"), "interrupted");
    assert!(
        first.str_of("error").contains("crash or power loss"),
        "{first:?}"
    );
    assert!(matches!(first.get("retry_at"), Some(Value::Null)));
    assert_eq!(second.str_of("trigger"), "retry");
    assert_eq!(second.i64_of("attempt"), 2);
    assert_eq!(
        second.str_of("scheduled_for"),
        first.str_of("scheduled_for")
    );
    assert_eq!(second.str_of("output"), "attempt 2\n");

    // No retries left: a dead letter, and no second attempt.
    let letters = wait_for(Duration::from_secs(5), || {
        let letters = dead_letters(&server, lettered);
        (!letters.is_empty()).then_some(letters)
    })
    .expect("a dead letter for the task without retries");
    let runs = server.runs(lettered);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].str_of("status"), "interrupted");
    assert!(runs[0].str_of("error").contains("crash or power loss"));
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].i64_of("run_id"), runs[0].i64_of("id"));
    assert_eq!(letters[0].i64_of("attempts"), 1);
}

#[test]
fn a_command_orphaned_by_kill_9_is_stopped_when_its_run_is_settled() {
    let dir = TempDir::new("orphan");
    let db = dir.path().join("edgecron.db");
    let d = dir.path().display();
    let _reaper = GroupReaper(vec![dir.path().join("pg")]);
    let pg;
    {
        let mut server = Server::start_with(Options::new(&db));
        let command = format!("echo $$ > {d}/pg; sleep 30");
        let id = create(&server, NEVER, &command, r#""max_retries":0"#);
        run_now(&server, id);
        pg = read_pid(&dir.path().join("pg"));
        server.kill();
    }
    assert!(
        !live_group_members(pg).is_empty(),
        "the orphan should still run"
    );
    let _server = Server::start_with(Options::new(&db));
    // The restart records the run as interrupted (over); what it started
    // must not outlive it, or a retry would run beside it.
    let gone = wait_for(Duration::from_secs(5), || {
        live_group_members(pg).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "process group {pg} of an interrupted run still runs: {:?}",
        live_group_members(pg)
    );
}

// ----- downtime -----

/// What a restart after days off did to an every-minute task.
struct Downtime {
    /// The stored next occurrence, set days back.
    due: Timestamp,
    /// The latest occurrence at or before the restart.
    latest: Timestamp,
    missed: Value,
    /// Runs of the restarted service that are not the missed summary.
    runs: Vec<Value>,
    next_run_at: Timestamp,
}

/// Stops a service, moves an every-minute task's next occurrence and the
/// heartbeat `days` back, restarts, and collects what happened.
fn after_days_off(tag: &str, days: i64, policy: &str, expected_runs: usize) -> Downtime {
    avoid_boundary(60, 15);
    let dir = TempDir::new(tag);
    let db = dir.path().join("edgecron.db");
    let mut server = Server::start_with(Options::new(&db));
    let extra = format!(r#""max_retries":0,{policy}"#);
    let id = create(&server, "* * * * *", "sleep 0.3", &extra);
    let status = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let conn = open_db(&db);
    let stored: String = conn
        .query_row("SELECT next_run_at FROM tasks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    let off = SignedDuration::from_hours(24 * days);
    let due = ts(&stored) - off;
    conn.execute(
        "UPDATE tasks SET next_run_at = ?2 WHERE id = ?1",
        rusqlite::params![id, instant(due)],
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('heartbeat', ?1)",
        [instant(Timestamp::now() - off)],
    )
    .unwrap();
    let before: i64 = conn
        .query_row("SELECT COALESCE(MAX(id), 0) FROM runs", [], |r| r.get(0))
        .unwrap();

    let restart = Timestamp::now();
    let latest = floor_to(restart, 60);
    let server = Server::start_with(Options::new(&db));
    let done = wait_for(Duration::from_secs(10), || {
        let runs = server.runs(id);
        let finished = runs
            .iter()
            .filter(|r| FINAL.contains(&r.str_of("status").as_str()))
            .count();
        let missed = runs.iter().any(|r| r.str_of("status") == "missed");
        (missed && finished >= expected_runs).then_some(())
    });
    assert!(done.is_some(), "runs: {:?}", server.runs(id));
    // Time for a wrong extra run to show up.
    std::thread::sleep(Duration::from_millis(1500));

    let new: Vec<Value> = server
        .runs(id)
        .into_iter()
        .filter(|r| r.i64_of("id") > before)
        // An on-time occurrence after the restart is not the test's concern.
        .filter(|r| ts(&r.str_of("scheduled_for")) <= latest)
        .collect();
    let (missed, runs): (Vec<Value>, Vec<Value>) = new
        .into_iter()
        .partition(|r| r.str_of("status") == "missed");
    assert_eq!(missed.len(), 1, "one missed summary: {missed:?}");
    let task = server.get(&format!("/tasks/{id}")).json();
    Downtime {
        due,
        latest,
        missed: missed.into_iter().next().unwrap(),
        runs,
        next_run_at: ts(&task.str_of("next_run_at")),
    }
}

#[test]
fn downtime_with_catch_up_latest_runs_the_latest_occurrence_once() {
    let d = after_days_off("down-latest", 3, r#""catch_up":"latest""#, 1);
    let minute = SignedDuration::from_mins(1);

    assert_eq!(d.runs.len(), 1, "{:?}", d.runs);
    let run = &d.runs[0];
    assert_eq!(ts(&run.str_of("scheduled_for")), d.latest);
    assert_eq!(run.str_of("status"), "succeeded");
    assert_eq!(run.str_of("trigger"), "schedule");
    let (first, last, count) = missed_range(&d.missed);
    assert_eq!(ts(&d.missed.str_of("scheduled_for")), d.due);
    assert_eq!((first, last), (d.due, d.latest - minute));
    assert_eq!(count, minutes_between(d.due, d.latest));
    assert!(count > 3 * 1440 - 2, "{count}");
    assert_eq!(d.next_run_at, d.latest + minute);
}

#[test]
fn downtime_with_catch_up_none_runs_nothing_and_records_the_miss() {
    let d = after_days_off("down-none", 3, r#""catch_up":"none""#, 0);
    let minute = SignedDuration::from_mins(1);

    assert!(d.runs.is_empty(), "{:?}", d.runs);
    let (first, last, count) = missed_range(&d.missed);
    assert_eq!((first, last), (d.due, d.latest));
    assert_eq!(count, minutes_between(d.due, d.latest) + 1);
    assert_eq!(d.next_run_at, d.latest + minute);
}

#[test]
fn downtime_with_catch_up_all_runs_the_last_few_oldest_first_without_overlap() {
    let d = after_days_off("down-all", 3, r#""catch_up":"all","catch_up_limit":3"#, 3);
    let minute = SignedDuration::from_mins(1);

    let mut runs = d.runs;
    runs.sort_by_key(|r| r.i64_of("id"));
    let scheduled: Vec<Timestamp> = runs
        .iter()
        .map(|r| ts(&r.str_of("scheduled_for")))
        .collect();
    let expected = vec![d.latest - minute * 2, d.latest - minute, d.latest];
    assert_eq!(scheduled, expected, "{runs:?}");
    for run in &runs {
        assert_eq!(run.str_of("status"), "succeeded", "{run:?}");
        assert_eq!(run.i64_of("attempt"), 1);
    }
    for pair in runs.windows(2) {
        let ended = ts(&pair[0].str_of("finished_at"));
        let next_started = ts(&pair[1].str_of("started_at"));
        assert!(ended <= next_started, "catch-up runs overlap: {pair:?}");
    }
    let (first, last, count) = missed_range(&d.missed);
    assert_eq!((first, last), (d.due, d.latest - minute * 3));
    assert_eq!(count, minutes_between(d.due, d.latest - minute * 3) + 1);
    assert_eq!(d.next_run_at, d.latest + minute);
}

#[test]
fn a_month_off_keeps_its_missed_summary() {
    // 40 days is beyond the default 30-day retention; the summary was
    // written just now and must stay as long as any run written with it.
    let d = after_days_off("down-month", 40, r#""catch_up":"latest""#, 1);
    let minute = SignedDuration::from_mins(1);

    assert_eq!(d.runs.len(), 1, "{:?}", d.runs);
    assert_eq!(ts(&d.runs[0].str_of("scheduled_for")), d.latest);
    let (first, last, count) = missed_range(&d.missed);
    assert_eq!((first, last), (d.due, d.latest - minute));
    assert_eq!(count, 10_000, "the count is capped: {:?}", d.missed);
    assert!(d.missed.str_of("error").contains("at least"));
}

// ----- clock jumps -----

#[test]
fn a_forward_then_backward_clock_jump_catches_up_once_and_does_not_stall() {
    avoid_boundary(60, 15);
    let dir = TempDir::new("jump");
    let (server, offset) = start_with_clock_offset(&dir, "0");
    let id = create(&server, "* * * * *", "echo hi", r#""max_retries":0"#);
    let first_due = ts(&task(&server, id).str_of("next_run_at"));
    let minute = SignedDuration::from_mins(1);

    // Forward an hour: the latest occurrence runs, the rest are one summary.
    std::fs::write(&offset, "3600").unwrap();
    let runs = wait_for(Duration::from_secs(10), || {
        let runs = server.runs(id);
        let ran = runs.iter().any(|r| r.str_of("status") == "succeeded");
        let missed = runs.iter().any(|r| r.str_of("status") == "missed");
        (ran && missed).then_some(runs)
    })
    .expect("a catch-up run and a missed summary");
    std::thread::sleep(Duration::from_millis(1500));
    let runs_after_jump = server.runs(id);
    assert_eq!(runs_after_jump.len(), 2, "no burst: {runs_after_jump:?}");
    let run = runs
        .iter()
        .find(|r| r.str_of("status") == "succeeded")
        .unwrap();
    let missed = runs
        .iter()
        .find(|r| r.str_of("status") == "missed")
        .unwrap();
    let latest = ts(&run.str_of("scheduled_for"));
    assert_eq!(latest, floor_to(ts(&run.str_of("started_at")), 60));
    let jumped = latest.duration_since(first_due).as_secs();
    assert!((3540..=3660).contains(&jumped), "{jumped}");
    let (first, last, count) = missed_range(missed);
    assert_eq!((first, last), (first_due, latest - minute));
    assert_eq!(count, minutes_between(first_due, latest));
    assert_eq!(
        ts(&task(&server, id).str_of("next_run_at")),
        latest + minute
    );

    // Back to the real time: the next occurrence follows the real clock
    // again at once, and nothing that ran runs again.
    std::fs::write(&offset, "0").unwrap();
    let jumped_back = Instant::now();
    let real_next = floor_to(Timestamp::now(), 60) + minute;
    let caught = wait_for(Duration::from_secs(5), || {
        let next = ts(&task(&server, id).str_of("next_run_at"));
        (next == real_next).then_some(())
    });
    println!(
        "next_run_at back on the real clock after {:.2} s",
        jumped_back.elapsed().as_secs_f64()
    );
    assert!(
        caught.is_some(),
        "next_run_at stuck at {}, expected {real_next}",
        task(&server, id).str_of("next_run_at")
    );
    std::thread::sleep(Duration::from_millis(1500));
    let runs = server.runs(id);
    assert_eq!(runs.len(), 2, "nothing ran again: {runs:?}");
    assert_unique_occurrences(&runs);
}

#[test]
fn a_backward_clock_jump_never_runs_an_occurrence_twice() {
    let dir = TempDir::new("jump-back");
    let fired = dir.path().join("fired");
    let (server, offset) = start_with_clock_offset(&dir, "8");
    let command = format!("echo $EDGECRON_SCHEDULED_FOR >> {}", fired.display());
    let id = create(&server, "* * * * * *", &command, r#""max_retries":0"#);

    // Three seconds in the frame 8 s ahead, then back: the real clock
    // walks again over the occurrences that already ran.
    wait_for(Duration::from_secs(10), || {
        let runs = server.runs(id);
        let done = runs
            .iter()
            .filter(|r| r.str_of("status") == "succeeded")
            .count();
        (done >= 3).then_some(())
    })
    .expect("runs in the shifted frame");
    std::fs::write(&offset, "0").unwrap();
    let replay_end = Timestamp::now() + SignedDuration::from_secs(10);
    wait_for(Duration::from_secs(15), || {
        let runs = server.runs(id);
        runs.iter()
            .any(|r| ts(&r.str_of("scheduled_for")) > replay_end && r.str_of("status") != "running")
            .then_some(())
    })
    .expect("runs after the replayed range");

    let lines = std::fs::read_to_string(&fired).unwrap();
    let mut instants: Vec<&str> = lines.lines().collect();
    let total = instants.len();
    instants.sort();
    instants.dedup();
    assert_eq!(instants.len(), total, "an occurrence ran twice:\n{lines}");
    assert_unique_occurrences(&server.runs(id));
    let refused = server
        .log_text()
        .matches("event=occurrence_already_run")
        .count();
    println!("{total} occurrences ran, {refused} replays refused");
}

#[test]
fn a_clock_years_behind_then_corrected_catches_up_at_most_once() {
    avoid_boundary(3600, 15);
    let dir = TempDir::new("jump-years");
    let (server, offset) = start_with_clock_offset(&dir, "-94608000");
    let id = create(&server, "0 * * * *", "echo hourly", r#""max_retries":0"#);
    let stale = ts(&task(&server, id).str_of("next_run_at"));
    assert!(stale < Timestamp::now() - SignedDuration::from_hours(24 * 365));

    std::fs::write(&offset, "0").unwrap();
    let corrected = Timestamp::now();
    // The latest hourly occurrence is under an hour old, inside the default
    // one-day misfire grace: exactly one catch-up run.
    let latest = floor_to(corrected, 3600);
    wait_for(Duration::from_secs(10), || {
        let runs = server.runs(id);
        runs.iter()
            .any(|r| r.str_of("status") == "succeeded")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no catch-up run: {:?}", server.runs(id)));
    std::thread::sleep(Duration::from_millis(2000));
    let runs = server.runs(id);

    let (missed, ran): (Vec<&Value>, Vec<&Value>) =
        runs.iter().partition(|r| r.str_of("status") == "missed");
    assert_eq!(ran.len(), 1, "no burst: {runs:?}");
    assert_eq!(ts(&ran[0].str_of("scheduled_for")), latest);
    assert!(missed.len() <= 1, "{missed:?}");
    if let Some(missed) = missed.first() {
        println!("missed summary: {}", missed.str_of("error"));
    }
    let next = ts(&task(&server, id).str_of("next_run_at"));
    assert_eq!(next, latest + SignedDuration::from_hours(1));
}

// ----- shutdown -----

#[test]
fn sigterm_interrupts_a_run_which_is_retried_after_restart() {
    let dir = TempDir::new("sigterm");
    let db = dir.path().join("edgecron.db");
    let options = || Options::new(&db).env("EDGECRON_SHUTDOWN_GRACE_SECONDS", "10");
    let mut server = Server::start_with(options());
    let command =
        "if [ \"$EDGECRON_ATTEMPT\" = 1 ]; then sleep 30; fi; echo attempt $EDGECRON_ATTEMPT";
    let id = create(
        &server,
        NEVER,
        command,
        r#""max_retries":1,"retry_delay_seconds":1"#,
    );
    let run_id = run_now(&server, id);
    std::thread::sleep(Duration::from_millis(300));

    let stopped = Instant::now();
    let status = server.signal_and_wait("TERM", Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    println!("stopped in {:.2} s", stopped.elapsed().as_secs_f64());
    let (state, error, retry_at): (String, String, Option<String>) = open_db(&db)
        .query_row(
            "SELECT status, error, retry_at FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(state, "interrupted");
    assert!(error.contains("shutdown"), "{error}");
    assert!(retry_at.is_some(), "no retry pending");

    let server = Server::start_with(options());
    let retry = wait_for(Duration::from_secs(10), || {
        server
            .runs(id)
            .into_iter()
            .find(|r| r.str_of("trigger") == "retry" && r.str_of("status") == "succeeded")
    })
    .unwrap_or_else(|| panic!("no retry after restart: {:?}", server.runs(id)));
    assert_eq!(retry.i64_of("attempt"), 2);
    assert_eq!(retry.str_of("output"), "attempt 2\n");
}

/// A server with the given shutdown grace, running a command that ignores
/// TERM; returns the server, the run's id and its process group.
fn start_a_run_ignoring_term(dir: &TempDir, grace: &str) -> (Server, i64, i32) {
    let server = Server::start_with(
        Options::new(&dir.path().join("edgecron.db")).env("EDGECRON_SHUTDOWN_GRACE_SECONDS", grace),
    );
    let d = dir.path().display();
    let command = format!("trap '' TERM; echo $$ > {d}/pg; sleep 30");
    let id = create(&server, NEVER, &command, r#""max_retries":0"#);
    let run_id = run_now(&server, id);
    let pg = read_pid(&dir.path().join("pg"));
    (server, run_id, pg)
}

#[test]
fn a_command_ignoring_term_is_killed_after_the_shutdown_grace() {
    let dir = TempDir::new("sigterm-ignored");
    let (mut server, run_id, pg) = start_a_run_ignoring_term(&dir, "1");
    let _reaper = GroupReaper(vec![dir.path().join("pg")]);

    let stopped = Instant::now();
    let status = server.signal_and_wait("TERM", Duration::from_secs(10));
    let took = stopped.elapsed().as_secs_f64();
    println!("stopped in {took:.2} s");
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    assert!(took < 8.0, "took {took} s with a 1 s grace");
    assert!(live_group_members(pg).is_empty(), "the command survived");
    let state: String = open_db(&server.db)
        .query_row("SELECT status FROM runs WHERE id = ?1", [run_id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(state, "interrupted");
}

#[test]
fn a_second_sigterm_cuts_the_shutdown_grace_short() {
    let dir = TempDir::new("sigterm-twice");
    let (mut server, run_id, pg) = start_a_run_ignoring_term(&dir, "20");
    let _reaper = GroupReaper(vec![dir.path().join("pg")]);

    let status = server.signal_and_wait("TERM", Duration::from_secs(1));
    assert!(status.is_none(), "exited before the grace: {status:?}");
    let hurried = Instant::now();
    let status = server.signal_and_wait("TERM", Duration::from_secs(10));
    let took = hurried.elapsed().as_secs_f64();
    println!("exited {took:.2} s after the second signal");
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    assert!(took < 5.0, "the second signal did not hurry: {took} s");
    assert!(live_group_members(pg).is_empty(), "the command survived");
    let (state, error): (String, String) = open_db(&server.db)
        .query_row(
            "SELECT status, error FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "interrupted");
    assert!(error.contains("shutdown"), "{error}");
}

// ----- edits during a run -----

#[test]
fn changing_the_command_during_a_run_leaves_the_run_alone() {
    let dir = TempDir::new("edit-command");
    let server = Server::start(&dir);
    let id = create(&server, NEVER, "sleep 2; echo v1", r#""max_retries":0"#);
    let run_id = run_now(&server, id);

    let reply = patch(&server, id, r#"{"command":"echo v2"}"#);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let run = wait_final(&server, run_id, Duration::from_secs(10));
    assert_eq!(run.str_of("status"), "succeeded");
    assert_eq!(run.str_of("output"), "v1\n");

    let next = wait_final(&server, run_now(&server, id), Duration::from_secs(10));
    assert_eq!(next.str_of("output"), "v2\n");
}

#[test]
fn disabling_a_task_during_a_run_lets_it_finish_and_stops_the_schedule() {
    let dir = TempDir::new("edit-disable");
    let server = Server::start(&dir);
    let id = create(
        &server,
        "* * * * * *",
        "sleep 2; echo done",
        r#""max_retries":0"#,
    );
    let running = wait_running(&server, id);

    let reply = patch(&server, id, r#"{"status":"disabled"}"#);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let last_id = max_run_id(&server, id);
    let run = wait_final(&server, running, Duration::from_secs(10));
    assert_eq!(run.str_of("status"), "succeeded");
    assert_eq!(run.str_of("output"), "done\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(max_run_id(&server, id), last_id, "{:?}", server.runs(id));
}

#[test]
fn deleting_a_task_during_a_failing_run_records_it_without_retry_or_dead_letter() {
    let dir = TempDir::new("edit-delete");
    let server = Server::start(&dir);
    let id = create(
        &server,
        "* * * * * *",
        "sleep 2; exit 3",
        r#""max_retries":2,"retry_delay_seconds":1"#,
    );
    let running = wait_running(&server, id);

    let reply = server.request("DELETE", &format!("/tasks/{id}"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let run = wait_final(&server, running, Duration::from_secs(10));
    assert_eq!(run.str_of("status"), "failed");
    assert_eq!(run.i64_of("exit_code"), 3);
    assert!(matches!(run.get("retry_at"), Some(Value::Null)), "{run:?}");

    let last_id = max_run_id(&server, id);
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(max_run_id(&server, id), last_id, "a deleted task fired");
    assert!(dead_letters(&server, id).is_empty());
    let pending: i64 = server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE task_id = ?1 AND (retry_at IS NOT NULL OR trigger = 'retry')",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
}

// ----- overlap -----

#[test]
fn overlap_queue_keeps_at_most_one_waiting_run_and_never_overlaps() {
    let dir = TempDir::new("overlap-queue");
    let server = Server::start(&dir);
    let id = create(
        &server,
        "* * * * * *",
        "sleep 1.5",
        r#""max_retries":0,"overlap":"queue""#,
    );

    let deadline = Instant::now() + Duration::from_secs(9);
    while Instant::now() < deadline {
        let queued = server
            .runs(id)
            .iter()
            .filter(|r| r.str_of("status") == "queued")
            .count();
        assert!(queued <= 1, "{queued} runs waiting: {:?}", server.runs(id));
        std::thread::sleep(Duration::from_millis(100));
    }
    let runs = server.runs(id);

    let ran: Vec<&Value> = runs
        .iter()
        .filter(|r| r.str_of("status") == "succeeded")
        .collect();
    assert!(ran.len() >= 3, "{runs:?}");
    let waited = ran.iter().filter(|r| {
        let late = ts(&r.str_of("started_at")).duration_since(ts(&r.str_of("scheduled_for")));
        late.as_secs_f64() > 0.3
    });
    assert!(waited.count() >= 2, "queued runs ran later: {runs:?}");
    assert_no_overlap(&ran);
    let skipped = runs
        .iter()
        .filter(|r| r.str_of("status") == "skipped")
        .collect::<Vec<_>>();
    assert!(!skipped.is_empty(), "{runs:?}");
    for run in skipped {
        assert!(run.str_of("error").contains("already queued"), "{run:?}");
    }
}

#[test]
fn overlap_replace_interrupts_the_running_one_without_a_retry() {
    let dir = TempDir::new("overlap-replace");
    let server = Server::start(&dir);
    let id = create(
        &server,
        "*/2 * * * * *",
        "sleep 30",
        r#""max_retries":2,"retry_delay_seconds":1,"overlap":"replace""#,
    );

    let runs = wait_for(Duration::from_secs(15), || {
        let runs = server.runs(id);
        let replaced = runs
            .iter()
            .filter(|r| r.str_of("status") == "interrupted")
            .count();
        (replaced >= 2).then_some(runs)
    })
    .unwrap_or_else(|| panic!("no replaced runs: {:?}", server.runs(id)));
    // Time for a wrong retry (1 s delay) to show up.
    std::thread::sleep(Duration::from_millis(1500));
    let runs_now = server.runs(id);

    for run in runs.iter().filter(|r| r.str_of("status") == "interrupted") {
        assert!(run.str_of("error").contains("replaced"), "{run:?}");
        assert!(matches!(run.get("retry_at"), Some(Value::Null)), "{run:?}");
    }
    assert!(
        runs_now.iter().all(|r| r.str_of("trigger") == "schedule"),
        "a replaced run was retried: {runs_now:?}"
    );
    assert!(
        runs_now
            .iter()
            .any(|r| matches!(r.str_of("status").as_str(), "running" | "queued")),
        "the newest occurrence runs: {runs_now:?}"
    );
    assert!(dead_letters(&server, id).is_empty());
    let started: Vec<&Value> = runs_now
        .iter()
        .filter(|r| r.get("started_at").and_then(Value::as_str).is_some())
        .collect();
    assert_no_overlap(&started);
}

// ----- a command's environment -----

#[test]
fn a_command_sees_its_env_identity_and_working_dir() {
    let dir = TempDir::new("env");
    let server = Server::start(&dir);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let work = work.canonicalize().unwrap();
    let command = "printf '%s\\n' \"FOO=$FOO\" \"SPACED=$SPACED\" \"ID=$EDGECRON_TASK_ID\" \
        \"NAME=$EDGECRON_TASK_NAME\" \"RUN=$EDGECRON_RUN_ID\" \"ATTEMPT=$EDGECRON_ATTEMPT\" \
        \"TRIGGER=$EDGECRON_TRIGGER\" \"AT=$EDGECRON_SCHEDULED_FOR\" \"PWD=$(pwd -P)\"";
    let at = seconds_from_now(1);
    let body = format!(
        r#"{{"name":"env probe","schedule":"{}","command":{},"max_retries":0,
            "env":{{"FOO":"bar","SPACED":"a  b c","EDGECRON_TASK_ID":"forged"}},
            "working_dir":{}}}"#,
        once_at(at),
        json_string(command),
        json_string(work.to_str().unwrap())
    );
    let id = server.create_task(&body).i64_of("id");

    let run = wait_for(Duration::from_secs(10), || {
        server
            .runs(id)
            .into_iter()
            .find(|r| r.str_of("status") == "succeeded")
    })
    .unwrap_or_else(|| panic!("no run: {:?}", server.runs(id)));
    let expected = format!(
        "FOO=bar\nSPACED=a  b c\nID={id}\nNAME=env probe\nRUN={}\nATTEMPT=1\n\
         TRIGGER=schedule\nAT={}\nPWD={}\n",
        run.i64_of("id"),
        run.str_of("scheduled_for"),
        work.display()
    );
    assert_eq!(run.str_of("output"), expected);
    assert_eq!(ts(&run.str_of("scheduled_for")), at);
}

#[test]
fn a_missing_working_dir_fails_the_run_naming_it_and_is_retried() {
    let dir = TempDir::new("env-nodir");
    let server = Server::start(&dir);
    let missing = dir.path().join("does-not-exist");
    let extra = format!(
        r#""max_retries":1,"retry_delay_seconds":1,"working_dir":{}"#,
        json_string(missing.to_str().unwrap())
    );
    let id = create(&server, NEVER, "echo never", &extra);
    run_now(&server, id);

    let letters = wait_for(Duration::from_secs(10), || {
        let letters = dead_letters(&server, id);
        (!letters.is_empty()).then_some(letters)
    })
    .unwrap_or_else(|| panic!("no dead letter: {:?}", server.runs(id)));
    let runs = server.runs(id);
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in &runs {
        assert_eq!(run.str_of("status"), "failed");
        assert!(
            run.str_of("error").contains(missing.to_str().unwrap()),
            "{run:?}"
        );
    }
    assert_eq!(runs[1].str_of("trigger"), "retry");
    assert_eq!(runs[1].i64_of("attempt"), 2);
    assert_eq!(letters[0].i64_of("attempts"), 2);
}

// ----- retries that meet a busy task -----

#[test]
fn a_retry_due_while_the_next_occurrence_runs_is_not_dropped() {
    let dir = TempDir::new("retry-busy");
    let server = Server::start(&dir);
    // Even seconds fail at once, so their retry (1 s later) comes due while
    // the odd second's 0.8 s run is going.
    let command = "[ \"$EDGECRON_TRIGGER\" = retry ] && exit 0; \
        case \"$EDGECRON_SCHEDULED_FOR\" in *[02468].000Z) exit 1;; *) sleep 0.8;; esac";
    let id = create(
        &server,
        "* * * * * *",
        command,
        r#""max_retries":1,"retry_delay_seconds":1"#,
    );
    wait_for(Duration::from_secs(15), || {
        let failed = server
            .runs(id)
            .iter()
            .filter(|r| r.str_of("status") == "failed")
            .count();
        (failed >= 3).then_some(())
    })
    .expect("failed runs");
    std::thread::sleep(Duration::from_millis(2500));

    let runs = server.runs(id);
    let letters = dead_letters(&server, id);
    for run in runs.iter().filter(|r| r.str_of("status") == "failed") {
        let scheduled = run.str_of("scheduled_for");
        let retried = runs
            .iter()
            .any(|r| r.str_of("scheduled_for") == scheduled && r.i64_of("attempt") == 2);
        let pending = run.get("retry_at").and_then(Value::as_str).is_some();
        let lettered = letters
            .iter()
            .any(|l| l.i64_of("run_id") == run.i64_of("id"));
        assert!(
            retried || pending || lettered,
            "failed run {} has no retry, pending retry or dead letter: {runs:?}",
            run.i64_of("id")
        );
    }
}

// ----- helpers -----

/// Kills, on drop, the process groups whose ids the given files hold: the
/// commands a killed service leaves behind.
struct GroupReaper(Vec<PathBuf>);

impl Drop for GroupReaper {
    fn drop(&mut self) {
        for file in &self.0 {
            let Some(pgid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            else {
                continue;
            };
            if !live_group_members(pgid).is_empty()
                && let Some(pid) = rustix::process::Pid::from_raw(pgid)
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Creates a task; `extra` is more JSON fields, comma-separated.
fn create(server: &Server, schedule: &str, command: &str, extra: &str) -> i64 {
    let mut body = format!(
        r#"{{"name":"t","schedule":"{schedule}","command":{}"#,
        json_string(command)
    );
    if !extra.is_empty() {
        body.push(',');
        body.push_str(extra);
    }
    body.push('}');
    server.create_task(&body).i64_of("id")
}

fn task(server: &Server, id: i64) -> Value {
    server.get(&format!("/tasks/{id}")).json()
}

fn patch(server: &Server, id: i64, body: &str) -> Reply {
    server.request("PATCH", &format!("/tasks/{id}"), Some(body))
}

/// Starts a manual run; returns its id.
fn run_now(server: &Server, id: i64) -> i64 {
    let reply = server.post(&format!("/tasks/{id}/run"), "");
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json().i64_of("id")
}

/// Waits for a run to reach a final status; returns it.
fn wait_final(server: &Server, run_id: i64, timeout: Duration) -> Value {
    wait_for(timeout, || {
        let run = server.get(&format!("/runs/{run_id}")).json();
        FINAL
            .contains(&run.str_of("status").as_str())
            .then_some(run)
    })
    .unwrap_or_else(|| {
        panic!(
            "run {run_id} did not end: {}",
            server.get(&format!("/runs/{run_id}")).body
        )
    })
}

/// Waits for a scheduled run of the task to be running; returns its id.
fn wait_running(server: &Server, id: i64) -> i64 {
    wait_for(Duration::from_secs(10), || {
        server
            .runs(id)
            .into_iter()
            .find(|r| r.str_of("status") == "running")
            .map(|r| r.i64_of("id"))
    })
    .expect("a running run")
}

fn max_run_id(server: &Server, id: i64) -> i64 {
    server
        .runs(id)
        .iter()
        .map(|r| r.i64_of("id"))
        .max()
        .unwrap_or(0)
}

fn dead_letters(server: &Server, task_id: i64) -> Vec<Value> {
    match server
        .get(&format!("/dead-letters?task_id={task_id}"))
        .json()
    {
        Value::Array(letters) => letters,
        other => panic!("not an array: {other:?}"),
    }
}

fn assert_no_overlap(runs: &[&Value]) {
    let mut spans: Vec<(Timestamp, Option<Timestamp>)> = runs
        .iter()
        .map(|r| {
            let end = r.get("finished_at").and_then(Value::as_str).map(ts);
            (ts(&r.str_of("started_at")), end)
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        let ended = pair[0].1.expect("only the last run may still be going");
        assert!(ended <= pair[1].0, "runs overlap: {pair:?}");
    }
}

fn assert_unique_occurrences(runs: &[Value]) {
    let mut keys: Vec<(String, i64)> = runs
        .iter()
        .filter(|r| r.str_of("trigger") != "manual")
        .map(|r| (r.str_of("scheduled_for"), r.i64_of("attempt")))
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "an occurrence ran twice: {runs:?}");
}

/// The `first`, `last` and count a missed summary's error carries.
fn missed_range(run: &Value) -> (Timestamp, Timestamp, i64) {
    let error = run.str_of("error");
    let first = field(&error, "first").map(ts);
    let last = field(&error, "last").map(ts);
    // A count at the cap reads "missed=at least N".
    let count = error
        .strip_prefix("missed=")
        .map(|rest| rest.trim_start_matches("at least "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    match (first, last, count) {
        (Some(first), Some(last), Some(count)) => (first, last, count),
        _ => panic!("not a missed summary: {error}"),
    }
}

fn minutes_between(from: Timestamp, to: Timestamp) -> i64 {
    to.duration_since(from).as_secs() / 60
}

fn ts(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
}

/// An instant as edgecron stores it.
fn instant(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn floor_to(at: Timestamp, unit_secs: i64) -> Timestamp {
    Timestamp::from_second(at.as_second().div_euclid(unit_secs) * unit_secs).unwrap()
}

/// Sleeps past the next multiple of `unit_secs` if it is less than
/// `margin_secs` away, so a test's expectations hold within one unit.
fn avoid_boundary(unit_secs: i64, margin_secs: i64) {
    let now = Timestamp::now();
    let next = floor_to(now, unit_secs) + SignedDuration::from_secs(unit_secs);
    let left = next.duration_since(now);
    if left < SignedDuration::from_secs(margin_secs) {
        let wait = left + SignedDuration::from_millis(500);
        std::thread::sleep(Duration::try_from(wait).unwrap());
    }
}

/// Waits for a command to write its pid (or pgid) into `path`.
fn read_pid(path: &Path) -> i32 {
    wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).ok()?;
        text.trim().parse().ok()
    })
    .unwrap_or_else(|| panic!("no pid in {}", path.display()))
}

/// The state letter and process group of a process, None once it is gone.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; fields follow it.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Running, as opposed to gone or a zombie waiting to be reaped.
fn is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// Processes of group `pgid` that are not zombies.
fn live_group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            proc_stat(*pid).is_some_and(|(state, pgrp)| pgrp == pgid && !matches!(state, 'Z' | 'X'))
        })
        .collect()
}

/// Peak resident memory of a process, from /proc/PID/status.
fn vm_hwm_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
