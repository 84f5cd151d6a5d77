//! The parsed form of an expression: bit sets per field plus the day rules.
//!
//! A [`Spec`] can match a wall clock time on its own, proves at parse time
//! that the schedule can fire at all, and writes the canonical patterns that
//! croner searches with. It knows nothing about time zones.

use std::fmt::Write as _;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::Weekday;

use super::ScheduleError;

/// Every field of an expression, as bit sets (bit n set means value n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub seconds: u64,
    pub minutes: u64,
    pub hours: u64,
    pub dom: DayOfMonth,
    pub months: u64,
    pub dow: DayOfWeek,
    /// Both day fields must match (one of them starts with `*` or is `?`);
    /// otherwise either one is enough.
    pub days_and: bool,
    /// Neither minute, hour nor second starts with `*`; see the DST rules.
    pub fixed_time: bool,
    /// The user's text of the day and month fields, for error messages.
    pub dom_text: String,
    pub month_text: String,
    pub dow_text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DayOfMonth {
    pub days: u32,
    /// `L`: the last day of the month.
    pub last: bool,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    pub last_weekday: bool,
    /// `nW`: the weekday nearest to day n, never leaving the month.
    pub nearest_weekday: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DayOfWeek {
    /// Bit 0 is Sunday.
    pub days: u8,
    /// `d#k`: bit k of `nth[d]` selects the k-th such weekday of the month.
    pub nth: [u8; 7],
    /// `dL`: the last such weekday of the month.
    pub last: u8,
}

impl Spec {
    /// Whether a wall clock time matches every field. Only the tests need
    /// it, as an oracle independent of croner's search.
    #[cfg(test)]
    pub fn matches(&self, dt: jiff::civil::DateTime) -> bool {
        let bit = |set: u64, v: i8| set >> v & 1 == 1;
        bit(self.seconds, dt.second())
            && bit(self.minutes, dt.minute())
            && bit(self.hours, dt.hour())
            && bit(self.months, dt.month())
            && self.day_matches(dt.day() as u32, dt.days_in_month() as u32, dt.weekday())
    }

    /// Whether a day matches the day fields, with cron's OR/AND rule.
    pub fn day_matches(&self, day: u32, month_len: u32, weekday: Weekday) -> bool {
        let dom = self.dom.matches(day, month_len, weekday);
        let dow = self.dow.matches(day, month_len, weekday);
        if self.days_and {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Rejects a schedule that can never fire, without searching time.
    ///
    /// A day's match depends only on its month, the month's length and the
    /// weekday the month starts on, and every (month, leap, weekday)
    /// combination occurs in the 400-year Gregorian cycle. So trying those
    /// at most 12 * 2 * 7 * 31 days settles the question exactly.
    pub fn check_fires(&self) -> Result<(), ScheduleError> {
        let months: Vec<u32> = (1..=12).filter(|m| self.months >> m & 1 == 1).collect();
        let fires = |rule: &dyn Fn(u32, u32, Weekday) -> bool| {
            months.iter().any(|&m| month_can_match(m, rule))
        };
        if fires(&|d, len, wd| self.day_matches(d, len, wd)) {
            return Ok(());
        }
        let month_word = if months.len() == 1 { "month" } else { "months" };
        let (dom, month) = (&self.dom_text, &self.month_text);
        let why = if !fires(&|d, len, wd| self.dom.matches(d, len, wd)) {
            format!(
                "schedule never fires: day-of-month {dom} does not occur in {month_word} {month}"
            )
        } else {
            let dow = &self.dow_text;
            format!(
                "schedule never fires: no day in {month_word} {month} matches both \
                 day-of-month {dom} and day-of-week {dow}"
            )
        };
        Err(ScheduleError::new(None, why))
    }

    /// Builds the croner searchers for this spec.
    ///
    /// croner 4 treats `L` as "last weekday" whenever `LW` appears in the
    /// same field, so `L,LW` is split into two patterns whose union is the
    /// schedule: the day fields distribute over both the OR and the AND rule.
    pub fn croner_patterns(&self) -> Result<Vec<Cron>, ScheduleError> {
        let mut doms = vec![DayOfMonth {
            last_weekday: false,
            ..self.dom.clone()
        }];
        if self.dom.last_weekday {
            doms.push(DayOfMonth {
                last_weekday: true,
                ..DayOfMonth::default()
            });
            doms.retain(|d| *d != DayOfMonth::default());
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .dom_and_dow(self.days_and)
            .build();
        doms.iter()
            .map(|dom| self.croner_pattern(&parser, dom))
            .collect()
    }

    fn croner_pattern(&self, parser: &CronParser, dom: &DayOfMonth) -> Result<Cron, ScheduleError> {
        // Day fields are written as explicit lists, never `*`: croner's
        // own star handling only recognises a bare `*`, and the OR/AND
        // choice is passed as `dom_and_dow` instead.
        let text = [
            list(self.seconds, 0..=59),
            list(self.minutes, 0..=59),
            list(self.hours, 0..=23),
            dom.croner_field(),
            list(self.months, 1..=12),
            self.dow.croner_field(),
        ]
        .join(" ");
        parser.parse(&text).map_err(|e| {
            ScheduleError::new(None, format!("internal error: croner rejected {text}: {e}"))
        })
    }
}

impl DayOfMonth {
    pub fn matches(&self, day: u32, month_len: u32, weekday: Weekday) -> bool {
        self.days >> day & 1 == 1
            || (self.last && day == month_len)
            || (self.last_weekday && day == last_weekday_of_month(month_len, day, weekday))
            || self.nearest_weekday_is(day, month_len, weekday)
    }

    /// `nW` moves a Saturday back to Friday and a Sunday on to Monday, but
    /// never across the month's edge (1W on a Saturday is Monday the 3rd).
    fn nearest_weekday_is(&self, day: u32, month_len: u32, weekday: Weekday) -> bool {
        let lo = day.saturating_sub(2).max(1);
        let hi = (day + 2).min(month_len);
        (lo..=hi)
            .filter(|n| self.nearest_weekday >> n & 1 == 1)
            .any(|n| {
                let target = match weekday.wrapping_add(n as i32 - day as i32) {
                    Weekday::Saturday if n > 1 => n - 1,
                    Weekday::Saturday => n + 2,
                    Weekday::Sunday if n < month_len => n + 1,
                    Weekday::Sunday => n - 2,
                    _ => n,
                };
                target == day
            })
    }

    fn croner_field(&self) -> String {
        let days = list(u64::from(self.days), 1..=31);
        let mut items: Vec<String> = Some(days).filter(|d| !d.is_empty()).into_iter().collect();
        items.extend(
            (1..=31)
                .filter(|d| self.nearest_weekday >> d & 1 == 1)
                .map(|d| format!("{d}W")),
        );
        if self.last {
            items.push("L".into());
        }
        if self.last_weekday {
            items.push("LW".into());
        }
        items.join(",")
    }
}

/// The last Monday-to-Friday of a month, given any day and its weekday.
fn last_weekday_of_month(month_len: u32, day: u32, weekday: Weekday) -> u32 {
    let last = weekday.wrapping_add((month_len - day) as i32);
    match last {
        Weekday::Saturday => month_len - 1,
        Weekday::Sunday => month_len - 2,
        _ => month_len,
    }
}

impl DayOfWeek {
    pub fn matches(&self, day: u32, month_len: u32, weekday: Weekday) -> bool {
        let d = weekday.to_sunday_zero_offset() as usize;
        let nth = (day - 1) / 7 + 1;
        self.days >> d & 1 == 1
            || self.nth[d] >> nth & 1 == 1
            || (self.last >> d & 1 == 1 && day + 7 > month_len)
    }

    fn croner_field(&self) -> String {
        let mut out = String::new();
        for d in 0..7 {
            let mut push = |item: String| {
                let sep = if out.is_empty() { "" } else { "," };
                let _ = write!(out, "{sep}{item}");
            };
            if self.days >> d & 1 == 1 {
                push(d.to_string());
            }
            (1..=5)
                .filter(|k| self.nth[d] >> k & 1 == 1)
                .for_each(|k| push(format!("{d}#{k}")));
            if self.last >> d & 1 == 1 {
                push(format!("{d}L"));
            }
        }
        out
    }
}

/// Whether any day of month `m` matches, across leap and common years and
/// all seven weekdays the month can start on.
fn month_can_match(m: u32, rule: &dyn Fn(u32, u32, Weekday) -> bool) -> bool {
    let lengths: &[u32] = match m {
        2 => &[28, 29],
        4 | 6 | 9 | 11 => &[30],
        _ => &[31],
    };
    lengths.iter().any(|&len| {
        (0..7).any(|first| {
            let first = Weekday::from_sunday_zero_offset(first).expect("0-6 is a weekday");
            (1..=len).any(|d| rule(d, len, first.wrapping_add(d as i32 - 1)))
        })
    })
}

/// Writes a bit set as a comma-separated list, runs written as ranges
/// (`1-5,9`): croner parses short text much faster than long lists.
fn list(bits: u64, range: std::ops::RangeInclusive<u32>) -> String {
    let set = |v: u32| bits >> v & 1 == 1;
    let mut items = Vec::new();
    let mut values = range.clone().filter(|&v| set(v)).peekable();
    while let Some(lo) = values.next() {
        let mut hi = lo;
        while values.next_if(|&v| v == hi + 1).is_some() {
            hi += 1;
        }
        items.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        });
    }
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_spec;
    use super::*;

    fn croner_texts(expr: &str) -> Vec<String> {
        let spec = parse_spec(expr).unwrap();
        spec.croner_patterns()
            .unwrap()
            .iter()
            .map(|c| c.pattern.to_string())
            .collect()
    }

    #[test]
    fn lists_are_written_as_runs() {
        assert_eq!(list(0b1011_1110, 0..=59), "1-5,7");
        assert_eq!(list(1, 0..=59), "0");
    }

    /// croner 4 reads `L` as "last weekday" when `LW` shares its field.
    #[test]
    fn l_and_lw_are_split_into_two_patterns() {
        assert_eq!(
            croner_texts("0 0 L,LW * 5L"),
            ["0 0 0 L 1-12 5L", "0 0 0 LW 1-12 5L"]
        );
        assert_eq!(croner_texts("0 0 LW * *"), ["0 0 0 LW 1-12 0,1,2,3,4,5,6"]);
        assert_eq!(croner_texts("0 0 1,15W * 1#2"), ["0 0 0 1,15W 1-12 1#2"]);
    }

    #[test]
    fn never_fires_check_knows_the_day_rules() {
        let fires = |expr: &str| parse_spec(expr).unwrap().check_fires().is_ok();
        assert!(fires("0 0 29 2 *"));
        assert!(fires("0 0 L 2 *"));
        assert!(fires("0 0 30 2 MON"), "OR rule: every Monday in February");
        assert!(
            fires("0 0 ? 2 1#5"),
            "a leap February can have five Mondays"
        );
        assert!(!fires("0 0 30 2 *"));
        assert!(!fires("0 0 31W 4 *"));
        assert!(!fires("0 0 */30 2 1#5"));
    }
}
