//! One log line per event, to stderr: RFC 3339 UTC time, level, then the
//! event as `key=value` pairs; or the same as one JSON object per line.
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
            let msg = crate::api::json::quote(&record.args().to_string());
            format!("{prefix}{{\"ts\":\"{ts}\",\"level\":\"{level}\",\"msg\":{msg}}}")
        }
        LogFormat::Text if journald => format!("{prefix}{level} {}", record.args()),
        LogFormat::Text => {
            let ts = crate::model::format_instant(jiff::Timestamp::now());
            format!("{ts} {level} {}", record.args())
        }
    }
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
        assert_eq!(keys, ["ts", "level", "msg"]);
    }
}
