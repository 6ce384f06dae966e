//! FPAR and LAI from NDVI (models/fpar.toml), for light-use-efficiency models run on imagery.

use serde::Deserialize;

use crate::error::Result;
use crate::models;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearFpar {
    pub slope: f64,
    pub intercept: f64,
    pub citation: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaiFromFpar {
    pub extinction_coefficient: f64,
    pub max_fpar: f64,
    pub citation: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FparConstants {
    pub linear: LinearFpar,
    pub lai: LaiFromFpar,
}

impl FparConstants {
    pub fn builtin() -> Result<Self> {
        models::parse_toml(
            models::embedded("fpar.toml").expect("embedded"),
            &models::embedded_path("fpar.toml"),
        )
    }

    /// FPAR = slope x NDVI + intercept, clamped to [0, 1] (NaN stays NaN).
    pub fn fpar_linear(&self, ndvi: f64) -> f64 {
        (self.linear.slope * ndvi + self.linear.intercept).clamp(0.0, 1.0)
    }

    /// LAI = -ln(1 - FPAR) / k, with FPAR capped at `max_fpar`.
    pub fn lai(&self, fpar: f64) -> f64 {
        -(1.0 - fpar.min(self.lai.max_fpar)).ln() / self.lai.extinction_coefficient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        let c = FparConstants::builtin().unwrap();
        // NDVI 0.5: 1.1638 x 0.5 - 0.1426 = 0.4393.
        assert!((c.fpar_linear(0.5) - 0.4393).abs() < 1e-12);
        assert_eq!(c.fpar_linear(0.05), 0.0);
        assert_eq!(c.fpar_linear(0.99), 1.0);
        assert!(c.fpar_linear(f64::NAN).is_nan());
        // FPAR 0.5: LAI = ln 2 / 0.5 = 1.386294; FPAR 1 is capped at 0.95: ln 20 / 0.5 = 5.991465.
        assert!((c.lai(0.5) - 2f64.ln() / 0.5).abs() < 1e-12);
        assert!((c.lai(1.0) - 20f64.ln() / 0.5).abs() < 1e-12);
    }
}
