//! Placeholder cron module while the full dialect is written (replaced).

use jiff::{Timestamp, Zoned, tz::TimeZone};

#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    zone_name: String,
    zone: TimeZone,
    cron: croner::Cron,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(String);

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ScheduleError {}

pub struct Occurrence {
    pub at: Zoned,
    pub note: Option<DstNote>,
}

#[derive(Debug, Clone, Copy)]
pub enum DstNote {
    Moved,
    Repeated,
}
impl DstNote {
    pub fn as_str(self) -> &'static str {
        match self {
            DstNote::Moved => "moved",
            DstNote::Repeated => "repeated",
        }
    }
}

pub fn parse_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError(format!("timezone: unknown zone {name}")))
}

impl Schedule {
    pub fn parse(expr: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_zone(zone)?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError(e.to_string()))?;
        Ok(Schedule { expr: expr.into(), zone_name: zone.into(), zone: tz, cron })
    }
    pub fn expr(&self) -> &str {
        &self.expr
    }
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let z = after.to_zoned(self.zone.clone());
        self.cron.find_next_occurrence(&z, false).ok().map(|z| z.timestamp())
    }
    pub fn preview(&self, from: Timestamp, count: usize) -> Vec<Occurrence> {
        let mut out = Vec::new();
        let mut at = from;
        while out.len() < count {
            let Some(next) = self.next_after(at) else { break };
            out.push(Occurrence { at: next.to_zoned(self.zone.clone()), note: None });
            at = next;
        }
        out
    }
}

pub fn run_next_command(_args: &[String]) -> i32 {
    2
}
