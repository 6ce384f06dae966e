//! Complete monthly NDVI (or FPAR) series for NPP, per pixel, by the rules of models/gapfill.toml: dormancy
//! (a cold month of a non-evergreen type takes the pixel's winter floor), linear interpolation in time (over
//! the model year and the years either side when their composites exist), cyclic interpolation within the
//! model year, then the same calendar month of the neighbouring years. Every filled pixel-month is counted
//! by rule.

use std::collections::BTreeMap;

use super::period::{add_months, first_day, YearMonth};
use crate::composite::gap_fill_cyclic;
use crate::error::Result;
use crate::models;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Dormancy {
    #[allow(dead_code)]
    citation: String,
    /// Vegetation type -> monthly mean air temperature (deg C) below which a month without a value is dormant.
    #[serde(rename = "below_degC")]
    pub below_deg_c: BTreeMap<String, f64>,
}

/// The rules of models/gapfill.toml.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GapFill {
    #[allow(dead_code)]
    citation: String,
    /// Classes with a larger share of filled pixel-months are warned about.
    pub warn_fraction: f64,
    pub dormancy: Dormancy,
}

impl GapFill {
    pub(super) fn builtin() -> Result<GapFill> {
        models::parse_toml(
            models::embedded("gapfill.toml").expect("embedded"),
            &models::embedded_path("gapfill.toml"),
        )
    }
}

/// Months of the series around a model year: 12 before it, its 12, 12 after it.
pub(super) const SPAN: usize = 36;
/// Index of the model year's first month in the series.
pub(super) const W0: usize = 12;

/// The months of the series and their mid-points in days since the model year's first day.
pub(super) struct Timeline {
    pub months: Vec<YearMonth>,
    pub mid: Vec<f64>,
    /// Length of the model year in days.
    pub window_len: f64,
}

impl Timeline {
    pub(super) fn around(window_start: YearMonth) -> Timeline {
        let origin = first_day(window_start);
        let months: Vec<YearMonth> = (0..SPAN as i32)
            .map(|k| add_months(window_start, k - W0 as i32))
            .collect();
        let mid = months
            .iter()
            .map(|&ym| {
                let a = (first_day(ym) - origin).num_days() as f64;
                let b = (first_day(add_months(ym, 1)) - origin).num_days() as f64;
                (a + b) / 2.0
            })
            .collect();
        let window_len = (first_day(add_months(window_start, 12)) - origin).num_days() as f64;
        Timeline {
            months,
            mid,
            window_len,
        }
    }
}

/// How a pixel-month got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    Observed,
    Dormant,
    Interpolated,
    Climatology,
    /// No rule gave a value.
    None,
}

/// One pixel's series completed: the model year's 12 values and how each was obtained.
/// `series[t]` is the observed value of timeline month t (NaN without one); `dormant(k)` says whether month k
/// of the model year is dormant for this pixel.
pub(super) fn fill_pixel(
    tl: &Timeline,
    series: &[f64; SPAN],
    dormant: impl Fn(usize) -> bool,
) -> ([f64; 12], [Fill; 12]) {
    let mut v = *series;
    let mut how = [Fill::Observed; 12];
    let floor = series
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f64::NAN, f64::min);
    for k in 0..12 {
        if v[W0 + k].is_nan() {
            how[k] = Fill::None;
            if floor.is_finite() && dormant(k) {
                v[W0 + k] = floor;
                how[k] = Fill::Dormant;
            }
        }
    }
    let anchors = v;
    let mut cyclic: Option<[f64; 12]> = None;
    for k in 0..12 {
        let t = W0 + k;
        if how[k] != Fill::None {
            continue;
        }
        let before = (0..t).rev().find(|&i| anchors[i].is_finite());
        let after = (t + 1..SPAN).find(|&i| anchors[i].is_finite());
        let x = match (before, after) {
            (Some(b), Some(a)) => {
                let f = (tl.mid[t] - tl.mid[b]) / (tl.mid[a] - tl.mid[b]);
                anchors[b] + f * (anchors[a] - anchors[b])
            }
            _ => {
                let c = cyclic.get_or_insert_with(|| {
                    let mut w = [f64::NAN; 12];
                    w.copy_from_slice(&anchors[W0..W0 + 12]);
                    let days: Vec<f64> = tl.mid[W0..W0 + 12].to_vec();
                    gap_fill_cyclic(&mut w, &days, tl.window_len);
                    w
                });
                c[k]
            }
        };
        if x.is_finite() {
            v[t] = x;
            how[k] = Fill::Interpolated;
            continue;
        }
        // The same calendar month of the years either side.
        let same: Vec<f64> = [t - 12, t + 12]
            .iter()
            .map(|&i| series[i])
            .filter(|x| x.is_finite())
            .collect();
        if !same.is_empty() {
            v[t] = same.iter().sum::<f64>() / same.len() as f64;
            how[k] = Fill::Climatology;
        }
    }
    let mut out = [f64::NAN; 12];
    out.copy_from_slice(&v[W0..W0 + 12]);
    (out, how)
}

/// Fill counts of one pixel over the simulated months.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FillCounts {
    pub interpolated: u8,
    pub dormant: u8,
    pub climatology: u8,
    /// Simulated months left without a value.
    pub none: u8,
}

impl FillCounts {
    pub fn filled(&self) -> u8 {
        self.interpolated + self.dormant + self.climatology
    }

    pub fn of(how: &[Fill]) -> FillCounts {
        let mut c = FillCounts::default();
        for h in how {
            match h {
                Fill::Observed => {}
                Fill::Dormant => c.dormant += 1,
                Fill::Interpolated => c.interpolated += 1,
                Fill::Climatology => c.climatology += 1,
                Fill::None => c.none += 1,
            }
        }
        c
    }
}

/// A block's model-year planes (`[month][pixel]`, 12 months) and per pixel the fills of the simulated months
/// `sim`. `planes[j]` holds timeline month `available[j]`; `dormant(px, k)` as in `fill_pixel`.
pub(super) fn fill_block(
    tl: &Timeline,
    available: &[usize],
    planes: &[Vec<f32>],
    sim: std::ops::Range<usize>,
    dormant: impl Fn(usize, usize) -> bool + Sync,
) -> (Vec<Vec<f32>>, Vec<FillCounts>) {
    use rayon::prelude::*;
    let npx = planes.first().map_or(0, |p| p.len());
    let per_px: Vec<([f64; 12], FillCounts)> = (0..npx)
        .into_par_iter()
        .map(|px| {
            let mut s = [f64::NAN; SPAN];
            for (j, &t) in available.iter().enumerate() {
                s[t] = planes[j][px] as f64;
            }
            let (v, how) = fill_pixel(tl, &s, |k| dormant(px, k));
            (v, FillCounts::of(&how[sim.clone()]))
        })
        .collect();
    let out = month_planes(&per_px);
    let counts = per_px.iter().map(|(_, c)| *c).collect();
    (out, counts)
}

/// Pixels per part of the transposition into month planes: a part's records (about 100 KiB) stay in cache
/// while its 12 months are copied out.
const TRANSPOSE_PART: usize = 1024;

/// The month planes of a block's per-pixel series, parts of pixels in parallel (the transposition was a
/// fifth of the fill's time on one thread; plane by plane, each pass read every pixel's record from memory).
fn month_planes<const M: usize>(per_px: &[([f64; M], FillCounts)]) -> Vec<Vec<f32>> {
    use rayon::prelude::*;
    let mut out = vec![vec![0f32; per_px.len()]; M];
    let planes = out.iter_mut().map(|p| &mut p[..]);
    crate::engine::parts::cut_alike(planes, per_px.len(), TRANSPOSE_PART)
        .into_par_iter()
        .zip(per_px.par_chunks(TRANSPOSE_PART))
        .for_each(|(mut planes, src)| {
            for (k, plane) in planes.iter_mut().enumerate() {
                for (o, (v, _)) in plane.iter_mut().zip(src) {
                    *o = v[k] as f32;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(year: i32) -> Timeline {
        Timeline::around((year, 1))
    }

    #[test]
    fn timeline_mid_months() {
        let tl = calendar(2023);
        assert_eq!(tl.window_len, 365.0);
        // 15.5 days into January 2023; December 2022 is 15.5 days before the year.
        assert_eq!(tl.mid[W0], 15.5);
        assert_eq!(tl.mid[W0 - 1], -15.5);
        assert_eq!(tl.months[0], (2022, 1));
    }

    #[test]
    fn month_planes_hold_each_pixels_months_across_parts() {
        // Two whole parts and 3 pixels of a third; pixel px's month k holds px + k / 16 (exact in f32), NaN
        // at px 5 in March.
        let npx = 2 * TRANSPOSE_PART + 3;
        let per_px: Vec<([f64; 12], FillCounts)> = (0..npx)
            .map(|px| {
                let mut v = [0.0; 12];
                for (k, x) in v.iter_mut().enumerate() {
                    *x = px as f64 + k as f64 / 16.0;
                }
                if px == 5 {
                    v[2] = f64::NAN;
                }
                (v, FillCounts::default())
            })
            .collect();
        let planes = month_planes(&per_px);
        assert_eq!(planes.len(), 12);
        for (k, plane) in planes.iter().enumerate() {
            assert_eq!(plane.len(), npx);
            for (px, &x) in plane.iter().enumerate() {
                if (px, k) == (5, 2) {
                    assert!(x.is_nan());
                } else {
                    assert_eq!(x, px as f32 + k as f32 / 16.0, "pixel {px}, month {k}");
                }
            }
        }
    }

    #[test]
    fn a_missing_month_is_interpolated_and_counted() {
        let tl = calendar(2023);
        // June 0.4 and August 0.6, July missing; nothing else in the year.
        let mut s = [f64::NAN; SPAN];
        s[W0 + 5] = 0.4;
        s[W0 + 7] = 0.6;
        let (v, how) = fill_pixel(&tl, &s, |_| false);
        // July (mid 196.5) between June (166) and August (227.5): 0.4 + 30.5 / 61.5 x 0.2 = 0.499187.
        assert!((v[6] - (0.4 + 30.5 / 61.5 * 0.2)).abs() < 1e-12, "{}", v[6]);
        assert_eq!(how[6], Fill::Interpolated);
        assert_eq!(how[5], Fill::Observed);
        assert_eq!(FillCounts::of(&how[5..8]).filled(), 1);
    }

    #[test]
    fn cyclic_interpolation_bridges_december_to_january_by_hand() {
        let tl = calendar(2023);
        // March 0.2 (mid 74.5), October 0.6 (mid 288.5), nothing in the years either side.
        let mut s = [f64::NAN; SPAN];
        s[W0 + 2] = 0.2;
        s[W0 + 9] = 0.6;
        let (v, how) = fill_pixel(&tl, &s, |_| false);
        // January (15.5) between October of the cycle before (288.5 - 365 = -76.5) and March (74.5):
        // 0.6 + (15.5 + 76.5) / (74.5 + 76.5) x (0.2 - 0.6) = 0.6 - 92 / 151 x 0.4 = 0.356291.
        assert!(
            (v[0] - (0.6 - 92.0 / 151.0 * 0.4)).abs() < 1e-12,
            "{}",
            v[0]
        );
        // December (349.5) between October (288.5) and March of the cycle after (439.5): 0.6 - 61 / 151 x 0.4.
        assert!(
            (v[11] - (0.6 - 61.0 / 151.0 * 0.4)).abs() < 1e-12,
            "{}",
            v[11]
        );
        assert!(how[0] == Fill::Interpolated && how[11] == Fill::Interpolated);
    }

    #[test]
    fn the_neighbouring_years_bridge_the_year_boundary_by_hand() {
        let tl = calendar(2023);
        // October 2023 0.6 (288.5) and March 2024 0.3 (365 + 74.5 + ... = mid of March 2024: 365 + 31 + 29 +
        // 15.5 = 440.5, 2024 is a leap year); December 2023 (349.5) lies between them:
        // 0.6 + (349.5 - 288.5) / (440.5 - 288.5) x (0.3 - 0.6) = 0.6 - 61 / 152 x 0.3 = 0.479605.
        let mut s = [f64::NAN; SPAN];
        s[W0 + 2] = 0.2;
        s[W0 + 9] = 0.6;
        s[W0 + 12 + 2] = 0.3;
        assert_eq!(tl.mid[W0 + 14], 440.5);
        let (v, _) = fill_pixel(&tl, &s, |_| false);
        assert!(
            (v[11] - (0.6 - 61.0 / 152.0 * 0.3)).abs() < 1e-12,
            "{}",
            v[11]
        );
        // January 2023 has nothing before it: the cyclic rule within 2023, as above.
        assert!((v[0] - (0.6 - 92.0 / 151.0 * 0.4)).abs() < 1e-12);
    }

    #[test]
    fn dormant_months_take_the_winter_floor_and_anchor_the_rest() {
        let tl = calendar(2023);
        // Observed May 0.5, July 0.8, September 0.4 (the floor); cold months January-March and November-
        // December dormant; April, June, August, October interpolated.
        let mut s = [f64::NAN; SPAN];
        s[W0 + 4] = 0.5;
        s[W0 + 6] = 0.8;
        s[W0 + 8] = 0.4;
        let cold = |k: usize| matches!(k, 0..=2 | 10 | 11);
        let (v, how) = fill_pixel(&tl, &s, cold);
        for k in [0, 1, 2, 10, 11] {
            assert_eq!((v[k], how[k]), (0.4, Fill::Dormant), "{k}");
        }
        // April (mid 105) between dormant March (0.4 at 74.5) and May (0.5 at 135.5):
        // 0.4 + 30.5 / 61 x 0.1 = 0.45.
        assert!((v[3] - (0.4 + 30.5 / 61.0 * 0.1)).abs() < 1e-12, "{}", v[3]);
        // October (288.5) between September (0.4 at 257.5) and dormant November (0.4): 0.4.
        assert!((v[9] - 0.4).abs() < 1e-12);
        let c = FillCounts::of(&how);
        assert_eq!(
            (c.dormant, c.interpolated, c.climatology, c.none),
            (5, 4, 0, 0)
        );
    }

    #[test]
    fn a_year_without_values_takes_the_same_months_of_the_years_either_side() {
        let tl = calendar(2023);
        let mut s = [f64::NAN; SPAN];
        // July 2022 0.6, July 2024 0.8; nothing in 2023, and no other month anywhere.
        s[6] = 0.6;
        s[W0 + 12 + 6] = 0.8;
        let (v, how) = fill_pixel(&tl, &s, |_| false);
        // July 2023 lies between the two Julys, linear in time: mid-July 2022 is -168.5 days (1 July 2022 is
        // 184 days before the year), 2023 196.5, 2024 562.5: 0.6 + 365 / 731 x 0.2 = 0.699863.
        assert_eq!(how[6], Fill::Interpolated);
        assert!(
            (v[6] - (0.6 + 365.0 / 731.0 * 0.2)).abs() < 1e-12,
            "{}",
            v[6]
        );
        // With only the year before: interpolation has one side, the cycle of 2023 is empty: climatology.
        let mut s = [f64::NAN; SPAN];
        s[6] = 0.6;
        let (v, how) = fill_pixel(&tl, &s, |_| false);
        assert_eq!((v[6], how[6]), (0.6, Fill::Climatology));
        assert_eq!(how[0], Fill::None);
        assert!(v[0].is_nan());
    }
}
