//! What to do with an occurrence that comes due late: after downtime, a
//! forward clock jump, or a busy loop.
//!
//! An occurrence at most `ON_TIME` late is simply on time. Beyond that, the
//! task's catch-up policy decides, within its misfire grace:
//! - `latest`: only the most recent due occurrence runs;
//! - `all`: each due occurrence runs, oldest first, at most `limit` of them
//!   (the most recent ones);
//! - `none`: none of them runs.
//!
//! Everything that does not run is reported as missed in one summary, so a
//! device that was off for a month neither floods nor writes a row per lost
//! minute. Pure: the clock is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::cron::Schedule;
use crate::model::CatchUp;

/// Missed occurrences are counted one by one up to this many; beyond it the
/// count is a lower bound (the summary says so).
const COUNT_CAP: u64 = 10_000;

/// Lateness that still counts as on time (a busy loop, a slow disk).
const ON_TIME: SignedDuration = SignedDuration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The occurrences to run now, oldest first.
    pub run: Vec<Timestamp>,
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

/// A task's catch-up settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub catch_up: CatchUp,
    pub grace: Duration,
    pub limit: usize,
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
pub fn plan(schedule: &Schedule, due: Timestamp, now: Timestamp, rule: Rule) -> Plan {
    let grace = SignedDuration::try_from(rule.grace).unwrap_or(SignedDuration::MAX);
    let following = schedule.next_after(due);
    let only_one_due = following.is_none_or(|f| f > now);
    if only_one_due && now.duration_since(due) <= ON_TIME {
        return Plan {
            run: vec![due],
            missed: None,
            next: following,
        };
    }
    let latest = if only_one_due {
        due
    } else {
        latest_at_or_before(schedule, now, due)
    };
    let next = if latest == due {
        following
    } else {
        schedule.next_after(latest)
    };

    let oldest_in_grace = now - grace;
    let run: Vec<Timestamp> = match rule.catch_up {
        CatchUp::None => Vec::new(),
        CatchUp::Latest if latest >= oldest_in_grace => vec![latest],
        CatchUp::Latest => Vec::new(),
        CatchUp::All => recent(
            schedule,
            due.max(oldest_in_grace),
            latest,
            rule.limit.max(1),
        ),
    };
    let missed = match run.first() {
        Some(first_run) if *first_run == due => None,
        Some(first_run) => {
            let last =
                latest_at_or_before(schedule, *first_run - SignedDuration::from_nanos(1), due);
            Some(Missed {
                first: due,
                last,
                count: count(schedule, due, last),
            })
        }
        None => Some(Missed {
            first: due,
            last: latest,
            count: count(schedule, due, latest),
        }),
    };
    Plan { run, missed, next }
}

/// The last `limit` occurrences in `[from, to]`, oldest first.
fn recent(schedule: &Schedule, from: Timestamp, to: Timestamp, limit: usize) -> Vec<Timestamp> {
    let mut kept = VecDeque::with_capacity(limit);
    let mut at = from - SignedDuration::from_nanos(1);
    let mut steps = 0;
    while let Some(t) = schedule.next_after(at).filter(|t| *t <= to) {
        if kept.len() == limit {
            kept.pop_front();
        }
        kept.push_back(t);
        at = t;
        steps += 1;
        // A per-second schedule over a day of grace is 86,400 steps; stop
        // well beyond that rather than loop without bound.
        if steps >= 100 * COUNT_CAP {
            break;
        }
    }
    kept.into()
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

    fn rule(catch_up: CatchUp, grace: Duration, limit: usize) -> Rule {
        Rule {
            catch_up,
            grace,
            limit,
        }
    }

    fn latest(grace: Duration) -> Rule {
        rule(CatchUp::Latest, grace, 10)
    }

    #[test]
    fn an_occurrence_due_now_just_runs() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:05:00Z"),
            ts("2025-01-01T00:05:00.2Z"),
            latest(HOUR),
        );
        assert_eq!(p.run, vec![ts("2025-01-01T00:05:00Z")]);
        assert_eq!(p.missed, None);
        assert_eq!(p.next, Some(ts("2025-01-01T00:06:00Z")));
    }

    #[test]
    fn after_downtime_only_the_latest_runs_and_the_rest_are_counted() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:10:30Z"),
            latest(HOUR),
        );
        assert_eq!(p.run, vec![ts("2025-01-01T00:10:00Z")]);
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
            latest(HOUR),
        );
        assert!(p.run.is_empty());
        assert_eq!(p.missed.unwrap().count, 1);
        assert_eq!(p.next, Some(ts("2025-01-02T03:00:00Z")));
    }

    #[test]
    fn a_month_off_is_one_run_and_a_bounded_count() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-02-01T00:00:30Z"),
            latest(HOUR),
        );
        assert_eq!(p.run, vec![ts("2025-02-01T00:00:00Z")]);
        assert_eq!(p.missed.unwrap().count, COUNT_CAP);
    }

    #[test]
    fn catch_up_none_runs_nothing_late() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:10:30Z"),
            rule(CatchUp::None, HOUR, 10),
        );
        assert!(p.run.is_empty());
        assert_eq!(p.missed.unwrap().count, 11);
        assert_eq!(p.next, Some(ts("2025-01-01T00:11:00Z")));
    }

    #[test]
    fn catch_up_all_runs_the_most_recent_within_the_limit_oldest_first() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:10:30Z"),
            rule(CatchUp::All, HOUR, 3),
        );
        let expected: Vec<Timestamp> = ["00:08", "00:09", "00:10"]
            .iter()
            .map(|t| ts(&format!("2025-01-01T{t}:00Z")))
            .collect();
        assert_eq!(p.run, expected);
        let missed = p.missed.unwrap();
        assert_eq!((missed.count, missed.last), (8, ts("2025-01-01T00:07:00Z")));
    }

    #[test]
    fn catch_up_all_respects_the_grace() {
        let p = plan(
            &every_minute(),
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:10:30Z"),
            rule(CatchUp::All, Duration::from_secs(150), 100),
        );
        assert_eq!(
            p.run.len(),
            3,
            "00:08, 00:09, 00:10 lie within 150 s of 00:10:30"
        );
    }

    #[test]
    fn a_little_lateness_is_on_time_for_every_policy() {
        for catch_up in [CatchUp::None, CatchUp::Latest, CatchUp::All] {
            let p = plan(
                &every_minute(),
                ts("2025-01-01T00:05:00Z"),
                ts("2025-01-01T00:05:20Z"),
                rule(catch_up, Duration::ZERO, 1),
            );
            assert_eq!(p.run, vec![ts("2025-01-01T00:05:00Z")], "{catch_up:?}");
        }
    }
}
