//! One log line per event, to stderr: RFC 3339 UTC time, level, then the
//! event as `key=value` pairs; or the same as one JSON object per line,
//! each pair a member.
//! Under systemd (`JOURNAL_STREAM` set) lines start with the sd-daemon
//! priority prefix instead of a time, so `journalctl -p err` works.

use std::io::Write;

use crate::config::LogFormat;

/// Installs the logger. Other crates log at `warn` and above only.
pub fn init(level: log::LevelFilter, format: LogFormat) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("edgecron", level)
        .format(move |buf, record| {
            let line = render(record, format, journald);
            writeln!(buf, "{line}")
        })
        .target(env_logger::Target::Stderr)
        .init();
}

fn render(record: &log::Record, format: LogFormat, journald: bool) -> String {
    let prefix = if journald {
        priority(record.level())
    } else {
        ""
    };
    let level = record.level().as_str().to_ascii_lowercase();
    match format {
        LogFormat::Json => {
            let ts = crate::model::format_instant(jiff::Timestamp::now());
            let members = json_members(&record.args().to_string());
            format!("{prefix}{{\"ts\":\"{ts}\",\"level\":\"{level}\",{members}}}")
        }
        LogFormat::Text if journald => format!("{prefix}{level} {}", record.args()),
        LogFormat::Text => {
            let ts = crate::model::format_instant(jiff::Timestamp::now());
            format!("{ts} {level} {}", record.args())
        }
    }
}

/// A message's pairs as JSON members, in message order; a message that is
/// not all pairs becomes one `"msg"` member, so nothing is lost.
fn json_members(message: &str) -> String {
    use crate::api::json::quote;
    match pairs(message) {
        Some(pairs) => pairs
            .iter()
            .map(|(key, value)| format!("{}:{}", quote(key), quote(value)))
            .collect::<Vec<_>>()
            .join(","),
        None => format!("\"msg\":{}", quote(message)),
    }
}

/// Splits a message of space-separated `key=value` pairs, where a value
/// may be double-quoted with the escapes of Rust's `{:?}`. None when any
/// part is not such a pair, a key repeats, or a key is `ts` or `level`:
/// each would make a JSON line that says less than the text one.
fn pairs(message: &str) -> Option<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut rest = message.trim_start_matches(' ');
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let taken = ["ts", "level"].contains(&key) || pairs.iter().any(|(k, _)| k == key);
        if !is_key(key) || taken {
            return None;
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            }
        };
        if !(after.is_empty() || after.starts_with(' ')) {
            return None;
        }
        pairs.push((key.to_string(), value));
        rest = after.trim_start_matches(' ');
    }
    (!pairs.is_empty()).then_some(pairs)
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reads a quoted value after its opening quote: the value, and what
/// follows the closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => value.push(unescape(&mut chars)?),
            _ => value.push(c),
        }
    }
    None
}

/// One escape of `str::escape_debug`, after its backslash.
fn unescape(chars: &mut std::str::CharIndices<'_>) -> Option<char> {
    let escaped = match chars.next()?.1 {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        '0' => '\0',
        c @ ('"' | '\'' | '\\') => c,
        'u' => {
            if chars.next()?.1 != '{' {
                return None;
            }
            let hex: String = chars
                .by_ref()
                .map(|(_, c)| c)
                .take_while(|c| *c != '}')
                .collect();
            char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
        }
        _ => return None,
    };
    Some(escaped)
}

/// The message a panic carried (`panic!` with a literal or a format), for
/// the log line that reports it.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// sd-daemon(3) priority prefixes.
fn priority(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: log::Level, format: LogFormat, journald: bool) -> String {
        let args = format_args!("event=run_started task=1");
        let record = log::Record::builder().level(level).args(args).build();
        render(&record, format, journald)
    }

    #[test]
    fn journald_lines_carry_sd_daemon_priorities_and_no_time() {
        assert_eq!(
            line(log::Level::Error, LogFormat::Text, true),
            "<3>error event=run_started task=1"
        );
        assert_eq!(
            line(log::Level::Warn, LogFormat::Text, true),
            "<4>warn event=run_started task=1"
        );
        assert_eq!(
            line(log::Level::Info, LogFormat::Text, true),
            "<6>info event=run_started task=1"
        );
        assert_eq!(
            line(log::Level::Debug, LogFormat::Text, true),
            "<7>debug event=run_started task=1"
        );
    }

    #[test]
    fn text_lines_start_with_an_rfc3339_utc_time() {
        let text = line(log::Level::Info, LogFormat::Text, false);
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(
            time.parse::<jiff::Timestamp>().is_ok() && time.ends_with('Z'),
            "{text}"
        );
        assert_eq!(rest, "info event=run_started task=1");
    }

    #[test]
    fn json_lines_are_one_object() {
        let text = line(log::Level::Warn, LogFormat::Json, false);
        let crate::api::json::Value::Object(fields) = crate::api::json::parse(&text).unwrap()
        else {
            panic!("{text}");
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ts", "level", "event", "task"]);
    }

    /// The members after `ts` and `level` of the JSON line for `message`.
    fn json_fields(message: std::fmt::Arguments) -> Vec<(String, String)> {
        use crate::api::json::{Value, parse};
        let record = log::Record::builder()
            .level(log::Level::Info)
            .args(message)
            .build();
        let text = render(&record, LogFormat::Json, false);
        let Ok(Value::Object(fields)) = parse(&text) else {
            panic!("not one object: {text}");
        };
        assert_eq!(fields[1], ("level".into(), Value::Str("info".into())));
        fields[2..]
            .iter()
            .map(|(k, v)| match v {
                Value::Str(s) => (k.clone(), s.clone()),
                other => panic!("{k} is {}: {text}", other.kind()),
            })
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_lines_split_pairs_into_string_members_in_order() {
        assert_eq!(
            json_fields(format_args!(
                "event=run_finished task=3 run=41 status=failed exit_code=2 \
                 follow_up=retry_at:2025-03-09T07:01:01.210Z error=\"exit code 2\""
            )),
            owned(&[
                ("event", "run_finished"),
                ("task", "3"),
                ("run", "41"),
                ("status", "failed"),
                ("exit_code", "2"),
                ("follow_up", "retry_at:2025-03-09T07:01:01.210Z"),
                ("error", "exit code 2"),
            ])
        );
    }

    #[test]
    fn json_lines_read_values_quoted_by_debug_formatting() {
        let name = "backup \"x\" \\ tab\there\nline \u{7f} é";
        assert_eq!(
            json_fields(format_args!(
                "event=task_created name={name:?} empty= task=1"
            )),
            owned(&[
                ("event", "task_created"),
                ("name", name),
                ("empty", ""),
                ("task", "1")
            ])
        );
    }

    #[test]
    fn json_lines_keep_a_message_that_is_not_pairs_whole() {
        for message in [
            "sd_notify \"READY=1\" not delivered",
            "event=x error=\"unterminated",
            "event=x error=\"stray\"quote",
            "event=x event=y",
            "event=x ts=now",
            "=1",
            "",
        ] {
            assert_eq!(
                json_fields(format_args!("{message}")),
                owned(&[("msg", message)]),
                "{message:?}"
            );
        }
    }
}
