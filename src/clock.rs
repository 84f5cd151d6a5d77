//! The wall clock the scheduler reads, with an optional test offset.
//!
//! Tests of clock jumps cannot move the machine's clock, so when
//! `EDGECRON_TEST_CLOCK_OFFSET_FILE` names a file, the number of seconds
//! in it (possibly negative, fractional) is added to the system time on
//! every read. Writing a new number into the file is a clock jump as far as
//! edgecron can tell; the monotonic clock is untouched. Unset in
//! production, this costs one environment lookup at startup.

use std::path::PathBuf;
use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};

static OFFSET_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The current wall-clock instant.
pub fn now() -> Timestamp {
    let now = Timestamp::now();
    match offset() {
        Some(offset) => now.checked_add(offset).unwrap_or(now),
        None => now,
    }
}

fn offset() -> Option<SignedDuration> {
    let path = OFFSET_FILE
        .get_or_init(|| std::env::var_os("EDGECRON_TEST_CLOCK_OFFSET_FILE").map(PathBuf::from))
        .as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    let seconds: f64 = text.trim().parse().ok()?;
    SignedDuration::try_from_secs_f64(seconds).ok()
}
