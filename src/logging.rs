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
