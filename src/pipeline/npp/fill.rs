//! Complete monthly NDVI (or FPAR) series for NPP: per pixel, a month without a value (no composite that
//! month, or no clear observation in it) is filled by linear interpolation in time between the nearest months
//! with one, cyclic across the year boundary (`composite::gap_fill_cyclic`), from the year's own composites.
//! Every filled pixel-month is counted.

use chrono::{Datelike, NaiveDate};

use crate::composite::gap_fill_cyclic;
use crate::error::Result;
use crate::models;

/// The reporting rule of models/gapfill.toml.
#[derive(serde::Deserialize)]
pub(super) struct GapFill {
    #[allow(dead_code)]
    citation: String,
    /// Classes with a larger share of filled pixel-months are warned about.
    pub warn_fraction: f64,
}

impl GapFill {
    pub(super) fn builtin() -> Result<GapFill> {
        models::parse_toml(
            models::embedded("gapfill.toml").expect("embedded"),
            &models::embedded_path("gapfill.toml"),
        )
    }
}

/// Day of year of each month's middle and the year's length, for `year`.
pub(super) fn month_days(year: i32) -> ([f64; 12], f64) {
    let start = |m: u32| NaiveDate::from_ymd_opt(year, m, 1).expect("valid month");
    let next = |m: u32| {
        if m == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1).expect("valid")
        } else {
            start(m + 1)
        }
    };
    let mut days = [0.0; 12];
    for m in 1..=12u32 {
        let len = (next(m) - start(m)).num_days() as f64;
        days[m as usize - 1] = start(m).ordinal0() as f64 + len / 2.0;
    }
    let year_len = (next(12) - start(1)).num_days() as f64;
    (days, year_len)
}

/// The simulated months' planes (`months` = first, last) from the year's available planes (`available[k]`
/// is the month of `planes[k]`), each pixel's series filled; and per pixel the number of simulated months
/// that were filled.
pub(super) fn fill_months(
    available: &[u32],
    planes: &[Vec<f32>],
    months: (u32, u32),
    days: &[f64; 12],
    year_len: f64,
) -> (Vec<Vec<f32>>, Vec<u8>) {
    let npx = planes.first().map_or(0, |p| p.len());
    let (m0, m1) = months;
    let n = (m1 - m0 + 1) as usize;
    let mut out = vec![vec![f32::NAN; npx]; n];
    let mut filled = vec![0u8; npx];
    let mut series = [f64::NAN; 12];
    for px in 0..npx {
        series.iter_mut().for_each(|v| *v = f64::NAN);
        for (k, &m) in available.iter().enumerate() {
            series[m as usize - 1] = planes[k][px] as f64;
        }
        let before = series;
        if before.iter().any(|v| v.is_nan()) {
            gap_fill_cyclic(&mut series, days, year_len);
        }
        for (i, m) in (m0..=m1).enumerate() {
            let j = m as usize - 1;
            out[i][px] = series[j] as f32;
            if before[j].is_nan() && series[j].is_finite() {
                filled[px] += 1;
            }
        }
    }
    (out, filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_month_and_a_cloudy_pixel_are_filled_and_counted() {
        let (days, len) = month_days(2023);
        assert_eq!(len, 365.0);
        assert_eq!(days[0], 15.5);
        // June and August composites; July missing. Pixel 0 has both; pixel 1 is cloudy in August.
        let planes = vec![vec![0.4f32, 0.5], vec![0.6, f32::NAN]];
        let (out, filled) = fill_months(&[6, 8], &planes, (6, 8), &days, len);
        // July of pixel 0 (day 196.5): June (day 166) 0.4 to August (day 227.5) 0.6:
        // 0.4 + 30.5 / 61.5 x 0.2 = 0.499187.
        assert!(
            (out[1][0] - (0.4 + 30.5 / 61.5 * 0.2) as f32).abs() < 1e-6,
            "{}",
            out[1][0]
        );
        assert_eq!(filled, vec![1, 2]);
        // Pixel 1 has June only: every other month takes June's value (the cycle has one point).
        assert_eq!(out[2][1], 0.5);
    }
}
