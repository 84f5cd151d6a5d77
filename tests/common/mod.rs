//! The end-to-end harness: starts the real `edgecron` binary on a free
//! loopback port with a temporary database, talks HTTP to it over a plain
//! socket, and reads the database directly.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use edgecron::api::json::Value;

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "edgecron-test-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `edgecron serve`.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub db: PathBuf,
    /// Sent as a bearer token with every request made through `request`.
    pub token: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
}

/// How to start a server.
pub struct Options {
    pub db: PathBuf,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub token: Option<String>,
}

impl Options {
    pub fn new(db: &Path) -> Options {
        Options {
            db: db.to_path_buf(),
            env: vec![],
            args: vec![],
            token: None,
        }
    }

    /// Requires `token` (through `EDGECRON_TOKEN`) and sends it.
    pub fn token(mut self, token: &str) -> Options {
        self.token = Some(token.into());
        self.env("EDGECRON_TOKEN", token)
    }

    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Options {
        self.args.push(arg.into());
        self
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_edgecron")
}

/// `edgecron serve` on database `db`, with none of the caller's settings
/// that would change what a test sees.
pub fn serve_command(db: &Path) -> Command {
    let mut command = Command::new(binary());
    command.arg("serve");
    for name in [
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "EDGECRON_LISTEN",
        "PORT",
        "EDGECRON_TOKEN",
        "EDGECRON_TOKEN_FILE",
        "EDGECRON_METRICS_PUBLIC",
        "EDGECRON_INSECURE_NO_TOKEN",
    ] {
        command.env_remove(name);
    }
    command
        .env("SCHED_DB_PATH", db)
        .env("LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

impl Server {
    /// Starts a server on a fresh database in `dir`.
    pub fn start(dir: &TempDir) -> Server {
        Server::start_with(Options::new(&dir.path().join("edgecron.db")))
    }

    /// Starts a server and waits until it logs the address it listens on.
    pub fn start_with(options: Options) -> Server {
        let mut command = serve_command(&options.db);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(&options.args);
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start edgecron");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = field(&line, "listen") {
                    let _ = addr_tx.send(addr.to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "edgecron did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child: Some(child),
            addr,
            db: options.db,
            token: options.token,
            log,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, Some(body))
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http(&self.addr, method, path, body.map(str::as_bytes), &headers)
    }

    /// Creates a task from a JSON body, panicking unless the server answers 201.
    pub fn create_task(&self, body: &str) -> Value {
        let reply = self.post("/tasks", body);
        assert_eq!(reply.status, 201, "create failed: {}", reply.body);
        reply.json()
    }

    /// Runs of a task, oldest first.
    pub fn runs(&self, task_id: i64) -> Vec<Value> {
        let reply = self.get(&format!("/tasks/{task_id}/runs?limit=1000"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let Value::Array(mut runs) = reply.json() else {
            panic!("not an array: {}", reply.body)
        };
        runs.reverse();
        runs
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends a signal and waits for the process to exit; returns its status.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        self.wait(timeout)
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the server the hard way (kill -9).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        open_db(&self.db)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn open_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// Starts a server on a fresh database in `dir` whose wall clock is
/// shifted by the seconds in the returned file (initially `seconds`);
/// writing the file jumps the clock (see src/clock.rs).
pub fn start_with_clock_offset(dir: &TempDir, seconds: &str) -> (Server, PathBuf) {
    let offset = dir.path().join("clock-offset");
    std::fs::write(&offset, seconds).unwrap();
    let options = Options::new(&dir.path().join("edgecron.db"))
        .env("EDGECRON_TEST_CLOCK_OFFSET_FILE", offset.to_str().unwrap());
    (Server::start_with(options), offset)
}

/// The value of `key=value` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        edgecron::api::json::parse(&self.body)
            .unwrap_or_else(|e| panic!("bad JSON {e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the answer says it is JSON.
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    }

    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

/// Sends `bytes` as they are on a fresh connection and reads the answer.
pub fn raw_request(addr: &str, bytes: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` every 50 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Assertion helpers on top of `Value`'s own accessors.
pub trait ValueExt {
    fn str_of(&self, key: &str) -> String;
    fn i64_of(&self, key: &str) -> i64;
}

impl ValueExt for Value {
    fn str_of(&self, key: &str) -> String {
        self.get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string {key} in {self:?}"))
            .to_string()
    }

    fn i64_of(&self, key: &str) -> i64 {
        self.get(key)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no integer {key} in {self:?}"))
    }
}

/// A 6-field expression that fires once, at `at` (UTC, whole second).
pub fn once_at(at: jiff::Timestamp) -> String {
    let z = at.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{} {} {} {} {} *",
        z.second(),
        z.minute(),
        z.hour(),
        z.day(),
        z.month()
    )
}

/// The next whole second at least `secs` seconds from now.
pub fn seconds_from_now(secs: i64) -> jiff::Timestamp {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now + secs + 1).unwrap()
}
