//! Due dates counted the way Chinese procedure law counts periods.
//!
//! The Civil Procedure Law, the Criminal Procedure Law (art. 105) and the Administrative
//! Procedure Law agree:
//! - the day (or hour) a period starts in is not counted;
//! - a period in months ends on the corresponding day of its last month, or on that month's
//!   last day where there is none;
//! - when the last day is a public holiday or a rest day, the period ends on the first
//!   working day after it (periods in hours are not extended);
//! - a period ends at 24:00 China Standard Time of its last day.
//!
//! Which days are working days changes every year with the State Council's holiday
//! notice, so it is data ([`HolidayCalendar`], one file per year under `calendars/cn/`),
//! never code. A computation that needs a day of a year without data fails with
//! [`CalendarError::NoCalendarForYear`] instead of guessing: a deadline computed from a
//! guessed calendar would be wrong in exactly the weeks that matter.
//!
//! China Standard Time is a fixed UTC+08:00 (no daylight saving since 1991), so no time
//! zone database is involved. `docs/clocks.md` explains the rules with examples.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use time::macros::offset;
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset, Weekday};

/// UTC+08:00, the offset every period is counted and printed in.
pub const CHINA_STANDARD_TIME: UtcOffset = offset!(+8);

/// The year files shipped with liaison: (file name, contents).
const SHIPPED: [(&str, &str); 2] = [
    ("2025.toml", include_str!("../../../calendars/cn/2025.toml")),
    ("2026.toml", include_str!("../../../calendars/cn/2026.toml")),
];

/// A period as the law states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// Calendar days (`P3D`).
    Days(u32),
    /// Calendar months (`P2M`).
    Months(u32),
    /// Hours (`PT24H`).
    Hours(u32),
    /// Working days: Monday to Friday except public holidays, plus declared make-up
    /// working days. ISO 8601 has no designator for them; `--working-days N` on the
    /// command line.
    WorkingDays(u32),
    /// An exact number of seconds (`PT30S`, `PT5M`), no rounding and no holidays: no law
    /// counts this way; it lets a test or demo configuration run a clock in seconds.
    Seconds(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("period {input:?}: {reason}; expected P<n>D, P<n>M, PT<n>H (or PT<n>M, PT<n>S) with n ≥ 1")]
pub struct PeriodError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for Period {
    type Err = PeriodError;

    /// The ISO 8601 forms the domain uses: `P3D`, `P2M`, `PT24H`. Combined forms
    /// (`P1M3D`), weeks and years are refused: the law counts each unit differently, so a
    /// period has exactly one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PeriodError {
            input: s.to_owned(),
            reason,
        };
        let rest = s
            .strip_prefix('P')
            .ok_or_else(|| err("does not start with P"))?;
        let (rest, hours) = match rest.strip_prefix('T') {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let unit = rest.chars().last().ok_or_else(|| err("no number"))?;
        let digits = &rest[..rest.len() - unit.len_utf8()];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("not one whole number and one unit"));
        }
        let n: u32 = digits.parse().map_err(|_| err("number too large"))?;
        if n == 0 {
            return Err(err("a period of zero"));
        }
        match (hours, unit) {
            (false, 'D') => Ok(Period::Days(n)),
            (false, 'M') => Ok(Period::Months(n)),
            (true, 'H') => Ok(Period::Hours(n)),
            (true, 'M') => n
                .checked_mul(60)
                .map(Period::Seconds)
                .ok_or_else(|| err("number too large")),
            (true, 'S') => Ok(Period::Seconds(n)),
            _ => Err(err("unsupported unit")),
        }
    }
}

impl Period {
    /// This period in trial time, where a day lasts `day` and there is no calendar: months
    /// count 30 days, hours a 24th of a day, working days as days; exact seconds stay.
    pub fn in_trial_time(self, day: std::time::Duration) -> Period {
        let days = |n: f64| Period::Seconds(((day.as_secs_f64() * n).round() as u32).max(1));
        match self {
            Period::Days(n) | Period::WorkingDays(n) => days(f64::from(n)),
            Period::Months(n) => days(30.0 * f64::from(n)),
            Period::Hours(n) => days(f64::from(n) / 24.0),
            Period::Seconds(n) => Period::Seconds(n),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Days(n) => write!(f, "P{n}D"),
            Period::Months(n) => write!(f, "P{n}M"),
            Period::Hours(n) => write!(f, "PT{n}H"),
            Period::WorkingDays(n) => write!(f, "{n} working day(s)"),
            Period::Seconds(n) => write!(f, "PT{n}S"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The computation needs to know whether a day of this year is a working day, and no
    /// holiday calendar for the year is loaded.
    #[error(
        "no holiday calendar for {0}: the period needs {0}.toml, made from the State Council's holiday notice for {0}"
    )]
    NoCalendarForYear(i32),
    /// The due date lies beyond the dates this program represents (year 9999).
    #[error("the period runs past the year 9999")]
    OutOfRange,
}

/// Why a calendar file was refused. Every variant names the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarDataError {
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    #[error("{file}: the file name must be the year it holds, {year}.toml")]
    FileName { file: String, year: i32 },
    #[error("{file}: {date} is not a date")]
    BadDate { file: String, date: String },
    #[error(
        "{file}: {date} ({name}) lies outside {year} and the last week of the December before it"
    )]
    OutsideYear {
        file: String,
        name: String,
        date: Date,
        year: i32,
    },
    #[error("{file}: holiday {name} ends ({last}) before it starts ({first})")]
    Reversed {
        file: String,
        name: String,
        first: Date,
        last: Date,
    },
    #[error(
        "{file}: make-up working day {date} ({name}) is a {weekday}; only a weekend day can be declared a working day"
    )]
    WorkingWeekday {
        file: String,
        name: String,
        date: Date,
        weekday: Weekday,
    },
    #[error("{file}: {date} is listed twice ({first} and {second})")]
    Duplicate {
        file: String,
        date: Date,
        first: String,
        second: String,
    },
    #[error("{file}: the calendar for {year} is loaded twice")]
    DuplicateYear { file: String, year: i32 },
}

/// One year's file, as written (see `calendars/cn/2025.toml`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    notice: String,
    document: String,
    issued: toml::value::Datetime,
    #[serde(default)]
    holidays: Vec<HolidayEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayEntry {
    name: String,
    first: toml::value::Datetime,
    last: toml::value::Datetime,
    #[serde(default)]
    working: Vec<toml::value::Datetime>,
}

/// The notice a year's calendar comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub year: i32,
    /// Its title, e.g. 国务院办公厅关于2025年部分节假日安排的通知.
    pub title: String,
    /// Its document number, e.g. 国办发明电〔2024〕12号.
    pub document: String,
    pub issued: Date,
}

/// What a listed day is, and which holiday of the notice says so.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Listed {
    Holiday(String),
    Working(String),
}

/// Public holidays and declared make-up working days, for the years whose notices are
/// loaded. Any other day is a working day from Monday to Friday and a rest day on the
/// weekend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolidayCalendar {
    notices: BTreeMap<i32, Notice>,
    days: BTreeMap<Date, Listed>,
}

impl HolidayCalendar {
    /// A calendar with no year: every day-counting computation fails. Add years with
    /// [`HolidayCalendar::add_file`].
    pub fn empty() -> Self {
        Self::default()
    }

    /// The years shipped with liaison (`calendars/cn/*.toml`, built into the binary).
    pub fn shipped() -> Self {
        // The shipped files are checked by a unit test; they cannot fail here.
        Self::from_files(SHIPPED.iter().map(|(name, text)| (*name, *text)))
            .expect("the shipped holiday calendars are valid")
    }

    /// A calendar from year files given as (file name, contents); each file must be
    /// named after its year (`2025.toml`).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, CalendarDataError> {
        let mut calendar = Self::empty();
        for (name, text) in files {
            let year = calendar.add_file(name, text)?;
            if name != format!("{year}.toml") {
                return Err(CalendarDataError::FileName {
                    file: name.to_owned(),
                    year,
                });
            }
        }
        Ok(calendar)
    }

    /// Parses one year's file and adds it; returns its year. `file` names it in errors.
    pub fn add_file(&mut self, file: &str, text: &str) -> Result<i32, CalendarDataError> {
        let parsed: YearFile = toml::from_str(text).map_err(|e| CalendarDataError::Toml {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let year = parsed.year;
        if self.notices.contains_key(&year) {
            return Err(CalendarDataError::DuplicateYear {
                file: file.to_owned(),
                year,
            });
        }
        let date = |d: &toml::value::Datetime| to_date(file, d);
        let notice = Notice {
            year,
            title: parsed.notice,
            document: parsed.document,
            issued: date(&parsed.issued)?,
        };
        // Collect first, so that a refused file leaves the calendar as it was.
        let mut days = Vec::new();
        for h in &parsed.holidays {
            let (first, last) = (date(&h.first)?, date(&h.last)?);
            if last < first {
                return Err(CalendarDataError::Reversed {
                    file: file.to_owned(),
                    name: h.name.clone(),
                    first,
                    last,
                });
            }
            let mut d = first;
            loop {
                days.push((d, Listed::Holiday(h.name.clone())));
                if d == last {
                    break;
                }
                d = d.next_day().ok_or(CalendarDataError::BadDate {
                    file: file.to_owned(),
                    date: d.to_string(),
                })?;
            }
            for w in &h.working {
                let w = date(w)?;
                if !is_weekend(w) {
                    return Err(CalendarDataError::WorkingWeekday {
                        file: file.to_owned(),
                        name: h.name.clone(),
                        date: w,
                        weekday: w.weekday(),
                    });
                }
                days.push((w, Listed::Working(h.name.clone())));
            }
        }
        let mut added: BTreeMap<Date, Listed> = BTreeMap::new();
        for (d, listed) in days {
            // A notice arranges its own year, and now and then the last week of the
            // December before it (a New Year holiday that starts on 30 December).
            if d.year() != year && !(d.year() == year - 1 && in_last_week_of_year(d)) {
                let name = match &listed {
                    Listed::Holiday(n) | Listed::Working(n) => n.clone(),
                };
                return Err(CalendarDataError::OutsideYear {
                    file: file.to_owned(),
                    name,
                    date: d,
                    year,
                });
            }
            if let Some(earlier) = added.get(&d).or_else(|| self.days.get(&d)) {
                return Err(CalendarDataError::Duplicate {
                    file: file.to_owned(),
                    date: d,
                    first: describe(earlier),
                    second: describe(&listed),
                });
            }
            added.insert(d, listed);
        }
        self.days.extend(added);
        self.notices.insert(year, notice);
        Ok(year)
    }

    /// The notices loaded, by year.
    pub fn notices(&self) -> impl Iterator<Item = &Notice> {
        self.notices.values()
    }

    /// Whether `date` is a working day; an error when its year has no calendar, or when
    /// it lies in the last week of December and the next year has none (that year's
    /// notice may still move it).
    pub fn is_working_day(&self, date: Date) -> Result<bool, CalendarError> {
        if !self.notices.contains_key(&date.year()) {
            return Err(CalendarError::NoCalendarForYear(date.year()));
        }
        if in_last_week_of_year(date) && !self.notices.contains_key(&(date.year() + 1)) {
            return Err(CalendarError::NoCalendarForYear(date.year() + 1));
        }
        Ok(match self.days.get(&date) {
            Some(Listed::Holiday(_)) => false,
            Some(Listed::Working(_)) => true,
            None => !is_weekend(date),
        })
    }
}

fn describe(listed: &Listed) -> String {
    match listed {
        Listed::Holiday(n) => format!("holiday of {n}"),
        Listed::Working(n) => format!("working day for {n}"),
    }
}

/// 25–31 December: the days a following year's notice may arrange. The New Year holiday
/// reaches back a few days at most, and its make-up working day onto the weekend before
/// (the 2019 notice, 国办发明电〔2018〕15号: 30 December 2018 to 1 January 2019 off,
/// Saturday 29 December 2018 a working day).
fn in_last_week_of_year(date: Date) -> bool {
    date.month() == Month::December && date.day() >= 25
}

fn is_weekend(date: Date) -> bool {
    matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// A TOML local date (`2025-10-01`); a time or an offset is refused, since a calendar day
/// is all a notice declares.
fn to_date(file: &str, d: &toml::value::Datetime) -> Result<Date, CalendarDataError> {
    let bad = || CalendarDataError::BadDate {
        file: file.to_owned(),
        date: d.to_string(),
    };
    match (d.date, d.time, d.offset) {
        (Some(date), None, None) => {
            let month = Month::try_from(date.month).map_err(|_| bad())?;
            Date::from_calendar_date(i32::from(date.year), month, date.day).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// The instant a period that starts at `start` runs out.
///
/// Days, months and working days end at 24:00 China Standard Time of their last day,
/// returned as 00:00 of the next day at +08:00. Hours end `n` hours after the full hour
/// following `start` (the hour `start` falls in is not counted, even when `start` is on
/// the hour). Only the days whose status decides the result are looked up: the start day
/// is never counted, so its year needs no calendar; periods in hours need none at all.
pub fn due(
    start: OffsetDateTime,
    period: Period,
    calendar: &HolidayCalendar,
) -> Result<OffsetDateTime, CalendarError> {
    let start = start.to_offset(CHINA_STANDARD_TIME);
    let start_day = start.date();
    let last_day = match period {
        Period::Hours(n) => {
            let next_hour = start
                .replace_time(Time::from_hms(start.hour(), 0, 0).expect("a valid hour"))
                .checked_add(Duration::hours(1))
                .ok_or(CalendarError::OutOfRange)?;
            return next_hour
                .checked_add(Duration::hours(i64::from(n)))
                .ok_or(CalendarError::OutOfRange);
        }
        Period::Seconds(n) => {
            return start
                .checked_add(Duration::seconds(i64::from(n)))
                .ok_or(CalendarError::OutOfRange);
        }
        Period::Days(n) => first_working_from(
            start_day
                .checked_add(Duration::days(i64::from(n)))
                .ok_or(CalendarError::OutOfRange)?,
            calendar,
        )?,
        Period::Months(n) => first_working_from(add_months(start_day, n)?, calendar)?,
        Period::WorkingDays(n) => {
            let mut day = start_day;
            let mut counted = 0;
            while counted < n {
                day = day.next_day().ok_or(CalendarError::OutOfRange)?;
                if calendar.is_working_day(day)? {
                    counted += 1;
                }
            }
            day
        }
    };
    let after = last_day.next_day().ok_or(CalendarError::OutOfRange)?;
    Ok(after.midnight().assume_offset(CHINA_STANDARD_TIME))
}

/// The instant a period whose last day is `day` runs out: 24:00 China Standard Time of
/// `day`, or of the first working day after it when `day` is a rest day or holiday (a date
/// stated in a document, such as a recommendation's reply date, counts the same way).
pub fn due_on_day(day: Date, calendar: &HolidayCalendar) -> Result<OffsetDateTime, CalendarError> {
    let last_day = first_working_from(day, calendar)?;
    let after = last_day.next_day().ok_or(CalendarError::OutOfRange)?;
    Ok(after.midnight().assume_offset(CHINA_STANDARD_TIME))
}

/// `day` if it is a working day, else the first working day after it.
fn first_working_from(mut day: Date, calendar: &HolidayCalendar) -> Result<Date, CalendarError> {
    while !calendar.is_working_day(day)? {
        day = day.next_day().ok_or(CalendarError::OutOfRange)?;
    }
    Ok(day)
}

/// The corresponding day `n` months after `day`, or that month's last day where there is
/// none (31 January + 1 month = 28 or 29 February). Counted from `day` itself, not month
/// by month, so 31 January + 2 months is 31 March.
fn add_months(day: Date, n: u32) -> Result<Date, CalendarError> {
    let index = i64::from(day.year()) * 12 + i64::from(u8::from(day.month()) - 1) + i64::from(n);
    let year = i32::try_from(index.div_euclid(12)).map_err(|_| CalendarError::OutOfRange)?;
    let month = u8::try_from(index.rem_euclid(12) + 1).expect("1..=12");
    let month = Month::try_from(month).expect("1..=12");
    let length = month.length(year);
    Date::from_calendar_date(year, month, day.day().min(length))
        .map_err(|_| CalendarError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;
    use time::macros::{date, datetime};

    fn due_str(start: &str, period: Period, calendar: &HolidayCalendar) -> String {
        let start = OffsetDateTime::parse(start, &Rfc3339).unwrap();
        due(start, period, calendar)
            .unwrap()
            .format(&Rfc3339)
            .unwrap()
    }

    fn shipped(start: &str, period: &str) -> String {
        due_str(start, period.parse().unwrap(), &HolidayCalendar::shipped())
    }

    fn shipped_err(start: &str, period: Period) -> CalendarError {
        let start = OffsetDateTime::parse(start, &Rfc3339).unwrap();
        due(start, period, &HolidayCalendar::shipped()).unwrap_err()
    }

    /// A year with no holidays and no make-up days, for rules the shipped years cannot
    /// show (leap years), plus the given holidays.
    fn plain_year(year: i32, holidays: &str) -> String {
        format!(
            "year = {year}\nnotice = \"test\"\ndocument = \"test\"\nissued = {}-11-01\n{holidays}",
            year - 1
        )
    }

    fn calendar_of(years: &[(i32, &str)]) -> HolidayCalendar {
        let files: Vec<(String, String)> = years
            .iter()
            .map(|(y, h)| (format!("{y}.toml"), plain_year(*y, h)))
            .collect();
        HolidayCalendar::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str()))).unwrap()
    }

    #[test]
    fn periods_parse_from_iso_8601_and_print_back() {
        assert_eq!("P3D".parse(), Ok(Period::Days(3)));
        assert_eq!("P2M".parse(), Ok(Period::Months(2)));
        assert_eq!("PT24H".parse(), Ok(Period::Hours(24)));
        for p in ["P3D", "P2M", "PT24H", "P15D", "PT30S"] {
            assert_eq!(p.parse::<Period>().unwrap().to_string(), p);
        }
        // Seconds and minutes are exact, for trial configurations.
        assert_eq!("PT1M".parse(), Ok(Period::Seconds(60)));
        assert_eq!("PT30S".parse(), Ok(Period::Seconds(30)));
        for bad in [
            "",
            "P",
            "3D",
            "P0D",
            "PT0H",
            "P-1D",
            "P+1D",
            "P1.5D",
            "P1W",
            "P1Y",
            "PT0S",
            "P1H",
            "P1M3D",
            "p3d",
            "P 3D",
            "P99999999999D",
            "PT",
            "P3DD",
            "P３D",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_shipped_calendars_load_with_their_notices() {
        let calendar = HolidayCalendar::shipped();
        let notices: Vec<(i32, &str, Date)> = calendar
            .notices()
            .map(|n| (n.year, n.document.as_str(), n.issued))
            .collect();
        assert_eq!(
            notices,
            [
                (2025, "国办发明电〔2024〕12号", date!(2024 - 11 - 12)),
                (2026, "国办发明电〔2025〕7号", date!(2025 - 11 - 04)),
            ]
        );
        // 28 holidays and 5 make-up days in 2025; 33 and 6 in 2026.
        let count = |year, holiday: bool| {
            calendar
                .days
                .iter()
                .filter(|(d, l)| d.year() == year && matches!(l, Listed::Holiday(_)) == holiday)
                .count()
        };
        assert_eq!((count(2025, true), count(2025, false)), (28, 5));
        assert_eq!((count(2026, true), count(2026, false)), (33, 6));
    }

    #[test]
    fn a_period_in_days_does_not_count_its_first_day_and_ends_at_midnight() {
        // Monday 2025-03-10, any time of day: the 11th, 12th and 13th are counted.
        assert_eq!(
            shipped("2025-03-10T00:00:00+08:00", "P3D"),
            "2025-03-14T00:00:00+08:00"
        );
        assert_eq!(
            shipped("2025-03-10T23:59:59+08:00", "P3D"),
            "2025-03-14T00:00:00+08:00"
        );
        // The day is China's: 16:30 UTC on the 9th is already the 10th in Beijing.
        assert_eq!(
            shipped("2025-03-09T16:30:00Z", "P3D"),
            "2025-03-14T00:00:00+08:00"
        );
    }

    #[test]
    fn a_last_day_on_a_weekend_moves_to_monday() {
        // Wednesday 2025-03-12 + 3 days = Saturday the 15th → Monday the 17th.
        assert_eq!(
            shipped("2025-03-12T09:00:00+08:00", "P3D"),
            "2025-03-18T00:00:00+08:00"
        );
    }

    #[test]
    fn a_holiday_week_extends_the_period_past_it() {
        // National Day 2025: 1–8 October are holidays, so a period ending on the 3rd ends
        // on Thursday the 9th.
        assert_eq!(
            shipped("2025-09-30T15:00:00+08:00", "P3D"),
            "2025-10-10T00:00:00+08:00"
        );
        // Spring Festival 2026: 15–23 February; Tuesday the 24th is the first working day.
        assert_eq!(
            shipped("2026-02-13T10:00:00+08:00", "P3D"),
            "2026-02-25T00:00:00+08:00"
        );
        // A working-day period does not advance during the holiday either.
        assert_eq!(
            due_str(
                "2025-09-30T15:00:00+08:00",
                Period::WorkingDays(1),
                &HolidayCalendar::shipped()
            ),
            "2025-10-10T00:00:00+08:00"
        );
    }

    #[test]
    fn a_make_up_working_day_is_a_working_day_and_a_valid_last_day() {
        // Sunday 2025-09-28 is declared a working day: a period ending on it is not
        // extended.
        assert_eq!(
            shipped("2025-09-26T10:00:00+08:00", "P2D"),
            "2025-09-29T00:00:00+08:00"
        );
        // Saturday 2026-02-14 is declared a working day: the first working day after
        // Friday the 13th.
        let calendar = HolidayCalendar::shipped();
        assert_eq!(
            due_str(
                "2026-02-13T10:00:00+08:00",
                Period::WorkingDays(1),
                &calendar
            ),
            "2026-02-15T00:00:00+08:00"
        );
        // After the 2025 holiday: Fri 10, Sat 11 (declared working), Mon 13 October.
        assert_eq!(
            due_str(
                "2025-10-09T10:00:00+08:00",
                Period::WorkingDays(3),
                &calendar
            ),
            "2025-10-14T00:00:00+08:00"
        );
        // An ordinary Saturday is not a working day.
        assert_eq!(
            due_str(
                "2025-03-14T10:00:00+08:00",
                Period::WorkingDays(1),
                &calendar
            ),
            "2025-03-18T00:00:00+08:00"
        );
    }

    #[test]
    fn months_end_on_the_corresponding_day_or_the_last_day_of_the_month() {
        // 15 January + 1 month = 15 February (Saturday in 2025 → Monday the 17th).
        assert_eq!(
            shipped("2025-01-15T10:00:00+08:00", "P1M"),
            "2025-02-18T00:00:00+08:00"
        );
        // 31 January + 1 month: no 31 February, so 28 February (Friday).
        assert_eq!(
            shipped("2025-01-31T10:00:00+08:00", "P1M"),
            "2025-03-01T00:00:00+08:00"
        );
        // Counted from the start day, not month by month: 31 January + 2 months = 31 March.
        assert_eq!(
            shipped("2025-01-31T10:00:00+08:00", "P2M"),
            "2025-04-01T00:00:00+08:00"
        );
        // 31 July + 1 month = 31 August 2025, a Sunday → Monday 1 September.
        assert_eq!(
            shipped("2025-07-31T10:00:00+08:00", "P1M"),
            "2025-09-02T00:00:00+08:00"
        );
        // 28 February 2026 is a Saturday declared a working day: it stays the last day.
        assert_eq!(
            shipped("2026-01-31T10:00:00+08:00", "P1M"),
            "2026-03-01T00:00:00+08:00"
        );
        // The domain's two-month reply period, across the end of a year and into the
        // Spring Festival: 15 February 2026 → Tuesday the 24th.
        assert_eq!(
            shipped("2025-12-15T10:00:00+08:00", "P2M"),
            "2026-02-25T00:00:00+08:00"
        );
        // 31 December + 2 months = 28 February 2026, a declared working Saturday.
        assert_eq!(
            shipped("2025-12-31T10:00:00+08:00", "P2M"),
            "2026-03-01T00:00:00+08:00"
        );
    }

    #[test]
    fn leap_years_have_a_29_february() {
        let calendar = calendar_of(&[(2024, ""), (2028, ""), (2029, "")]);
        // 2024 and 2028 are leap years: 31 January + 1 month = 29 February.
        assert_eq!(
            due_str("2024-01-31T10:00:00+08:00", Period::Months(1), &calendar),
            "2024-03-01T00:00:00+08:00"
        );
        assert_eq!(
            due_str("2028-01-31T10:00:00+08:00", Period::Months(1), &calendar),
            "2028-03-01T00:00:00+08:00"
        );
        // 29 February 2028 + 12 months: 2029 has no 29 February → Wednesday the 28th.
        assert_eq!(
            due_str("2028-02-29T10:00:00+08:00", Period::Months(12), &calendar),
            "2029-03-01T00:00:00+08:00"
        );
        // A day period crosses 29 February.
        assert_eq!(
            due_str("2028-02-28T10:00:00+08:00", Period::Days(2), &calendar),
            "2028-03-02T00:00:00+08:00"
        );
        // A holiday on 29 February moves the end to 1 March.
        let with_holiday = calendar_of(&[(
            2024,
            "[[holidays]]\nname = \"test\"\nfirst = 2024-02-29\nlast = 2024-02-29\n",
        )]);
        assert_eq!(
            due_str(
                "2024-01-31T10:00:00+08:00",
                Period::Months(1),
                &with_holiday
            ),
            "2024-03-02T00:00:00+08:00"
        );
    }

    #[test]
    fn year_boundaries_use_the_next_years_calendar() {
        // 29 December 2025 + 3 days = 1 January 2026, a holiday until the 3rd; Sunday
        // 4 January is declared a working day.
        assert_eq!(
            shipped("2025-12-29T10:00:00+08:00", "P3D"),
            "2026-01-05T00:00:00+08:00"
        );
        // A mid-December last day needs only its own year, although the period runs
        // out in the next.
        assert_eq!(
            shipped("2025-12-16T10:00:00+08:00", "P1D"),
            "2025-12-18T00:00:00+08:00"
        );
        assert_eq!(
            due_str(
                "2026-12-16T10:00:00+08:00",
                Period::Days(1),
                &calendar_of(&[(2026, "")])
            ),
            "2026-12-18T00:00:00+08:00"
        );
        // The start day is never counted, so its year needs no calendar.
        assert_eq!(
            shipped("2024-12-30T10:00:00+08:00", "P3D"),
            "2025-01-03T00:00:00+08:00"
        );
    }

    #[test]
    fn a_period_that_reaches_a_year_without_a_calendar_is_an_error() {
        let err = CalendarError::NoCalendarForYear(2027);
        assert_eq!(
            shipped_err("2026-12-30T10:00:00+08:00", Period::Days(3)),
            err
        );
        assert_eq!(
            shipped_err("2026-12-31T10:00:00+08:00", Period::Days(1)),
            err
        );
        assert_eq!(
            shipped_err("2026-12-15T10:00:00+08:00", Period::Months(1)),
            err
        );
        assert_eq!(
            shipped_err("2026-12-31T10:00:00+08:00", Period::WorkingDays(1)),
            err
        );
        // A last day before 2025 is not guessed either.
        assert_eq!(
            shipped_err("2024-06-01T10:00:00+08:00", Period::Days(3)),
            CalendarError::NoCalendarForYear(2024)
        );
    }

    #[test]
    fn the_last_week_of_december_needs_the_next_years_notice_too() {
        // The next year's notice may move days of the last week of December (the 2019
        // notice made 31 December 2018 a holiday and Saturday the 29th a working day), so
        // until it is loaded those days are unknown, not ordinary.
        let only_2026 = calendar_of(&[(2026, "")]);
        let both = calendar_of(&[(2026, ""), (2027, "")]);
        // Tuesday 22 December + 3 days = Friday the 25th.
        let start = datetime!(2026-12-22 10:00 +8);
        assert_eq!(
            due(start, Period::Days(3), &only_2026),
            Err(CalendarError::NoCalendarForYear(2027))
        );
        assert_eq!(
            due(start, Period::Days(3), &both),
            Ok(datetime!(2026-12-26 00:00 +8))
        );
        // Thursday 24 December is still known from 2026's notice alone.
        assert_eq!(
            due(start, Period::Days(2), &only_2026),
            Ok(datetime!(2026-12-25 00:00 +8))
        );
        // And with the shipped years: Thursday 31 December 2026 waits for 2027's notice.
        assert_eq!(
            shipped_err("2026-12-30T10:00:00+08:00", Period::Days(1)),
            CalendarError::NoCalendarForYear(2027)
        );
        // A holiday the next notice puts on 31 December applies once both are loaded.
        let with_eve = calendar_of(&[
            (2026, ""),
            (
                2027,
                "[[holidays]]\nname = \"元旦\"\nfirst = 2026-12-31\nlast = 2027-01-01\n",
            ),
        ]);
        assert_eq!(
            due(start, Period::Days(9), &with_eve),
            Ok(datetime!(2027-01-05 00:00 +8))
        );
        // Only the last week: 2027's file may not list 24 December 2026.
        assert!(matches!(
            HolidayCalendar::from_files([(
                "2027.toml",
                "year = 2027\nnotice = \"n\"\ndocument = \"d\"\nissued = 2026-11-01\n\
                 [[holidays]]\nname = \"a\"\nfirst = 2026-12-24\nlast = 2027-01-01\n"
            )]),
            Err(CalendarDataError::OutsideYear { .. })
        ));
    }

    #[test]
    fn a_period_in_hours_starts_at_the_next_full_hour_without_holiday_extension() {
        assert_eq!(
            shipped("2025-03-10T10:15:00+08:00", "PT24H"),
            "2025-03-11T11:00:00+08:00"
        );
        // The hour it starts in is not counted even when the event is on the hour.
        assert_eq!(
            shipped("2025-03-10T10:00:00+08:00", "PT24H"),
            "2025-03-11T11:00:00+08:00"
        );
        assert_eq!(
            shipped("2025-03-10T23:30:00+08:00", "PT1H"),
            "2025-03-11T01:00:00+08:00"
        );
        // Into a holiday: not extended.
        assert_eq!(
            shipped("2025-09-30T10:15:00+08:00", "PT24H"),
            "2025-10-01T11:00:00+08:00"
        );
        // Printed in China Standard Time whatever the offset of the start.
        assert_eq!(
            shipped("2025-03-10T02:15:00Z", "PT24H"),
            "2025-03-11T11:00:00+08:00"
        );
        // Hours consult no calendar, so they work in any year.
        assert_eq!(
            due_str(
                "2031-05-01T08:59:59+08:00",
                Period::Hours(48),
                &HolidayCalendar::empty()
            ),
            "2031-05-03T09:00:00+08:00"
        );
    }

    #[test]
    fn periods_past_year_9999_are_errors_not_panics() {
        let calendar = calendar_of(&[(9999, "")]);
        let start = datetime!(9999-12-30 10:00 +8);
        for period in [
            Period::Days(u32::MAX),
            Period::Months(u32::MAX),
            Period::Hours(u32::MAX),
            Period::Days(2),
            Period::WorkingDays(5),
        ] {
            assert!(due(start, period, &calendar).is_err(), "{period}");
        }
    }

    #[test]
    fn calendar_files_that_contradict_themselves_are_refused() {
        let load = |text: &str| HolidayCalendar::from_files([("2025.toml", text)]);
        let head = "year = 2025\nnotice = \"n\"\ndocument = \"d\"\nissued = 2024-11-12\n";
        let with = |body: &str| format!("{head}{body}");
        // Not named after its year.
        assert!(matches!(
            HolidayCalendar::from_files([("2026.toml", head)]),
            Err(CalendarDataError::FileName { year: 2025, .. })
        ));
        // Unknown key (a typo of `working`).
        assert!(matches!(
            load(&with(
                "[[holidays]]\nname = \"a\"\nfirst = 2025-01-01\nlast = 2025-01-01\nworkday = []\n"
            )),
            Err(CalendarDataError::Toml { .. })
        ));
        // A make-up working day on a weekday.
        assert!(matches!(
            load(&with(
                "[[holidays]]\nname = \"a\"\nfirst = 2025-01-01\nlast = 2025-01-01\nworking = [2025-01-02]\n"
            )),
            Err(CalendarDataError::WorkingWeekday { .. })
        ));
        // A range that ends before it starts.
        assert!(matches!(
            load(&with(
                "[[holidays]]\nname = \"a\"\nfirst = 2025-01-03\nlast = 2025-01-01\n"
            )),
            Err(CalendarDataError::Reversed { .. })
        ));
        // Another year's day.
        assert!(matches!(
            load(&with(
                "[[holidays]]\nname = \"a\"\nfirst = 2026-01-01\nlast = 2026-01-01\n"
            )),
            Err(CalendarDataError::OutsideYear { .. })
        ));
        // One day both a holiday and a working day.
        assert!(matches!(
            load(&with(
                "[[holidays]]\nname = \"a\"\nfirst = 2025-01-04\nlast = 2025-01-05\nworking = [2025-01-04]\n"
            )),
            Err(CalendarDataError::Duplicate { .. })
        ));
        // A date with a time.
        assert!(matches!(
            load(&with(
                "[[holidays]]\nname = \"a\"\nfirst = 2025-01-01T00:00:00\nlast = 2025-01-01\n"
            )),
            Err(CalendarDataError::BadDate { .. })
        ));
        // The same year twice.
        assert!(matches!(
            HolidayCalendar::from_files([("2025.toml", head), ("2025.toml", head)]),
            Err(CalendarDataError::DuplicateYear { year: 2025, .. })
        ));
        // The December before the year is allowed (a New Year holiday from 30 December).
        let calendar = HolidayCalendar::from_files([
            ("2024.toml", "year = 2024\nnotice = \"n\"\ndocument = \"d\"\nissued = 2023-11-01\n"),
            (
                "2025.toml",
                with("[[holidays]]\nname = \"a\"\nfirst = 2024-12-30\nlast = 2025-01-01\nworking = [2024-12-28]\n").as_str(),
            ),
        ])
        .unwrap();
        assert_eq!(calendar.is_working_day(date!(2024 - 12 - 30)), Ok(false));
        assert_eq!(calendar.is_working_day(date!(2024 - 12 - 28)), Ok(true));
    }
}
