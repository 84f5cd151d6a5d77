//! Crash safety through the real binary: a service under a steady load is
//! killed with SIGKILL at random moments and restarted on the same
//! database, then stopped cleanly; the database must still tell a complete,
//! consistent story of every occurrence.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::*;
use jiff::Timestamp;

const ROUNDS: usize = 8;
const SEED: u64 = 0x0edc_0c0a;

/// A row of `runs`, as the checks need it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    task_id: i64,
    scheduled_for: String,
    trigger: String,
    attempt: i64,
    status: String,
    error: Option<String>,
    retry_at: Option<String>,
}

#[test]
fn sigkill_at_random_moments_loses_no_occurrence_and_repeats_none() {
    let dir = TempDir::new("crash");
    let db = dir.path().join("edgecron.db");
    let exec_log = dir.path().join("exec.log");
    let mut rng = fastrand::Rng::with_seed(SEED);

    // Each command notes which occurrence and attempt it serves.
    let note = format!(
        "echo \"$EDGECRON_TASK_ID $EDGECRON_SCHEDULED_FOR $EDGECRON_ATTEMPT\" >> {}",
        exec_log.display()
    );
    let loads = [
        ("ok", format!("{note}; echo ok"), ""),
        (
            "fail",
            format!("{note}; exit 1"),
            r#","max_retries":1,"retry_delay_seconds":1"#,
        ),
        ("slow", format!("{note}; sleep 1.5"), ""),
    ];

    let mut killed_at = Vec::new();
    for round in 0..ROUNDS {
        let mut server = Server::start_with(Options::new(&db));
        if round == 0 {
            for (name, command, extra) in &loads {
                server.create_task(&format!(
                    r#"{{"name":"{name}","schedule":"* * * * * *","command":"{}"{extra}}}"#,
                    command.replace('"', "\\\"")
                ));
            }
        }
        let delay = 0.3 + rng.f64() * 1.7;
        std::thread::sleep(Duration::from_secs_f64(delay));
        server.kill();
        killed_at.push(format!("{delay:.2}"));
        // Sometimes down long enough for occurrences to be missed.
        std::thread::sleep(Duration::from_secs_f64(rng.f64() * 2.5));
    }
    let mut server = Server::start_with(Options::new(&db));
    std::thread::sleep(Duration::from_secs(4));
    let status = server.signal_and_wait("TERM", Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");

    let conn = open_db(&db);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let rows = all_runs(&conn);
    let max_retries: HashMap<i64, i64> = query_pairs(&conn, "SELECT id, max_retries FROM tasks");
    let lettered: BTreeSet<i64> = query_pairs(&conn, "SELECT run_id, attempts FROM dead_letters")
        .into_keys()
        .collect();

    assert_nothing_left_running(&rows);
    assert_attempts_unique_and_gapless(&rows);
    assert_failures_have_consequences(&rows, &max_retries, &lettered);
    for task_id in max_retries.keys() {
        assert_every_second_accounted_for(&rows, *task_id);
    }
    assert_no_occurrence_ran_twice(&rows, &exec_log);

    let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
    println!(
        "crash safety: {ROUNDS} rounds (killed after {} s), {} runs, {} succeeded, {} failed, \
         {} skipped, {} missed, {} interrupted, {} dead letters",
        killed_at.join(", "),
        rows.len(),
        count("succeeded"),
        count("failed"),
        count("skipped"),
        count("missed"),
        count("interrupted"),
        lettered.len()
    );
}

fn all_runs(conn: &rusqlite::Connection) -> Vec<Row> {
    let mut stmt = conn
        .prepare(
            "SELECT id, task_id, scheduled_for, trigger, attempt, status, error, retry_at
             FROM runs ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            id: r.get(0)?,
            task_id: r.get(1)?,
            scheduled_for: r.get(2)?,
            trigger: r.get(3)?,
            attempt: r.get(4)?,
            status: r.get(5)?,
            error: r.get(6)?,
            retry_at: r.get(7)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn query_pairs(conn: &rusqlite::Connection, sql: &str) -> HashMap<i64, i64> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn assert_nothing_left_running(rows: &[Row]) {
    let left: Vec<&Row> = rows
        .iter()
        .filter(|r| r.status == "running" || r.status == "queued")
        .collect();
    assert!(left.is_empty(), "runs left unsettled: {left:#?}");
}

/// Each (task, occurrence) has attempts 1..k, each once.
fn assert_attempts_unique_and_gapless(rows: &[Row]) {
    let mut attempts: BTreeMap<(i64, &str), Vec<i64>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.trigger != "manual") {
        attempts
            .entry((row.task_id, &row.scheduled_for))
            .or_default()
            .push(row.attempt);
    }
    for (key, mut list) in attempts {
        list.sort();
        let expected: Vec<i64> = (1..=list.len() as i64).collect();
        assert_eq!(list, expected, "attempts of {key:?}");
    }
}

/// A failed, timed-out or interrupted run is followed by a next attempt, a
/// pending retry or a dead letter, unless it was replaced or its task is
/// out of retries (then the dead letter is required).
fn assert_failures_have_consequences(
    rows: &[Row],
    max_retries: &HashMap<i64, i64>,
    lettered: &BTreeSet<i64>,
) {
    let next_attempts: BTreeSet<(i64, &str, i64)> = rows
        .iter()
        .map(|r| (r.task_id, r.scheduled_for.as_str(), r.attempt))
        .collect();
    for row in rows
        .iter()
        .filter(|r| matches!(r.status.as_str(), "failed" | "timed_out" | "interrupted"))
    {
        let retried = next_attempts.contains(&(row.task_id, &row.scheduled_for, row.attempt + 1));
        let pending = row.retry_at.is_some();
        let letter = lettered.contains(&row.id);
        let budget = max_retries[&row.task_id];
        if row.attempt > budget {
            assert!(letter, "out of retries without a dead letter: {row:?}");
        } else {
            assert!(
                retried || pending || letter,
                "a failure with no consequence (max_retries {budget}): {row:?}"
            );
        }
    }
}

/// Every second from a task's first to its last occurrence has a row, or
/// lies in a missed summary's range.
fn assert_every_second_accounted_for(rows: &[Row], task_id: i64) {
    let mut covered = BTreeSet::new();
    for row in rows
        .iter()
        .filter(|r| r.task_id == task_id && r.trigger == "schedule")
    {
        let at = ts(&row.scheduled_for).as_second();
        covered.insert(at);
        if row.status == "missed" {
            let error = row.error.as_deref().unwrap_or_default();
            let first = field(error, "first").map(ts);
            let last = field(error, "last").map(ts);
            let (Some(first), Some(last)) = (first, last) else {
                panic!("a missed row without its range: {row:?}");
            };
            covered.extend(first.as_second()..=last.as_second());
        }
    }
    let (Some(&first), Some(&last)) = (covered.first(), covered.last()) else {
        panic!("task {task_id} never fired");
    };
    let lost: Vec<Timestamp> = (first..=last)
        .filter(|s| !covered.contains(s))
        .map(|s| Timestamp::from_second(s).unwrap())
        .collect();
    assert!(
        lost.is_empty(),
        "task {task_id}: occurrences with no trace: {lost:?}"
    );
}

/// No (task, occurrence, attempt) ran its command twice, every command
/// that ran has its run recorded, and an occurrence ran again only as the
/// retry of a recorded failure.
fn assert_no_occurrence_ran_twice(rows: &[Row], exec_log: &Path) {
    let text = std::fs::read_to_string(exec_log).unwrap_or_default();
    let recorded: HashMap<(i64, Timestamp, i64), &Row> = rows
        .iter()
        .map(|r| ((r.task_id, ts(&r.scheduled_for), r.attempt), r))
        .collect();
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [task, at, attempt] = parts[..] else {
            panic!("bad exec log line {line:?}");
        };
        let key = (
            task.parse::<i64>().unwrap(),
            ts(at),
            attempt.parse::<i64>().unwrap(),
        );
        assert!(seen.insert(key), "ran twice: {line}");
        assert!(recorded.contains_key(&key), "ran without a run row: {line}");
        if key.2 > 1 {
            let previous = recorded.get(&(key.0, key.1, key.2 - 1));
            assert!(
                previous.is_some_and(|r| {
                    matches!(r.status.as_str(), "failed" | "timed_out" | "interrupted")
                }),
                "attempt {} ran without a recorded failure before it: {previous:?}",
                key.2
            );
        }
    }
    assert!(!seen.is_empty(), "no command ran");
}

fn ts(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
}
