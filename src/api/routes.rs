//! Routing, request decoding and response shapes. Runs on the scheduler
//! thread; every operation goes through the scheduler's commands, so no
//! handler writes SQL. Errors become answers through `api::Error`, the one
//! place that maps them to HTTP statuses.

use nanoserde::SerJson;

use super::json::{self, Field, Value};
use super::{Error, Request, Response};
use crate::model::{CatchUp, DeadLetter, Overlap, Run, Task, TaskStatus, format_instant};
use crate::scheduler::{ApiError, Scheduler, TaskPatch};

/// Listing endpoints return at most this many items per page.
const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;
/// `/cron/next` computes at most this many instants.
const MAX_PREVIEW: usize = 1000;
/// The API contract, served at `/openapi.json`; schemathesis checks the
/// service against it (`scripts/schemathesis`).
const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Fields a client may send back unchanged (from a GET); they are ignored.
const READ_ONLY_FIELDS: [&str; 7] = [
    "id",
    "next_run_at",
    "last_run_at",
    "last_status",
    "created_at",
    "updated_at",
    "problem",
];

/// Answers one request. A panic in a handler becomes a 500, never a dead
/// service.
pub fn handle(scheduler: &mut Scheduler, request: &Request) -> Response {
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(scheduler, request)));
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => err.response(),
        Err(panic) => {
            let what = crate::logging::panic_message(panic.as_ref());
            log::error!(
                "event=handler_panic method={} path={:?} panic={what:?} backtrace={:?}",
                request.method,
                request.path,
                std::backtrace::Backtrace::force_capture().to_string()
            );
            Error::Internal.response()
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

fn route(s: &mut Scheduler, req: &Request) -> Result<Response> {
    let segments: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method.as_str();
    check_query(req, known_query(&segments))?;
    match (segments.as_slice(), method) {
        (["health"], "GET") => Ok(health(s)),
        (["metrics"], "GET") => Ok(Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: s.metrics_text(),
            headers: Vec::new(),
        }),
        (["openapi.json"], "GET") => Ok(Response::json(200, OPENAPI.into())),
        (["tasks"], "GET") => {
            let status = query_status(req)?;
            let (limit, offset) = paging(req)?;
            let tasks = s.tasks(status, limit, offset)?;
            Ok(ok(&tasks.iter().map(TaskView::from).collect::<Vec<_>>()))
        }
        (["tasks"], "POST") => {
            let patch = task_patch(&req.body)?;
            Ok(Response::json(
                201,
                TaskView::from(&s.create_task(patch)?).serialize_json(),
            ))
        }
        (["tasks", id], "GET") => Ok(ok(&TaskView::from(&s.task(parse_id("task", id)?)?))),
        (["tasks", id], "PUT" | "PATCH") => {
            let id = parse_id("task", id)?;
            let patch = task_patch(&req.body)?;
            Ok(ok(&TaskView::from(&s.update_task(id, patch)?)))
        }
        (["tasks", id], "DELETE") => {
            let id = parse_id("task", id)?;
            s.delete_task(id)?;
            Ok(Response::json(200, format!("{{\"deleted\":{id}}}")))
        }
        (["tasks", id, "run"], "POST") => {
            let run = s.run_now(parse_id("task", id)?)?;
            Ok(Response::json(202, RunView::from(&run).serialize_json()))
        }
        (["tasks", id, "runs"], "GET") => {
            let (limit, offset) = paging(req)?;
            let runs = s.runs(parse_id("task", id)?, limit, offset)?;
            Ok(ok(&runs.iter().map(RunView::from).collect::<Vec<_>>()))
        }
        (["runs", id], "GET") => Ok(ok(&RunView::from(&s.run_by_id(parse_id("run", id)?)?))),
        (["dead-letters"], "GET") => {
            // A malformed filter is a bad request, not a missing resource.
            let task_id = query(req, "task_id")
                .map(|v| {
                    parse_id("task_id", v).map_err(|_| {
                        ApiError::Invalid(format!("task_id: {v:?} is not a positive integer"))
                    })
                })
                .transpose()?;
            let (limit, offset) = paging(req)?;
            let letters = s.dead_letters(task_id, limit, offset)?;
            Ok(ok(&letters
                .iter()
                .map(DeadLetterView::from)
                .collect::<Vec<_>>()))
        }
        (["dead-letters", id], "GET") => Ok(ok(&DeadLetterView::from(
            &s.dead_letter(parse_id("dead letter", id)?)?,
        ))),
        (["dead-letters", id], "DELETE") => {
            let id = parse_id("dead letter", id)?;
            s.delete_dead_letter(id)?;
            Ok(Response::json(200, format!("{{\"deleted\":{id}}}")))
        }
        (["dead-letters", id, "retry"], "POST") => {
            let run = s.retry_dead_letter(parse_id("dead letter", id)?)?;
            Ok(Response::json(202, RunView::from(&run).serialize_json()))
        }
        (["cron", "next"], "GET") => cron_next(s, req),
        (path, _) => Err(not_routed(path)),
    }
}

/// 404 for unknown paths, 405 (with `Allow`) for a known path and a method
/// it does not take.
fn not_routed(path: &[&str]) -> Error {
    let allow = match path {
        ["health"] | ["metrics"] | ["runs", _] | ["tasks", _, "runs"] | ["cron", "next"] => {
            Some("GET")
        }
        ["openapi.json"] => Some("GET"),
        ["tasks"] => Some("GET, POST"),
        ["tasks", _] => Some("GET, PUT, PATCH, DELETE"),
        ["tasks", _, "run"] | ["dead-letters", _, "retry"] => Some("POST"),
        ["dead-letters"] => Some("GET"),
        ["dead-letters", _] => Some("GET, DELETE"),
        _ => None,
    };
    match allow {
        Some(allow) => Error::MethodNotAllowed(allow),
        None => Error::NoSuchEndpoint,
    }
}

fn ok<T: SerJson>(value: &T) -> Response {
    Response::json(200, value.serialize_json())
}

fn health(s: &mut Scheduler) -> Response {
    let health = s.health();
    let status = if health.db_writable {
        "ok"
    } else {
        "unhealthy"
    };
    let view = HealthView {
        status: status.into(),
        utc_now: format_instant(crate::clock::now()),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: health.uptime_seconds,
        error: health.error,
    };
    Response::json(
        if health.db_writable { 200 } else { 503 },
        view.serialize_json(),
    )
}

fn cron_next(s: &mut Scheduler, req: &Request) -> Result<Response> {
    let invalid = |m: String| ApiError::Invalid(m);
    let expr = query(req, "expr").ok_or_else(|| invalid("expr: required".into()))?;
    let zone = query(req, "tz").unwrap_or(s.default_timezone()).to_string();
    let count = match query(req, "count") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PREVIEW).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "count: {v:?} is not a number from 1 to {MAX_PREVIEW}"
                ))
            })?,
        None => 5,
    };
    let from = match query(req, "from") {
        Some(v) => crate::model::parse_instant(v)
            .ok_or_else(|| invalid(format!("from: {v:?} is not an RFC 3339 instant")))?,
        None => crate::clock::now(),
    };
    let schedule =
        crate::cron::Schedule::parse(expr, &zone).map_err(|e| invalid(e.under("expr")))?;
    let next = schedule
        .preview(from, count)
        .into_iter()
        .map(|o| OccurrenceView {
            at: o.at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            utc: format_instant(o.at.timestamp()),
            note: o.note.map(|n| n.as_str().to_string()),
        })
        .collect();
    Ok(ok(&PreviewView {
        expr: expr.into(),
        timezone: zone,
        next,
    }))
}

// ----- request decoding -----

/// Reads a task body: a JSON object whose known fields have the right
/// types. Unknown fields are refused so a typo never passes silently.
fn task_patch(body: &[u8]) -> Result<TaskPatch> {
    decode_task(body).map_err(|m| ApiError::Invalid(m).into())
}

/// Decodes a task body without touching the scheduler; public for the
/// fuzz target.
pub fn decode_task(body: &[u8]) -> std::result::Result<TaskPatch, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("body: expected a JSON object with the task's fields".into());
    }
    let Value::Object(fields) = json::parse(text)? else {
        return Err("body: expected a JSON object".into());
    };
    let mut patch = TaskPatch::default();
    for (name, value) in &fields {
        let f = Field { name, value };
        match name.as_str() {
            "name" => patch.name = Some(f.string()?),
            "description" => patch.description = Some(f.string_or_null()?),
            "schedule" => patch.schedule = Some(f.string()?),
            "command" => patch.command = Some(f.string()?),
            "timezone" => patch.timezone = Some(f.string()?),
            "max_retries" => patch.max_retries = Some(f.integer()?),
            "retry_delay_seconds" => patch.retry_delay_seconds = Some(f.integer()?),
            "timeout_seconds" => patch.timeout_seconds = Some(f.integer()?),
            "pause_on_dead_letter" => patch.pause_on_dead_letter = Some(f.boolean()?),
            "status" => {
                let text = f.string()?;
                let status = TaskStatus::parse(&text)
                    .ok_or_else(|| format!("status: {text:?} is not enabled or disabled"))?;
                patch.status = Some(status);
            }
            "env" => patch.env = Some(f.string_map()?),
            "working_dir" => patch.working_dir = Some(f.optional(Field::string)?),
            "misfire_grace_seconds" => {
                patch.misfire_grace_seconds = Some(f.optional(Field::integer)?);
            }
            "catch_up_limit" => patch.catch_up_limit = Some(f.integer()?),
            "overlap" => {
                let text = f.string()?;
                let overlap = Overlap::parse(&text)
                    .ok_or_else(|| format!("overlap: {text:?} is not skip, queue or replace"))?;
                patch.overlap = Some(overlap);
            }
            "catch_up" => {
                let text = f.string()?;
                let catch_up = CatchUp::parse(&text)
                    .ok_or_else(|| format!("catch_up: {text:?} is not none, latest or all"))?;
                patch.catch_up = Some(catch_up);
            }
            other if READ_ONLY_FIELDS.contains(&other) => {}
            other => return Err(format!("{other}: unknown field")),
        }
    }
    Ok(patch)
}

/// The query parameters a path takes; any other is refused, as unknown
/// body fields are, so a typo (`?stauts=enabled`) never passes silently.
/// `None`: any parameter is ignored (probes add cache-busting queries).
fn known_query(path: &[&str]) -> Option<&'static [&'static str]> {
    let known: &'static [&'static str] = match path {
        ["health"] | ["metrics"] => return None,
        ["tasks"] => &["status", "limit", "offset"],
        ["tasks", _, "runs"] => &["limit", "offset"],
        ["dead-letters"] => &["task_id", "limit", "offset"],
        ["cron", "next"] => &["expr", "tz", "count", "from"],
        _ => &[],
    };
    Some(known)
}

fn check_query(req: &Request, known: Option<&[&str]>) -> Result<()> {
    let Some(known) = known else { return Ok(()) };
    for (index, (name, _)) in req.query.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(ApiError::Invalid(format!("{name}: unknown query parameter")).into());
        }
        if req.query[..index]
            .iter()
            .any(|(earlier, _)| earlier == name)
        {
            return Err(ApiError::Invalid(format!("{name}: given twice")).into());
        }
    }
    Ok(())
}

fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn query_status(req: &Request) -> Result<Option<TaskStatus>> {
    match query(req, "status") {
        None => Ok(None),
        Some(v) => TaskStatus::parse(v).map(Some).ok_or_else(|| {
            ApiError::Invalid(format!("status: {v:?} is not enabled or disabled")).into()
        }),
    }
}

fn paging(req: &Request) -> Result<(i64, i64)> {
    let number = |name: &str, default: i64, min: i64, max: i64| -> Result<i64> {
        match query(req, name) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::Invalid(format!("{name}: {v:?} is not a number from {min} to {max}"))
                        .into()
                }),
        }
    };
    Ok((
        number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?,
        number("offset", 0, 0, i64::MAX / 2)?,
    ))
}

fn parse_id(what: &str, text: &str) -> Result<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{what} {text:?} not found (ids are positive integers)"
            ))
            .into()
        })
}

// ----- response shapes -----

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct TaskView {
    id: i64,
    name: String,
    description: String,
    schedule: String,
    command: String,
    timezone: String,
    max_retries: i64,
    retry_delay_seconds: i64,
    timeout_seconds: i64,
    status: String,
    pause_on_dead_letter: bool,
    env: std::collections::BTreeMap<String, String>,
    working_dir: Option<String>,
    overlap: String,
    catch_up: String,
    misfire_grace_seconds: Option<i64>,
    catch_up_limit: i64,
    next_run_at: Option<String>,
    last_run_at: Option<String>,
    last_status: Option<String>,
    created_at: String,
    updated_at: String,
    problem: Option<String>,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct RunView {
    id: i64,
    task_id: i64,
    scheduled_for: String,
    trigger: String,
    attempt: i64,
    status: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    exit_code: Option<i64>,
    output: String,
    output_dropped_bytes: i64,
    error: Option<String>,
    retry_at: Option<String>,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct DeadLetterView {
    id: i64,
    task_id: i64,
    run_id: i64,
    scheduled_for: String,
    failed_at: String,
    attempts: i64,
    last_error: Option<String>,
    exit_code: Option<i64>,
    output: String,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct HealthView {
    status: String,
    utc_now: String,
    version: String,
    uptime_seconds: u64,
    error: Option<String>,
}

#[derive(SerJson)]
struct PreviewView {
    expr: String,
    timezone: String,
    next: Vec<OccurrenceView>,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct OccurrenceView {
    at: String,
    utc: String,
    note: Option<String>,
}

fn instant(ts: Option<jiff::Timestamp>) -> Option<String> {
    ts.map(format_instant)
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> TaskView {
        TaskView {
            id: t.id,
            name: t.spec.name.clone(),
            description: t.spec.description.clone(),
            schedule: t.spec.schedule.clone(),
            command: t.spec.command.clone(),
            timezone: t.spec.timezone.clone(),
            max_retries: t.spec.max_retries,
            retry_delay_seconds: t.spec.retry_delay_seconds,
            timeout_seconds: t.spec.timeout_seconds,
            status: t.spec.status.as_str().into(),
            pause_on_dead_letter: t.spec.pause_on_dead_letter,
            env: t.spec.policy.env.iter().cloned().collect(),
            working_dir: t.spec.policy.working_dir.clone(),
            overlap: t.spec.policy.overlap.as_str().into(),
            catch_up: t.spec.policy.catch_up.as_str().into(),
            misfire_grace_seconds: t.spec.policy.misfire_grace_seconds,
            catch_up_limit: t.spec.policy.catch_up_limit,
            next_run_at: instant(t.next_run_at),
            last_run_at: instant(t.last_run_at),
            last_status: t.last_status.clone(),
            created_at: format_instant(t.created_at),
            updated_at: format_instant(t.updated_at),
            problem: t.problem.clone(),
        }
    }
}

impl From<&Run> for RunView {
    fn from(r: &Run) -> RunView {
        RunView {
            id: r.id,
            task_id: r.task_id,
            scheduled_for: format_instant(r.scheduled_for),
            trigger: r.trigger.as_str().into(),
            attempt: r.attempt,
            status: r.status.as_str().into(),
            started_at: instant(r.started_at),
            finished_at: instant(r.finished_at),
            duration_ms: r.duration_ms,
            exit_code: r.exit_code,
            output: r.output.clone(),
            output_dropped_bytes: r.output_dropped_bytes,
            error: r.error.clone(),
            retry_at: instant(r.retry_at),
        }
    }
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(d: &DeadLetter) -> DeadLetterView {
        DeadLetterView {
            id: d.id,
            task_id: d.task_id,
            run_id: d.run_id,
            scheduled_for: format_instant(d.scheduled_for),
            failed_at: format_instant(d.failed_at),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            exit_code: d.exit_code,
            output: d.output.clone(),
        }
    }
}
