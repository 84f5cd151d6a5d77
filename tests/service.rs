//! End-to-end behaviour of the scheduler service through the real binary:
//! firing on schedule, retries and dead letters, no overlap, restarts, the
//! database poller.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_task_every_second_runs_each_second_and_is_recorded() {
    let dir = TempDir::new("every-second");
    let server = Server::start(&dir);
    let task =
        server.create_task(r#"{"name":"tick","schedule":"* * * * * *","command":"echo tick"}"#);
    let id = task.i64_of("id");

    let runs = wait_for(Duration::from_secs(15), || {
        let runs = server.runs(id);
        let done = runs
            .iter()
            .filter(|r| r.str_of("status") == "succeeded")
            .count();
        (done >= 4).then_some(runs)
    })
    .expect("four successful runs within 15 s");

    // Consecutive occurrences one second apart, each run once, output kept.
    let finished: Vec<_> = runs
        .iter()
        .filter(|r| r.str_of("status") == "succeeded")
        .collect();
    let instants: Vec<jiff::Timestamp> = finished
        .iter()
        .map(|r| r.str_of("scheduled_for").parse().unwrap())
        .collect();
    for pair in instants.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).get_seconds(),
            1,
            "gap between occurrences: {instants:?}"
        );
    }
    for run in &finished {
        assert_eq!(run.str_of("output"), "tick\n");
        assert_eq!(run.i64_of("exit_code"), 0);
        assert_eq!(run.str_of("trigger"), "schedule");
        // Started within a second of its scheduled instant.
        let scheduled: jiff::Timestamp = run.str_of("scheduled_for").parse().unwrap();
        let started: jiff::Timestamp = run.str_of("started_at").parse().unwrap();
        let lateness = started.duration_since(scheduled).as_secs_f64();
        assert!(
            (0.0..1.0).contains(&lateness),
            "started {lateness} s after its instant"
        );
    }

    // The database holds the same runs the API shows.
    let stored: i64 = server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE task_id = ?1 AND status = 'succeeded'",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored >= finished.len() as i64);

    let metrics = server.get("/metrics").body;
    let successes = metric(&metrics, "task_executions_success_total");
    assert!(successes >= 4.0, "{metrics}");
}

#[test]
fn a_failing_command_is_retried_then_dead_lettered() {
    let dir = TempDir::new("dead-letter");
    let server = Server::start(&dir);
    let at = seconds_from_now(1);
    let body = format!(
        r#"{{"name":"flaky","schedule":"{}","command":"echo out; echo err >&2; exit 7",
            "max_retries":2,"retry_delay_seconds":1}}"#,
        once_at(at)
    );
    let id = server.create_task(&body).i64_of("id");

    let letters = wait_for(Duration::from_secs(20), || {
        let reply = server.get(&format!("/dead-letters?task_id={id}"));
        let Value::Array(letters) = reply.json() else {
            return None;
        };
        (!letters.is_empty()).then_some(letters)
    })
    .expect("a dead letter within 20 s");
    // Give a wrong fourth attempt the time it would need to show up.
    std::thread::sleep(Duration::from_millis(2500));

    let runs = server.runs(id);
    let attempts: Vec<i64> = runs.iter().map(|r| r.i64_of("attempt")).collect();
    assert_eq!(attempts, vec![1, 2, 3], "runs: {runs:?}");
    assert_eq!(runs[0].str_of("trigger"), "schedule");
    for run in &runs {
        assert_eq!(run.str_of("status"), "failed");
        assert_eq!(run.i64_of("exit_code"), 7);
        assert_eq!(run.str_of("scheduled_for"), runs[0].str_of("scheduled_for"));
    }
    for pair in runs.windows(2) {
        let failed: jiff::Timestamp = pair[0].str_of("finished_at").parse().unwrap();
        let retried: jiff::Timestamp = pair[1].str_of("started_at").parse().unwrap();
        let delay = retried.duration_since(failed).as_secs_f64();
        assert!(
            (0.9..2.5).contains(&delay),
            "retry came {delay} s after the failure"
        );
    }

    let Value::Array(all_letters) = server.get("/dead-letters").json() else {
        panic!()
    };
    assert_eq!(letters.len(), 1);
    assert_eq!(all_letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.i64_of("attempts"), 3);
    assert_eq!(letter.i64_of("exit_code"), 7);
    assert_eq!(letter.str_of("output"), "out\nerr\n");
    assert_eq!(letter.i64_of("run_id"), runs[2].i64_of("id"));

    let metrics = server.get("/metrics").body;
    assert_eq!(metric(&metrics, "task_executions_failure_total"), 3.0);
    assert_eq!(metric(&metrics, "task_execution_retries_total"), 2.0);
    assert_eq!(metric(&metrics, "edgecron_dead_letters_total"), 1.0);

    // The task keeps its schedule (pause_on_dead_letter is false).
    let task = server.get(&format!("/tasks/{id}")).json();
    assert_eq!(task.str_of("status"), "enabled");
    assert_eq!(task.str_of("last_status"), "failed");
}

#[test]
fn pause_on_dead_letter_disables_the_task() {
    let dir = TempDir::new("pause");
    let server = Server::start(&dir);
    let body = r#"{"name":"p","schedule":"0 0 1 1 *","command":"exit 1","max_retries":0,
                   "pause_on_dead_letter":true}"#;
    let id = server.create_task(body).i64_of("id");
    assert_eq!(server.post(&format!("/tasks/{id}/run"), "").status, 202);
    let task = wait_for(Duration::from_secs(10), || {
        let task = server.get(&format!("/tasks/{id}")).json();
        (task.str_of("status") == "disabled").then_some(task)
    })
    .expect("task paused after its dead letter");
    assert!(matches!(task.get("next_run_at"), Some(Value::Null)));
}

#[test]
fn a_slow_command_never_overlaps_itself() {
    let dir = TempDir::new("overlap");
    let server = Server::start(&dir);
    let id = server
        .create_task(
            r#"{"name":"slow","schedule":"* * * * * *","command":"sleep 2.2","max_retries":0}"#,
        )
        .i64_of("id");

    let runs = wait_for(Duration::from_secs(20), || {
        let runs = server.runs(id);
        let done = runs
            .iter()
            .filter(|r| r.str_of("status") == "succeeded")
            .count();
        (done >= 2).then_some(runs)
    })
    .expect("two finished runs");

    let mut intervals: Vec<(jiff::Timestamp, jiff::Timestamp)> = runs
        .iter()
        .filter(|r| r.str_of("status") == "succeeded")
        .map(|r| {
            (
                r.str_of("started_at").parse().unwrap(),
                r.str_of("finished_at").parse().unwrap(),
            )
        })
        .collect();
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlap: {pair:?}");
    }
    let skipped = runs
        .iter()
        .filter(|r| r.str_of("status") == "skipped")
        .count();
    assert!(
        skipped >= 2,
        "occurrences during a run are recorded as skipped: {runs:?}"
    );
    let metrics = server.get("/metrics").body;
    assert!(metric(&metrics, "edgecron_occurrences_skipped_total") >= 2.0);
}

#[test]
fn a_restart_keeps_tasks_and_repeats_no_occurrence() {
    let dir = TempDir::new("restart");
    let db = dir.path().join("edgecron.db");
    let id;
    {
        let mut server = Server::start_with(Options::new(&db));
        id = server
            .create_task(r#"{"name":"r","schedule":"* * * * * *","command":"echo r"}"#)
            .i64_of("id");
        wait_for(Duration::from_secs(10), || {
            (server.runs(id).len() >= 2).then_some(())
        })
        .expect("runs before the restart");
        server.kill();
    }
    let server = Server::start_with(Options::new(&db));
    let task = server.get(&format!("/tasks/{id}")).json();
    assert_eq!(task.str_of("name"), "r");
    assert_eq!(task.str_of("command"), "echo r");
    let before = server.runs(id).len();
    wait_for(Duration::from_secs(10), || {
        (server.runs(id).len() >= before + 2).then_some(())
    })
    .expect("runs after the restart");

    let runs = server.runs(id);
    let mut occurrences: Vec<(String, i64)> = runs
        .iter()
        .map(|r| (r.str_of("scheduled_for"), r.i64_of("attempt")))
        .collect();
    let total = occurrences.len();
    occurrences.sort();
    occurrences.dedup();
    assert_eq!(
        occurrences.len(),
        total,
        "an occurrence ran twice: {runs:?}"
    );
}

#[test]
fn sql_edits_are_picked_up_by_the_poller() {
    let dir = TempDir::new("poller");
    let db = dir.path().join("edgecron.db");
    let server = Server::start_with(Options::new(&db).env("POLL_INTERVAL_SECONDS", "1"));

    // A task inserted with plain SQL starts firing.
    server
        .db()
        .execute(
            "INSERT INTO tasks (name, schedule, command) VALUES ('from-sql', '* * * * * *', 'echo sql')",
            [],
        )
        .unwrap();
    let id: i64 = server
        .db()
        .query_row("SELECT id FROM tasks WHERE name = 'from-sql'", [], |r| {
            r.get(0)
        })
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        (!server.runs(id).is_empty()).then_some(())
    })
    .expect("the poller scheduled the inserted task");

    // Disabling it with plain SQL stops it.
    server
        .db()
        .execute("UPDATE tasks SET status = 'disabled' WHERE id = ?1", [id])
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let count = server.runs(id).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.runs(id).len(), count, "a disabled task kept firing");

    // Changing its command and re-enabling it takes effect.
    server
        .db()
        .execute(
            "UPDATE tasks SET status = 'enabled', command = 'echo changed' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let run = wait_for(Duration::from_secs(10), || {
        server
            .runs(id)
            .into_iter()
            .find(|r| r.str_of("output") == "changed\n")
    });
    assert!(run.is_some(), "the edited command never ran");

    // Deleting it with plain SQL stops it for good.
    server
        .db()
        .execute("DELETE FROM tasks WHERE id = ?1", [id])
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let count = server.runs(id).len();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(server.runs(id).len(), count, "a deleted task kept firing");
    assert!(server.log_text().contains("event=task_deleted_in_db"));
}

#[test]
fn api_edits_take_effect_at_once() {
    let dir = TempDir::new("edits");
    let server = Server::start(&dir);
    let id = server
        .create_task(r#"{"name":"e","schedule":"0 0 1 1 *","command":"echo e","description":"d"}"#)
        .i64_of("id");
    let reply = server.request(
        "PATCH",
        &format!("/tasks/{id}"),
        Some(r#"{"schedule":"* * * * * *"}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let task = reply.json();
    assert_eq!(
        task.str_of("description"),
        "d",
        "fields not given stay as they were"
    );
    wait_for(Duration::from_secs(5), || {
        (!server.runs(id).is_empty()).then_some(())
    })
    .expect("the new schedule fired");

    let reply = server.request(
        "PUT",
        &format!("/tasks/{id}"),
        Some(r#"{"status":"disabled"}"#),
    );
    assert_eq!(reply.json().str_of("status"), "disabled");
    assert!(matches!(reply.json().get("next_run_at"), Some(Value::Null)));

    let reply = server.request("DELETE", &format!("/tasks/{id}"), None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().i64_of("deleted"), id);
    assert_eq!(server.get(&format!("/tasks/{id}")).status, 404);
    // History stays readable after the task is gone.
    assert!(!server.runs(id).is_empty());
}

#[test]
fn listing_filters_and_pages() {
    let dir = TempDir::new("list");
    let server = Server::start(&dir);
    for n in 0..5 {
        let status = if n % 2 == 0 { "enabled" } else { "disabled" };
        server.create_task(&format!(
            r#"{{"name":"t{n}","schedule":"0 0 1 1 *","command":"true","status":"{status}"}}"#
        ));
    }
    let Value::Array(all) = server.get("/tasks").json() else {
        panic!()
    };
    assert_eq!(all.len(), 5);
    let Value::Array(enabled) = server.get("/tasks?status=enabled").json() else {
        panic!()
    };
    assert_eq!(enabled.len(), 3);
    let Value::Array(page) = server.get("/tasks?limit=2&offset=2").json() else {
        panic!()
    };
    let names: Vec<String> = page.iter().map(|t| t.str_of("name")).collect();
    assert_eq!(names, vec!["t2", "t3"]);
}

#[test]
fn health_reports_ok_with_version_and_uptime() {
    let dir = TempDir::new("health");
    let server = Server::start(&dir);
    let reply = server.get("/health");
    assert_eq!(reply.status, 200);
    let health = reply.json();
    assert_eq!(health.str_of("status"), "ok");
    assert_eq!(health.str_of("version"), env!("CARGO_PKG_VERSION"));
    let now: jiff::Timestamp = health.str_of("utc_now").parse().unwrap();
    assert!(
        jiff::Timestamp::now()
            .duration_since(now)
            .as_secs_f64()
            .abs()
            < 5.0
    );
}

#[test]
fn health_is_unhealthy_when_the_database_cannot_be_written() {
    let dir = TempDir::new("health-ro");
    let db = dir.path().join("edgecron.db");
    let server = Server::start_with(Options::new(&db));
    // Another connection holding the write lock longer than the busy
    // timeout makes every write fail, as a stuck disk would.
    // Tasks firing meanwhile must not hold /health up behind their writes.
    for n in 0..3 {
        server.create_task(&format!(
            r#"{{"name":"busy{n}","schedule":"* * * * * *","command":"true"}}"#
        ));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let blocker = open_db(&db);
    blocker
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO meta (key, value) VALUES ('lock', 'x');")
        .unwrap();
    for _ in 0..4 {
        let asked = std::time::Instant::now();
        let reply = server.get("/health");
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.json().str_of("status"), "unhealthy");
        // Generous: a locked database answers in about a second, not after
        // the lock is gone.
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(server.get("/health").status, 200);
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

#[test]
fn firing_waits_for_the_clock_sync_file() {
    let dir = TempDir::new("clock-sync");
    let synced = dir.path().join("synchronized");
    let server = Server::start_with(
        Options::new(&dir.path().join("edgecron.db"))
            .env("EDGECRON_WAIT_CLOCK_SYNC", synced.to_str().unwrap()),
    );
    // The API answers while firing waits.
    let id = server
        .create_task(r#"{"name":"s","schedule":"* * * * * *","command":"true"}"#)
        .i64_of("id");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        server.runs(id).is_empty(),
        "fired before the clock was synchronised"
    );

    std::fs::write(&synced, "").unwrap();
    wait_for(Duration::from_secs(10), || {
        (!server.runs(id).is_empty()).then_some(())
    })
    .expect("fires once the clock is synchronised");
    assert!(server.log_text().contains("event=clock_synchronised"));
}

#[test]
fn cron_next_previews_with_dst_notes() {
    let dir = TempDir::new("cron-next");
    let server = Server::start(&dir);
    let reply = server
        .get("/cron/next?expr=30+2+*+*+*&tz=America/New_York&count=2&from=2025-03-08T12:00:00Z");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let Some(Value::Array(next)) = reply.json().get("next").cloned() else {
        panic!("{}", reply.body)
    };
    assert_eq!(next[0].str_of("utc"), "2025-03-09T07:00:00.000Z");
    assert_eq!(next[0].str_of("note"), "moved");
    assert_eq!(next[1].str_of("utc"), "2025-03-10T06:30:00.000Z");
    assert!(matches!(next[1].get("note"), Some(Value::Null)));
    let bad = server.get("/cron/next?expr=0+0+30+2+*");
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("never fires"), "{}", bad.body);
}

#[test]
fn max_running_caps_commands_and_the_rest_wait_their_turn() {
    let dir = TempDir::new("max-running");
    let server = Server::start_with(
        Options::new(&dir.path().join("edgecron.db")).env("EDGECRON_MAX_RUNNING", "2"),
    );
    let at = seconds_from_now(2);
    let ids: Vec<i64> = (0..5)
        .map(|n| {
            let body = format!(
                r#"{{"name":"cap{n}","schedule":"{}","command":"sleep 1"}}"#,
                once_at(at)
            );
            server.create_task(&body).i64_of("id")
        })
        .collect();

    let runs: Vec<Value> = wait_for(Duration::from_secs(30), || {
        let runs: Vec<Value> = ids.iter().flat_map(|id| server.runs(*id)).collect();
        (runs
            .iter()
            .filter(|r| r.str_of("status") == "succeeded")
            .count()
            == 5)
            .then_some(runs)
    })
    .expect("all five occurrences run");

    // Never more than two at once: count overlaps at every start.
    let spans: Vec<(jiff::Timestamp, jiff::Timestamp)> = runs
        .iter()
        .map(|r| {
            (
                r.str_of("started_at").parse().unwrap(),
                r.str_of("finished_at").parse().unwrap(),
            )
        })
        .collect();
    for (start, _) in &spans {
        let going = spans
            .iter()
            .filter(|(s, f)| s <= start && start < f)
            .count();
        assert!(going <= 2, "{going} runs at {start}: {spans:?}");
    }
    // Each ran its own occurrence, the waiting ones late rather than never.
    for run in &runs {
        assert_eq!(
            run.str_of("scheduled_for")
                .parse::<jiff::Timestamp>()
                .unwrap(),
            at
        );
    }
    assert!(server.log_text().contains("event=run_waiting_for_slot"));
}
