//! A bounded cache of parsed schedules, keyed by expression and zone.
//!
//! A parsed schedule costs several KiB (croner keeps a table per field,
//! years included), so holding one per task would cost hundreds of MiB at
//! 100,000 tasks. Tasks keep only their expression; the scheduler parses on
//! demand (tens of microseconds) and keeps the recently used ones here.

use std::collections::HashMap;
use std::rc::Rc;

use crate::cron::{Schedule, ScheduleError};

/// Parsed schedules kept at most; many tasks usually share few schedules.
const CAPACITY: usize = 512;

/// Keyed by zone, then expression, so a hit is found from borrowed `&str`s
/// without building a key: `get` runs at every fire.
#[derive(Default)]
pub struct ScheduleCache {
    parsed: HashMap<String, HashMap<String, Rc<Schedule>>>,
    len: usize,
}

impl ScheduleCache {
    /// The parsed schedule for `expr` read in `zone`, or why it does not
    /// parse (errors are not kept).
    pub fn get(&mut self, expr: &str, zone: &str) -> Result<Rc<Schedule>, ScheduleError> {
        if let Some(found) = self.parsed.get(zone).and_then(|by_expr| by_expr.get(expr)) {
            return Ok(Rc::clone(found));
        }
        let schedule = Rc::new(Schedule::parse(expr, zone)?);
        if self.len >= CAPACITY {
            // Crude but bounded: start over. Hot schedules come back at once.
            self.parsed.clear();
            self.len = 0;
        }
        let by_expr = self.parsed.entry(zone.to_string()).or_default();
        by_expr.insert(expr.to_string(), Rc::clone(&schedule));
        self.len += 1;
        Ok(schedule)
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
        assert!(cache.get("bad", "UTC").is_err());
        for minute in 0..60 {
            for hour in 0..24 {
                cache.get(&format!("{minute} {hour} * * *"), "UTC").unwrap();
            }
        }
        assert!(cache.len <= CAPACITY);
        assert_eq!(
            cache.len,
            cache.parsed.values().map(HashMap::len).sum::<usize>()
        );
    }
}
