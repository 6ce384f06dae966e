//! CF time coordinates ("UNIT since DATE" with a `calendar` attribute) to calendar dates. Reanalyses (ERA5)
//! use the standard calendar; climate-model projections, which scenario runs read, often use `noleap`
//! (`365_day`) or `360_day` calendars. Counting their days as Gregorian ones puts every sample of 2050 about 49
//! days early (the leap days since 1850), so each calendar is decoded by its own rules (CF Conventions 1.11,
//! section 4.4.1 "Calendar"):
//! - `standard`, `gregorian` (or no attribute), `proleptic_gregorian`: Gregorian days. An origin before
//!   1582-10-15 under `standard` would count Julian days before the reform and is refused; under
//!   `proleptic_gregorian` it is Gregorian all the way.
//! - `noleap`, `365_day`: every year has 365 days, February 28; its dates are Gregorian dates.
//! - `360_day`: twelve months of 30 days. 29 and 30 February have no Gregorian date (None); the caller places
//!   only one sample a step of such files (monthly fields).
//!
//! Other calendars (`julian`, `all_leap`, `366_day`) are refused, naming them.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::error::{Error, Result};

/// A CF calendar carbonmap decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    Standard,
    ProlepticGregorian,
    NoLeap,
    Day360,
}

impl Calendar {
    /// The name of a calendar whose days are not the Gregorian ones (for provenance); None for those that are.
    pub fn non_gregorian(self) -> Option<&'static str> {
        match self {
            Calendar::Standard | Calendar::ProlepticGregorian => None,
            Calendar::NoLeap => Some("noleap (365 days every year)"),
            Calendar::Day360 => Some("360_day (twelve months of 30 days)"),
        }
    }

    /// The calendar of a `calendar` attribute (None: CF's default, standard).
    pub fn parse(path: &Path, name: Option<&str>) -> Result<Calendar> {
        let name = name.map(|n| n.trim().to_ascii_lowercase());
        match name.as_deref() {
            None | Some("" | "standard" | "gregorian") => Ok(Calendar::Standard),
            Some("proleptic_gregorian") => Ok(Calendar::ProlepticGregorian),
            Some("noleap" | "365_day") => Ok(Calendar::NoLeap),
            Some("360_day") => Ok(Calendar::Day360),
            Some(other) => Err(Error::input(
                path,
                format!(
                    "time calendar \"{other}\" is not supported (standard, gregorian, proleptic_gregorian, \
                     noleap, 365_day or 360_day)"
                ),
            )),
        }
    }
}

/// Days before each month in a 365-day year.
const CUMULATIVE_DAYS: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
const MS_PER_DAY: i64 = 86_400_000;

/// A time coordinate's units and calendar.
#[derive(Debug, Clone, Copy)]
pub struct TimeAxis {
    seconds: f64,
    origin: Origin,
    calendar: Calendar,
}

/// The origin of a time coordinate: a Gregorian date and time, or (other calendars) its day number in the
/// calendar and milliseconds into that day.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Gregorian(NaiveDateTime),
    Counted { day: i64, ms: i64 },
}

impl TimeAxis {
    /// CF time units, "UNIT since DATE", in `calendar`.
    pub fn parse(path: &Path, units: &str, calendar: Calendar) -> Result<TimeAxis> {
        let (unit, since) = units.split_once(" since ").ok_or_else(|| {
            Error::input(
                path,
                format!("time units \"{units}\" are not \"UNIT since DATE\""),
            )
        })?;
        let seconds = match unit.trim().trim_end_matches('s') {
            "second" => 1.0,
            "minute" => 60.0,
            "hour" => 3600.0,
            "day" => 86_400.0,
            other => {
                return Err(Error::input(
                    path,
                    format!("time unit \"{other}\" is not seconds, minutes, hours or days"),
                ))
            }
        };
        let origin = origin(path, since, calendar)?;
        Ok(TimeAxis {
            seconds,
            origin,
            calendar,
        })
    }

    /// The date and time of coordinate value `v` (None: not finite, or a 360-day date Gregorian lacks).
    pub fn stamp(&self, v: f64) -> Option<NaiveDateTime> {
        if !v.is_finite() {
            return None;
        }
        let ms = (v * self.seconds * 1000.0).round() as i64;
        let (day0, ms0) = match self.origin {
            Origin::Gregorian(base) => return Some(base + chrono::Duration::milliseconds(ms)),
            Origin::Counted { day, ms } => (day, ms),
        };
        let in_day = ms0 + ms;
        let day = day0 + in_day.div_euclid(MS_PER_DAY);
        let time = NaiveTime::from_num_seconds_from_midnight_opt(
            (in_day.rem_euclid(MS_PER_DAY) / 1000) as u32,
            (in_day.rem_euclid(1000) * 1_000_000) as u32,
        )?;
        Some(self.date_of(day)?.and_time(time))
    }

    /// The Gregorian date of day number `n` in the calendar.
    fn date_of(&self, n: i64) -> Option<NaiveDate> {
        let (len, y) = match self.calendar {
            Calendar::Day360 => (360, n.div_euclid(360)),
            _ => (365, n.div_euclid(365)),
        };
        let doy = n.rem_euclid(len);
        let (m, d) = match self.calendar {
            Calendar::Day360 => (doy / 30, doy % 30),
            _ => {
                let m = CUMULATIVE_DAYS.iter().rposition(|&c| c <= doy)?;
                (m as i64, doy - CUMULATIVE_DAYS[m])
            }
        };
        NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m as u32 + 1, d as u32 + 1)
    }
}

/// Days since year 0 of date (y, m, d) in a 365- or 360-day calendar (a date of the calendar).
fn day_number(calendar: Calendar, (y, m, d): (i64, i64, i64)) -> i64 {
    match calendar {
        Calendar::Day360 => y * 360 + (m - 1) * 30 + (d - 1),
        _ => y * 365 + CUMULATIVE_DAYS[(m - 1) as usize] + (d - 1),
    }
}

/// The origin of "UNIT since DATE", a date of `calendar` (30 February is one in 360_day, 29 February none in
/// noleap).
fn origin(path: &Path, since: &str, calendar: Calendar) -> Result<Origin> {
    let since = since.trim().trim_end_matches(" UTC").trim_end_matches('Z');
    let bad = || Error::input(path, format!("time origin \"{since}\" is not a date"));
    let (date, time) = since
        .split_once([' ', 'T'])
        .map_or((since, None), |(d, t)| (d, Some(t)));
    let ymd: Vec<i64> = date
        .split('-')
        .map(|p| p.parse::<i64>().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let [y, m, d] = ymd[..] else {
        return Err(bad());
    };
    let time = match time {
        None => NaiveTime::MIN,
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .map_err(|_| bad())?,
    };
    let gregorian = i32::try_from(y)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, m as u32, d as u32));
    let ms =
        time.num_seconds_from_midnight() as i64 * 1000 + (time.nanosecond() / 1_000_000) as i64;
    match calendar {
        Calendar::Standard | Calendar::ProlepticGregorian => {
            let date = gregorian.ok_or_else(bad)?;
            let reform = NaiveDate::from_ymd_opt(1582, 10, 15).expect("a date");
            if calendar == Calendar::Standard && date < reform {
                return Err(Error::input(
                    path,
                    format!(
                        "time origin \"{since}\" in the standard (mixed Julian and Gregorian) calendar is \
                         before 1582-10-15: its days are not counted; use a later origin"
                    ),
                ));
            }
            Ok(Origin::Gregorian(date.and_time(time)))
        }
        Calendar::NoLeap if gregorian.is_some() && (m, d) != (2, 29) => Ok(Origin::Counted {
            day: day_number(calendar, (y, m, d)),
            ms,
        }),
        Calendar::Day360 if (1..=12).contains(&m) && (1..=30).contains(&d) => Ok(Origin::Counted {
            day: day_number(calendar, (y, m, d)),
            ms,
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    fn axis(units: &str, cal: Calendar) -> TimeAxis {
        TimeAxis::parse(Path::new("x.nc"), units, cal).unwrap()
    }

    #[test]
    fn standard_calendar() {
        let a = axis("hours since 1900-01-01 00:00:00.0", Calendar::Standard);
        // ERA5: 2024-06-01 00:00 is 45,442 days after 1900-01-01 (by hand: 1900..2023 are 124 years with
        // 30 leap years, 1904..2020, 1900 not one: 124 x 365 + 30 = 45,290; January to May 2024 add 152),
        // 1,090,608 hours.
        assert_eq!(a.stamp(1_090_608.0).unwrap(), at(2024, 6, 1, 0));
        let p = Path::new("x.nc");
        assert!(TimeAxis::parse(p, "hours after 1900", Calendar::Standard).is_err());
        assert!(TimeAxis::parse(p, "fortnights since 1900-01-01", Calendar::Standard).is_err());
        // Julian days before the reform are not counted; proleptic Gregorian ones are: 0001-01-01 to
        // 2001-01-01 is 2000 x 365 + 485 leap days (500 - 20 centuries + 5 of 400) = 730,485 days.
        assert!(TimeAxis::parse(p, "days since 0001-01-01", Calendar::Standard).is_err());
        let pg = axis("days since 0001-01-01", Calendar::ProlepticGregorian);
        assert_eq!(pg.stamp(730_485.0).unwrap(), at(2001, 1, 1, 0));
        assert!(Calendar::parse(p, Some("julian")).is_err());
        assert_eq!(
            Calendar::parse(p, Some("365_day")).unwrap(),
            Calendar::NoLeap
        );
        assert_eq!(Calendar::parse(p, None).unwrap(), Calendar::Standard);
    }

    /// By hand: 1850-01-01 to 2050-01-01 is 200 x 365 = 73,000 noleap days (73,049 Gregorian ones: 49 leap
    /// days, 1852..2048 less 1900). Day 73,000 + 59 is 1 March 2050 (31 + 28 days on); half a day on is noon.
    #[test]
    fn noleap_calendar() {
        let a = axis("days since 1850-01-01", Calendar::NoLeap);
        assert_eq!(a.stamp(73_000.0).unwrap(), at(2050, 1, 1, 0));
        assert_eq!(a.stamp(73_059.5).unwrap(), at(2050, 3, 1, 12));
        // 2048 is leap in Gregorian, not here: day 365 x 198 + 59 of 2048 is 1 March.
        assert_eq!(a.stamp(198.0 * 365.0 + 59.0).unwrap(), at(2048, 3, 1, 0));
        // Before the origin: 1849-12-31.
        assert_eq!(a.stamp(-1.0).unwrap(), at(1849, 12, 31, 0));
        let p = Path::new("x.nc");
        assert!(TimeAxis::parse(p, "days since 1852-02-29", Calendar::NoLeap).is_err());
    }

    /// By hand: 30-day months, 360-day years. From 2000-01-01, day 360 x 50 = 18,000 is 2050-01-01; day
    /// 18,000 + 45 is 16 February; 18,000 + 59 is 30 February, which has no Gregorian date.
    #[test]
    fn day360_calendar() {
        let a = axis("days since 2000-01-01", Calendar::Day360);
        assert_eq!(a.stamp(18_000.0).unwrap(), at(2050, 1, 1, 0));
        assert_eq!(a.stamp(18_045.0).unwrap(), at(2050, 2, 16, 0));
        assert_eq!(a.stamp(18_059.0), None);
        assert_eq!(a.stamp(18_060.0).unwrap(), at(2050, 3, 1, 0));
        // An origin on 30 February counts from there: one day on is 1 March.
        let b = axis("days since 2000-02-30", Calendar::Day360);
        assert_eq!(b.stamp(1.0).unwrap(), at(2000, 3, 1, 0));
        assert!(
            TimeAxis::parse(Path::new("x.nc"), "days since 2000-01-31", Calendar::Day360).is_err()
        );
    }
}
