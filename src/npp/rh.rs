//! Soil heterotrophic respiration from monthly temperature and precipitation (models/rh/), and NEP = NPP - Rh.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::Result;
use crate::models;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RhForm {
    /// a (exp(b T) + ln(c R + 1)) x days x fraction, as printed by Pei et al. (2009).
    Sum,
    /// a exp(b T + ln(c R + 1)) x days x fraction = a exp(b T) (c R + 1) x days x fraction.
    Product,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RhModel {
    pub name: String,
    pub citation: String,
    pub form: RhForm,
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub days_per_month: f64,
    pub fraction: f64,
    #[serde(skip)]
    pub source: PathBuf,
}

pub const DEFAULT_RH: &str = "pei2009";

impl RhModel {
    /// A built-in model by name or a user's .toml file.
    pub fn resolve(name_or_path: &str) -> Result<RhModel> {
        let (mut m, path): (RhModel, _) =
            models::resolve_table("heterotrophic-respiration model", "rh/", name_or_path)?;
        m.source = path;
        Ok(m)
    }

    /// Monthly Rh, g C m-2 month-1, from the month's mean temperature (deg C) and precipitation (mm month-1).
    pub fn monthly(&self, t_degc: f64, precip_mm: f64) -> f64 {
        let wet = (self.c * precip_mm + 1.0).ln();
        let core = match self.form {
            RhForm::Sum => (self.b * t_degc).exp() + wet,
            RhForm::Product => (self.b * t_degc + wet).exp(),
        };
        self.a * core * self.days_per_month * self.fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pei2009_by_hand() {
        let m = RhModel::resolve(DEFAULT_RH).unwrap();
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
    }
}
