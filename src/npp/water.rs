//! Density (Fisher & Dial 1975) and viscosity (Huber et al. 2009) of liquid water, for the P-model's
//! viscosity correction and SPLASH's evaporation. Coefficients: models/pmodel/params-stocker2020.toml [water].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaterConstants {
    pub fisher_lambda: Vec<f64>,
    pub fisher_po: Vec<f64>,
    pub fisher_vinf: Vec<f64>,
    pub huber_tk: f64,
    pub huber_rho: f64,
    pub huber_mu: f64,
    pub huber_h_i: [f64; 4],
    pub huber_h_ij: Vec<Vec<f64>>,
}

/// A polynomial with coefficients lowest order first, by Horner's rule.
pub fn horner(x: f64, coef: &[f64]) -> f64 {
    coef.iter().rev().fold(0.0, |y, c| x * y + c)
}

impl WaterConstants {
    pub fn validate(&self, source: &Path) -> Result<()> {
        let width = self.huber_h_ij.first().map_or(0, |r| r.len());
        if width == 0 || self.huber_h_ij.iter().any(|r| r.len() != width) {
            return Err(Error::config(
                source,
                "water.huber_h_ij must be a table of rows of equal length",
            ));
        }
        Ok(())
    }

    /// Density of water, kg m-3, at `tc` (C) and pressure `pa` (Pa).
    pub fn density(&self, tc: f64, pa: f64) -> f64 {
        let lambda = horner(tc, &self.fisher_lambda);
        let po = horner(tc, &self.fisher_po);
        let vinf = horner(tc, &self.fisher_vinf);
        let pbar = 1e-5 * pa;
        1e3 / (vinf + lambda / (po + pbar))
    }

    /// Viscosity of water, Pa s (Huber et al. 2009, eqs. 10-12).
    pub fn viscosity(&self, tc: f64, pa: f64, c_to_k: f64) -> f64 {
        let rho = self.density(tc, pa);
        let tbar = (tc + c_to_k) / self.huber_tk;
        let rbar = rho / self.huber_rho;
        let h = &self.huber_h_i;
        let mut mu0 = h[0] + h[1] / tbar;
        mu0 += h[2] / (tbar * tbar);
        mu0 += h[3] / (tbar * tbar * tbar);
        let mu0 = 1e2 * tbar.sqrt() / mu0;
        let ctbar = 1.0 / tbar - 1.0;
        let mut mu1 = 0.0;
        for j in 0..self.huber_h_ij[0].len() {
            let cf1 = ctbar.powi(j as i32);
            let mut cf2 = 0.0;
            for (i, row) in self.huber_h_ij.iter().enumerate() {
                cf2 += row[j] * (rbar - 1.0).powi(i as i32);
            }
            mu1 += cf1 * cf2;
        }
        mu0 * (rbar * mu1).exp() * self.huber_mu
    }
}
