//! Who gets in and what comes in: the bearer token, the address check at
//! startup, and the HTTP limits (slow, idle and oversized clients), all
//! through the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "test-token-5f2c9a71e4";

fn with_token(dir: &TempDir, extra: &[&str]) -> Server {
    let mut options = Options::new(&dir.path().join("edgecron.db")).token(TOKEN);
    for arg in extra {
        options = options.arg(arg);
    }
    Server::start_with(options)
}

fn get_with(server: &Server, path: &str, authorization: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    http(&server.addr, "GET", path, None, &headers)
}

fn assert_unauthorized(reply: &Reply) {
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert!(reply.error().contains("bearer token"), "{}", reply.body);
}

#[test]
fn a_missing_or_wrong_token_gets_401_and_the_token_never_reaches_the_log() {
    let dir = TempDir::new("auth");
    let server = with_token(&dir, &[]);

    assert_unauthorized(&get_with(&server, "/tasks", None));
    assert_unauthorized(&get_with(&server, "/tasks", Some("Bearer wrong-token")));
    assert_unauthorized(&get_with(&server, "/tasks", Some(TOKEN)));
    assert_unauthorized(&get_with(&server, "/nowhere", None));
    let body = r#"{"name":"x","schedule":"* * * * *","command":"true"}"#;
    let reply = http(&server.addr, "POST", "/tasks", Some(body.as_bytes()), &[]);
    assert_unauthorized(&reply);

    // The right token works, and nothing was created without it.
    let tasks = server.get("/tasks");
    assert_eq!((tasks.status, tasks.body.as_str()), (200, "[]"));
    server.create_task(body);

    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("\nedgecron_http_unauthorized_total 5\n"),
        "{metrics}"
    );
    assert!(!server.log_text().contains(TOKEN), "{}", server.log_text());
}

#[test]
fn health_is_open_without_the_token() {
    let dir = TempDir::new("auth-health");
    let server = with_token(&dir, &[]);
    let reply = get_with(&server, "/health", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json().str_of("status"), "ok");
}

#[test]
fn metrics_need_the_token_unless_made_public() {
    let dir = TempDir::new("auth-metrics");
    let server = with_token(&dir, &[]);
    assert_unauthorized(&get_with(&server, "/metrics", None));
    drop(server);

    let dir = TempDir::new("auth-metrics-public");
    let server = with_token(&dir, &["--metrics-public"]);
    let reply = get_with(&server, "/metrics", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("edgecron_http_unauthorized_total"));
    assert_unauthorized(&get_with(&server, "/tasks", None));
}

#[test]
fn the_token_can_come_from_a_file_as_systemd_credentials_do() {
    let dir = TempDir::new("auth-file");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let options = Options::new(&dir.path().join("edgecron.db"))
        .env("EDGECRON_TOKEN_FILE", file.to_str().unwrap());
    let server = Server::start_with(options);
    assert_unauthorized(&get_with(&server, "/tasks", None));
    let reply = get_with(&server, "/tasks", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Runs `serve` expecting it to refuse to start; returns its stderr.
fn refused_start(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = serve_command(&dir.path().join("edgecron.db"));
    command.args(args).envs(env.iter().copied());
    let output = command.output().expect("run edgecron");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn an_empty_or_unreadable_token_file_stops_startup() {
    let dir = TempDir::new("auth-file-bad");
    let file = dir.path().join("token");
    std::fs::write(&file, "\n").unwrap();
    let name = file.to_str().unwrap();
    let stderr = refused_start(&dir, &["--token-file", name], &[]);
    assert!(
        stderr.contains(name) && stderr.contains("empty"),
        "{stderr}"
    );
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let stderr = refused_start(&dir, &[], &[("EDGECRON_TOKEN_FILE", missing)]);
    assert!(stderr.contains(missing), "{stderr}");
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let dir = TempDir::new("auth-bind");
    let stderr = refused_start(&dir, &["--listen", "0.0.0.0:0"], &[]);
    for needle in ["EDGECRON_TOKEN", "--token-file", "--insecure-no-token"] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

/// Opens a connection and sends `head` one byte a second from a thread,
/// until the server closes it; returns the status line it got.
fn trickle(addr: &str, head: &'static [u8]) -> std::thread::JoinHandle<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    std::thread::spawn(move || {
        for byte in head {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        answer.lines().next().unwrap_or_default().to_string()
    })
}

#[test]
fn slow_and_idle_clients_delay_neither_a_task_nor_another_client() {
    let dir = TempDir::new("slow-clients");
    let options = Options::new(&dir.path().join("edgecron.db")).arg("--read-timeout=3");
    let server = Server::start_with(options);
    let at = seconds_from_now(2);
    let body = format!(
        r#"{{"name":"due","schedule":"{}","command":"true"}}"#,
        once_at(at)
    );
    let id = server.create_task(&body).i64_of("id");

    // Idle connections, one sending its headers a byte a second, and one
    // stalling in its body.
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    let slow_head = trickle(&server.addr, b"GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut stalled = TcpStream::connect(&server.addr).unwrap();
    stalled
        .write_all(b"POST /tasks HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{")
        .unwrap();

    // Another client is answered at once.
    let started = Instant::now();
    let reply = server.get("/health");
    assert_eq!(reply.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // The task due meanwhile ran on time.
    let run = wait_for(Duration::from_secs(10), || {
        server.runs(id).into_iter().next()
    })
    .expect("the task ran");
    let scheduled: jiff::Timestamp = run.str_of("scheduled_for").parse().unwrap();
    let run_started: jiff::Timestamp = run.str_of("started_at").parse().unwrap();
    assert_eq!(scheduled, at);
    assert!(run_started.duration_since(scheduled).as_secs_f64() < 1.0);

    // The read timeout ends the slow clients' connections.
    assert_eq!(slow_head.join().unwrap(), "HTTP/1.1 408 Request Timeout");
    let mut answer = String::new();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stalled.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    for mut conn in idle {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("\nedgecron_http_read_timeouts_total 10\n"),
        "{metrics}"
    );
}

#[test]
fn connections_over_the_cap_get_503_until_one_closes() {
    let dir = TempDir::new("conn-cap");
    let options = Options::new(&dir.path().join("edgecron.db")).arg("--max-connections=2");
    let server = Server::start_with(options);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    let busy = wait_for(Duration::from_secs(5), || {
        let reply = server.get("/health");
        (reply.status == 503).then_some(reply)
    })
    .expect("a third connection is refused");
    assert!(busy.error().contains("too many open connections"));

    drop(idle);
    let ok = wait_for(Duration::from_secs(5), || {
        (server.get("/health").status == 200).then_some(())
    });
    assert!(ok.is_some(), "a slot frees when a connection closes");
}

#[test]
fn oversized_heads_get_431() {
    let dir = TempDir::new("big-head");
    let options = Options::new(&dir.path().join("edgecron.db")).arg("--max-header-bytes=1024");
    let server = Server::start_with(options);
    let big = "x".repeat(2000);
    let reply = http(&server.addr, "GET", "/tasks", None, &[("X-Big", &big)]);
    assert_eq!(reply.status, 431, "{}", reply.body);
    assert!(reply.error().contains("1024"));
}

#[test]
fn no_malformed_request_gets_a_500_or_stops_the_service() {
    let dir = TempDir::new("malformed");
    let server = Server::start(&dir);
    let raw: [&[u8]; 12] = [
        b"\r\n\r\n",
        b"\x00\x01\x02\xff\xfe\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /tasks HTTP/1.1\r\nbroken header\r\n\r\n",
        b"GET /tasks HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
        b"POST /tasks HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /tasks HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        b"POST /tasks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /tasks HTTP/1.1\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc",
        b"GET /tasks/%00%ff HTTP/1.1\r\n\r\n",
        b"GET /tasks?limit=%zz&offset=99999999999999999999 HTTP/1.1\r\n\r\n",
    ];
    for bytes in raw {
        let reply = raw_request(&server.addr, bytes);
        assert!(
            (400..500).contains(&reply.status),
            "{:?} -> {} {}",
            String::from_utf8_lossy(bytes),
            reply.status,
            reply.body
        );
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies = [
        deep.as_str(),
        r#"{"name":"a","schedule":"* * * * *","command":"x","max_retries":1e400}"#,
        r#"{"name":"a","schedule":"* * * * *","command":"x","max_retries":99999999999999999999}"#,
        r#"{"name":"\ud800","schedule":"* * * * *","command":"x"}"#,
        r#"{"name":"a","name":"b","schedule":"* * * * *","command":"x\u0000"}"#,
        r#"{"name":"a","schedule":"* * * * * * * * * * * * * * * * * * * * *","command":"x"}"#,
    ];
    for body in bodies {
        let reply = server.post("/tasks", body);
        assert!(
            (400..500).contains(&reply.status),
            "{body:.80} -> {} {}",
            reply.status,
            reply.body
        );
    }
    assert_eq!(server.get("/health").status, 200);
}
