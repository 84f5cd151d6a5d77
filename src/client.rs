//! `edgecron task|runs|dead-letters`: a small client of the local API over
//! plain HTTP/1.1. It prints aligned tables for people and, with `--json`,
//! the API's JSON as it came. It holds no logic of its own: every check is
//! the server's. `Failure::exit_code` is the one place exit codes are set.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::api::json::{self, Value};
use crate::config::{ClientSettings, Secret};

pub const USAGE: &str = "Usage:
  edgecron task list [--status enabled|disabled]
  edgecron task show ID
  edgecron task add (FIELDS | --file task.json)
  edgecron task update ID (FIELDS | --file task.json)
  edgecron task rm ID
  edgecron task run ID
  edgecron runs TASK [--limit N]
  edgecron dead-letters [--task ID]

FIELDS: --name --schedule --command --description --timezone --max-retries
        --retry-delay (seconds) --timeout (seconds) --status enabled|disabled
        --env KEY=VALUE (repeatable; on update it replaces the whole env)
        --clear-env (sets no variables) --working-dir DIR
        --overlap skip|queue|replace --catch-up none|latest|all
        --misfire-grace (seconds) --catch-up-limit N
        --pause-on-dead-letter true|false

Options:
  --json             print the API's JSON instead of a table
  --url URL          server address [EDGECRON_URL, else what `serve` would use:
                     EDGECRON_LISTEN or 127.0.0.1:$PORT]
  --token-file PATH  file holding the token [EDGECRON_TOKEN_FILE, or EDGECRON_TOKEN]
";

/// How a field flag's value becomes JSON. Only the type is checked here;
/// whether the value is allowed is the server's to say.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    WholeNumber,
    Boolean,
}

/// Task fields settable by flag: flag, JSON field, kind. `--env`,
/// `--clear-env` and `--status` are read apart because they are not one
/// plain value.
const FIELD_FLAGS: [(&str, &str, Kind); 14] = [
    ("--name", "name", Kind::Text),
    ("--schedule", "schedule", Kind::Text),
    ("--command", "command", Kind::Text),
    ("--description", "description", Kind::Text),
    ("--timezone", "timezone", Kind::Text),
    ("--max-retries", "max_retries", Kind::WholeNumber),
    ("--retry-delay", "retry_delay_seconds", Kind::WholeNumber),
    ("--timeout", "timeout_seconds", Kind::WholeNumber),
    ("--working-dir", "working_dir", Kind::Text),
    ("--overlap", "overlap", Kind::Text),
    ("--catch-up", "catch_up", Kind::Text),
    (
        "--misfire-grace",
        "misfire_grace_seconds",
        Kind::WholeNumber,
    ),
    ("--catch-up-limit", "catch_up_limit", Kind::WholeNumber),
    (
        "--pause-on-dead-letter",
        "pause_on_dead_letter",
        Kind::Boolean,
    ),
];

/// The shape of one command: its words, the arguments that must follow
/// them, and the rest of its usage line. `USAGE` shows the same lines.
struct Syntax {
    name: &'static str,
    args: &'static [&'static str],
    rest: &'static str,
}

static COMMANDS: [Syntax; 8] = [
    Syntax {
        name: "task list",
        args: &[],
        rest: " [--status enabled|disabled]",
    },
    Syntax {
        name: "task show",
        args: &["ID"],
        rest: "",
    },
    Syntax {
        name: "task add",
        args: &[],
        rest: " (FIELDS | --file task.json)",
    },
    Syntax {
        name: "task update",
        args: &["ID"],
        rest: " (FIELDS | --file task.json)",
    },
    Syntax {
        name: "task rm",
        args: &["ID"],
        rest: "",
    },
    Syntax {
        name: "task run",
        args: &["ID"],
        rest: "",
    },
    Syntax {
        name: "runs",
        args: &["TASK"],
        rest: " [--limit N]",
    },
    Syntax {
        name: "dead-letters",
        args: &[],
        rest: " [--task ID]",
    },
];

impl Syntax {
    fn usage(&self) -> String {
        let args: String = self.args.iter().map(|a| format!(" {a}")).collect();
        format!("edgecron {}{args}{} [--json]", self.name, self.rest)
    }
}

/// Runs the client; `args` start with the command (`task`, `runs`, ...).
/// Returns the exit code.
pub fn run(args: &[String]) -> u8 {
    match execute(args) {
        Ok(output) => {
            print!("{output}");
            0
        }
        Err(failure) => {
            match &failure {
                // The message carries the command's own usage line.
                Failure::Arguments { .. } => eprintln!("{failure}"),
                Failure::Usage(_) => eprint!("edgecron: {failure}\n\n{USAGE}"),
                _ => eprintln!("edgecron: {failure}"),
            }
            failure.exit_code()
        }
    }
}

/// Why a client command failed.
#[derive(Debug)]
enum Failure {
    /// The command line is wrong.
    Usage(String),
    /// A known command lacks an argument or has one too many.
    Arguments {
        command: &'static str,
        problem: String,
    },
    /// The server answered with an error.
    Server { status: u16, message: String },
    /// No answer: connection refused, reset, or not HTTP.
    Connection(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Arguments { .. } => 2,
            Failure::Server { .. } | Failure::Connection(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Connection(m) => f.write_str(m),
            Failure::Server { status, message } => write!(f, "{message} (HTTP {status})"),
            Failure::Arguments { command, problem } => {
                write!(f, "edgecron {command}: {problem}")?;
                match COMMANDS.iter().find(|s| s.name == *command) {
                    Some(syntax) => write!(f, " (usage: {})", syntax.usage()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The command line, split into words and options.
#[derive(Debug, Default)]
struct Command {
    words: Vec<String>,
    json: bool,
    url: Option<String>,
    token_file: Option<String>,
    file: Option<String>,
    /// Task fields as JSON members, already encoded.
    fields: Vec<String>,
    /// `--env KEY=VALUE`, in the order given.
    env: Vec<(String, String)>,
    clear_env: bool,
    /// `--status`: a task field, or the filter of `task list`.
    status: Option<String>,
    /// Query parameters (`limit`, `task_id`).
    query: Vec<(&'static str, String)>,
}

/// What to ask the server, and how to show its answer.
struct Call {
    method: &'static str,
    path: String,
    body: Option<String>,
    show: fn(&Value) -> String,
}

fn execute(args: &[String]) -> Result<String, Failure> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(USAGE.to_string());
    }
    let command = parse(args)?;
    let call = plan(&command)?;
    let settings =
        ClientSettings::load(command.token_file.clone(), &|name| std::env::var(name).ok())
            .map_err(|e| Failure::Usage(e.to_string()))?;
    let address = match command.url.clone().or_else(|| env_nonempty("EDGECRON_URL")) {
        Some(url) => address_of(&url)?,
        None => settings.server.to_string(),
    };
    let body = send(&address, settings.token.as_ref(), &call)?;
    if command.json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let value = json::parse(&body)
        .map_err(|e| Failure::Connection(format!("unreadable answer from {address}: {e}")))?;
    Ok((call.show)(&value))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse(args: &[String]) -> Result<Command, Failure> {
    let usage = |m: String| Failure::Usage(m);
    let mut command = Command::default();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if !word.starts_with("--") {
            command.words.push(word.clone());
            continue;
        }
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (word.as_str(), None),
        };
        if flag == "--json" {
            command.json = true;
            continue;
        }
        if flag == "--clear-env" {
            command.clear_env = true;
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => words
                .next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))?,
        };
        match flag {
            "--url" => command.url = Some(value),
            "--token-file" => command.token_file = Some(value),
            "--file" => command.file = Some(value),
            "--limit" => command.query.push(("limit", value)),
            "--task" => command.query.push(("task_id", value)),
            "--status" => command.status = Some(value),
            "--env" => add_env(&mut command.env, &value)?,
            _ => command.fields.push(field(flag, &value)?),
        }
    }
    Ok(command)
}

/// One task field flag as a JSON member.
fn field(flag: &str, value: &str) -> Result<String, Failure> {
    let Some((_, name, kind)) = FIELD_FLAGS.iter().find(|(f, _, _)| *f == flag) else {
        return Err(Failure::Usage(format!("unknown option {flag}")));
    };
    let wrong = |expected: &str| Failure::Usage(format!("{flag}: {value:?} is not {expected}"));
    let encoded = match kind {
        Kind::Text => json::quote(value),
        Kind::WholeNumber => value
            .parse::<i64>()
            .map_err(|_| wrong("a whole number"))?
            .to_string(),
        Kind::Boolean => value
            .parse::<bool>()
            .map_err(|_| wrong("true or false"))?
            .to_string(),
    };
    Ok(format!("{}:{encoded}", json::quote(name)))
}

/// Adds one `--env KEY=VALUE`. The key is split off at the first `=` and
/// otherwise left to the server to judge.
fn add_env(env: &mut Vec<(String, String)>, entry: &str) -> Result<(), Failure> {
    let Some((key, value)) = entry.split_once('=') else {
        return Err(Failure::Usage(format!(
            "--env {entry:?}: expected KEY=VALUE"
        )));
    };
    // A repeated key would make a JSON object the server refuses as a whole.
    if env.iter().any(|(k, _)| k == key) {
        return Err(Failure::Usage(format!("--env {key:?} is given twice")));
    }
    env.push((key.to_string(), value.to_string()));
    Ok(())
}

fn plan(c: &Command) -> Result<Call, Failure> {
    let words: Vec<&str> = c.words.iter().map(String::as_str).collect();
    check_arguments(&words)?;
    let writes = matches!(words.as_slice(), ["task", "add"] | ["task", "update", _]);
    let lists = words == ["task", "list"];
    if c.status.is_some() && !writes && !lists {
        return Err(Failure::Usage(
            "--status goes with `task list`, `task add` and `task update`".into(),
        ));
    }
    let fields = !c.fields.is_empty() || !c.env.is_empty() || c.clear_env;
    if !writes && (fields || c.file.is_some()) {
        return Err(Failure::Usage(
            "task fields and --file go with `task add` and `task update`".into(),
        ));
    }
    let call = |method, path: String, show| Call {
        method,
        path,
        body: None,
        show,
    };
    let call = match words.as_slice() {
        ["task", "list"] => {
            let status = c.status.as_ref().map(|s| format!("&status={}", encode(s)));
            let path = format!(
                "/tasks{}{}",
                query(c, "limit=1000"),
                status.unwrap_or_default()
            );
            call("GET", path, show_tasks)
        }
        ["task", "show", id] => call("GET", format!("/tasks/{}", id_of(id)?), show_record),
        ["task", "add"] => Call {
            body: Some(task_body(c, "task add")?),
            ..call("POST", "/tasks".into(), show_record)
        },
        ["task", "update", id] => Call {
            body: Some(task_body(c, "task update")?),
            ..call("PATCH", format!("/tasks/{}", id_of(id)?), show_record)
        },
        ["task", "rm", id] => call("DELETE", format!("/tasks/{}", id_of(id)?), show_deleted),
        ["task", "run", id] => call("POST", format!("/tasks/{}/run", id_of(id)?), show_started),
        ["runs", task] => call(
            "GET",
            format!("/tasks/{}/runs{}", id_of(task)?, query(c, "limit=100")),
            show_runs,
        ),
        ["dead-letters"] => call(
            "GET",
            format!("/dead-letters{}", query(c, "limit=1000")),
            show_dead_letters,
        ),
        _ => {
            return Err(Failure::Usage(format!(
                "unknown command {:?}",
                c.words.join(" ")
            )));
        }
    };
    Ok(call)
}

/// Checks that a known command has all its arguments and no more, so that
/// `edgecron runs` names the missing TASK instead of an unknown command.
/// Unknown commands pass; `plan` refuses them.
fn check_arguments(words: &[&str]) -> Result<(), Failure> {
    if words == ["task"] {
        return Err(Failure::Arguments {
            command: "task",
            problem: "missing COMMAND (list, show, add, update, rm or run)".into(),
        });
    }
    let matched = COMMANDS.iter().find_map(|syntax| {
        let length = syntax.name.split(' ').count();
        let named = words.len() >= length && words[..length].join(" ") == syntax.name;
        named.then(|| (syntax, &words[length..]))
    });
    let Some((syntax, given)) = matched else {
        return Ok(());
    };
    let problem = match given.len().cmp(&syntax.args.len()) {
        std::cmp::Ordering::Less => format!("missing {}", syntax.args[given.len()]),
        std::cmp::Ordering::Greater => {
            format!("unexpected argument {:?}", given[syntax.args.len()])
        }
        std::cmp::Ordering::Equal => return Ok(()),
    };
    Err(Failure::Arguments {
        command: syntax.name,
        problem,
    })
}

/// The query string: the options given, after `defaults` they override.
fn query(c: &Command, defaults: &str) -> String {
    let mut pairs: Vec<String> = c
        .query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let (key, _) = defaults.split_once('=').unwrap_or_default();
    if !c.query.iter().any(|(k, _)| *k == key) {
        pairs.push(defaults.to_string());
    }
    format!("?{}", pairs.join("&"))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn id_of(text: &str) -> Result<u64, Failure> {
    text.parse()
        .map_err(|_| Failure::Usage(format!("{text:?} is not an id (a positive number)")))
}

fn task_body(c: &Command, command: &'static str) -> Result<String, Failure> {
    let fields = task_fields(c)?;
    match (&c.file, fields.is_empty()) {
        (Some(_), false) => Err(Failure::Usage(
            "give task fields as flags or --file, not both".into(),
        )),
        (Some(path), true) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read {path}: {e}"))),
        (None, true) => Err(Failure::Arguments {
            command,
            problem: "missing FIELDS or --file".into(),
        }),
        (None, false) => Ok(format!("{{{}}}", fields.join(","))),
    }
}

/// Every task field given by flag, as JSON members.
fn task_fields(c: &Command) -> Result<Vec<String>, Failure> {
    let mut fields = c.fields.clone();
    if let Some(status) = &c.status {
        fields.push(format!("\"status\":{}", json::quote(status)));
    }
    if c.clear_env && !c.env.is_empty() {
        return Err(Failure::Usage("give --env or --clear-env, not both".into()));
    }
    if c.clear_env || !c.env.is_empty() {
        let entries: Vec<String> = c
            .env
            .iter()
            .map(|(k, v)| format!("{}:{}", json::quote(k), json::quote(v)))
            .collect();
        fields.push(format!("\"env\":{{{}}}", entries.join(",")));
    }
    Ok(fields)
}

/// `host:port` from `http://host:port[/]` or `host:port`.
fn address_of(url: &str) -> Result<String, Failure> {
    if url.starts_with("https://") {
        return Err(Failure::Usage(
            "https is not supported; use the local http address".into(),
        ));
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let address = rest.trim_end_matches('/');
    if address.is_empty() || address.contains('/') {
        return Err(Failure::Usage(format!(
            "--url {url:?}: expected http://HOST:PORT"
        )));
    }
    Ok(address.to_string())
}

/// Sends one request and returns the body of a successful answer.
fn send(address: &str, token: Option<&Secret>, call: &Call) -> Result<String, Failure> {
    let unreachable = |e: std::io::Error| {
        Failure::Connection(format!(
            "cannot reach the edgecron API at {address}: {e} (is `edgecron serve` running? \
             set --url or EDGECRON_URL)"
        ))
    };
    let mut stream = TcpStream::connect(address).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(unreachable)?;
    let body = call.body.as_deref().unwrap_or_default();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        call.method,
        call.path,
        body.len()
    );
    if call.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {}\r\n", token.expose()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(unreachable)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(unreachable)?;
    split_answer(address, &answer)
}

fn split_answer(address: &str, answer: &[u8]) -> Result<String, Failure> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Connection(format!("{address} did not answer in HTTP")))?;
    if status < 400 {
        return Ok(body.to_string());
    }
    let message = match json::parse(body) {
        Ok(value) => text_of(value.get("error")),
        Err(_) => body.trim().to_string(),
    };
    Err(Failure::Server { status, message })
}

// ----- output -----

/// A value as one table cell: text on one line, `-` for null.
fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::Str(s)) => s.replace(['\n', '\r', '\t'], " ").trim().to_string(),
        Some(Value::Int(n)) => n.to_string(),
        Some(Value::Float(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.kind().to_string(),
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// Rows of `columns` (header, JSON field) from a JSON array.
fn table_of(value: &Value, columns: &[(&str, &str)]) -> String {
    let header = columns.iter().map(|(h, _)| h.to_string()).collect();
    let mut rows = vec![header];
    for item in items(value) {
        rows.push(columns.iter().map(|(_, k)| text_of(item.get(k))).collect());
    }
    table(&rows)
}

/// Aligns columns; the last one is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn show_tasks(value: &Value) -> String {
    table_of(
        value,
        &[
            ("ID", "id"),
            ("NAME", "name"),
            ("STATUS", "status"),
            ("SCHEDULE", "schedule"),
            ("TIMEZONE", "timezone"),
            ("NEXT RUN", "next_run_at"),
            ("LAST", "last_status"),
        ],
    )
}

fn show_runs(value: &Value) -> String {
    table_of(
        value,
        &[
            ("ID", "id"),
            ("SCHEDULED FOR", "scheduled_for"),
            ("TRIGGER", "trigger"),
            ("ATTEMPT", "attempt"),
            ("STATUS", "status"),
            ("EXIT", "exit_code"),
            ("MS", "duration_ms"),
            ("ERROR", "error"),
        ],
    )
}

fn show_dead_letters(value: &Value) -> String {
    table_of(
        value,
        &[
            ("ID", "id"),
            ("TASK", "task_id"),
            ("RUN", "run_id"),
            ("SCHEDULED FOR", "scheduled_for"),
            ("FAILED AT", "failed_at"),
            ("ATTEMPTS", "attempts"),
            ("ERROR", "last_error"),
        ],
    )
}

/// One object as `field  value` lines; every field the API sent is shown.
fn show_record(value: &Value) -> String {
    let Value::Object(fields) = value else {
        return String::new();
    };
    let mut rows = Vec::new();
    for (key, value) in fields {
        for (i, line) in lines_of(value).into_iter().enumerate() {
            let label = if i == 0 { key.clone() } else { String::new() };
            rows.push(vec![label, line]);
        }
    }
    table(&rows)
}

/// A field's value as lines: an object (a task's `env`) as one `KEY=value`
/// line per entry, `-` when it is empty; anything else as one cell.
fn lines_of(value: &Value) -> Vec<String> {
    match value {
        Value::Object(entries) if entries.is_empty() => vec!["-".into()],
        Value::Object(entries) => entries
            .iter()
            .map(|(k, v)| format!("{k}={}", text_of(Some(v))))
            .collect(),
        other => vec![text_of(Some(other))],
    }
}

fn show_deleted(value: &Value) -> String {
    format!("deleted task {}\n", text_of(value.get("deleted")))
}

fn show_started(value: &Value) -> String {
    format!(
        "started run {} of task {}\n",
        text_of(value.get("id")),
        text_of(value.get("task_id"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn field_flags_become_a_json_object() {
        let c = parse(&words("task add --name n --max-retries=2 --timeout 9")).unwrap();
        assert_eq!(
            task_body(&c, "task add").unwrap(),
            r#"{"name":"n","max_retries":2,"timeout_seconds":9}"#
        );
        let err = parse(&words("task add --max-retries two")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"--max-retries: "two" is not a whole number"#
        );
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--max-retries"));
    }

    #[test]
    fn policy_flags_become_json_of_their_type() {
        let c = parse(&words(
            "task update 1 --env A=1 --env B=x=y --working-dir /tmp --overlap queue \
             --catch-up all --misfire-grace 60 --catch-up-limit=3 --pause-on-dead-letter true",
        ))
        .unwrap();
        let body = task_body(&c, "task update").unwrap();
        assert_eq!(
            body,
            r#"{"working_dir":"/tmp","overlap":"queue","catch_up":"all","misfire_grace_seconds":60,"catch_up_limit":3,"pause_on_dead_letter":true,"env":{"A":"1","B":"x=y"}}"#
        );
        assert!(json::parse(&body).is_ok());

        // The server judges values; the client only their JSON type.
        let c = parse(&words("task add --overlap sometimes")).unwrap();
        assert_eq!(
            task_body(&c, "task add").unwrap(),
            r#"{"overlap":"sometimes"}"#
        );
        for line in [
            "task add --pause-on-dead-letter yes",
            "task add --env NOEQUALS",
            "task add --env A=1 --env A=2",
        ] {
            assert_eq!(parse(&words(line)).unwrap_err().exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn env_values_are_quoted_by_the_json_helper() {
        let mut c = parse(&words("task update 1")).unwrap();
        add_env(&mut c.env, "Q=say \"hi\"\\\n").unwrap();
        let body = task_body(&c, "task update").unwrap();
        let value = json::parse(&body).unwrap();
        let Some(Value::Object(env)) = value.get("env") else {
            panic!("{body}")
        };
        assert_eq!(env[0], ("Q".into(), Value::Str("say \"hi\"\\\n".into())));
    }

    #[test]
    fn clear_env_sends_an_empty_object_and_excludes_env() {
        let c = parse(&words("task update 1 --clear-env")).unwrap();
        assert_eq!(task_body(&c, "task update").unwrap(), r#"{"env":{}}"#);
        let c = parse(&words("task update 1 --clear-env --env A=1")).unwrap();
        assert_eq!(task_body(&c, "task update").unwrap_err().exit_code(), 2);
        let c = parse(&words("task show 1 --clear-env")).unwrap();
        assert!(plan(&c).is_err());
    }

    #[test]
    fn missing_arguments_name_the_argument_and_the_usage_line() {
        let message = |line: &str| {
            let c = parse(&words(line)).unwrap();
            let err = plan(&c).err().expect(line);
            assert_eq!(err.exit_code(), 2, "{line}");
            err.to_string()
        };
        assert_eq!(
            message("runs"),
            "edgecron runs: missing TASK (usage: edgecron runs TASK [--limit N] [--json])"
        );
        assert_eq!(
            message("runs --limit 5 --json"),
            "edgecron runs: missing TASK (usage: edgecron runs TASK [--limit N] [--json])"
        );
        for command in ["task show", "task rm", "task run", "task update"] {
            assert!(
                message(command).starts_with(&format!("edgecron {command}: missing ID (usage: ")),
                "{command}"
            );
        }
        assert_eq!(
            message("task update --name x"),
            "edgecron task update: missing ID \
             (usage: edgecron task update ID (FIELDS | --file task.json) [--json])"
        );
        assert_eq!(
            message("task add"),
            "edgecron task add: missing FIELDS or --file \
             (usage: edgecron task add (FIELDS | --file task.json) [--json])"
        );
        assert!(message("task").starts_with("edgecron task: missing COMMAND"));
        assert_eq!(
            message("task show 1 2"),
            "edgecron task show: unexpected argument \"2\" (usage: edgecron task show ID [--json])"
        );
        assert!(message("dead-letters 3").contains("unexpected argument \"3\""));
    }

    #[test]
    fn usage_shows_every_command_line() {
        for syntax in &COMMANDS {
            let line = syntax.usage().replace(" [--json]", "");
            assert!(USAGE.contains(&format!("  {line}\n")), "{line}");
        }
    }

    #[test]
    fn records_show_env_as_key_value_lines_and_null_as_dash() {
        let task = json::parse(
            r#"{"id":1,"env":{"A":"1","B":"two words"},"working_dir":null,"overlap":"queue"}"#,
        )
        .unwrap();
        assert_eq!(
            show_record(&task),
            "id           1\nenv          A=1\n             B=two words\n\
             working_dir  -\noverlap      queue\n"
        );
        let empty = json::parse(r#"{"env":{}}"#).unwrap();
        assert_eq!(show_record(&empty), "env  -\n");
    }

    #[test]
    fn usage_errors_exit_2() {
        for line in [
            "task",
            "task show x",
            "task list --name n",
            "runs",
            "task add",
            "task list --bogus 1",
        ] {
            let err = parse(&words(line)).and_then(|c| plan(&c).map(|_| ()));
            assert_eq!(err.unwrap_err().exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn urls_give_an_address() {
        assert_eq!(
            address_of("http://127.0.0.1:5000/").unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(address_of("localhost:80").unwrap(), "localhost:80");
        assert!(address_of("https://x:1").is_err());
        assert!(address_of("http://x:1/api").is_err());
    }

    #[test]
    fn server_errors_carry_message_and_status() {
        let answer =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 27\r\n\r\n{\"error\":\"task 9 not found\"}";
        let err = split_answer("a", answer).unwrap_err();
        assert_eq!(err.to_string(), "task 9 not found (HTTP 404)");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["ID".to_string(), "NAME".into(), "X".into()],
            vec!["10".to_string(), "a".into(), "-".into()],
        ];
        assert_eq!(table(&rows), "ID  NAME  X\n10  a     -\n");
    }
}
