//! Rows edited by hand with the sqlite3 shell into something invalid: the
//! task concerned stops being scheduled, everything else goes on, and the
//! service neither crashes nor refuses to restart. Regression tests for
//! faults a newcomer's review found.

mod common;

use std::time::Duration;

use common::*;

fn heartbeat_runs(server: &Server, id: i64) -> usize {
    server.runs(id).len()
}

fn assert_still_firing(server: &Server, heartbeat: i64) {
    let before = heartbeat_runs(server, heartbeat);
    wait_for(Duration::from_secs(10), || {
        (heartbeat_runs(server, heartbeat) > before + 1).then_some(())
    })
    .expect("the heartbeat task keeps firing");
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn a_huge_retry_delay_written_by_sql_neither_crashes_nor_blocks_a_restart() {
    let dir = TempDir::new("huge-delay");
    let db = dir.path().join("edgecron.db");
    let options = || Options::new(&db).env("POLL_INTERVAL_SECONDS", "1");
    let mut server = Server::start_with(options());
    let heartbeat = server
        .create_task(r#"{"name":"hb","schedule":"* * * * * *","command":"true"}"#)
        .i64_of("id");
    let bad = server
        .create_task(
            r#"{"name":"bad","schedule":"* * * * * *","command":"exit 3","max_retries":1}"#,
        )
        .i64_of("id");
    server
        .db()
        .execute(
            "UPDATE tasks SET retry_delay_seconds = 9223372036854775807 WHERE id = ?1",
            [bad],
        )
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        server
            .log_text()
            .contains(&format!("event=task_unschedulable task={bad}"))
            .then_some(())
    })
    .expect("the poller notices the bad row");
    assert_still_firing(&server, heartbeat);

    server.kill();
    let server = Server::start_with(options());
    assert_still_firing(&server, heartbeat);
    assert!(
        server
            .log_text()
            .contains("retry_delay_seconds: 9223372036854775807 is out of range")
    );
}

#[test]
fn absurd_catch_up_settings_written_by_sql_do_not_crash_the_start() {
    let dir = TempDir::new("absurd-catch-up");
    let db = dir.path().join("edgecron.db");
    let mut server = Server::start_with(Options::new(&db));
    let id = server
        .create_task(r#"{"name":"c","schedule":"* * * * * *","command":"true","catch_up":"all"}"#)
        .i64_of("id");
    server.kill();
    open_db(&db)
        .execute(
            "UPDATE tasks SET misfire_grace_seconds = 9223372036854775807,
                catch_up_limit = 9223372036854775807,
                next_run_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') WHERE id = ?1",
            [id],
        )
        .unwrap();
    let server = Server::start_with(Options::new(&db));
    assert_eq!(server.get("/health").status, 200);
    assert!(
        server
            .log_text()
            .contains(&format!("event=task_unschedulable task={id}"))
    );
}

#[test]
fn text_in_a_number_column_disables_only_that_task_and_keeps_the_poller_going() {
    let dir = TempDir::new("text-in-number");
    let server = Server::start_with(
        Options::new(&dir.path().join("edgecron.db")).env("POLL_INTERVAL_SECONDS", "1"),
    );
    let bad = server
        .create_task(r#"{"name":"bad","schedule":"0 0 1 1 *","command":"true"}"#)
        .i64_of("id");
    let other = server
        .create_task(r#"{"name":"o","schedule":"* * * * * *","command":"true"}"#)
        .i64_of("id");
    server
        .db()
        .execute(
            "UPDATE tasks SET timeout_seconds = 'abc' WHERE id = ?1",
            [bad],
        )
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        server
            .log_text()
            .contains("timeout_seconds: stored value is not a whole number")
            .then_some(())
    })
    .expect("the bad row is reported");

    // Listing still works, and a later edit to another task is picked up.
    assert_eq!(server.get("/tasks").status, 200);
    let shown = server.get(&format!("/tasks/{bad}")).json();
    assert_eq!(
        shown.str_of("problem"),
        "timeout_seconds: stored value is not a whole number"
    );
    let run = server.post(&format!("/tasks/{bad}/run"), "");
    assert_eq!(run.status, 409, "{}", run.body);
    server
        .db()
        .execute(
            "UPDATE tasks SET status = 'disabled' WHERE id = ?1",
            [other],
        )
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        (server
            .get(&format!("/tasks/{other}"))
            .json()
            .get("next_run_at")
            == Some(&Value::Null))
        .then_some(())
    })
    .expect("the poller still applies edits to other tasks");
}

#[test]
fn a_run_row_deleted_while_it_runs_is_reported_once_not_forever() {
    let dir = TempDir::new("deleted-run");
    let server = Server::start(&dir);
    let id = server
        .create_task(r#"{"name":"d","schedule":"0 0 1 1 *","command":"sleep 1; exit 1"}"#)
        .i64_of("id");
    assert_eq!(server.post(&format!("/tasks/{id}/run"), "").status, 202);
    server
        .db()
        .execute("DELETE FROM runs WHERE task_id = ?1", [id])
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        server
            .log_text()
            .contains("event=run_end_lost")
            .then_some(())
    })
    .expect("the lost end is logged");
    std::thread::sleep(Duration::from_secs(2));
    let errors = server.log_text().matches("op=finish_run").count();
    assert_eq!(errors, 1, "{}", server.log_text());
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn a_broken_env_line_written_by_sql_is_named_not_ignored() {
    let dir = TempDir::new("broken-env");
    let server = Server::start_with(
        Options::new(&dir.path().join("edgecron.db")).env("POLL_INTERVAL_SECONDS", "1"),
    );
    let id = server
        .create_task(r#"{"name":"e","schedule":"0 0 1 1 *","command":"true","env":{"A":"one"}}"#)
        .i64_of("id");
    server
        .db()
        .execute("UPDATE tasks SET env = '{not json' WHERE id = ?1", [id])
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        server
            .log_text()
            .contains("env: line 1 is not KEY=value")
            .then_some(())
    })
    .expect("the broken env is reported");
}

#[test]
fn an_update_must_replace_a_broken_value_not_overwrite_it_with_a_default() {
    let dir = TempDir::new("broken-update");
    let server = Server::start(&dir);
    let id = server
        .create_task(r#"{"name":"b","schedule":"0 0 1 1 *","command":"true","max_retries":5}"#)
        .i64_of("id");
    server
        .db()
        .execute("UPDATE tasks SET max_retries = 'abc' WHERE id = ?1", [id])
        .unwrap();

    let refused = server.request("PATCH", &format!("/tasks/{id}"), Some(r#"{"name":"b2"}"#));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.error().contains("set max_retries in this change"),
        "{}",
        refused.body
    );
    let stored: String = server
        .db()
        .query_row("SELECT max_retries FROM tasks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "abc", "the refused change wrote nothing");

    let fixed = server.request(
        "PATCH",
        &format!("/tasks/{id}"),
        Some(r#"{"max_retries":2}"#),
    );
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert!(matches!(fixed.json().get("problem"), Some(Value::Null)));
}

#[test]
fn a_schedule_broken_by_sql_is_explained_in_the_task() {
    let dir = TempDir::new("broken-schedule");
    let server = Server::start(&dir);
    let id = server
        .create_task(r#"{"name":"s","schedule":"0 0 1 1 *","command":"true"}"#)
        .i64_of("id");
    server
        .db()
        .execute(
            "UPDATE tasks SET schedule = 'not a cron' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let task = server.get(&format!("/tasks/{id}")).json();
    assert_eq!(task.str_of("problem"), "expected 5 or 6 fields, found 3");
    let Value::Array(listed) = server.get("/tasks").json() else {
        panic!()
    };
    assert_eq!(
        listed[0].str_of("problem"),
        "expected 5 or 6 fields, found 3"
    );
}
