//! Cron expressions and zones from the network (`/cron/next`, task bodies)
//! reach `Schedule::parse`; a panic there or in the search that follows
//! would be a 500, or worse, a scheduler that cannot load a stored task.
//!
//! Besides "no panic", checks the laws the scheduler relies on: fires come
//! strictly after the start and strictly increase, and `next_after` agrees
//! with `preview`.

#![no_main]

use edgecron::cron::{DstNote, Schedule};
use jiff::Timestamp;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// Zones with unusual rules; random strings almost never name a zone.
const ZONES: [&str; 10] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kathmandu",
    "America/Santiago",
    "Antarctica/Troll",
    "Europe/Dublin",
    "Africa/Casablanca",
];

#[derive(Debug, Arbitrary)]
struct Input {
    expr: String,
    zone: Zone,
    from_seconds: i64,
    count: u8,
}

#[derive(Debug, Arbitrary)]
enum Zone {
    Known(u8),
    Any(String),
}

fuzz_target!(|input: Input| {
    let zone = match &input.zone {
        Zone::Known(n) => ZONES[usize::from(*n) % ZONES.len()],
        Zone::Any(name) => name.as_str(),
    };
    let schedule = match Schedule::parse(&input.expr, zone) {
        Ok(schedule) => schedule,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    let from = timestamp_in_range(input.from_seconds);
    let count = usize::from(input.count % 16);
    let fires = schedule.preview(from, count);

    let mut previous = from;
    for fire in &fires {
        let at = fire.at.timestamp();
        assert!(
            at > previous,
            "{:?} fired at {at}, not after {previous}",
            input.expr
        );
        previous = at;
        // The same formatting `/cron/next` does.
        let _ = fire.at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
        let _ = edgecron::model::format_instant(at);
        if fire.note == Some(DstNote::Moved) {
            let _ = schedule.skipped_local_time(fire);
        }
    }
    if count > 0 {
        assert_eq!(
            schedule.next_after(from),
            fires.first().map(|f| f.at.timestamp())
        );
    }
});

/// Maps any i64 onto the seconds jiff can represent.
fn timestamp_in_range(seconds: i64) -> Timestamp {
    let min = Timestamp::MIN.as_second();
    let max = Timestamp::MAX.as_second();
    let span = (max - min + 1) as i128;
    let second = min as i128 + (seconds as i128).rem_euclid(span);
    Timestamp::from_second(second as i64).expect("in range")
}
