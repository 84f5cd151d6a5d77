//! Tables of worked examples and seeded property tests for the cron module.
//!
//! The property tests check croner's search against `Spec::matches`, an
//! independent matcher, and against a minute-by-minute brute force.

use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::parse::parse_spec;
use super::{DstNote, Schedule};

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The next fires as UTC strings, with a `~moved`/`~repeated` suffix.
fn fires(expr: &str, zone: &str, after: &str, count: usize) -> Vec<String> {
    let schedule = Schedule::parse(expr, zone).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let preview = schedule.preview(ts(after), count);
    let line = |o: &super::Occurrence| {
        let note = o.note.map_or(String::new(), |n| format!("~{}", n.as_str()));
        format!("{}{note}", o.at.timestamp())
    };
    preview.iter().map(line).collect()
}

/// (expression, zone, after, expected fires in UTC).
const CASES: &[(&str, &str, &str, &[&str])] = &[
    // The examples from the issue.
    (
        "30 2 * * *",
        "America/New_York",
        "2025-03-08T12:00:00Z",
        &["2025-03-09T07:00:00Z~moved", "2025-03-10T06:30:00Z"],
    ),
    (
        "30 1 * * *",
        "America/New_York",
        "2025-11-01T12:00:00Z",
        &["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"],
    ),
    (
        "0 0 1 * MON",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-06T00:00:00Z", "2025-01-13T00:00:00Z"],
    ),
    (
        "0 9 * * 1",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-06T09:00:00Z"],
    ),
    (
        "0 0 29 2 *",
        "UTC",
        "2025-03-01T00:00:00Z",
        &["2028-02-29T00:00:00Z"],
    ),
    (
        "0 0 29 2 *",
        "UTC",
        "2096-03-01T00:00:00Z",
        &["2104-02-29T00:00:00Z"],
    ),
    (
        "0 0 29 2 *",
        "Europe/Berlin",
        "2096-03-01T00:00:00Z",
        &["2104-02-28T23:00:00Z"],
    ),
    // New York, interval jobs: real time, both passes, gap skipped.
    (
        "*/15 * * * *",
        "America/New_York",
        "2025-11-02T05:40:00Z",
        &[
            "2025-11-02T05:45:00Z",
            "2025-11-02T06:00:00Z~repeated",
            "2025-11-02T06:15:00Z~repeated",
        ],
    ),
    (
        "*/30 * * * *",
        "America/New_York",
        "2025-03-09T06:15:00Z",
        &[
            "2025-03-09T06:30:00Z",
            "2025-03-09T07:00:00Z",
            "2025-03-09T07:30:00Z",
        ],
    ),
    (
        "*/30 2 * * *",
        "America/New_York",
        "2025-03-08T12:00:00Z",
        &["2025-03-10T06:00:00Z"],
    ),
    // Hour ranges and lists are fixed-time: gap moves, second pass skipped.
    (
        "30 1-3 * * *",
        "America/New_York",
        "2025-03-09T05:00:00Z",
        &[
            "2025-03-09T06:30:00Z",
            "2025-03-09T07:00:00Z~moved",
            "2025-03-09T07:30:00Z",
        ],
    ),
    (
        "30 1-3 * * *",
        "America/New_York",
        "2025-11-02T05:00:00Z",
        &[
            "2025-11-02T05:30:00Z",
            "2025-11-02T07:30:00Z",
            "2025-11-02T08:30:00Z",
        ],
    ),
    (
        "0 1,13 * * *",
        "America/New_York",
        "2025-11-02T04:00:00Z",
        &["2025-11-02T05:00:00Z", "2025-11-02T18:00:00Z"],
    ),
    (
        "0,30 2 * * *",
        "America/New_York",
        "2025-03-08T12:00:00Z",
        &["2025-03-09T07:00:00Z~moved", "2025-03-10T06:00:00Z"],
    ),
    // A star in the seconds field makes a 6-field job follow real time.
    (
        "*/20 30 2 * * *",
        "America/New_York",
        "2025-03-08T12:00:00Z",
        &["2025-03-10T06:30:00Z", "2025-03-10T06:30:20Z"],
    ),
    (
        "0 30 2 * * *",
        "America/New_York",
        "2025-03-08T12:00:00Z",
        &["2025-03-09T07:00:00Z~moved"],
    ),
    // Berlin, spring (02:00 -> 03:00) and fall (03:00 -> 02:00).
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2025-03-29T12:00:00Z",
        &["2025-03-30T01:00:00Z~moved", "2025-03-31T00:30:00Z"],
    ),
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2025-10-25T12:00:00Z",
        &["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"],
    ),
    (
        "*/30 2 * * *",
        "Europe/Berlin",
        "2025-10-25T12:00:00Z",
        &[
            "2025-10-26T00:00:00Z",
            "2025-10-26T00:30:00Z",
            "2025-10-26T01:00:00Z~repeated",
            "2025-10-26T01:30:00Z~repeated",
            "2025-10-27T01:00:00Z",
        ],
    ),
    (
        "*/30 2 * * *",
        "Europe/Berlin",
        "2025-03-29T12:00:00Z",
        &["2025-03-31T00:00:00Z"],
    ),
    // Lord Howe shifts by 30 minutes: 02:00 -> 02:30 in October,
    // 02:00 -> 01:30 in April.
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2025-10-04T00:00:00Z",
        &["2025-10-04T15:30:00Z~moved", "2025-10-05T15:15:00Z"],
    ),
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2025-04-05T00:00:00Z",
        &["2025-04-05T14:45:00Z", "2025-04-06T15:15:00Z"],
    ),
    (
        "*/20 1 * * *",
        "Australia/Lord_Howe",
        "2025-04-05T14:30:00Z",
        &[
            "2025-04-05T14:40:00Z",
            "2025-04-05T15:10:00Z~repeated",
            "2025-04-06T14:30:00Z",
        ],
    ),
    (
        "*/10 2 * * *",
        "Australia/Lord_Howe",
        "2025-10-04T15:00:00Z",
        &["2025-10-04T15:30:00Z", "2025-10-04T15:40:00Z"],
    ),
    // Santiago springs forward at midnight, so a daily midnight job moves.
    (
        "@daily",
        "America/Santiago",
        "2025-09-06T12:00:00Z",
        &["2025-09-07T04:00:00Z~moved", "2025-09-08T03:00:00Z"],
    ),
    // Syntax: steps, names, leading zeros, whitespace, Sunday as 0 and 7.
    (
        "*/7 * * * *",
        "UTC",
        "2025-01-01T00:50:00Z",
        &["2025-01-01T00:56:00Z", "2025-01-01T01:00:00Z"],
    ),
    (
        "10-50/15 * * * *",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-01T00:10:00Z",
            "2025-01-01T00:25:00Z",
            "2025-01-01T00:40:00Z",
            "2025-01-01T01:10:00Z",
        ],
    ),
    (
        "0 0 * jan-Mar,dec sun",
        "UTC",
        "2025-03-29T00:00:00Z",
        &["2025-03-30T00:00:00Z", "2025-12-07T00:00:00Z"],
    ),
    (
        "00 09 * * 01",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-06T09:00:00Z"],
    ),
    (
        "0\t9  *  * \t 1",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-06T09:00:00Z"],
    ),
    (
        "0 0 * * 7",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-05T00:00:00Z"],
    ),
    (
        "0 0 * * 0",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-05T00:00:00Z"],
    ),
    (
        "0 0 * * FRI-SUN",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-03T00:00:00Z",
            "2025-01-04T00:00:00Z",
            "2025-01-05T00:00:00Z",
            "2025-01-10T00:00:00Z",
        ],
    ),
    (
        "0 0 * * 1-5/2",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-03T00:00:00Z", "2025-01-06T00:00:00Z"],
    ),
    (
        "*/20 * * * * *",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-01T00:00:20Z",
            "2025-01-01T00:00:40Z",
            "2025-01-01T00:01:00Z",
        ],
    ),
    // The OR rule, and AND when a day field starts with `*` or is `?`.
    (
        "0 0 1,15 * MON",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-06T00:00:00Z",
            "2025-01-13T00:00:00Z",
            "2025-01-15T00:00:00Z",
        ],
    ),
    (
        "0 0 */2 * MON",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-13T00:00:00Z",
            "2025-01-27T00:00:00Z",
            "2025-02-03T00:00:00Z",
        ],
    ),
    (
        "0 0 1-31 * MON",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-02T00:00:00Z"],
    ),
    (
        "0 0 ? * MON",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-06T00:00:00Z"],
    ),
    (
        "0 0 13 * */7",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-04-13T00:00:00Z",
            "2025-07-13T00:00:00Z",
            "2026-09-13T00:00:00Z",
        ],
    ),
    (
        "0 0 30 2 MON",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-02-03T00:00:00Z"],
    ),
    // L, LW, nW, n#k, nL.
    (
        "0 0 L * *",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-31T00:00:00Z",
            "2025-02-28T00:00:00Z",
            "2025-03-31T00:00:00Z",
        ],
    ),
    (
        "0 0 L 2 *",
        "UTC",
        "2027-03-01T00:00:00Z",
        &["2028-02-29T00:00:00Z"],
    ),
    (
        "0 0 LW * *",
        "UTC",
        "2025-04-01T00:00:00Z",
        &[
            "2025-04-30T00:00:00Z",
            "2025-05-30T00:00:00Z",
            "2025-06-30T00:00:00Z",
        ],
    ),
    (
        "0 0 L,LW * *",
        "UTC",
        "2025-05-01T00:00:00Z",
        &[
            "2025-05-30T00:00:00Z",
            "2025-05-31T00:00:00Z",
            "2025-06-30T00:00:00Z",
        ],
    ),
    (
        "0 0 15W * *",
        "UTC",
        "2025-02-01T00:00:00Z",
        &[
            "2025-02-14T00:00:00Z",
            "2025-03-14T00:00:00Z",
            "2025-04-15T00:00:00Z",
        ],
    ),
    (
        "0 0 15W 6 *",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-06-16T00:00:00Z"],
    ),
    (
        "0 0 1W 11 *",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-11-03T00:00:00Z"],
    ),
    (
        "0 0 31W * *",
        "UTC",
        "2025-08-01T00:00:00Z",
        &["2025-08-29T00:00:00Z", "2025-10-31T00:00:00Z"],
    ),
    (
        "0 0 ? * 5#3",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-17T00:00:00Z", "2025-02-21T00:00:00Z"],
    ),
    (
        "0 0 * * fri#3",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-17T00:00:00Z"],
    ),
    (
        "0 0 * * 5L",
        "UTC",
        "2025-01-01T00:00:00Z",
        &[
            "2025-01-31T00:00:00Z",
            "2025-02-28T00:00:00Z",
            "2025-03-28T00:00:00Z",
        ],
    ),
    (
        "0 0 * * 7L",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-26T00:00:00Z"],
    ),
    (
        "0 0 ? 2 1#5",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2044-02-29T00:00:00Z"],
    ),
    // Macros.
    (
        "@yearly",
        "UTC",
        "2025-06-01T00:00:00Z",
        &["2026-01-01T00:00:00Z"],
    ),
    (
        "@annually",
        "UTC",
        "2025-06-01T00:00:00Z",
        &["2026-01-01T00:00:00Z"],
    ),
    (
        "@monthly",
        "UTC",
        "2025-06-01T00:00:00Z",
        &["2025-07-01T00:00:00Z"],
    ),
    (
        "@weekly",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-05T00:00:00Z"],
    ),
    (
        "@DAILY",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-02T00:00:00Z"],
    ),
    (
        "@midnight",
        "UTC",
        "2025-01-01T00:00:00Z",
        &["2025-01-02T00:00:00Z"],
    ),
    (
        "@hourly",
        "America/New_York",
        "2025-11-02T05:30:00Z",
        &["2025-11-02T06:00:00Z~repeated", "2025-11-02T07:00:00Z"],
    ),
];

#[test]
fn table_of_examples() {
    for (expr, zone, after, want) in CASES {
        let got = fires(expr, zone, after, want.len());
        assert_eq!(got, *want, "{expr} in {zone} after {after}");
    }
}

/// (expression, exact error message).
const ERRORS: &[(&str, &str)] = &[
    ("60 0 * * *", "minute: 60 is out of range 0-59"),
    ("60 * * * * *", "second: 60 is out of range 0-59"),
    ("0 24 * * *", "hour: 24 is out of range 0-23"),
    ("0 0 0 * *", "day-of-month: 0 is out of range 1-31"),
    ("0 0 * 13 *", "month: 13 is out of range 1-12"),
    ("0 0 * * 8", "day-of-week: 8 is out of range 0-7"),
    (
        "0 0 * * 99999999999",
        "day-of-week: 99999999999 is out of range 0-7",
    ),
    ("0 0 * * FOO", "day-of-week: unknown name FOO"),
    ("0 0 * jan-foo *", "month: unknown name foo"),
    ("0 0 * * JAN", "day-of-week: unknown name JAN"),
    ("0 0 * *", "expected 5 or 6 fields, found 4"),
    ("0 0 0 1 1 * 2030", "expected 5 or 6 fields, found 7"),
    ("", "expected 5 or 6 fields, found 0"),
    (
        "0 0 30 2 *",
        "schedule never fires: day-of-month 30 does not occur in month 2",
    ),
    (
        "0 0 31 4,6 *",
        "schedule never fires: day-of-month 31 does not occur in months 4,6",
    ),
    (
        "0 0 31W apr *",
        "schedule never fires: day-of-month 31W does not occur in month apr",
    ),
    (
        "0 0 30,31 FEB ?",
        "schedule never fires: day-of-month 30,31 does not occur in month FEB",
    ),
    (
        "0 0 */30 2 1#5",
        "schedule never fires: no day in month 2 matches both day-of-month */30 and \
         day-of-week 1#5",
    ),
    (
        "@reboot",
        "@reboot is not supported: edgecron has no boot trigger (start the task from a \
         systemd unit instead)",
    ),
    ("@fortnightly", "unknown macro @fortnightly"),
    ("*/0 * * * *", "minute: step 0 is out of range 1-59"),
    ("*/60 * * * *", "minute: step 60 is out of range 1-59"),
    ("0 */x * * *", "hour: step \"x\" is not a number"),
    (
        "5/15 * * * *",
        "minute: 5/15: a step needs * or a range before the slash, as in */15",
    ),
    ("0 5-2 * * *", "hour: range 5-2 is backwards"),
    (
        "0 0 * * 1#6",
        "day-of-week: 1#6: occurrence 6 is out of range 1-5",
    ),
    (
        "0 0 * * L",
        "day-of-week: L needs a weekday before it, as in 5L for the last Friday",
    ),
    ("0 0 * * 8L", "day-of-week: 8 is out of range 0-7"),
    ("1,,2 * * * *", "minute: empty list item in \"1,,2\""),
    (
        "? * * * *",
        "minute: ? is only allowed in day-of-month and day-of-week",
    ),
    ("x * * * *", "minute: \"x\" is not a number"),
    ("0 L * * *", "hour: \"L\" is not a number"),
    ("0 0 32W * *", "day-of-month: 32 is out of range 1-31"),
    ("0 0 1-L * *", "day-of-month: \"L\" is not a number"),
    ("0 0 * * 1-", "day-of-week: missing value"),
];

#[test]
fn every_error_has_its_exact_message() {
    for (expr, want) in ERRORS {
        let err = Schedule::parse(expr, "UTC").expect_err(expr);
        assert_eq!(err.to_string(), *want, "{expr}");
    }
}

#[test]
fn unknown_zone_is_rejected() {
    let err = Schedule::parse("* * * * *", "Mars/Base").unwrap_err();
    assert_eq!(err.to_string(), "timezone: unknown zone Mars/Base");
    assert_eq!(err.field, Some("timezone"));
    assert!(super::parse_zone("Europe/Berlin").is_ok());
}

#[test]
fn error_names_its_field() {
    let err = Schedule::parse("0 0 * * FOO", "UTC").unwrap_err();
    assert_eq!(err.field, Some("day-of-week"));
    assert_eq!(err.message, "unknown name FOO");
}

/// A schedule that can never fire is refused by the static check, which
/// must stay far below the cost of a search.
#[test]
fn never_firing_schedules_are_rejected_quickly() {
    let start = std::time::Instant::now();
    for expr in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "0 0 */30 2 1#5",
        "0 0 31W 2 *",
    ] {
        assert!(Schedule::parse(expr, "UTC").is_err(), "{expr}");
    }
    assert!(start.elapsed() < std::time::Duration::from_millis(200));
}

#[test]
fn accessors_return_the_input() {
    let schedule = Schedule::parse("@daily", "Europe/Berlin").unwrap();
    assert_eq!(
        (schedule.expr(), schedule.zone_name()),
        ("@daily", "Europe/Berlin")
    );
    assert_eq!(DstNote::Moved.as_str(), "moved");
    assert_eq!(DstNote::Repeated.as_str(), "repeated");
}

#[test]
fn next_after_is_none_past_the_search_limit() {
    let schedule = Schedule::parse("0 0 29 2 *", "UTC").unwrap();
    assert_eq!(schedule.next_after(ts("4999-03-01T00:00:00Z")), None);
    assert_eq!(schedule.preview(ts("4999-03-01T00:00:00Z"), 3), vec![]);
}

// ---- property tests -------------------------------------------------------

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kathmandu",
];

/// A random field of plain items between `min` and `max`, biased towards
/// `hot` values (the DST hours) so that gaps and folds get exercised.
fn plain_field(rng: &mut fastrand::Rng, min: u32, max: u32, hot: Option<(u32, u32)>) -> String {
    let value = |rng: &mut fastrand::Rng| match hot {
        Some((lo, hi)) if rng.bool() => rng.u32(lo..=hi),
        _ => rng.u32(min..=max),
    };
    let item = |rng: &mut fastrand::Rng| match rng.u8(0..5) {
        0 => format!("*/{}", rng.u32(1..=(max - min) / 2 + 1)),
        1 | 2 => value(rng).to_string(),
        3 => {
            let (a, b) = (value(rng), value(rng));
            format!("{}-{}", a.min(b), a.max(b))
        }
        _ => {
            let (a, b) = (value(rng), value(rng));
            format!("{}-{}/{}", a.min(b), a.max(b), rng.u32(1..=5))
        }
    };
    match rng.u8(0..10) {
        0..=2 => "*".into(),
        3..=7 => item(rng),
        _ => format!("{},{}", item(rng), item(rng)),
    }
}

fn day_of_month_field(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..14) {
        0..=6 => "*".into(),
        7 => "?".into(),
        8 => "L".into(),
        9 => "LW".into(),
        10 => format!("{}W", rng.u32(1..=31)),
        11 => "L,LW".into(),
        _ => plain_field(rng, 1, 31, None),
    }
}

fn day_of_week_field(rng: &mut fastrand::Rng) -> String {
    const NAMES: [&str; 7] = ["SUN", "mon", "Tue", "WED", "thu", "FRI", "sat"];
    match rng.u8(0..14) {
        0..=6 => "*".into(),
        7 => "?".into(),
        8 => format!("{}#{}", rng.u32(0..=7), rng.u32(1..=5)),
        9 => format!("{}L", rng.u32(0..=7)),
        10 => format!("{}-{}", NAMES[rng.usize(0..3)], NAMES[rng.usize(3..7)]),
        _ => plain_field(rng, 0, 7, None),
    }
}

fn random_expr(rng: &mut fastrand::Rng, with_seconds: bool) -> String {
    let month = if rng.u8(0..5) == 0 {
        plain_field(rng, 1, 12, None)
    } else {
        "*".into()
    };
    let fields = [
        plain_field(rng, 0, 59, Some((0, 5))),
        plain_field(rng, 0, 23, Some((0, 3))),
        day_of_month_field(rng),
        month,
        day_of_week_field(rng),
    ];
    let joined = fields.join(" ");
    if with_seconds {
        format!("{} {joined}", plain_field(rng, 0, 59, None))
    } else {
        joined
    }
}

/// A random start: half in the four hours before one of the zone's transitions, half anywhere
/// in 2020-2035.
fn random_start(rng: &mut fastrand::Rng, tz: &TimeZone) -> Timestamp {
    let anywhere = Timestamp::from_second(rng.i64(1_577_836_800..2_082_758_400)).unwrap();
    if rng.bool()
        && let Some(t) = tz.following(anywhere).next()
    {
        let shift = rng.i64(-4 * 3600..3600) / 60 * 60;
        return t.timestamp() + jiff::SignedDuration::from_secs(shift);
    }
    anywhere
}

/// Whether `at` is a spring-forward transition whose gap holds a match.
fn gap_holds_match(spec: &super::spec::Spec, tz: &TimeZone, at: Timestamp, step: i64) -> bool {
    let before = tz.to_offset(at - jiff::SignedDuration::from_nanos(1));
    let after = tz.to_offset(at);
    if after <= before {
        return false;
    }
    let (lo, hi) = (before.to_datetime(at), after.to_datetime(at));
    let mut dt = lo;
    while dt < hi {
        if spec.matches(dt) {
            return true;
        }
        dt += jiff::SignedDuration::from_secs(step);
    }
    false
}

fn is_second_pass(tz: &TimeZone, at: Timestamp) -> bool {
    let offset = tz.to_offset(at);
    match tz.to_ambiguous_timestamp(offset.to_datetime(at)).offset() {
        AmbiguousOffset::Fold { before, after } => before != after && offset == after,
        _ => false,
    }
}

/// Every fire instant in (`after`, `until`], by brute force over minutes.
fn brute_force(
    spec: &super::spec::Spec,
    tz: &TimeZone,
    after: Timestamp,
    until: Timestamp,
) -> Vec<Timestamp> {
    let minute = jiff::SignedDuration::from_secs(60);
    let mut t = Timestamp::from_second(after.as_second() / 60 * 60).unwrap();
    let mut out = Vec::new();
    while t <= until {
        let civil = tz.to_offset(t).to_datetime(t);
        let fires = if spec.matches(civil) {
            !(spec.fixed_time && is_second_pass(tz, t))
        } else {
            spec.fixed_time && gap_holds_match(spec, tz, t, 60)
        };
        if fires && t > after {
            out.push(t);
        }
        t += minute;
    }
    out
}

/// Checks the laws every preview must obey, and returns the fire instants.
fn check_preview(
    expr: &str,
    zone: &str,
    start: Timestamp,
    step: i64,
) -> Option<Vec<super::Occurrence>> {
    let schedule = match Schedule::parse(expr, zone) {
        Ok(s) => s,
        Err(e) if e.message.starts_with("schedule never fires") => return None,
        Err(e) => panic!("generated {expr:?} was rejected: {e}"),
    };
    let spec = parse_spec(expr).unwrap();
    let tz = TimeZone::get(zone).unwrap();
    let preview = schedule.preview(start, 6);
    let context = format!("{expr:?} in {zone} after {start}");
    let mut previous = start;
    for occurrence in &preview {
        let at = occurrence.at.timestamp();
        assert!(at > previous, "{context}: {at} not after {previous}");
        previous = at;
        let civil = occurrence.at.datetime();
        match occurrence.note {
            Some(DstNote::Moved) => {
                assert!(spec.fixed_time, "{context}: interval job moved to {at}");
                assert!(
                    gap_holds_match(&spec, &tz, at, step),
                    "{context}: bad move to {at}"
                );
            }
            Some(DstNote::Repeated) => {
                assert!(!spec.fixed_time, "{context}: fixed job repeated at {at}");
                assert!(
                    spec.matches(civil) && is_second_pass(&tz, at),
                    "{context}: {at}"
                );
            }
            None => {
                assert!(
                    spec.matches(civil),
                    "{context}: {at} ({civil}) does not match"
                );
                assert!(
                    !(spec.fixed_time && is_second_pass(&tz, at)),
                    "{context}: {at}"
                );
            }
        }
    }
    Some(preview)
}

#[test]
fn property_fires_match_and_none_are_missed() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_c407);
    let (mut checked, mut notes) = (0, 0);
    for _ in 0..600 {
        let expr = random_expr(&mut rng, false);
        let zone = ZONES[rng.usize(..ZONES.len())];
        let tz = TimeZone::get(zone).unwrap();
        let start = random_start(&mut rng, &tz);
        let Some(preview) = check_preview(&expr, zone, start, 60) else {
            continue;
        };
        notes += preview.iter().filter(|o| o.note.is_some()).count();
        let got: Vec<_> = preview.iter().map(|o| o.at.timestamp()).collect();

        // Brute force over at most two days, or up to the last fire.
        let horizon = start + jiff::SignedDuration::from_hours(48);
        let until = got.last().map_or(horizon, |&last| last.min(horizon));
        let spec = parse_spec(&expr).unwrap();
        let want = brute_force(&spec, &tz, start, until);
        let got: Vec<_> = got.into_iter().filter(|&t| t <= until).collect();
        assert_eq!(got, want, "{expr:?} in {zone} after {start}");
        checked += 1;
    }
    assert!(checked > 500, "only {checked} expressions could fire");
    // The starts cluster around transitions, so DST notes must show up.
    assert!(notes > 20, "only {notes} fires had a DST note");
}

#[test]
fn property_second_granularity_fires_match() {
    let mut rng = fastrand::Rng::with_seed(0xdec0_de42);
    for _ in 0..400 {
        let expr = random_expr(&mut rng, true);
        let zone = ZONES[rng.usize(..ZONES.len())];
        let tz = TimeZone::get(zone).unwrap();
        let start = random_start(&mut rng, &tz) + jiff::SignedDuration::from_secs(rng.i64(0..60));
        check_preview(&expr, zone, start, 1);
    }
}
