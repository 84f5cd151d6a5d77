//! The command-line client against a real server: add, list, run, see the
//! run, remove; errors and exit codes.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const TOKEN: &str = "cli-token-0b8e41";

/// Runs `edgecron ARGS` as a client of `server`, with the token in a file
/// as an operator under systemd would have it.
fn client(server: &Server, dir: &TempDir, args: &[&str]) -> Output {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    Command::new(binary())
        .args(args)
        .env_remove("EDGECRON_TOKEN")
        .env("EDGECRON_TOKEN_FILE", &token_file)
        .env("EDGECRON_URL", format!("http://{}", server.addr))
        .output()
        .expect("run edgecron")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn add_list_run_inspect_and_remove_a_task() {
    let dir = TempDir::new("cli");
    let server = Server::start_with(Options::new(&dir.path().join("edgecron.db")).token(TOKEN));
    let added = stdout(&client(
        &server,
        &dir,
        &[
            "task",
            "add",
            "--name",
            "backup",
            "--schedule",
            "0 3 * * *",
            "--command",
            "echo saved",
            "--max-retries=0",
        ],
    ));
    assert!(
        added.contains("name") && added.contains("backup"),
        "{added}"
    );

    // A table for people: header and one aligned row.
    let table = stdout(&client(&server, &dir, &["task", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("ID  NAME    STATUS   SCHEDULE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("1   backup  enabled  0 3 * * *"),
        "{table}"
    );

    // The API's JSON for scripts.
    let json = stdout(&client(&server, &dir, &["task", "list", "--json"]));
    let Value::Array(tasks) = edgecron::api::json::parse(&json).unwrap() else {
        panic!("{json}")
    };
    assert_eq!(tasks[0].str_of("command"), "echo saved");

    let started = stdout(&client(&server, &dir, &["task", "run", "1"]));
    assert!(started.starts_with("started run "), "{started}");
    let runs = wait_for(Duration::from_secs(10), || {
        let text = stdout(&client(&server, &dir, &["runs", "1"]));
        text.contains("succeeded").then_some(text)
    })
    .expect("the run is listed as succeeded");
    assert!(runs.starts_with("ID  SCHEDULED FOR"), "{runs}");
    assert!(runs.contains("manual"), "{runs}");

    let removed = stdout(&client(&server, &dir, &["task", "rm", "1"]));
    assert_eq!(removed, "deleted task 1\n");
    let table = stdout(&client(&server, &dir, &["task", "list"]));
    assert_eq!(table.lines().count(), 1, "{table}");
}

#[test]
fn server_errors_exit_1_and_usage_errors_exit_2() {
    let dir = TempDir::new("cli-errors");
    let server = Server::start_with(Options::new(&dir.path().join("edgecron.db")).token(TOKEN));

    let missing = client(&server, &dir, &["task", "show", "42"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.trim(), "edgecron: task 42 not found (HTTP 404)");

    let invalid = client(
        &server,
        &dir,
        &[
            "task",
            "add",
            "--name",
            "x",
            "--schedule",
            "bad",
            "--command",
            "true",
        ],
    );
    assert_eq!(invalid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("schedule"));

    let usage = client(&server, &dir, &["task", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));

    // Without the token the server's 401 comes through.
    let output = Command::new(binary())
        .args(["task", "list"])
        .env_remove("EDGECRON_TOKEN")
        .env_remove("EDGECRON_TOKEN_FILE")
        .env("EDGECRON_URL", &server.addr)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("(HTTP 401)"));
}

#[test]
fn a_refused_connection_names_the_address_tried() {
    // A port that was free a moment ago is very likely still closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(binary())
        .args(["dead-letters"])
        .env_remove("EDGECRON_URL")
        .env_remove("EDGECRON_LISTEN")
        .env_remove("EDGECRON_TOKEN")
        .env_remove("EDGECRON_TOKEN_FILE")
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
