//! The `edgecron next` subcommand: preview a schedule's next fire times.
//!
//! No database and no service; this is the only code in the cron module
//! that reads the clock, and only when `--from` is not given.

use std::io::Write;

use jiff::Timestamp;

use super::{DstNote, Occurrence, Schedule};

const USAGE: &str = "\
usage: edgecron next [--tz ZONE] [--from RFC3339] [--count N] EXPR...

Prints the next N fire times of the cron expression EXPR (default 5, at most
1000), one per line, in RFC 3339 with the zone's offset. EXPR may be quoted or
given as several words. A fire changed by DST ends with a note:
  (moved: 02:30 does not exist)        fired at the end of a spring-forward gap
  (repeated: 01:30 occurs twice)       second pass of a fall-back hour

options:
  --tz ZONE        IANA time zone (default UTC)
  --from RFC3339   start instant, exclusive (default now)
  --count N        how many fire times (default 5, 1-1000)
  -h, --help       print this help";

const MAX_COUNT: usize = 1000;

/// The options of one invocation.
#[derive(Debug)]
struct Args {
    zone: String,
    from: Option<Timestamp>,
    count: usize,
    expr: String,
}

/// Runs `edgecron next` with the words after `next`; returns the exit code
/// (0 ok, 2 bad input).
pub fn run_next_command(args: &[String]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    run(args, Timestamp::now(), &mut stdout, &mut stderr)
}

/// The command with its clock and streams passed in, so tests can run it.
fn run(args: &[String], now: Timestamp, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let parsed = match parse_args(args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            let _ = writeln!(out, "{USAGE}");
            return 0;
        }
        Err(message) => {
            let _ = writeln!(err, "edgecron next: {message}\n(see edgecron next --help)");
            return 2;
        }
    };
    let schedule = match Schedule::parse(&parsed.expr, &parsed.zone) {
        Ok(schedule) => schedule,
        Err(e) => {
            let _ = writeln!(err, "edgecron next: {e}");
            return 2;
        }
    };

    let occurrences = schedule.preview(parsed.from.unwrap_or(now), parsed.count);
    for occurrence in &occurrences {
        let _ = writeln!(out, "{}", format_line(&schedule, occurrence));
    }
    if occurrences.len() < parsed.count {
        let _ = writeln!(
            err,
            "edgecron next: no further fire times before the year 5000"
        );
    }
    0
}

/// Parses the words after `next`; `Ok(None)` means help was asked for.
fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        zone: "UTC".into(),
        from: None,
        count: 5,
        expr: String::new(),
    };
    let mut words: Vec<&str> = Vec::new();
    let mut iter = args.iter().map(String::as_str);
    while let Some(arg) = iter.next() {
        // Cron fields never start with `-`, so anything that does is an option.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => (name, Some(value)),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .or_else(|| iter.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name {
            "-h" | "--help" => return Ok(None),
            "--tz" => parsed.zone = value()?.to_string(),
            "--from" => parsed.from = Some(parse_from(value()?)?),
            "--count" => parsed.count = parse_count(value()?)?,
            "--" => words.extend(iter.by_ref()),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => words.push(arg),
        }
    }
    if words.is_empty() {
        return Err("missing cron expression".into());
    }
    parsed.expr = words.join(" ");
    Ok(Some(parsed))
}

fn parse_from(text: &str) -> Result<Timestamp, String> {
    text.parse()
        .map_err(|e| format!("--from {text}: not an RFC 3339 instant ({e})"))
}

fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=MAX_COUNT) => Ok(n),
        _ => Err(format!(
            "--count {text}: must be a whole number from 1 to {MAX_COUNT}"
        )),
    }
}

/// One output line: the instant with its local offset, then any DST note.
fn format_line(schedule: &Schedule, occurrence: &Occurrence) -> String {
    let at = occurrence.at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    match occurrence.note {
        None => at,
        Some(DstNote::Moved) => {
            let skipped = schedule.skipped_local_time(occurrence);
            let time = skipped.map_or("the scheduled time".into(), |t| hh_mm(t.time()));
            format!("{at} (moved: {time} does not exist)")
        }
        Some(DstNote::Repeated) => {
            format!(
                "{at} (repeated: {} occurs twice)",
                hh_mm(occurrence.at.time())
            )
        }
    }
}

/// `02:30`, or `02:30:15` when the seconds matter.
fn hh_mm(time: jiff::civil::Time) -> String {
    let format = if time.second() == 0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    time.strftime(format).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the command with a fixed clock; returns (code, stdout, stderr).
    fn next(line: &str) -> (i32, String, String) {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let now = "2025-01-01T00:00:00Z".parse().unwrap();
        let code = run(&args, now, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn prints_moved_note_in_a_gap() {
        let line = "--tz America/New_York --from 2025-03-08T12:00:00Z --count 2 30 2 * * *";
        let (code, out, err) = next(line);
        assert_eq!((code, err.as_str()), (0, ""));
        let want = "2025-03-09T03:00:00-04:00 (moved: 02:30 does not exist)\n\
                    2025-03-10T02:30:00-04:00\n";
        assert_eq!(out, want);
    }

    #[test]
    fn prints_repeated_note_for_interval_jobs() {
        let line = "--tz=America/New_York --from=2025-11-02T05:40:00Z --count=2 */30 * * * *";
        let (_, out, _) = next(line);
        let want = "2025-11-02T01:00:00-05:00 (repeated: 01:00 occurs twice)\n\
                    2025-11-02T01:30:00-05:00 (repeated: 01:30 occurs twice)\n";
        assert_eq!(out, want);
    }

    #[test]
    fn defaults_to_utc_now_and_five_lines() {
        let (code, out, _) = next("0 9 * * 1");
        assert_eq!(code, 0);
        assert_eq!(out.lines().count(), 5);
        assert_eq!(out.lines().next(), Some("2025-01-06T09:00:00+00:00"));
    }

    #[test]
    fn help_exits_zero() {
        let (code, out, _) = next("--help");
        assert_eq!(code, 0);
        assert!(out.starts_with("usage: edgecron next"));
    }

    #[test]
    fn bad_input_exits_two() {
        for line in [
            "0 60 * * *",
            "--tz Mars/Base 0 0 * * *",
            "--count 1001 * * * * *",
            "--count 0 * * * * *",
            "--from yesterday * * * * *",
            "--tz",
            "--frobnicate 1 * * * * *",
            "",
        ] {
            let (code, out, err) = next(line);
            assert_eq!(code, 2, "{line}");
            assert_eq!(out, "", "{line}");
            assert!(err.starts_with("edgecron next: "), "{line}: {err}");
        }
        let (_, _, err) = next("--tz Mars/Base 0 0 * * *");
        assert!(err.starts_with("edgecron next: timezone: unknown zone Mars/Base\n"));
    }
}
