//! Turns the text of a cron expression into a [`Spec`], checking every field
//! ourselves so that errors name the field, the value and the reason.
//!
//! This file knows the dialect (fields, names, `L`, `W`, `#`, macros) and
//! nothing about time zones or searching; croner never sees the user's text.

use super::ScheduleError;
use super::spec::{DayOfMonth, DayOfWeek, Spec};

/// One numeric cron field: its name in messages, its bounds and its names.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for the values `names_from..`, matched in any case.
    names: &'static [&'static str],
    names_from: u32,
}

const SECOND: FieldKind = numeric("second", 0, 59);
const MINUTE: FieldKind = numeric("minute", 0, 59);
const HOUR: FieldKind = numeric("hour", 0, 23);
const DAY_OF_MONTH: FieldKind = numeric("day-of-month", 1, 31);
const MONTH: FieldKind = FieldKind {
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    names_from: 1,
    ..numeric("month", 1, 12)
};
/// Day of week accepts 7 as a second Sunday; values are folded to 0-6 later.
const DAY_OF_WEEK: FieldKind = FieldKind {
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    names_from: 0,
    ..numeric("day-of-week", 0, 7)
};

const fn numeric(name: &'static str, min: u32, max: u32) -> FieldKind {
    FieldKind {
        name,
        min,
        max,
        names: &[],
        names_from: 0,
    }
}

/// Parses an expression (or macro) into a spec, without the never-fires check.
pub(crate) fn parse_spec(expr: &str) -> Result<Spec, ScheduleError> {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        return parse_spec(expand_macro(trimmed)?);
    }
    let fields: Vec<&str> = trimmed.split_ascii_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => (None, &fields[..]),
        6 => (Some(fields[0]), &fields[1..]),
        n => {
            return Err(ScheduleError::new(
                None,
                format!("expected 5 or 6 fields, found {n}"),
            ));
        }
    };
    let [minute, hour, dom, month, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];

    // A job is "fixed-time" when it names its time of day rather than a
    // rhythm; this decides the DST rules (see the module docs).
    let fixed_time = !minute.starts_with('*')
        && !hour.starts_with('*')
        && !second.is_some_and(|s| s.starts_with('*'));
    Ok(Spec {
        seconds: second.map_or(Ok(1), |s| parse_bits(&SECOND, s))?,
        minutes: parse_bits(&MINUTE, minute)?,
        hours: parse_bits(&HOUR, hour)?,
        dom: parse_day_of_month(dom)?,
        months: parse_bits(&MONTH, month)?,
        dow: parse_day_of_week(dow)?,
        // cron's rule: when either day field starts with `*`, both must match.
        days_and: is_star(dom) || is_star(dow),
        fixed_time,
        dom_text: dom.to_string(),
        month_text: month.to_string(),
        dow_text: dow.to_string(),
    })
}

/// Maps a macro to its expression. `@reboot` is refused rather than
/// silently never firing, because edgecron has no boot trigger.
fn expand_macro(word: &str) -> Result<&'static str, ScheduleError> {
    Ok(match word.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        "@reboot" => {
            let why = "@reboot is not supported: edgecron has no boot trigger \
                       (start the task from a systemd unit instead)";
            return Err(ScheduleError::new(None, why.to_string()));
        }
        _ => return Err(ScheduleError::new(None, format!("unknown macro {word}"))),
    })
}

/// `?` is accepted as `*` in the day fields, and counts as a star for the
/// OR/AND rule.
fn is_star(field: &str) -> bool {
    field.starts_with('*') || field == "?"
}

/// Parses a plain field (lists, ranges, steps, names) into a bit set.
fn parse_bits(kind: &FieldKind, field: &str) -> Result<u64, ScheduleError> {
    if field == "?" {
        return Err(kind.error("? is only allowed in day-of-month and day-of-week".into()));
    }
    let mut bits = 0;
    for item in field.split(',') {
        bits |= parse_item(kind, item, field)?;
    }
    Ok(bits)
}

/// Parses one list item: `*`, `N`, `A-B`, `*/S` or `A-B/S`.
fn parse_item(kind: &FieldKind, item: &str, field: &str) -> Result<u64, ScheduleError> {
    if item.is_empty() {
        return Err(kind.error(format!("empty list item in \"{field}\"")));
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, parse_step(kind, step)?),
        None => (item, 1),
    };
    let (lo, hi) = if base == "*" {
        // `*` in day-of-week means 0-6; 7 is only an alias.
        (
            kind.min,
            kind.max.min(if kind.name == DAY_OF_WEEK.name {
                6
            } else {
                kind.max
            }),
        )
    } else if let Some((a, b)) = base.split_once('-') {
        parse_range(kind, a, b)?
    } else if step != 1 || item.contains('/') {
        let why = format!("{item}: a step needs * or a range before the slash, as in */15");
        return Err(kind.error(why));
    } else {
        let v = parse_value(kind, base)?;
        (v, v)
    };
    Ok((lo..=hi)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | 1 << v))
}

fn parse_range(kind: &FieldKind, a: &str, b: &str) -> Result<(u32, u32), ScheduleError> {
    let lo = parse_value(kind, a)?;
    let mut hi = parse_value(kind, b)?;
    // `FRI-SUN` reads as Friday to Sunday, so SUN ends a range as 7.
    if kind.name == DAY_OF_WEEK.name && b.eq_ignore_ascii_case("SUN") {
        hi = 7;
    }
    if lo > hi {
        return Err(kind.error(format!("range {a}-{b} is backwards")));
    }
    Ok((lo, hi))
}

fn parse_step(kind: &FieldKind, text: &str) -> Result<u32, ScheduleError> {
    let span = kind.max - kind.min;
    match parse_number(text) {
        Some(s) if (1..=span).contains(&s) => Ok(s),
        Some(s) => Err(kind.error(format!("step {s} is out of range 1-{span}"))),
        None => Err(kind.error(format!("step \"{text}\" is not a number"))),
    }
}

/// Parses a number or a name and checks it against the field's bounds.
fn parse_value(kind: &FieldKind, text: &str) -> Result<u32, ScheduleError> {
    let value = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        // Overlong numbers saturate so they report as out of range.
        parse_number(text).unwrap_or(u32::MAX)
    } else if text.bytes().all(|b| b.is_ascii_alphabetic()) && !text.is_empty() {
        return lookup_name(kind, text);
    } else if text.is_empty() {
        return Err(kind.error("missing value".into()));
    } else {
        return Err(kind.error(format!("\"{text}\" is not a number")));
    };
    if value < kind.min || value > kind.max {
        let (min, max) = (kind.min, kind.max);
        return Err(kind.error(format!("{text} is out of range {min}-{max}")));
    }
    Ok(value)
}

fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u32::MAX))
}

fn lookup_name(kind: &FieldKind, text: &str) -> Result<u32, ScheduleError> {
    if kind.names.is_empty() {
        return Err(kind.error(format!("\"{text}\" is not a number")));
    }
    let index = kind.names.iter().position(|n| n.eq_ignore_ascii_case(text));
    match index {
        Some(i) => Ok(kind.names_from + i as u32),
        None => Err(kind.error(format!("unknown name {text}"))),
    }
}

/// Day of month: plain items plus `L`, `LW` and `nW`.
fn parse_day_of_month(field: &str) -> Result<DayOfMonth, ScheduleError> {
    let kind = &DAY_OF_MONTH;
    if field == "?" {
        return Ok(DayOfMonth {
            days: parse_bits(kind, "*")? as u32,
            ..DayOfMonth::default()
        });
    }
    let mut dom = DayOfMonth::default();
    for item in field.split(',') {
        let upper = item.to_ascii_uppercase();
        if upper == "L" {
            dom.last = true;
        } else if upper == "LW" {
            dom.last_weekday = true;
        } else if let Some(day) = upper.strip_suffix('W') {
            dom.nearest_weekday |= 1 << parse_value(kind, day)?;
        } else {
            dom.days |= parse_item(kind, item, field)? as u32;
        }
    }
    Ok(dom)
}

/// Day of week: plain items plus `n#k` and `nL`; 7 folds onto Sunday.
fn parse_day_of_week(field: &str) -> Result<DayOfWeek, ScheduleError> {
    let kind = &DAY_OF_WEEK;
    if field == "?" {
        return Ok(DayOfWeek {
            days: 0x7f,
            ..DayOfWeek::default()
        });
    }
    let mut dow = DayOfWeek::default();
    for item in field.split(',') {
        if let Some((day, nth)) = item.split_once('#') {
            let k = match parse_number(nth) {
                Some(k @ 1..=5) => k,
                _ => {
                    return Err(kind.error(format!("{item}: occurrence {nth} is out of range 1-5")));
                }
            };
            dow.nth[(parse_value(kind, day)? % 7) as usize] |= 1 << k;
        } else if item.eq_ignore_ascii_case("L") {
            let why = "L needs a weekday before it, as in 5L for the last Friday";
            return Err(kind.error(why.into()));
        } else if let Some(day) = item.strip_suffix(['L', 'l']).filter(|d| !d.is_empty()) {
            dow.last |= 1 << (parse_value(kind, day)? % 7);
        } else {
            let bits = parse_item(kind, item, field)?;
            // Bit 7 is the Sunday alias; fold it onto bit 0.
            dow.days |= ((bits | bits >> 7) & 0x7f) as u8;
        }
    }
    Ok(dow)
}

impl FieldKind {
    fn error(&self, message: String) -> ScheduleError {
        ScheduleError::new(Some(self.name), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expr: &str) -> Spec {
        parse_spec(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn fixed_time_follows_the_first_character() {
        for expr in [
            "30 2 * * *",
            "30 1-3 * * *",
            "0 1,13 * * *",
            "0 30 2 * * *",
            "@daily",
        ] {
            assert!(spec(expr).fixed_time, "{expr}");
        }
        for expr in [
            "*/15 * * * *",
            "0 * * * *",
            "*/20 30 2 * * *",
            "@hourly",
            "5 */2 * * *",
        ] {
            assert!(!spec(expr).fixed_time, "{expr}");
        }
    }

    #[test]
    fn names_mix_with_numbers_in_any_case() {
        assert_eq!(spec("0 0 * * mon-FRI").dow, spec("0 0 * * 1-5").dow);
        assert_eq!(
            spec("0 0 * Jan,3-apr *").months,
            spec("0 0 * 1,3,4 *").months
        );
        assert_eq!(spec("0 0 * * 7").dow, spec("0 0 * * SUN").dow);
        assert_eq!(spec("0 0 * * FRI-SUN").dow, spec("0 0 * * 0,5,6").dow);
    }

    #[test]
    fn day_fields_choose_or_and() {
        assert!(!spec("0 0 1 * MON").days_and);
        assert!(spec("0 0 */2 * MON").days_and);
        assert!(spec("0 0 1 * */2").days_and);
        assert!(spec("0 0 ? * MON").days_and);
    }

    #[test]
    fn five_fields_fire_on_second_zero() {
        assert_eq!(spec("* * * * *").seconds, 1);
        assert_eq!(spec("*/30 * * * * *").seconds, 1 | 1 << 30);
    }
}
