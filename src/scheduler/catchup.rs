//! What to do with an occurrence that comes due late: after downtime, a
//! forward clock jump, or a busy loop.
//!
//! The rule (catch-up "latest"): when several occurrences are due at once,
//! only the most recent runs, and only if it is at most the misfire grace
//! old; the others are reported as missed in one summary, so a device that
//! was off for a month neither floods nor writes a row per lost minute.
//! Pure: the clock is passed in.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::cron::Schedule;

/// Missed occurrences are counted one by one up to this many; beyond it the
/// count is a lower bound (the summary says so).
const COUNT_CAP: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The occurrence to run now, if any.
    pub run: Option<Timestamp>,
    /// Occurrences that will not run.
    pub missed: Option<Missed>,
    /// The first occurrence after everything due.
    pub next: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub first: Timestamp,
    pub last: Timestamp,
    pub count: u64,
}

impl Missed {
    pub fn describe(&self) -> String {
        let at_least = if self.count >= COUNT_CAP {
            "at least "
        } else {
            ""
        };
        format!(
            "missed={at_least}{} first={} last={} reason=\"service down or clock jumped\"",
            self.count, self.first, self.last
        )
    }
}

/// Plans the occurrence `due` (known to match `schedule`, and `<= now`).
pub fn plan(schedule: &Schedule, due: Timestamp, now: Timestamp, grace: Duration) -> Plan {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let following = schedule.next_after(due);
    let latest = match following {
        Some(f) if f <= now => latest_at_or_before(schedule, now, due),
        _ => due,
    };
    let next = if latest == due {
        following
    } else {
        schedule.next_after(latest)
    };

    let in_grace = now.duration_since(latest) <= grace;
    let (run, last_missed) = if in_grace {
        (
            Some(latest),
            (latest != due).then(|| {
                latest_at_or_before(schedule, latest - SignedDuration::from_nanos(1), due)
            }),
        )
    } else {
        (None, Some(latest))
    };
    let missed = last_missed.map(|last| Missed {
        first: due,
        last,
        count: count(schedule, due, last),
    });
    Plan { run, missed, next }
}

/// The latest occurrence at or before `now`, searching windows that double
/// back from `now` so a sparse schedule after a long gap costs a few
/// searches, not one per occurrence. `floor` is a known occurrence.
fn latest_at_or_before(schedule: &Schedule, now: Timestamp, floor: Timestamp) -> Timestamp {
    let just_before_floor = floor - SignedDuration::from_secs(1);
    let mut window = SignedDuration::from_secs(60);
    loop {
        let from = (now - window).max(just_before_floor);
        if let Some(first) = schedule.next_after(from).filter(|t| *t <= now) {
            let mut latest = first;
            while let Some(t) = schedule.next_after(latest).filter(|t| *t <= now) {
                latest = t;
            }
            return latest;
        }
        if from == just_before_floor {
            return floor;
        }
        window = window.checked_mul(2).unwrap_or(SignedDuration::MAX);
    }
}

/// Occurrences from `first` to `last` inclusive, up to `COUNT_CAP`.
fn count(schedule: &Schedule, first: Timestamp, last: Timestamp) -> u64 {
    let mut n = 1;
    let mut at = first;
    while n < COUNT_CAP {
        match schedule.next_after(at) {
            Some(t) if t <= last => {
                n += 1;
                at = t;
            }
            _ => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *", "UTC").unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_occurrence_due_now_just_runs() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:05:00Z"),
            ts("2025-01-01T00:05:00.2Z"),
            HOUR,
        );
        assert_eq!(p.run, Some(ts("2025-01-01T00:05:00Z")));
        assert_eq!(p.missed, None);
        assert_eq!(p.next, Some(ts("2025-01-01T00:06:00Z")));
    }

    #[test]
    fn after_downtime_only_the_latest_runs_and_the_rest_are_counted() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:10:30Z"),
            HOUR,
        );
        assert_eq!(p.run, Some(ts("2025-01-01T00:10:00Z")));
        let missed = p.missed.unwrap();
        assert_eq!(missed.count, 10);
        assert_eq!(missed.first, ts("2025-01-01T00:00:00Z"));
        assert_eq!(missed.last, ts("2025-01-01T00:09:00Z"));
        assert_eq!(p.next, Some(ts("2025-01-01T00:11:00Z")));
    }

    #[test]
    fn an_occurrence_older_than_the_grace_is_missed() {
        let daily = Schedule::parse("0 3 * * *", "UTC").unwrap();
        let p = plan(
            &daily,
            ts("2025-01-01T03:00:00Z"),
            ts("2025-01-01T05:00:00Z"),
            HOUR,
        );
        assert_eq!(p.run, None);
        assert_eq!(p.missed.unwrap().count, 1);
        assert_eq!(p.next, Some(ts("2025-01-02T03:00:00Z")));
    }

    #[test]
    fn a_month_off_is_one_run_and_a_bounded_count() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-02-01T00:00:30Z"),
            HOUR,
        );
        assert_eq!(p.run, Some(ts("2025-02-01T00:00:00Z")));
        assert_eq!(p.missed.unwrap().count, COUNT_CAP);
    }
}
