//! Maps wall clock matches to instants, following cron(8)'s DST rules.
//!
//! croner only ever searches plain wall clock time here (`civil::DateTime`,
//! which has no zone and so no DST); its own DST handling is bypassed
//! because it calls a job fixed-time only when second, minute and hour are
//! single values, while edgecron's rule looks at the first character. This
//! file walks the zone's offset segments in order and decides, per match,
//! whether it fires, fires late (gap) or is a second pass (fold).

use croner::Cron;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};

use super::DstNote;

/// One fire instant and why it is unusual, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fire {
    pub at: Timestamp,
    pub note: Option<DstNote>,
}

/// The first fire strictly after `after`, or `None` when croner finds no
/// match before its year limit (5000).
///
/// Between two transitions a zone has one offset, so wall clock and instant
/// map one to one; each turn of the loop handles one such segment, starting
/// at `from`. A match past the segment's end is either in a gap (a
/// fixed-time job fires at the end of the gap) or belongs to a later
/// segment, where the search resumes at the transition itself.
pub(crate) fn next_fire(
    crons: &[Cron],
    fixed_time: bool,
    tz: &TimeZone,
    after: Timestamp,
) -> Option<Fire> {
    let (mut from, mut inclusive) = (after, false);
    loop {
        let offset = tz.to_offset(from);
        let civil = next_civil(crons, offset.to_datetime(from), inclusive)?;
        let end = tz
            .following(from)
            .map(|t| t.timestamp())
            .find(|&t| t > from);
        match end.filter(|&end| civil >= offset.to_datetime(end)) {
            None => {
                let at = offset.to_timestamp(civil).ok()?;
                if !is_second_pass(tz, civil, offset) {
                    return Some(Fire { at, note: None });
                }
                if !fixed_time {
                    return Some(Fire {
                        at,
                        note: Some(DstNote::Repeated),
                    });
                }
                // A fixed-time job already ran on the first pass.
                (from, inclusive) = (at, false);
            }
            Some(end) => {
                let gap_end = tz.to_offset(end).to_datetime(end);
                if fixed_time && civil < gap_end {
                    return Some(Fire {
                        at: end,
                        note: Some(DstNote::Moved),
                    });
                }
                (from, inclusive) = (end, true);
            }
        }
    }
}

/// The earliest wall clock match of any of the patterns at or after `from`
/// (strictly after unless `inclusive`).
pub(crate) fn next_civil(crons: &[Cron], from: DateTime, inclusive: bool) -> Option<DateTime> {
    crons
        .iter()
        .filter_map(|c| c.find_next_occurrence(&from, inclusive).ok())
        .min()
}

/// Whether `civil`, read with `offset`, is the later of two instants that
/// share this wall clock time.
fn is_second_pass(tz: &TimeZone, civil: DateTime, offset: Offset) -> bool {
    match tz.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Fold { before, after } => before != after && offset == after,
        _ => false,
    }
}

/// The wall clock time a moved fire was scheduled for: the first match in
/// the gap that ends at `at`.
pub(crate) fn skipped_time(crons: &[Cron], tz: &TimeZone, at: Timestamp) -> Option<DateTime> {
    let before = at.checked_sub(jiff::SignedDuration::from_nanos(1)).ok()?;
    let gap_start = tz.to_offset(before).to_datetime(at);
    next_civil(crons, gap_start, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(text: &str) -> Vec<Cron> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build();
        vec![parser.parse(text).unwrap()]
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn fixed_job_in_gap_fires_at_gap_end() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let fire = next_fire(&cron("0 30 2 * * *"), true, &tz, ts("2025-03-09T00:00:00Z"));
        let want = Fire {
            at: ts("2025-03-09T07:00:00Z"),
            note: Some(DstNote::Moved),
        };
        assert_eq!(fire, Some(want));
        let skipped = skipped_time(&cron("0 30 2 * * *"), &tz, want.at).unwrap();
        assert_eq!(skipped.to_string(), "2025-03-09T02:30:00");
    }

    #[test]
    fn interval_job_fires_on_both_passes() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let crons = cron("0 30 1 * * *");
        let first = next_fire(&crons, false, &tz, ts("2025-11-02T05:00:00Z")).unwrap();
        assert_eq!(
            first,
            Fire {
                at: ts("2025-11-02T05:30:00Z"),
                note: None
            }
        );
        let second = next_fire(&crons, false, &tz, first.at).unwrap();
        assert_eq!(
            second,
            Fire {
                at: ts("2025-11-02T06:30:00Z"),
                note: Some(DstNote::Repeated)
            }
        );
    }

    #[test]
    fn starting_on_a_transition_instant_uses_the_new_offset() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let fire = next_fire(&cron("0 0 3 * * *"), true, &tz, ts("2025-03-09T06:59:59Z"));
        assert_eq!(fire.unwrap().at, ts("2025-03-09T07:00:00Z"));
        let fire = next_fire(&cron("0 0 3 * * *"), true, &tz, ts("2025-03-09T07:00:00Z"));
        assert_eq!(fire.unwrap().at, ts("2025-03-10T07:00:00Z"));
    }
}
