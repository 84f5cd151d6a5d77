//! Times `Schedule::parse` and `Schedule::next_after` for a few expressions.
//!
//! A plain loop, no harness: run `cargo bench --bench cron`. Loop counts are
//! fixed so a run takes a few seconds on a small board.

use std::hint::black_box;
use std::time::Instant;

use edgecron::cron::Schedule;
use jiff::Timestamp;

/// (label, expression, zone).
const CASES: &[(&str, &str, &str)] = &[
    ("simple", "0 9 * * 1", "UTC"),
    ("step", "*/15 * * * *", "UTC"),
    ("names", "0 6 * JAN-MAR MON-FRI", "UTC"),
    ("L/W/#", "0 0 LW,15W * 5#3", "UTC"),
    ("leap day", "0 0 29 2 *", "UTC"),
    ("DST zone", "30 2 * * *", "America/New_York"),
    ("DST interval", "*/10 * * * *", "Europe/Berlin"),
];

const PARSE_LOOPS: u32 = 2_000;
const NEXT_LOOPS: u32 = 2_000;

fn main() {
    let start: Timestamp = "2025-03-01T00:00:00Z".parse().unwrap();
    println!(
        "{:<14} {:>12} {:>16}",
        "case", "parse ns/op", "next_after ns/op"
    );
    for (label, expr, zone) in CASES {
        let parse_ns = time_per_op(PARSE_LOOPS, || {
            black_box(Schedule::parse(black_box(expr), zone).unwrap());
        });
        let schedule = Schedule::parse(expr, zone).unwrap();
        // Walk forward so each call searches from a new point, as the
        // scheduler does.
        let mut after = start;
        let next_ns = time_per_op(NEXT_LOOPS, || {
            after = schedule.next_after(black_box(after)).unwrap_or(start);
        });
        println!("{label:<14} {parse_ns:>12.0} {next_ns:>16.0}");
    }
    never_firing();
}

/// How long croner itself searches before giving up on a schedule that
/// never fires: the reason `Schedule::parse` rejects those statically.
fn never_firing() {
    use std::str::FromStr as _;
    println!();
    for pattern in ["0 0 30 2 *", "0 0 31 4,6 *"] {
        let cron = croner::Cron::from_str(pattern).unwrap();
        let from: jiff::civil::DateTime = "2025-01-01T00:00:00".parse().unwrap();
        let began = Instant::now();
        let result = cron.find_next_occurrence(&from, false);
        let (ms, edgecron) = (
            began.elapsed().as_secs_f64() * 1e3,
            Schedule::parse(pattern, "UTC"),
        );
        println!(
            "croner alone on {pattern:<14} {:>8.1} ms to give up ({}); edgecron: {}",
            ms,
            if result.is_err() {
                "no occurrence"
            } else {
                "found one?"
            },
            edgecron.err().map_or("accepted".into(), |e| e.to_string())
        );
    }
}

/// Runs `op` `loops` times and returns the mean nanoseconds per call.
fn time_per_op(loops: u32, mut op: impl FnMut()) -> f64 {
    let began = Instant::now();
    for _ in 0..loops {
        op();
    }
    began.elapsed().as_nanos() as f64 / f64::from(loops)
}
