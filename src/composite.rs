//! Temporal compositing: periods (date, month, season, year, custom windows), per-pixel statistics over
//! clear observations, and optional linear gap filling in time.

use chrono::{Datelike, NaiveDate};

use crate::error::{Error, Result};

/// How acquisitions are grouped.
#[derive(Debug, Clone, PartialEq)]
pub enum PeriodSpec {
    /// Every acquisition on its own (per-date index rasters).
    Date,
    Month,
    /// Meteorological seasons DJF, MAM, JJA, SON; December belongs to the next year's DJF.
    Season,
    Year,
    /// Named windows, start and end inclusive.
    Windows(Vec<Window>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl PeriodSpec {
    /// Parse `date`, `month`, `season`, `year`, or one or more `NAME:YYYY-MM-DD:YYYY-MM-DD` windows
    /// separated by commas.
    pub fn parse(s: &str) -> Result<PeriodSpec> {
        match s.trim().to_ascii_lowercase().as_str() {
            "date" => Ok(PeriodSpec::Date),
            "month" => Ok(PeriodSpec::Month),
            "season" => Ok(PeriodSpec::Season),
            "year" => Ok(PeriodSpec::Year),
            _ => {
                let mut ws = Vec::new();
                for part in s.split(',') {
                    let f: Vec<&str> = part.trim().split(':').collect();
                    let bad = || {
                        Error::Usage(format!("--period {part}: expected date, month, season, year, or NAME:START:END windows (dates YYYY-MM-DD) separated by commas"))
                    };
                    if f.len() != 3 || f[0].is_empty() {
                        return Err(bad());
                    }
                    let start = NaiveDate::parse_from_str(f[1], "%Y-%m-%d").map_err(|_| bad())?;
                    let end = NaiveDate::parse_from_str(f[2], "%Y-%m-%d").map_err(|_| bad())?;
                    if end < start {
                        return Err(Error::Usage(format!(
                            "--period {part}: window ends before it starts"
                        )));
                    }
                    if !f[0]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err(Error::Usage(format!("--period {part}: window names may use letters, digits, '-' and '_' only")));
                    }
                    ws.push(Window {
                        name: f[0].to_string(),
                        start,
                        end,
                    });
                }
                Ok(PeriodSpec::Windows(ws))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            PeriodSpec::Date => "date",
            PeriodSpec::Month => "month",
            PeriodSpec::Season => "season",
            PeriodSpec::Year => "year",
            PeriodSpec::Windows(_) => "windows",
        }
    }
}

/// One compositing period and the acquisitions (indices into the stack's date list) inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub label: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub members: Vec<usize>,
}

fn last_day_of_month(y: i32, m: u32) -> NaiveDate {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .unwrap()
        .pred_opt()
        .unwrap()
}

/// Group sorted acquisition dates into periods. Calendar periods are created only where there are
/// acquisitions; custom windows are always created (an empty one yields a NaN composite and a warning).
pub fn periods(spec: &PeriodSpec, dates: &[NaiveDate]) -> Vec<Period> {
    let key = |d: &NaiveDate| -> (String, NaiveDate, NaiveDate) {
        match spec {
            PeriodSpec::Date => (d.to_string(), *d, *d),
            PeriodSpec::Month => (
                format!("{:04}-{:02}", d.year(), d.month()),
                NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap(),
                last_day_of_month(d.year(), d.month()),
            ),
            PeriodSpec::Season => {
                let (y, name, m0) = match d.month() {
                    12 => (d.year() + 1, "DJF", 12),
                    1 | 2 => (d.year(), "DJF", 12),
                    3..=5 => (d.year(), "MAM", 3),
                    6..=8 => (d.year(), "JJA", 6),
                    _ => (d.year(), "SON", 9),
                };
                let start_y = if m0 == 12 { y - 1 } else { y };
                let start = NaiveDate::from_ymd_opt(start_y, m0, 1).unwrap();
                let (ey, em) = if m0 == 12 { (y, 2) } else { (y, m0 + 2) };
                (format!("{y:04}-{name}"), start, last_day_of_month(ey, em))
            }
            PeriodSpec::Year => (
                format!("{:04}", d.year()),
                NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap(),
                NaiveDate::from_ymd_opt(d.year(), 12, 31).unwrap(),
            ),
            PeriodSpec::Windows(_) => unreachable!(),
        }
    };
    if let PeriodSpec::Windows(ws) = spec {
        return ws
            .iter()
            .map(|w| Period {
                label: w.name.clone(),
                start: w.start,
                end: w.end,
                members: dates
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| **d >= w.start && **d <= w.end)
                    .map(|(i, _)| i)
                    .collect(),
            })
            .collect();
    }
    let mut out: Vec<Period> = Vec::new();
    for (i, d) in dates.iter().enumerate() {
        let (label, start, end) = key(d);
        match out.iter_mut().find(|p| p.label == label) {
            Some(p) => p.members.push(i),
            None => out.push(Period {
                label,
                start,
                end,
                members: vec![i],
            }),
        }
    }
    out
}

/// A per-pixel statistic of a composite (also the temporal features of the land-cover classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Median,
    Mean,
    Max,
    Min,
    /// Maximum minus minimum (seasonal amplitude).
    Amplitude,
    /// Population standard deviation.
    Std,
    /// Day of year (1-366) of the first acquisition holding the maximum.
    DoyMax,
}

impl Stat {
    pub const ALL: [Stat; 7] = [
        Stat::Median,
        Stat::Mean,
        Stat::Max,
        Stat::Min,
        Stat::Amplitude,
        Stat::Std,
        Stat::DoyMax,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stat::Median => "median",
            Stat::Mean => "mean",
            Stat::Max => "max",
            Stat::Min => "min",
            Stat::Amplitude => "amplitude",
            Stat::Std => "std",
            Stat::DoyMax => "doy_max",
        }
    }

    /// The unit of the statistic of a quantity in `unit`.
    pub fn unit(self, unit: &str) -> String {
        match self {
            Stat::DoyMax => "day of year".into(),
            _ => unit.into(),
        }
    }

    pub fn parse(s: &str) -> Result<Stat> {
        Stat::ALL
            .into_iter()
            .find(|x| x.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown statistic '{}'; known: {}",
                    s.trim(),
                    Stat::ALL.map(|s| s.name()).join(", ")
                ))
            })
    }

    pub fn parse_list(s: &str) -> Result<Vec<Stat>> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let st = Stat::parse(part).map_err(|e| Error::Usage(format!("--stats: {e}")))?;
            if !v.contains(&st) {
                v.push(st);
            }
        }
        if v.is_empty() {
            return Err(Error::Usage("--stats: give at least one statistic".into()));
        }
        Ok(v)
    }

    /// The statistic over `vals` (finite values only, non-empty) observed on days of year `doys` (same
    /// length). `scratch` is working space for the median.
    pub fn compute(self, vals: &[f64], doys: &[f64], scratch: &mut Vec<f64>) -> f64 {
        let n = vals.len() as f64;
        let max = || vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = || vals.iter().copied().fold(f64::INFINITY, f64::min);
        match self {
            Stat::Mean => vals.iter().sum::<f64>() / n,
            Stat::Max => max(),
            Stat::Min => min(),
            Stat::Amplitude => max() - min(),
            Stat::Std => {
                let m = vals.iter().sum::<f64>() / n;
                (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt()
            }
            Stat::DoyMax => {
                let mut best = 0;
                for (i, v) in vals.iter().enumerate() {
                    if *v > vals[best] {
                        best = i;
                    }
                }
                doys[best]
            }
            Stat::Median => {
                scratch.clear();
                scratch.extend_from_slice(vals);
                scratch.sort_unstable_by(f64::total_cmp);
                let k = scratch.len();
                if k % 2 == 1 {
                    scratch[k / 2]
                } else {
                    0.5 * (scratch[k / 2 - 1] + scratch[k / 2])
                }
            }
        }
    }
}

/// Fill NaN gaps of one pixel's time series by linear interpolation in time between the nearest clear
/// observations before and after; leading and trailing gaps stay NaN (no extrapolation).
/// `days` are the acquisition dates as day numbers.
pub fn gap_fill_linear(series: &mut [f64], days: &[f64]) {
    let n = series.len();
    let mut prev: Option<usize> = None;
    let mut i = 0;
    while i < n {
        if series[i].is_nan() {
            let next = (i + 1..n).find(|&j| !series[j].is_nan());
            match (prev, next) {
                (Some(p), Some(q)) => {
                    for k in i..q {
                        let t = (days[k] - days[p]) / (days[q] - days[p]);
                        series[k] = series[p] + t * (series[q] - series[p]);
                    }
                    i = q;
                }
                _ => {
                    i = next.unwrap_or(n);
                }
            }
        } else {
            prev = Some(i);
            i += 1;
        }
    }
}

/// Cyclic linear gap filling of a series that repeats every `period` days (a year's monthly values): the
/// series is laid out three times (`days - period`, `days`, `days + period`) and filled linearly, so a gap at
/// the start or end of the year is bridged by the other end of the cycle (December to January). A series
/// without any value stays all NaN.
pub fn gap_fill_cyclic(series: &mut [f64], days: &[f64], period: f64) {
    let n = series.len();
    let ext_days: Vec<f64> = [-period, 0.0, period]
        .iter()
        .flat_map(|off| days.iter().map(move |d| d + off))
        .collect();
    let mut ext: Vec<f64> = (0..3).flat_map(|_| series.iter().copied()).collect();
    gap_fill_linear(&mut ext, &ext_days);
    series.copy_from_slice(&ext[n..2 * n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclic_fill_bridges_december_to_january_by_hand() {
        // Mid-month days of a 365-day year; values only March (74) to October (288): 0.2 in March, 0.6 in
        // October, NaN elsewhere. January (15) lies between October of the year before (288 - 365 = -77) and
        // March (74): 0.6 + (15 + 77) / (74 + 77) x (0.2 - 0.6) = 0.6 - 92 / 151 x 0.4 = 0.356291.
        // December (349) lies between October (288) and March of the next year (439):
        // 0.6 + (349 - 288) / (439 - 288) x (0.2 - 0.6) = 0.6 - 61 / 151 x 0.4 = 0.438411.
        let days = [
            15.0, 46.0, 74.0, 105.0, 135.0, 166.0, 196.0, 227.0, 258.0, 288.0, 319.0, 349.0,
        ];
        let mut v = [f64::NAN; 12];
        v[2] = 0.2;
        v[9] = 0.6;
        gap_fill_cyclic(&mut v, &days, 365.0);
        assert!(
            (v[0] - (0.6 - 92.0 / 151.0 * 0.4)).abs() < 1e-12,
            "{}",
            v[0]
        );
        assert!(
            (v[11] - (0.6 - 61.0 / 151.0 * 0.4)).abs() < 1e-12,
            "{}",
            v[11]
        );
        // Between March and October: linear in time, as the non-cyclic fill.
        assert!((v[5] - (0.2 + (166.0 - 74.0) / (288.0 - 74.0) * 0.4)).abs() < 1e-12);
        let mut none = [f64::NAN; 12];
        gap_fill_cyclic(&mut none, &days, 365.0);
        assert!(none.iter().all(|x| x.is_nan()));
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn seasons_put_december_into_next_years_djf() {
        let dates = [
            d("2023-12-15"),
            d("2024-01-10"),
            d("2024-06-02"),
            d("2024-08-26"),
        ];
        let p = periods(&PeriodSpec::Season, &dates);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].label, "2024-DJF");
        assert_eq!(p[0].members, vec![0, 1]);
        assert_eq!((p[0].start, p[0].end), (d("2023-12-01"), d("2024-02-29")));
        assert_eq!(p[1].label, "2024-JJA");
        assert_eq!((p[1].start, p[1].end), (d("2024-06-01"), d("2024-08-31")));
    }

    #[test]
    fn statistics_by_hand() {
        // median of {3, 1, 2, 10} = (2 + 3) / 2 = 2.5; mean = 16 / 4 = 4; max 10; min 1; amplitude 10 - 1 = 9;
        // std = sqrt(((3-4)^2 + (1-4)^2 + (2-4)^2 + (10-4)^2) / 4) = sqrt(50 / 4) = 3.5355339;
        // the maximum 10 is observed on day 200.
        let v = [3.0, 1.0, 2.0, 10.0];
        let doys = [20.0, 100.0, 150.0, 200.0];
        let mut s = Vec::new();
        let mut c = |st: Stat| st.compute(&v, &doys, &mut s);
        assert_eq!(c(Stat::Median), 2.5);
        assert_eq!(c(Stat::Mean), 4.0);
        assert_eq!(c(Stat::Max), 10.0);
        assert_eq!(c(Stat::Min), 1.0);
        assert_eq!(c(Stat::Amplitude), 9.0);
        assert!((c(Stat::Std) - 12.5f64.sqrt()).abs() < 1e-15);
        assert_eq!(c(Stat::DoyMax), 200.0);
        // Ties: the first acquisition with the maximum.
        assert_eq!(
            Stat::DoyMax.compute(&[0.5, 0.8, 0.8], &[10.0, 20.0, 30.0], &mut s),
            20.0
        );
    }

    #[test]
    fn gap_fill_interpolates_in_time_not_in_index() {
        // days 0, 10, 40: value 0.2 at day 0, gap at day 10, 0.6 at day 40
        // -> 0.2 + (10 - 0) / (40 - 0) * (0.6 - 0.2) = 0.3
        let mut s = [f64::NAN, 0.2, f64::NAN, 0.6, f64::NAN];
        gap_fill_linear(&mut s, &[-5.0, 0.0, 10.0, 40.0, 50.0]);
        assert!(s[0].is_nan() && s[4].is_nan());
        assert!((s[2] - 0.3).abs() < 1e-12);
    }
}
