//! A bounded cache of parsed schedules, keyed by expression and zone.
//!
//! A parsed schedule costs several KiB (croner keeps a table per field,
//! years included), so holding one per task would cost hundreds of MiB at
//! 100,000 tasks. Tasks keep only their expression; the scheduler parses on
//! demand (tens of microseconds) and keeps the recently used ones here.

use std::collections::HashMap;
use std::rc::Rc;

use crate::cron::Schedule;

/// Parsed schedules kept at most; many tasks usually share few schedules.
const CAPACITY: usize = 512;

#[derive(Default)]
pub struct ScheduleCache {
    parsed: HashMap<(String, String), Rc<Schedule>>,
}

impl ScheduleCache {
    /// The parsed schedule for `expr` read in `zone`, or None if it does not
    /// parse.
    pub fn get(&mut self, expr: &str, zone: &str) -> Option<Rc<Schedule>> {
        if let Some(found) = self.parsed.get(&(expr.to_string(), zone.to_string())) {
            return Some(Rc::clone(found));
        }
        let schedule = Rc::new(Schedule::parse(expr, zone).ok()?);
        if self.parsed.len() >= CAPACITY {
            // Crude but bounded: start over. Hot schedules come back at once.
            self.parsed.clear();
        }
        self.parsed
            .insert((expr.to_string(), zone.to_string()), Rc::clone(&schedule));
        Some(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_one_parse_and_stays_bounded() {
        let mut cache = ScheduleCache::default();
        let a = cache.get("0 9 * * 1", "UTC").unwrap();
        let b = cache.get("0 9 * * 1", "UTC").unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        assert!(cache.get("bad", "UTC").is_none());
        for minute in 0..60 {
            for hour in 0..24 {
                cache.get(&format!("{minute} {hour} * * *"), "UTC").unwrap();
            }
        }
        assert!(cache.parsed.len() <= CAPACITY);
    }
}
