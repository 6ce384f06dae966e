//! Soil heterotrophic respiration from monthly temperature and precipitation (models/rh/), and NEP = NPP - Rh.
//! Forms: Pei et al. (2009), fitted on alpine steppe, and Raich et al. (2002)'s global soil respiration with the
//! Bond-Lamberty et al. (2004) global relation of its heterotrophic part; both validated against ForC's
//! R_het_soil records by `carbonmap validate-rh`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::models;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RhForm {
    /// a (exp(b T) + ln(c R + 1)) x days x fraction, as printed by Pei et al. (2009).
    Sum,
    /// a exp(b T + ln(c R + 1)) x days x fraction = a exp(b T) (c R + 1) x days x fraction.
    Product,
    /// Soil respiration Rs = a exp(b T) R / (c + R) x days (Raich et al. 2002), and its heterotrophic part
    /// from the annual rate: ln(Rh) = rh_ln_intercept + rh_ln_slope ln(Rs) (Bond-Lamberty et al. 2004), times
    /// fraction.
    Raich,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RhModel {
    pub name: String,
    pub citation: String,
    pub form: RhForm,
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub days_per_month: f64,
    #[serde(default = "one")]
    pub fraction: f64,
    /// Form "raich": the annual Rh-Rs relation's intercept and slope (g C m-2 yr-1, natural logarithms).
    pub rh_ln_intercept: Option<f64>,
    pub rh_ln_slope: Option<f64>,
    /// How a fitted model was made (`validate-rh --fit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<toml::Table>,
    #[serde(skip)]
    pub source: PathBuf,
}

pub const DEFAULT_RH: &str = "raich2002-bl2004-forc";

fn one() -> f64 {
    1.0
}

impl RhModel {
    /// A built-in model by name or a user's .toml file.
    pub fn resolve(name_or_path: &str) -> Result<RhModel> {
        let (mut m, path): (RhModel, _) =
            models::resolve_table("heterotrophic-respiration model", "rh/", name_or_path)?;
        m.source = path;
        if m.form == RhForm::Raich && (m.rh_ln_intercept.is_none() || m.rh_ln_slope.is_none()) {
            return Err(crate::error::Error::config(
                &m.source,
                "form = \"raich\" needs rh_ln_intercept and rh_ln_slope (the annual Rh-Rs relation)",
            ));
        }
        Ok(m)
    }

    /// Monthly Rh, g C m-2 month-1, from the month's mean temperature (deg C) and precipitation (mm month-1).
    /// For form "raich" this is the month's soil respiration Rs; `finish` turns a period's months into Rh.
    pub fn monthly(&self, t_degc: f64, precip_mm: f64) -> f64 {
        if self.form == RhForm::Raich {
            return self.a
                * (self.b * t_degc).exp()
                * (precip_mm / (self.c + precip_mm))
                * self.days_per_month;
        }
        let wet = (self.c * precip_mm + 1.0).ln();
        let core = match self.form {
            RhForm::Sum => (self.b * t_degc).exp() + wet,
            RhForm::Product | RhForm::Raich => (self.b * t_degc + wet).exp(),
        };
        self.a * core * self.days_per_month * self.fraction
    }

    /// Turn the `monthly` values of a period's months into monthly Rh (in place). Form "raich": each month's Rs
    /// times the heterotrophic share exp(i) Rs_yr^(s - 1) at the annual rate Rs_yr the months imply (their sum
    /// x 12 / their number: the whole year for a year, the period's rate scaled to a year otherwise).
    pub fn finish(&self, months: &mut [f64]) {
        if self.form != RhForm::Raich || months.is_empty() {
            return;
        }
        let (i, s) = (
            self.rh_ln_intercept.expect("checked"),
            self.rh_ln_slope.expect("checked"),
        );
        let rs_yr = months.iter().sum::<f64>() * 12.0 / months.len() as f64;
        // `fraction` scales Rh itself (a fitted factor), after the nonlinear share.
        let share = if rs_yr > 0.0 {
            (i + (s - 1.0) * rs_yr.ln()).exp() * self.fraction
        } else {
            0.0
        };
        for m in months {
            *m *= share;
        }
    }

    /// Annual Rh from 12 monthly (temperature C, precipitation mm) pairs, g C m-2 yr-1.
    pub fn annual(&self, months: &[(f64, f64)]) -> f64 {
        let mut v: Vec<f64> = months.iter().map(|&(t, p)| self.monthly(t, p)).collect();
        self.finish(&mut v);
        v.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pei2009_by_hand() {
        let m = RhModel::resolve("pei2009").unwrap();
        // T = 10 C, R = 50 mm: exp(0.912) = 2.4892961, ln(0.3145 x 50 + 1) = ln(16.725) = 2.8169038;
        // 0.22 x (2.4892961 + 2.8169038) x 30 x 0.465 = 3.069 x 5.3061999 = 16.284730 g C m-2 month-1.
        let v = m.monthly(10.0, 50.0);
        assert!((v - 16.284730).abs() < 1e-5, "{v}");
        // The product reading: 0.22 x 2.4892961 x 16.725 x 13.95 = 127.7731 (eight times more).
        let p = RhModel {
            form: RhForm::Product,
            ..m.clone()
        };
        assert!((p.monthly(10.0, 50.0) - 127.7731).abs() < 1e-3);
        // No rain, 0 C: 0.22 x (1 + 0) x 13.95 = 3.069.
        assert!((m.monthly(0.0, 0.0) - 3.069).abs() < 1e-12);
        // The coefficient kept (models/rh/pei2009.toml): Q10 = exp(10 x 0.0912) = 2.4893, within the field
        // range 1.3-3.3 (Raich & Schlesinger 1992); the 0.0913 variant moves Rh at 30 C by exp(0.003) - 1.
        assert_eq!(m.b, 0.0912);
        assert!(((10.0 * m.b).exp() - 2.4892961).abs() < 1e-6);
        assert!(((30.0 * (0.0913 - m.b)).exp() - 1.0 - 0.0030045).abs() < 1e-6);
    }

    #[test]
    fn raich_bond_lamberty_by_hand() {
        let m = RhModel::resolve("raich2002-bl2004").unwrap();
        // A year of 12 months at 10 C and 83.3333 mm (8.33333 cm): Rs per month = 1.25 g C m-2 d-1 x
        // exp(0.5452) x 8.33333 / (4.259 + 8.33333) x 30.436875 d = 1.25 x 1.724964 x 0.661778 x 30.436875
        // = 43.4313; Rs_yr = 521.176; Rh_yr = exp(1.22 + 0.73 ln 521.176) = 3.38719 x 96.249 = 326.01.
        let rs = m.monthly(10.0, 1000.0 / 12.0);
        let want_rs = 1.25
            * (0.5452f64).exp()
            * (8.333333333333334 / (4.259 + 8.333333333333334))
            * 30.436875;
        assert!((rs - want_rs).abs() < 1e-9, "{rs}");
        let rh = m.annual(&[(10.0, 1000.0 / 12.0); 12]);
        let want = (1.22 + 0.73 * (12.0 * want_rs).ln()).exp();
        assert!(
            (rh - want).abs() < 1e-9 && (rh - 326.01).abs() < 0.01,
            "{rh}"
        );
        // A dry year respires nothing (P / (K + P) = 0), without a NaN from ln 0.
        assert_eq!(m.annual(&[(20.0, 0.0); 12]), 0.0);
    }
}
