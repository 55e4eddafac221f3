//! Native `crontab` rules of a Sync (SPEC §14.3), evaluated against wall-clock local time
//! (SPEC §15 item 24: upstream fed uptime ticks to lua-crontab as if they were epoch seconds).
//!
//! Owns: the rule grammar ([`parse`] into a [`CronRule`]), matching and the search for the next
//! occurrence ([`CronRule::matches`], [`CronRule::next_after`]), the broken-down local time
//! [`CivilTime`] (with its ctime(3) text for logs and the status file) and the proleptic
//! Gregorian calendar helpers [`weekday`] and [`seconds_between`].
//!
//! Must not touch: clocks and time zones (the caller reads the local time, e.g. with
//! `localtime_r`, passes it in as a [`CivilTime`] and re-evaluates after DST jumps), logging,
//! Lua, syncs and delays. The caller wraps our `Err` text into upstream's startup message
//! `Sync: NAME - crontab rule I is not valid: ERR . Rule: RULE` and queues the `Full` event
//! when an occurrence is due.
//!
//! # Grammar
//!
//! A rule is 6 whitespace-separated fields: seconds (0-59), minutes (0-59), hours (0-23), day
//! of month (1-31), month (1-12 or `JAN`-`DEC`) and day of week (0-6 or `SUN`-`SAT`, 7 is
//! Sunday too). Names are three letters, any case. A field is a comma-separated list of items;
//! an item is `*`, a value `a`, a range `a-b` (`a <= b`), optionally followed by a step `/n`
//! (`1 <= n <=` the number of values of the field): `*/n` and `a-b/n` take every n-th value of
//! the range from its start, and `a/n` means `a-MAX/n`.
//!
//! # Day semantics (Vixie cron)
//!
//! A field counts as unrestricted when it starts with `*` (so `*/2` is unrestricted, as in
//! Vixie cron). When day of month and day of week are both restricted, a day matches if
//! *either* matches; otherwise both must (and the unrestricted one always does unless it has a
//! step).
//!
//! # Search
//!
//! [`CronRule::next_after`] keeps a cursor of civil fields and jumps each field to its next
//! allowed value with bit-mask arithmetic, resetting the lower fields when a higher one moves
//! and carrying into the next higher field when a field has no value left. Only days are
//! tested one by one (at most 31 per month), so a rule firing every 2 seconds costs a handful
//! of operations, and an impossible rule (`0 0 0 30 2 *`) gives up after [`HORIZON_YEARS`]
//! years of months.

use std::fmt;

/// How many years past `after.year` [`CronRule::next_after`] searches. Eight rather than five
/// so that a `Feb 29` rule always finds a leap year, even across a century (2096 → 2104).
const HORIZON_YEARS: i32 = 8;

/// Month and day names, as rules may spell them (in any case) and as ctime(3) prints them.
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// What one of the 6 fields accepts.
struct FieldSpec {
    /// Name used in error messages.
    label: &'static str,
    /// Smallest value.
    min: u32,
    /// Largest value `*` and `a/n` reach.
    max: u32,
    /// Largest value a number may have (day of week: 7, which folds onto 0).
    max_written: u32,
    /// Names of the values from `min` on, matched case-insensitively.
    names: &'static [&'static str],
    /// What a value is called in "is not a number" messages.
    what: &'static str,
}

impl FieldSpec {
    /// A field of numbers `min..=max`, without names.
    const fn numeric(label: &'static str, min: u32, max: u32) -> FieldSpec {
        FieldSpec {
            label,
            min,
            max,
            max_written: max,
            names: &[],
            what: "a number",
        }
    }

    /// The field with names for its values from `min` on.
    const fn named(self, names: &'static [&'static str], what: &'static str) -> FieldSpec {
        FieldSpec {
            names,
            what,
            ..self
        }
    }

    /// The number of distinct values, the largest step allowed.
    fn span(&self) -> u32 {
        self.max - self.min + 1
    }

    /// The bit of value `v` (`v <= max_written`): values past `max` fold around.
    fn bit(&self, v: u32) -> u64 {
        let v = if v > self.max { v - self.span() } else { v };
        1u64 << v
    }
}

const FIELDS: [FieldSpec; 6] = [
    FieldSpec::numeric("seconds", 0, 59),
    FieldSpec::numeric("minutes", 0, 59),
    FieldSpec::numeric("hours", 0, 23),
    FieldSpec::numeric("day of month", 1, 31),
    FieldSpec::numeric("month", 1, 12).named(&MONTH_NAMES, "a number or month name (JAN-DEC)"),
    FieldSpec {
        max_written: 7,
        ..FieldSpec::numeric("day of week", 0, 6)
            .named(&DAY_NAMES, "a number or day name (SUN-SAT)")
    },
];

/// One parsed crontab rule: the allowed values of each field as bit masks (bit `v` set when
/// value `v` is allowed) plus whether the two day fields are unrestricted (start with `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CronRule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

/// Broken-down wall-clock local time, as `sys::local_time` gives it (from `localtime_r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CivilTime {
    pub(crate) year: i32,
    /// 1-12
    pub(crate) month: u32,
    /// 1-31
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    /// 0-59; `localtime_r` may report a leap second as 60.
    pub(crate) second: u32,
}

impl CivilTime {
    /// ctime(3) layout without the newline: `Wed Nov 25 19:52:57 2026`.
    pub(crate) fn ctime(&self) -> String {
        format!(
            "{} {} {:>2} {:02}:{:02}:{:02} {}",
            DAY_NAMES[weekday(self.year, self.month, self.day) as usize],
            MONTH_NAMES[(self.month as usize + 11) % 12],
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.year
        )
    }
}

impl fmt::Display for CivilTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Parses one rule; the `Err` text explains the problem, e.g.
/// `field 2 (minutes): 61 is out of range 0-59`.
pub(crate) fn parse(rule: &str) -> Result<CronRule, String> {
    let fields: Vec<&str> = rule.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "expected 6 fields (seconds minutes hours day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    let mut masks = [0u64; 6];
    for (i, (spec, text)) in FIELDS.iter().zip(&fields).enumerate() {
        masks[i] = parse_field(spec, text)
            .map_err(|msg| format!("field {} ({}): {msg}", i + 1, spec.label))?;
    }
    Ok(CronRule {
        seconds: masks[0],
        minutes: masks[1],
        hours: masks[2],
        days: masks[3],
        months: masks[4],
        weekdays: masks[5],
        days_star: fields[3].starts_with('*'),
        weekdays_star: fields[5].starts_with('*'),
    })
}

/// One field: a comma-separated list of items.
fn parse_field(spec: &FieldSpec, text: &str) -> Result<u64, String> {
    let mut mask = 0;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty list element in `{text}`"));
        }
        mask |= parse_item(spec, item)?;
    }
    Ok(mask)
}

/// One item: `*`, `a` or `a-b`, optionally with `/n`.
fn parse_item(spec: &FieldSpec, item: &str) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(spec, step, item)?)),
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let (lo, hi) = (parse_value(spec, a, item)?, parse_value(spec, b, item)?);
        if lo > hi {
            return Err(format!("range `{range}` is reversed ({lo} > {hi})"));
        }
        (lo, hi)
    } else {
        let v = parse_value(spec, range, item)?;
        (v, if step.is_some() { spec.max.max(v) } else { v })
    };
    let step = step.unwrap_or(1);
    let mut mask = 0;
    let mut v = lo;
    while v <= hi {
        mask |= spec.bit(v);
        v += step;
    }
    Ok(mask)
}

fn parse_step(spec: &FieldSpec, text: &str, item: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!("missing step in `{item}`"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("step `{text}` is not a number in `{item}`"));
    }
    match parse_number(text) {
        Some(n) if (1..=spec.span()).contains(&n) => Ok(n),
        _ => Err(format!(
            "step {text} is out of range 1-{} in `{item}`",
            spec.span()
        )),
    }
}

fn parse_value(spec: &FieldSpec, text: &str, item: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!("missing value in `{item}`"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match parse_number(text) {
            Some(v) if (spec.min..=spec.max_written).contains(&v) => Ok(v),
            _ => Err(format!(
                "{text} is out of range {}-{}",
                spec.min, spec.max_written
            )),
        };
    }
    spec.names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| spec.min + i)
        .ok_or_else(|| format!("`{text}` is not {}", spec.what))
}

/// Decimal digits only; `None` on anything else or overflow.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The smallest allowed value `>= from` in `mask`.
fn next_in(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn has(mask: u64, v: u32) -> bool {
    v < 64 && mask & (1u64 << v) != 0
}

impl CronRule {
    /// The first civil time strictly after `after` that matches, searching to the end of year
    /// `after.year + 8`; `None` if there is none (e.g. Feb 30) or `after` is not a valid civil
    /// time (a leap second 60 is accepted).
    pub(crate) fn next_after(&self, after: CivilTime) -> Option<CivilTime> {
        if !valid_date(after.year, after.month, after.day)
            || after.hour > 23
            || after.minute > 59
            || after.second > 60
        {
            return None;
        }
        let last_year = after.year.saturating_add(HORIZON_YEARS);
        let mut t = after;
        t.second += 1;
        // Each step moves the cursor to its unit's next allowed value, clearing the smaller
        // units; when its unit has none left it moves to the start of the next larger unit and
        // the search starts over. Out-of-range values (second 60, minute 60, hour 24, day past
        // the month's end, month 13) carry upwards that way.
        'search: loop {
            if t.year > last_year {
                return None;
            }
            for unit in Unit::ALL {
                match self.next_allowed(t, unit) {
                    None => {
                        t = t.start_of_next(unit)?;
                        continue 'search;
                    }
                    Some(v) if v != t.get(unit) => t = t.with(unit, v),
                    Some(_) => {}
                }
            }
            return Some(t);
        }
    }

    /// The smallest allowed value of `unit` from `t`'s on, within `t`'s larger units.
    fn next_allowed(&self, t: CivilTime, unit: Unit) -> Option<u32> {
        let mask = match unit {
            Unit::Month => self.months,
            Unit::Day => {
                let last_day = days_in_month(t.year, t.month);
                return (t.day..=last_day).find(|&d| self.day_matches(t.year, t.month, d));
            }
            Unit::Hour => self.hours,
            Unit::Minute => self.minutes,
            Unit::Second => self.seconds,
        };
        next_in(mask, t.get(unit))
    }

    /// Whether `t` is an occurrence of the rule (an invalid `t` never is).
    #[cfg(test)]
    pub(crate) fn matches(&self, t: CivilTime) -> bool {
        valid_date(t.year, t.month, t.day)
            && has(self.seconds, t.second)
            && t.second < 60
            && has(self.minutes, t.minute)
            && t.minute < 60
            && has(self.hours, t.hour)
            && t.hour < 24
            && has(self.months, t.month)
            && self.day_matches(t.year, t.month, t.day)
    }

    /// The day rule alone (Vixie cron: OR when both day fields are restricted, else AND).
    fn day_matches(&self, year: i32, month: u32, day: u32) -> bool {
        let by_day = has(self.days, day);
        let by_weekday = has(self.weekdays, weekday(year, month, day));
        if self.days_star || self.weekdays_star {
            by_day && by_weekday
        } else {
            by_day || by_weekday
        }
    }
}

/// The units [`CronRule::next_after`] steps through, largest first (the year only carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Unit {
    const ALL: [Unit; 5] = [
        Unit::Month,
        Unit::Day,
        Unit::Hour,
        Unit::Minute,
        Unit::Second,
    ];

    /// The unit this one counts within; `None` for the month (within the year).
    fn larger(self) -> Option<Unit> {
        match self {
            Unit::Month => None,
            Unit::Day => Some(Unit::Month),
            Unit::Hour => Some(Unit::Day),
            Unit::Minute => Some(Unit::Hour),
            Unit::Second => Some(Unit::Minute),
        }
    }

    /// Its first value: 1 for months and days, 0 for the rest.
    fn first(self) -> u32 {
        u32::from(matches!(self, Unit::Month | Unit::Day))
    }
}

impl CivilTime {
    fn field(&mut self, unit: Unit) -> &mut u32 {
        match unit {
            Unit::Month => &mut self.month,
            Unit::Day => &mut self.day,
            Unit::Hour => &mut self.hour,
            Unit::Minute => &mut self.minute,
            Unit::Second => &mut self.second,
        }
    }

    fn get(mut self, unit: Unit) -> u32 {
        *self.field(unit)
    }

    /// The start of `value` of `unit` within `self`'s larger units: the smaller units at their
    /// first value. `value` may be one past the unit's range (month 13, day 32, hour 24, ...),
    /// which the next search step carries upwards.
    fn with(mut self, unit: Unit, value: u32) -> CivilTime {
        *self.field(unit) = value;
        for &smaller in &Unit::ALL[unit as usize + 1..] {
            *self.field(smaller) = smaller.first();
        }
        self
    }

    /// The start of the next value of `unit`'s larger unit (for the month: of the next year),
    /// when `unit` has no allowed value left in the current one; `None` past year `i32::MAX`.
    fn start_of_next(self, unit: Unit) -> Option<CivilTime> {
        match unit.larger() {
            Some(larger) => Some(self.with(larger, self.get(larger) + 1)),
            None => Some(CivilTime {
                year: self.year.checked_add(1)?,
                ..self.with(Unit::Month, 1)
            }),
        }
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn valid_date(year: i32, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (negative before it), by the
/// era arithmetic of H. Hinnant's `days_from_civil`. Works in `i64`, so any input is safe.
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = i64::from(year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let day_of_year = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Day of week of a civil date, 0 = Sunday.
pub(crate) fn weekday(year: i32, month: u32, day: u32) -> u32 {
    // 1970-01-01 was a Thursday; rem_euclid keeps the result in 0..7.
    let wd = (days_from_civil(year, month, day) + 4).rem_euclid(7);
    u32::try_from(wd).unwrap_or(0)
}

/// Seconds from `from` to `to` (negative if `to` is earlier), treating both as civil times of
/// one zone without DST jumps; the caller re-evaluates across DST changes.
pub(crate) fn seconds_between(from: CivilTime, to: CivilTime) -> i64 {
    let secs = |t: CivilTime| {
        days_from_civil(t.year, t.month, t.day) * 86_400
            + i64::from(t.hour) * 3_600
            + i64::from(t.minute) * 60
            + i64::from(t.second)
    };
    secs(to) - secs(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> CivilTime {
        CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn ctime_layout() {
        assert_eq!(
            ct(2026, 11, 25, 19, 52, 57).ctime(),
            "Wed Nov 25 19:52:57 2026"
        );
        assert_eq!(ct(1970, 1, 1, 0, 0, 0).ctime(), "Thu Jan  1 00:00:00 1970");
        assert_eq!(
            ct(2024, 2, 29, 9, 5, 60).ctime(),
            "Thu Feb 29 09:05:60 2024"
        );
    }

    fn rule(text: &str) -> CronRule {
        match parse(text) {
            Ok(r) => r,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    /// Inverse of `days_from_civil`, for the brute-force reference only.
    fn civil_from_days(z: i64) -> (i32, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y as i32, m as u32, d as u32)
    }

    fn add_seconds(t: CivilTime, secs: i64) -> CivilTime {
        let total = days_from_civil(t.year, t.month, t.day) * 86_400
            + i64::from(t.hour) * 3_600
            + i64::from(t.minute) * 60
            + i64::from(t.second)
            + secs;
        let (year, month, day) = civil_from_days(total.div_euclid(86_400));
        let s = total.rem_euclid(86_400) as u32;
        ct(year, month, day, s / 3_600, s / 60 % 60, s % 60)
    }

    #[test]
    fn parse_accepts_the_grammar() {
        for text in [
            "* * * * * *",
            "0 0 0 1 1 0",
            "59 59 23 31 12 6",
            "*/2 * * * * *",
            "0-59/15 0,30 1-5,7,9-11 1 * *",
            "5/20 * * * * *",
            "0 0 12 * * MON-FRI",
            "0 0 12 * jan-Mar sun,SAT",
            "0 0 0 * * 7",
            "0 0 0 * * 5-7",
            "0 0 0 29 2 *",
            "  1\t2  3 4 5 6 ",
            "*/60 */60 */24 */31 */12 */7",
        ] {
            assert!(parse(text).is_ok(), "{text:?}: {:?}", parse(text));
        }
    }

    #[test]
    fn parse_rejects_with_a_reason() {
        for (text, want) in [
            (
                "",
                "expected 6 fields (seconds minutes hours day-of-month month day-of-week), found 0",
            ),
            (
                "* * * * *",
                "expected 6 fields (seconds minutes hours day-of-month month day-of-week), found 5",
            ),
            ("* * * * * * *", "found 7"),
            ("0 61 * * * *", "field 2 (minutes): 61 is out of range 0-59"),
            ("60 * * * * *", "field 1 (seconds): 60 is out of range 0-59"),
            ("* * 24 * * *", "field 3 (hours): 24 is out of range 0-23"),
            (
                "* * * 0 * *",
                "field 4 (day of month): 0 is out of range 1-31",
            ),
            (
                "* * * 32 * *",
                "field 4 (day of month): 32 is out of range 1-31",
            ),
            ("* * * * 13 *", "field 5 (month): 13 is out of range 1-12"),
            ("* * * * 0 *", "field 5 (month): 0 is out of range 1-12"),
            (
                "* * * * * 8",
                "field 6 (day of week): 8 is out of range 0-7",
            ),
            (
                "99999999999 * * * * *",
                "field 1 (seconds): 99999999999 is out of range 0-59",
            ),
            (
                "* * * * FOO *",
                "field 5 (month): `FOO` is not a number or month name (JAN-DEC)",
            ),
            (
                "* * * * JANUARY *",
                "field 5 (month): `JANUARY` is not a number or month name",
            ),
            (
                "* * * * * SUNDAY",
                "field 6 (day of week): `SUNDAY` is not a number or day name (SUN-SAT)",
            ),
            (
                "* * * * * JAN",
                "field 6 (day of week): `JAN` is not a number or day name",
            ),
            (
                "* * * * MON *",
                "field 5 (month): `MON` is not a number or month name",
            ),
            ("MON * * * * *", "field 1 (seconds): `MON` is not a number"),
            ("-1 * * * * *", "field 1 (seconds): missing value in `-1`"),
            ("+1 * * * * *", "field 1 (seconds): `+1` is not a number"),
            (
                "*/0 * * * * *",
                "field 1 (seconds): step 0 is out of range 1-60 in `*/0`",
            ),
            (
                "* * */25 * * *",
                "field 3 (hours): step 25 is out of range 1-24 in `*/25`",
            ),
            (
                "* * * * * */8",
                "field 6 (day of week): step 8 is out of range 1-7 in `*/8`",
            ),
            ("*/ * * * * *", "field 1 (seconds): missing step in `*/`"),
            (
                "*/x * * * * *",
                "field 1 (seconds): step `x` is not a number in `*/x`",
            ),
            (
                "*/2/3 * * * * *",
                "field 1 (seconds): step `2/3` is not a number",
            ),
            (
                "* 30-10 * * * *",
                "field 2 (minutes): range `30-10` is reversed (30 > 10)",
            ),
            (
                "* * * * * FRI-MON",
                "field 6 (day of week): range `FRI-MON` is reversed (5 > 1)",
            ),
            (
                "* * * * DEC-JAN *",
                "field 5 (month): range `DEC-JAN` is reversed (12 > 1)",
            ),
            ("1- * * * * *", "field 1 (seconds): missing value in `1-`"),
            (
                "1-2-3 * * * * *",
                "field 1 (seconds): `2-3` is not a number",
            ),
            (
                "1,,2 * * * * *",
                "field 1 (seconds): empty list element in `1,,2`",
            ),
            (
                "1, * * * * *",
                "field 1 (seconds): empty list element in `1,`",
            ),
            ("*-5 * * * * *", "field 1 (seconds): `*` is not a number"),
        ] {
            match parse(text) {
                Ok(r) => panic!("{text:?} should be rejected, got {r:?}"),
                Err(e) => assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn names_and_numbers_are_the_same_rule() {
        for (a, b) in [
            ("0 0 0 1 JAN *", "0 0 0 1 1 *"),
            ("0 0 0 1 jan *", "0 0 0 1 1 *"),
            ("0 0 0 1 Dec *", "0 0 0 1 12 *"),
            ("0 0 0 1 jan-DEC *", "0 0 0 1 1-12 *"),
            ("0 0 0 * * sun", "0 0 0 * * 0"),
            ("0 0 0 * * SUN", "0 0 0 * * 0"),
            ("0 0 0 * * Sat", "0 0 0 * * 6"),
            ("0 0 0 * * 7", "0 0 0 * * 0"),
            ("0 0 0 * * mon-FRI", "0 0 0 * * 1-5"),
            ("0 0 0 * * 5-7", "0 0 0 * * 0,5,6"),
            ("0 0 0 * * 0-7", "0 0 0 * * 0-6"),
            ("*/20 * * * * *", "0,20,40 * * * * *"),
            ("5/20 * * * * *", "5,25,45 * * * * *"),
            ("10-30/7 * * * * *", "10,17,24 * * * * *"),
            ("0 0 0 * */5 *", "0 0 0 * 1,6,11 *"),
            ("0 0 0 */10 * *", "0 0 0 1,11,21,31 * *"),
            ("0 0 0 * * */2", "0 0 0 * * 0,2,4,6"),
            ("0 0 0 * * 7/2", "0 0 0 * * 0"),
            ("0 0 0 * * 3/2", "0 0 0 * * 3,5"),
        ] {
            // The star flags differ by design (see day_fields_starting_with_star_...).
            let values =
                |r: &CronRule| (r.seconds, r.minutes, r.hours, r.days, r.months, r.weekdays);
            assert_eq!(values(&rule(a)), values(&rule(b)), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn day_fields_starting_with_star_are_unrestricted() {
        for (text, days_star, weekdays_star) in [
            ("0 0 0 * * *", true, true),
            ("0 0 0 */2 * 1", true, false),
            ("0 0 0 1 * *", false, true),
            ("0 0 0 1 * */2", false, true),
            ("0 0 0 1-31 * 0-6", false, false),
        ] {
            let r = rule(text);
            assert_eq!(
                (r.days_star, r.weekdays_star),
                (days_star, weekdays_star),
                "{text:?}"
            );
        }
    }

    /// (rule, start, the successive occurrences next_after must produce)
    /// One case a line: the rule, the start, then the occurrences after it in order
    /// (`YYYY-MM-DD hh:mm:ss`, separated by `,`); `#` starts a comment line.
    const WALKS: &str = "
        # every 2 seconds, over a minute, hour, day, month and year boundary
        */2 * * * * * | 2023-12-31 23:59:55 | 2023-12-31 23:59:56, 2023-12-31 23:59:58, 2024-01-01 00:00:00, 2024-01-01 00:00:02
        # strictly after: an occurrence at `after` itself is skipped
        */2 * * * * * | 2024-05-05 10:00:04 | 2024-05-05 10:00:06, 2024-05-05 10:00:08
        # noon on weekdays: Fri 2024-03-01 → Mon 2024-03-04
        0 0 12 * * MON-FRI | 2024-02-29 12:00:00 | 2024-03-01 12:00:00, 2024-03-04 12:00:00, 2024-03-05 12:00:00
        0 0 12 * * mon-fri | 2024-03-02 08:00:00 | 2024-03-04 12:00:00
        # Feb 29 only in leap years, over the 2100 gap
        0 30 2 29 2 * | 2024-03-01 00:00:00 | 2028-02-29 02:30:00, 2032-02-29 02:30:00
        0 30 2 29 2 * | 2096-02-29 02:30:00 | 2104-02-29 02:30:00
        # both day fields restricted: the 13th OR a Friday
        0 0 0 13 * FRI | 2024-09-01 00:00:00 | 2024-09-06 00:00:00, 2024-09-13 00:00:00, 2024-09-20 00:00:00, 2024-09-27 00:00:00, 2024-10-04 00:00:00, 2024-10-11 00:00:00, 2024-10-13 00:00:00
        # day of month with an unrestricted `*/2` day of week: both must hold (AND)
        # (the 1st of a month on Sun/Tue/Thu/Sat: Feb 1 2024 is a Thursday)
        0 0 0 1 * */2 | 2024-01-01 00:00:00 | 2024-02-01 00:00:00, 2024-06-01 00:00:00
        # day of month only
        0 0 0 31 * * | 2024-01-31 00:00:00 | 2024-03-31 00:00:00, 2024-05-31 00:00:00, 2024-07-31 00:00:00, 2024-08-31 00:00:00
        # month rollover into the next year
        0 0 6 1 FEB,nov * | 2024-11-01 06:00:00 | 2025-02-01 06:00:00, 2025-11-01 06:00:00
        # Dec 31 23:59:59 → next year
        * * * * * * | 1999-12-31 23:59:59 | 2000-01-01 00:00:00
        0 0 0 1 1 * | 1999-12-31 23:59:59 | 2000-01-01 00:00:00, 2001-01-01 00:00:00
        # lower fields reset when a higher one moves
        30 15 10 * * * | 2024-06-10 10:15:45 | 2024-06-11 10:15:30
        0-1 0 */12 * * * | 2024-06-10 00:00:01 | 2024-06-10 12:00:00, 2024-06-10 12:00:01, 2024-06-11 00:00:00
        # a leap second from localtime_r carries into the next minute
        */10 * * * * * | 2016-12-31 23:59:60 | 2017-01-01 00:00:00
        # Sunday as 7
        0 0 9 * * 7 | 2024-03-04 00:00:00 | 2024-03-10 09:00:00, 2024-03-17 09:00:00
";

    /// `YYYY-MM-DD hh:mm:ss`.
    fn at(text: &str) -> CivilTime {
        let n: Vec<u32> = text
            .split(['-', ' ', ':'])
            .map(|f| f.parse().unwrap_or_else(|_| panic!("bad time {text:?}")))
            .collect();
        ct(n[0] as i32, n[1], n[2], n[3], n[4], n[5])
    }

    #[test]
    fn next_after_walks_the_expected_occurrences() {
        let cases = WALKS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let mut count = 0;
        for case in cases {
            let [text, start, want] = case.split(" | ").collect::<Vec<_>>()[..] else {
                panic!("bad case {case:?}")
            };
            let r = rule(text);
            let mut t = at(start);
            for expected in want.split(", ").map(at) {
                let got = r.next_after(t);
                assert_eq!(got, Some(expected), "{text:?} after {t}");
                assert!(r.matches(expected), "{text:?} must match {expected}");
                t = expected;
            }
            count += 1;
        }
        assert_eq!(count, 16, "every case line is read");
    }

    #[test]
    fn next_after_gives_up_on_impossible_or_invalid_input() {
        let start = ct(2024, 1, 1, 0, 0, 0);
        for (text, after) in [
            ("0 0 0 30 2 *", start),
            ("0 0 0 31 2,4,6,9,11 *", start),
            ("* * * 31 4 *", start),
            // Feb 29 that must also be a Sunday: the weekday field starts with `*`, so AND
            // (`*/7` is Sunday only; after 2032 the next Sunday Feb 29 is in 2060)
            ("0 0 0 29 2 */7", ct(2032, 3, 1, 0, 0, 0)),
            ("* * * * * *", ct(2024, 2, 30, 0, 0, 0)),
            ("* * * * * *", ct(2024, 13, 1, 0, 0, 0)),
            ("* * * * * *", ct(2024, 0, 1, 0, 0, 0)),
            ("* * * * * *", ct(2024, 1, 0, 0, 0, 0)),
            ("* * * * * *", ct(2024, 1, 1, 24, 0, 0)),
            ("* * * * * *", ct(2024, 1, 1, 0, 60, 0)),
            ("* * * * * *", ct(2024, 1, 1, 0, 0, 61)),
            ("* * * * * *", ct(i32::MAX, 12, 31, 23, 59, 59)),
        ] {
            assert_eq!(rule(text).next_after(after), None, "{text:?} after {after}");
        }
    }

    #[test]
    fn matches_checks_every_field() {
        for (text, t, want) in [
            ("* * * * * *", ct(2024, 2, 29, 23, 59, 59), true),
            ("* * * * * *", ct(2023, 2, 29, 0, 0, 0), false),
            ("* * * * * *", ct(2024, 1, 1, 0, 0, 60), false),
            ("0 0 12 * * MON-FRI", ct(2024, 3, 4, 12, 0, 0), true),
            ("0 0 12 * * MON-FRI", ct(2024, 3, 3, 12, 0, 0), false),
            ("0 0 12 * * MON-FRI", ct(2024, 3, 4, 12, 0, 1), false),
            ("0 0 12 * * MON-FRI", ct(2024, 3, 4, 12, 1, 0), false),
            ("0 0 12 * * MON-FRI", ct(2024, 3, 4, 13, 0, 0), false),
            ("0 0 0 13 * FRI", ct(2024, 9, 13, 0, 0, 0), true),
            ("0 0 0 13 * FRI", ct(2024, 9, 6, 0, 0, 0), true),
            ("0 0 0 13 * FRI", ct(2024, 9, 7, 0, 0, 0), false),
            ("0 0 0 13 * *", ct(2024, 9, 6, 0, 0, 0), false),
            ("0 0 0 * * FRI", ct(2024, 9, 13, 0, 0, 0), true),
            ("0 0 0 * JUN *", ct(2024, 7, 1, 0, 0, 0), false),
        ] {
            assert_eq!(rule(text).matches(t), want, "{text:?} at {t}");
        }
    }

    /// Compares next_after with a second-by-second scan over a window of a few days.
    #[test]
    fn next_after_agrees_with_a_brute_force_scan() {
        let rules = [
            "*/7 * * * * *",
            "13 */11 * * * *",
            "0 0 */5 * * *",
            "0 0 0 * * *",
            "1,31 59 23 * * *",
            "0 0 12 * * MON-FRI",
            "0 30 * 13 * FRI",
            "0 0 0 */3 * SAT",
            "0 0 0 28-31 * *",
            "45 45 1 1-10 feb-apr */3",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % bound
        };
        const WINDOW: i64 = 4 * 86_400;
        for text in rules {
            let r = rule(text);
            for _ in 0..6 {
                let start = add_seconds(ct(2023, 1, 1, 0, 0, 0), next(2 * 365 * 86_400) as i64);
                let mut reference = None;
                for s in 1..=WINDOW {
                    let t = add_seconds(start, s);
                    if r.matches(t) {
                        reference = Some(t);
                        break;
                    }
                }
                match (r.next_after(start), reference) {
                    (got, Some(want)) => assert_eq!(got, Some(want), "{text:?} after {start}"),
                    (Some(got), None) => assert!(
                        seconds_between(start, got) > WINDOW && r.matches(got),
                        "{text:?} after {start}: {got}"
                    ),
                    (None, None) => panic!("{text:?} after {start}: no occurrence"),
                }
            }
        }
    }

    #[test]
    fn every_two_seconds_is_cheap_and_regular() {
        let r = rule("*/2 * * * * *");
        let mut t = ct(2024, 2, 28, 23, 0, 0);
        for _ in 0..200_000 {
            let n = match r.next_after(t) {
                Some(n) => n,
                None => panic!("no occurrence after {t}"),
            };
            assert_eq!(seconds_between(t, n), 2, "after {t}");
            t = n;
        }
        assert_eq!(t, ct(2024, 3, 4, 14, 6, 40));
    }

    #[test]
    fn weekday_of_known_dates() {
        // Known dates by the day of the week they fall on, Sunday (0) first.
        let by_weekday: [&[(i32, u32, u32)]; 7] = [
            &[(2032, 2, 29)],
            &[(2100, 3, 1)],
            &[(2000, 2, 29), (2038, 1, 19)],
            &[(1969, 12, 31)],
            &[(1970, 1, 1), (2024, 2, 29), (1900, 3, 1)],
            &[(2024, 3, 1), (2104, 2, 29)],
            &[(2000, 1, 1), (2026, 7, 4), (1600, 1, 1)],
        ];
        for (want, dates) in (0..).zip(by_weekday) {
            for &(y, m, d) in dates {
                assert_eq!(weekday(y, m, d), want, "{y}-{m}-{d}");
            }
        }
    }

    #[test]
    fn seconds_between_counts_calendar_days() {
        for (from, to, want) in [
            ("2024-01-01 00:00:00", "2024-01-01 00:00:02", 2),
            ("2024-01-01 00:00:02", "2024-01-01 00:00:00", -2),
            ("2024-01-31 23:59:59", "2024-02-01 00:00:00", 1),
            ("2024-02-28 12:00:00", "2024-03-01 12:00:00", 2 * 86_400),
            ("2023-02-28 12:00:00", "2023-03-01 12:00:00", 86_400),
            ("2024-01-01 00:00:00", "2025-01-01 00:00:00", 366 * 86_400),
            ("2023-01-01 00:00:00", "2024-01-01 00:00:00", 365 * 86_400),
            ("2100-02-28 00:00:00", "2100-03-01 00:00:00", 86_400),
            ("2000-02-28 00:00:00", "2000-03-01 00:00:00", 2 * 86_400),
            ("1999-12-31 23:59:59", "2000-01-01 00:00:00", 1),
            ("1970-01-01 00:00:00", "2000-01-01 00:00:00", 946_684_800),
            ("1970-01-01 00:00:00", "2038-01-19 03:14:07", 2_147_483_647),
            ("1970-01-01 00:00:00", "1900-03-01 00:00:00", -2_203_891_200),
            ("2024-03-10 01:59:59", "2024-03-10 03:00:00", 3_601),
        ] {
            assert_eq!(seconds_between(at(from), at(to)), want, "{from} → {to}");
        }
    }
}
