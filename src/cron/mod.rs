//! Cron expressions: parsing, validation and the next fire instants in a zone.
//!
//! This module is pure: it never reads the clock (the caller passes "now"),
//! never touches the database and never logs. The one exception is the
//! `edgecron next` subcommand in [`cli`], which defaults `--from` to now.
//!
//! # Implementation
//!
//! - [`parse`] checks the text field by field and builds a `Spec` (bit sets
//!   plus the day rules), so every error names its field and value.
//! - `spec` matches wall clock times, proves at parse time that the schedule
//!   can fire, and writes canonical patterns for croner.
//! - [`dst`] lets croner search wall clock time and maps each match to an
//!   instant under cron(8)'s DST rules.
//!
//! The DST rules, with examples, are in `docs/schedules.md`. In short: a
//! fixed-time job (no `*` at the start of its second, minute or hour field)
//! that falls in a spring-forward gap fires once at the end of the gap, and
//! in a repeated hour fires on the first pass only; any other job follows
//! real time, skipping missing wall clock times and firing on both passes.

mod cli;
mod dst;
mod parse;
mod spec;
#[cfg(test)]
mod tests;

use std::fmt;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

pub use cli::run_next_command;

/// A parsed, validated schedule bound to a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    zone_name: String,
    zone: TimeZone,
    fixed_time: bool,
    /// Usually one pattern; two when croner needs `L,LW` split (see `spec`).
    crons: Vec<Cron>,
}

/// Why an expression or zone was rejected; `field` names the cron field
/// (or "timezone") when the fault lies in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub field: Option<&'static str>,
    pub message: String,
}

/// One upcoming fire: the instant in the schedule's zone, and a note when
/// DST changed what happens at that local time.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub at: Zoned,
    pub note: Option<DstNote>,
}

/// How a DST transition affected one fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstNote {
    /// The local time did not exist (spring forward); the job fired at the
    /// first instant after the gap.
    Moved,
    /// The second pass of a repeated local time (fall back); only jobs that
    /// follow real time fire here.
    Repeated,
}

impl Schedule {
    /// Parses `expr` (5 or 6 fields, or a macro) for the IANA zone `zone`.
    ///
    /// Never searches time: a schedule that can never fire is caught by a
    /// static check on the day and month fields.
    pub fn parse(expr: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_zone(zone)?;
        let spec = parse::parse_spec(expr)?;
        spec.check_fires()?;
        Ok(Schedule {
            expr: expr.to_string(),
            zone_name: zone.to_string(),
            zone: tz,
            fixed_time: spec.fixed_time,
            crons: spec.croner_patterns()?,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first fire instant strictly after `after`; `None` if there is
    /// none before the year 5000 (croner's search limit).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.next_fire(after).map(|fire| fire.at)
    }

    /// The next `count` fires after `from`, in the schedule's zone.
    pub fn preview(&self, from: Timestamp, count: usize) -> Vec<Occurrence> {
        let fires = std::iter::successors(self.next_fire(from), |f| self.next_fire(f.at));
        fires
            .take(count)
            .map(|f| Occurrence {
                at: f.at.to_zoned(self.zone.clone()),
                note: f.note,
            })
            .collect()
    }

    fn next_fire(&self, after: Timestamp) -> Option<dst::Fire> {
        dst::next_fire(&self.crons, self.fixed_time, &self.zone, after)
    }

    /// For a [`DstNote::Moved`] occurrence, the local time it was
    /// scheduled for (which did not exist that day).
    pub fn skipped_local_time(&self, occurrence: &Occurrence) -> Option<jiff::civil::DateTime> {
        let moved = occurrence.note == Some(DstNote::Moved);
        moved.then(|| dst::skipped_time(&self.crons, &self.zone, occurrence.at.timestamp()))?
    }
}

impl DstNote {
    pub fn as_str(self) -> &'static str {
        match self {
            DstNote::Moved => "moved",
            DstNote::Repeated => "repeated",
        }
    }
}

/// Looks up an IANA zone: the system database first, then the copy
/// bundled into the binary (jiff's `tzdb-bundle-always`).
pub fn parse_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name)
        .map_err(|_| ScheduleError::new(Some("timezone"), format!("unknown zone {name}")))
}

impl ScheduleError {
    /// The message as the error of a request field holding the expression:
    /// `schedule: minute: 60 is out of range 0-59`. A zone error already
    /// names its own field and stays as it is.
    pub fn under(&self, expression_field: &str) -> String {
        match self.field {
            Some("timezone") => self.to_string(),
            _ => format!("{expression_field}: {self}"),
        }
    }

    pub(crate) fn new(field: Option<&'static str>, message: String) -> ScheduleError {
        ScheduleError { field, message }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ScheduleError {}
