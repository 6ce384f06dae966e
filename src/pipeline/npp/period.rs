//! The simulated period of an NPP run and its model year.
//!
//! A period is a run of consecutive months given as FIRST-LAST with the year it ends in: `--year 2024
//! --months 6-8` is June to August 2024; a range that wraps (`--months 12-2`, `--months 7-6`) crosses the year
//! boundary and ends in `--year` (December 2023 to February 2024; July 2023 to June 2024, a hydrological or
//! Southern-Hemisphere year). Annual quantities (the Thornthwaite heat index, CASA's optimum temperature,
//! MOD17's live-wood mass from the year's largest LAI) are computed over the *model year*: the calendar year
//! of a period within one year, else the 12 months ending with the period's last month.

use chrono::NaiveDate;

use crate::error::{Error, Result};

/// A year and a month (1..=12).
pub type YearMonth = (i32, u32);

/// `ym` moved by `k` months.
pub fn add_months((y, m): YearMonth, k: i32) -> YearMonth {
    let i = y * 12 + (m as i32 - 1) + k;
    (i.div_euclid(12), (i.rem_euclid(12) + 1) as u32)
}

/// The first day of a month.
pub fn first_day((y, m): YearMonth) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).expect("valid month")
}

/// Parse `--months FIRST-LAST` (1-12 each; FIRST > LAST wraps across the year boundary).
pub fn parse_months(s: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::Usage(format!(
            "--months {s}: expected FIRST-LAST within 1-12, for example 1-12, 6-8 or 12-2"
        ))
    };
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if !(1..=12).contains(&a) || !(1..=12).contains(&b) {
        return Err(bad());
    }
    Ok((a, b))
}

#[derive(Debug, Clone, PartialEq)]
pub struct NppPeriod {
    /// The simulated months, in order.
    pub sim: Vec<YearMonth>,
    /// The 12 months of the model year, in order; the simulated months are `window[first_sim..][..sim.len()]`.
    pub window: Vec<YearMonth>,
    pub first_sim: usize,
    /// As outputs are named: `2024` (a calendar year), `2024-07` (one month), `2023-12_2024-02` (else).
    pub label: String,
}

impl NppPeriod {
    /// The period FIRST-LAST ending in `year` (see the module's documentation).
    pub fn new(year: i32, (m0, m1): (u32, u32)) -> Result<NppPeriod> {
        if !(1..=12).contains(&m0) || !(1..=12).contains(&m1) {
            return Err(Error::Usage(format!(
                "--months {m0}-{m1}: give FIRST-LAST within 1-12 (FIRST > LAST crosses the year boundary and ends in --year)"
            )));
        }
        let n = if m0 <= m1 {
            m1 - m0 + 1
        } else {
            12 - m0 + 1 + m1
        } as i32;
        let last = (year, m1);
        let first = add_months(last, 1 - n);
        let sim: Vec<YearMonth> = (0..n).map(|k| add_months(first, k)).collect();
        let window_start = if m0 <= m1 {
            (year, 1)
        } else {
            add_months(last, -11)
        };
        let window: Vec<YearMonth> = (0..12).map(|k| add_months(window_start, k)).collect();
        let first_sim = window.iter().position(|&w| w == first).expect("in window");
        let label = if n == 12 && window_start.1 == 1 {
            year.to_string()
        } else if n == 1 {
            format!("{}-{:02}", first.0, first.1)
        } else {
            format!("{}-{:02}_{}-{:02}", first.0, first.1, last.0, last.1)
        };
        Ok(NppPeriod {
            sim,
            window,
            first_sim,
            label,
        })
    }

    /// The simulated months cover the whole model year.
    pub fn full_year(&self) -> bool {
        self.sim.len() == 12
    }

    /// Indices into `window` of the simulated months.
    pub fn sim_range(&self) -> std::ops::Range<usize> {
        self.first_sim..self.first_sim + self.sim.len()
    }

    /// The calendar years the model year touches, in order.
    pub fn years(&self) -> Vec<i32> {
        let mut y: Vec<i32> = self.window.iter().map(|w| w.0).collect();
        y.dedup();
        y
    }

    /// `2023-07..2024-06`.
    pub fn describe_window(&self) -> String {
        let (a, b) = (self.window[0], self.window[11]);
        format!("{}-{:02}..{}-{:02}", a.0, a.1, b.0, b.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_within_and_across_the_year_boundary() {
        let jja = NppPeriod::new(2024, (6, 8)).unwrap();
        assert_eq!(jja.sim, vec![(2024, 6), (2024, 7), (2024, 8)]);
        assert_eq!(jja.describe_window(), "2024-01..2024-12");
        assert_eq!(
            (jja.sim_range(), jja.label.as_str()),
            (5..8, "2024-06_2024-08")
        );
        let year = NppPeriod::new(2011, (1, 12)).unwrap();
        assert!(year.full_year());
        assert_eq!(year.label, "2011");
        // DJF 2024: December 2023 to February 2024; the model year is March 2023 to February 2024.
        let djf = NppPeriod::new(2024, (12, 2)).unwrap();
        assert_eq!(djf.sim, vec![(2023, 12), (2024, 1), (2024, 2)]);
        assert_eq!(djf.describe_window(), "2023-03..2024-02");
        assert_eq!(
            (djf.sim_range(), djf.label.as_str()),
            (9..12, "2023-12_2024-02")
        );
        assert_eq!(djf.years(), vec![2023, 2024]);
        // A hydrological year July 2023 to June 2024 is its own model year.
        let hy = NppPeriod::new(2024, (7, 6)).unwrap();
        assert!(hy.full_year());
        assert_eq!(hy.label, "2023-07_2024-06");
        assert_eq!(hy.describe_window(), "2023-07..2024-06");
        assert_eq!(NppPeriod::new(2024, (5, 5)).unwrap().label, "2024-05");
        assert!(NppPeriod::new(2024, (0, 5)).is_err());
        assert_eq!(add_months((2024, 1), -1), (2023, 12));
        assert_eq!(add_months((2023, 12), 13), (2025, 1));
    }
}
