//! The MODIS MOD17 light-use-efficiency model (Running & Zhao 2015): daily GPP from FPAR, PAR and the
//! minimum-temperature and VPD ramps; leaf and fine-root maintenance respiration with Q10 (the leaf Q10
//! temperature-acclimated after Tjoelker et al. 2001); live-wood respiration from the year's maximum leaf mass;
//! annual NPP after growth respiration. Parameters: a BPLUT under models/mod17/ and models/mod17/algorithm.toml.
//! Agrees with the reference implementation (PyPI mod17 1.0.0) to 1e-6 relative (tests/mod17_reference.rs).
//!
//! Every quantity is f64; fluxes are g C m-2 d-1 (daily) or g C m-2 over the accumulated period (annual).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models;

/// Parameters of one UMD plant functional type (units in the names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mod17Class {
    pub umd: u8,
    pub label: String,
    pub lue_max_kgc_per_mj: f64,
    pub tmin_min_degc: f64,
    pub tmin_max_degc: f64,
    pub vpd_min_pa: f64,
    pub vpd_max_pa: f64,
    pub sla_lai_per_kgc: f64,
    pub q10_livewood: f64,
    pub q10_froot: f64,
    pub froot_leaf_ratio: f64,
    pub livewood_leaf_ratio: f64,
    pub leaf_mr_base_per_day: f64,
    pub froot_mr_base_per_day: f64,
    pub livewood_mr_base_per_day: f64,
}

/// A Biome Property Look-Up Table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bplut {
    pub name: String,
    pub description: String,
    pub citation: String,
    #[serde(rename = "class")]
    pub classes: Vec<Mod17Class>,
    #[serde(skip)]
    pub source: PathBuf,
}

/// Algorithm constants of models/mod17/algorithm.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mod17Constants {
    pub citation: String,
    pub par_fraction_of_shortwave: f64,
    pub leaf_q10_intercept: f64,
    pub leaf_q10_slope_per_degc: f64,
    pub respiration_reference_degc: f64,
    pub npp_fraction_after_growth: f64,
}

impl Mod17Constants {
    pub fn builtin() -> Result<Self> {
        let rel = "mod17/algorithm.toml";
        models::parse_toml(
            models::embedded(rel).expect("embedded"),
            &models::embedded_path(rel),
        )
    }
}

/// The built-in BPLUT.
pub const DEFAULT_BPLUT: &str = "c5.1";

impl Bplut {
    /// A built-in table by name (`c5.1`) or a user's TOML file in the same layout.
    pub fn resolve(name_or_path: &str) -> Result<Bplut> {
        let (mut b, path): (Bplut, _) =
            models::resolve_table("MOD17 BPLUT", "mod17/bplut-", name_or_path)?;
        b.source = path;
        b.validate()?;
        Ok(b)
    }

    fn validate(&self) -> Result<()> {
        let mut seen = BTreeMap::new();
        for c in &self.classes {
            let bad = |what: &str| {
                Err(Error::config(
                    &self.source,
                    format!("class {} ({}): {what}", c.umd, c.label),
                ))
            };
            if seen.insert(c.umd, ()).is_some() {
                return bad("listed twice");
            }
            if !(c.tmin_max_degc > c.tmin_min_degc) {
                return bad("tmin_max_degc must exceed tmin_min_degc");
            }
            if !(c.vpd_max_pa > c.vpd_min_pa) {
                return bad("vpd_max_pa must exceed vpd_min_pa");
            }
            if !(c.sla_lai_per_kgc > 0.0) {
                return bad("sla_lai_per_kgc must be positive");
            }
            if !(c.lue_max_kgc_per_mj > 0.0 && c.lue_max_kgc_per_mj < 0.01) {
                return bad(
                    "lue_max_kgc_per_mj must be in (0, 0.01) kg C MJ-1 (is it in g C MJ-1?)",
                );
            }
        }
        Ok(())
    }

    pub fn class(&self, umd: u8) -> Option<&Mod17Class> {
        self.classes.iter().find(|c| c.umd == umd)
    }
}

/// Linear ramp rising from 0 at `lo` to 1 at `hi` (mod17 `linear_constraint`: 1 when x >= hi, 0 when x < lo).
pub fn ramp_up(x: f64, lo: f64, hi: f64) -> f64 {
    if x >= hi {
        1.0
    } else if x < lo {
        0.0
    } else {
        (x - lo) / (hi - lo)
    }
}

/// Linear ramp falling from 1 at `lo` to 0 at `hi` (mod17 `linear_constraint(form='reversed')`).
pub fn ramp_down(x: f64, lo: f64, hi: f64) -> f64 {
    if x >= hi {
        0.0
    } else if x < lo {
        1.0
    } else {
        1.0 - (x - lo) / (hi - lo)
    }
}

impl Mod17Class {
    /// Minimum-temperature scalar f(Tmin) in [0, 1].
    pub fn f_tmin(&self, tmin_degc: f64) -> f64 {
        ramp_up(tmin_degc, self.tmin_min_degc, self.tmin_max_degc)
    }

    /// VPD scalar f(VPD) in [0, 1].
    pub fn f_vpd(&self, vpd_pa: f64) -> f64 {
        ramp_down(vpd_pa, self.vpd_min_pa, self.vpd_max_pa)
    }

    /// Daily GPP, g C m-2 d-1: 1000 g kg-1 x LUEmax x f(Tmin) x f(VPD) x FPAR x PAR (PAR in MJ m-2 d-1).
    pub fn daily_gpp(&self, fpar: f64, tmin_degc: f64, vpd_pa: f64, par_mj_m2_d: f64) -> f64 {
        1e3 * self.lue_max_kgc_per_mj
            * self.f_tmin(tmin_degc)
            * self.f_vpd(vpd_pa)
            * fpar
            * par_mj_m2_d
    }

    /// Daily leaf and fine-root maintenance respiration, g C m-2 d-1 (User's Guide eqs. 1.4-1.7, 1.11).
    pub fn daily_respiration(&self, k: &Mod17Constants, lai: f64, tmean_degc: f64) -> (f64, f64) {
        let leaf_mass = lai / self.sla_lai_per_kgc; // kg C m-2
        let froot_mass = leaf_mass * self.froot_leaf_ratio;
        let e = (tmean_degc - k.respiration_reference_degc) / 10.0;
        let q10_leaf = (k.leaf_q10_intercept - k.leaf_q10_slope_per_degc * tmean_degc).powf(e);
        let q10_froot = self.q10_froot.powf(e);
        (
            1e3 * leaf_mass * self.leaf_mr_base_per_day * q10_leaf,
            1e3 * froot_mass * self.froot_mr_base_per_day * q10_froot,
        )
    }
}

/// Running sums of one year (or any accumulation period) for one pixel: feed days, then `finish`.
#[derive(Debug, Clone, Copy)]
pub struct Mod17Year {
    pub gpp: f64,
    pub r_leaf: f64,
    pub r_froot: f64,
    /// Sum over days of Q10_livewood^((T - 20) / 10).
    livewood_q10_sum: f64,
    lai_max: f64,
    days: u32,
}

/// The annual result for one pixel, g C m-2 over the period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mod17Annual {
    pub gpp: f64,
    pub r_leaf: f64,
    pub r_froot: f64,
    pub r_livewood: f64,
    pub npp: f64,
}

impl Default for Mod17Year {
    fn default() -> Self {
        Mod17Year {
            gpp: 0.0,
            r_leaf: 0.0,
            r_froot: 0.0,
            livewood_q10_sum: 0.0,
            lai_max: f64::NEG_INFINITY,
            days: 0,
        }
    }
}

impl Mod17Year {
    /// Add `n` identical days (1 for a daily step; a month's days when monthly drivers give its daily means).
    /// Any NaN input makes the period NaN: missing days are not silently dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn add_days(
        &mut self,
        c: &Mod17Class,
        k: &Mod17Constants,
        fpar: f64,
        tmin_degc: f64,
        vpd_pa: f64,
        par_mj_m2_d: f64,
        lai: f64,
        tmean_degc: f64,
        n: u32,
    ) {
        self.add_days_scaled(
            c,
            k,
            fpar,
            tmin_degc,
            vpd_pa,
            par_mj_m2_d,
            lai,
            tmean_degc,
            1.0,
            n,
        );
    }

    /// `add_days` with GPP multiplied by `gpp_scale` (a soil-water scalar; 1 leaves MOD17 unchanged).
    #[allow(clippy::too_many_arguments)]
    pub fn add_days_scaled(
        &mut self,
        c: &Mod17Class,
        k: &Mod17Constants,
        fpar: f64,
        tmin_degc: f64,
        vpd_pa: f64,
        par_mj_m2_d: f64,
        lai: f64,
        tmean_degc: f64,
        gpp_scale: f64,
        n: u32,
    ) {
        let gpp = c.daily_gpp(fpar, tmin_degc, vpd_pa, par_mj_m2_d) * gpp_scale;
        self.add_days_gpp(c, k, gpp, lai, tmean_degc, n);
    }

    /// Add `n` days of a given daily GPP (g C m-2 d-1, from another GPP model such as the P-model) with the
    /// class's maintenance respiration.
    pub fn add_days_gpp(
        &mut self,
        c: &Mod17Class,
        k: &Mod17Constants,
        gpp_per_day: f64,
        lai: f64,
        tmean_degc: f64,
        n: u32,
    ) {
        let nf = n as f64;
        self.gpp += nf * gpp_per_day;
        let (rl, rf) = c.daily_respiration(k, lai, tmean_degc);
        self.r_leaf += nf * rl;
        self.r_froot += nf * rf;
        self.livewood_q10_sum += nf
            * c.q10_livewood
                .powf((tmean_degc - k.respiration_reference_degc) / 10.0);
        self.note_lai(lai);
        self.days += n;
    }

    /// Count a month's LAI in the year's maximum (the live-wood mass) without simulating its days: the months
    /// of the model year outside a shorter reported period.
    pub fn note_lai(&mut self, lai: f64) {
        self.lai_max = if lai.is_nan() || self.lai_max.is_nan() {
            f64::NAN
        } else {
            self.lai_max.max(lai)
        };
    }

    /// Live-wood respiration (from the period's maximum leaf mass, User's Guide eq. 1.10) and NPP =
    /// 0.8 (GPP - Rm), 0 when negative.
    pub fn finish(&self, c: &Mod17Class, k: &Mod17Constants) -> Mod17Annual {
        if self.days == 0 {
            return Mod17Annual {
                gpp: f64::NAN,
                r_leaf: f64::NAN,
                r_froot: f64::NAN,
                r_livewood: f64::NAN,
                npp: f64::NAN,
            };
        }
        let livewood_mass = self.lai_max / c.sla_lai_per_kgc * c.livewood_leaf_ratio;
        let r_livewood = 1e3 * livewood_mass * c.livewood_mr_base_per_day * self.livewood_q10_sum;
        let diff = self.gpp - (self.r_leaf + self.r_froot + r_livewood);
        let npp = if diff.is_nan() {
            f64::NAN
        } else if diff < 0.0 {
            0.0
        } else {
            k.npp_fraction_after_growth * diff
        };
        Mod17Annual {
            gpp: self.gpp,
            r_leaf: self.r_leaf,
            r_froot: self.r_froot,
            r_livewood,
            npp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_bplut_has_the_eleven_umd_classes() {
        let b = Bplut::resolve(DEFAULT_BPLUT).unwrap();
        let codes: Vec<u8> = b.classes.iter().map(|c| c.umd).collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]);
        // ENF LUEmax 0.001211 kg C MJ-1 (Zhao's C5.1 table).
        assert_eq!(b.class(1).unwrap().lue_max_kgc_per_mj, 0.001211);
        assert!(Bplut::resolve("c9").is_err());
    }

    #[test]
    fn gpp_by_hand() {
        // EBF: LUEmax 0.001405, Tmin ramp -8..9.09, VPD ramp 1000..4000 Pa.
        // Tmin 0.545 C -> f = (0.545 + 8) / 17.09 = 0.5; VPD 2500 -> f = 1 - 1500/3000 = 0.5;
        // GPP = 1000 x 0.001405 x 0.5 x 0.5 x FPAR 0.8 x PAR 10 = 2.81 g C m-2 d-1.
        let b = Bplut::resolve(DEFAULT_BPLUT).unwrap();
        let c = b.class(2).unwrap();
        let g = c.daily_gpp(0.8, 0.545, 2500.0, 10.0);
        assert!((g - 2.81).abs() < 1e-12, "{g}");
    }
}
