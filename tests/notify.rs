//! systemd readiness and watchdog: with NOTIFY_SOCKET set, the real binary
//! sends READY=1 once it listens, WATCHDOG=1 at half of WATCHDOG_USEC, and
//! STOPPING=1 when asked to stop.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// Reads datagrams until `until` returns true or `timeout` passes.
fn collect(
    socket: &UnixDatagram,
    timeout: Duration,
    until: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !until(&messages) {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            messages.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    messages
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut server = Server::start_with(
        Options::new(&dir.path().join("edgecron.db"))
            .env("NOTIFY_SOCKET", path.to_str().unwrap())
            .env("WATCHDOG_USEC", "1000000"),
    );

    // Ready, then pings every half second for as long as it runs.
    let count = |messages: &[String], m: &str| messages.iter().filter(|l| *l == m).count();
    let messages = collect(&socket, Duration::from_secs(10), |m| {
        count(m, "WATCHDOG=1") >= 3
    });
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1"),
        "{messages:?}"
    );
    assert!(count(&messages, "WATCHDOG=1") >= 3, "{messages:?}");
    assert_eq!(
        server.get("/health").status,
        200,
        "ready means the API answers"
    );

    let status = server
        .signal_and_wait("TERM", Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success());
    let rest = collect(&socket, Duration::from_secs(1), |m| {
        m.iter().any(|l| l == "STOPPING=1")
    });
    assert!(rest.iter().any(|l| l == "STOPPING=1"), "{rest:?}");
}

#[test]
fn nothing_is_sent_without_a_notify_socket() {
    // The harness removes NOTIFY_SOCKET; the service must simply run.
    let dir = TempDir::new("notify-none");
    let server = Server::start(&dir);
    assert_eq!(server.get("/health").status, 200);
}
