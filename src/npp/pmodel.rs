//! The P-model of optimal photosynthesis (Prentice et al. 2014; Wang et al. 2017; Stocker et al. 2020): GPP
//! from temperature, VPD, CO2, pressure, FAPAR and PPFD, with the quantum yield's temperature dependence, the
//! Prentice (2014) optimal ci/ca and the Wang (2017) Jmax limitation, and the Stocker (2018, 2020)
//! soil-moisture stress. Constants and parameters: models/pmodel/params-stocker2020.toml. Tested against pyrealm
//! 2.0.0 in tests/pmodel_reference.rs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Core {
    pub gas_constant_j_mol_k: f64,
    pub o2_umol_mol: f64,
    pub carbon_g_mol: f64,
    pub standard_pressure_pa: f64,
    pub standard_temperature_k: f64,
    pub celsius_to_kelvin: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Photosynthesis {
    pub reference_temperature_k: f64,
    pub gammastar25_pa: f64,
    pub gammastar_ha_j_mol: f64,
    pub kc25_pa: f64,
    pub ko25_pa: f64,
    pub kc_ha_j_mol: f64,
    pub ko_ha_j_mol: f64,
    pub beta_c3: f64,
    pub beta_c4: f64,
    pub wang17_c: f64,
    pub kphio_poly_c3: Vec<f64>,
    pub kphio_poly_c4: Vec<f64>,
    pub kphio: f64,
}

/// Stocker et al. (2018, 2020) soil-moisture stress parameters.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stress {
    pub theta0: f64,
    pub theta_star: f64,
    pub a: f64,
    pub b: f64,
    /// A calibrated bucket size (soil water-holding capacity), mm, used when the site gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_mm: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PModelParams {
    pub name: String,
    pub citation: String,
    pub core: Core,
    pub photosynthesis: Photosynthesis,
    pub soil_moisture_stress: Stress,
    pub water: crate::npp::water::WaterConstants,
    /// How a fitted set was made (site, years, method, cross-validation): written by `site --fit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<toml::Table>,
    #[serde(skip)]
    pub source: PathBuf,
}

/// The built-in parameter set.
pub const DEFAULT_PMODEL: &str = "stocker2020";

/// Photosynthetic pathway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pathway {
    C3,
    C4,
}

/// One day's (or one step's) P-model drivers. PPFD is the mean photon flux over the step.
#[derive(Debug, Clone, Copy)]
pub struct PDrivers {
    pub tc: f64,
    pub vpd_pa: f64,
    pub co2_ppm: f64,
    pub patm_pa: f64,
    pub fapar: f64,
    pub ppfd_umol_m2_s: f64,
}

/// Every intermediate term, so that `site` can write them all.
#[derive(Debug, Clone, Copy, Default)]
pub struct PTerms {
    pub gammastar_pa: f64,
    pub kmm_pa: f64,
    pub ns_star: f64,
    pub ca_pa: f64,
    pub kphio: f64,
    pub chi: f64,
    pub mj: f64,
    /// Light-use efficiency, g C mol-1 photons.
    pub lue_gc_mol: f64,
    /// GPP, ug C m-2 s-1 (the mean rate over the step); NaN where Jmax has no solution (mj <= c*).
    pub gpp_ugc_m2_s: f64,
}

impl PModelParams {
    /// A built-in set by name or a user's TOML file in the same layout.
    pub fn resolve(name_or_path: &str) -> Result<PModelParams> {
        let (mut p, path): (PModelParams, _) =
            models::resolve_table("P-model parameter set", "pmodel/params-", name_or_path)?;
        p.source = path;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        let ph = &self.photosynthesis;
        let s = &self.soil_moisture_stress;
        let bad = |m: String| Err(Error::config(&self.source, m));
        if !(ph.kphio > 0.0 && ph.kphio <= 0.125) {
            return bad(format!(
                "photosynthesis.kphio {} must be in (0, 0.125], the theoretical maximum quantum yield 1/8",
                ph.kphio
            ));
        }
        if ph.kphio_poly_c3.is_empty() || ph.kphio_poly_c4.is_empty() {
            return bad("photosynthesis.kphio_poly_c3 and kphio_poly_c4 need coefficients".into());
        }
        if !(s.theta_star > s.theta0 && s.theta0 >= 0.0 && s.theta_star <= 1.0) {
            return bad(format!(
                "soil_moisture_stress: need 0 <= theta0 < theta_star <= 1, got {} and {}",
                s.theta0, s.theta_star
            ));
        }
        self.water.validate(&self.source)
    }

    fn arrhenius(&self, tk: f64, ha: f64) -> f64 {
        let r = self.core.gas_constant_j_mol_k;
        let t0 = self.photosynthesis.reference_temperature_k;
        (ha * (tk - t0) / (t0 * r * tk)).exp()
    }

    /// Photorespiratory compensation point, Pa (Bernacchi et al. 2001; Stocker et al. 2020 eq. 12).
    pub fn gammastar(&self, tk: f64, patm: f64) -> f64 {
        let p = &self.photosynthesis;
        p.gammastar25_pa * patm / self.core.standard_pressure_pa
            * self.arrhenius(tk, p.gammastar_ha_j_mol)
    }

    /// Michaelis-Menten coefficient of Rubisco-limited assimilation, Pa (Stocker et al. 2020 eq. 9).
    pub fn kmm(&self, tk: f64, patm: f64) -> f64 {
        let p = &self.photosynthesis;
        let kc = p.kc25_pa * self.arrhenius(tk, p.kc_ha_j_mol);
        let ko = p.ko25_pa * self.arrhenius(tk, p.ko_ha_j_mol);
        let po = self.core.o2_umol_mol * 1e-6 * patm;
        kc * (1.0 + po / ko)
    }

    /// Viscosity of water relative to its value at 25 C and standard pressure.
    pub fn ns_star(&self, tc: f64, patm: f64) -> f64 {
        let w = &self.water;
        let c = &self.core;
        let std = w.viscosity(
            c.standard_temperature_k - c.celsius_to_kelvin,
            c.standard_pressure_pa,
            c.celsius_to_kelvin,
        );
        w.viscosity(tc, patm, c.celsius_to_kelvin) / std
    }

    /// Temperature-dependent intrinsic quantum yield (Stocker et al. 2020 eq. 20), clipped at 0.
    pub fn kphio_at(&self, tc: f64, pathway: Pathway, kphio: f64) -> f64 {
        let p = &self.photosynthesis;
        let poly = match pathway {
            Pathway::C3 => &p.kphio_poly_c3,
            Pathway::C4 => &p.kphio_poly_c4,
        };
        let f = crate::npp::water::horner(tc, poly);
        f.max(0.0) * kphio
    }

    /// The P-model for one step with the set's own kphio.
    pub fn gpp(&self, d: &PDrivers, pathway: Pathway) -> PTerms {
        self.gpp_with(d, pathway, self.photosynthesis.kphio)
    }

    /// The P-model for one step with a given reference kphio (calibration varies it).
    pub fn gpp_with(&self, d: &PDrivers, pathway: Pathway, kphio: f64) -> PTerms {
        let p = &self.photosynthesis;
        let tk = d.tc + self.core.celsius_to_kelvin;
        let gammastar = self.gammastar(tk, d.patm_pa);
        let kmm = self.kmm(tk, d.patm_pa);
        let ns_star = self.ns_star(d.tc, d.patm_pa);
        let ca = 1e-6 * d.co2_ppm * d.patm_pa;
        let beta = match pathway {
            Pathway::C3 => p.beta_c3,
            Pathway::C4 => p.beta_c4,
        };
        // Optimal ci/ca (Prentice et al. 2014; Stocker et al. 2020 eqs. 7-8).
        let xi = (beta * (kmm + gammastar) / (1.6 * ns_star)).sqrt();
        let chi = gammastar / ca + (1.0 - gammastar / ca) * xi / (xi + d.vpd_pa.sqrt());
        let ci = chi * ca;
        let mj = match pathway {
            Pathway::C3 => (ci - gammastar) / (ci + 2.0 * gammastar),
            Pathway::C4 => 1.0,
        };
        // Jmax limitation (Wang et al. 2017; Stocker et al. 2020 eq. 17): undefined where mj <= c*.
        let fv = if mj > p.wang17_c {
            (1.0 - (p.wang17_c / mj).powf(2.0 / 3.0)).sqrt()
        } else {
            f64::NAN
        };
        let kphio_t = self.kphio_at(d.tc, pathway, kphio);
        let lue = kphio_t * mj * fv * self.core.carbon_g_mol;
        PTerms {
            gammastar_pa: gammastar,
            kmm_pa: kmm,
            ns_star,
            ca_pa: ca,
            kphio: kphio_t,
            chi,
            mj,
            lue_gc_mol: lue,
            gpp_ugc_m2_s: lue * d.fapar * d.ppfd_umol_m2_s,
        }
    }
}

impl Stress {
    /// beta(theta): 1 above theta*, 1 - q (theta - theta*)^2 below, clipped to 0..1 (Stocker et al. 2020 eq. 22).
    pub fn factor(&self, soilm: f64, meanalpha: f64) -> f64 {
        let y0 = self.a + self.b * meanalpha;
        let q = (1.0 - y0) / (self.theta0 - self.theta_star).powi(2);
        if soilm <= self.theta_star {
            (1.0 - q * (soilm - self.theta_star).powi(2)).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set_resolves() {
        let p = PModelParams::resolve(DEFAULT_PMODEL).unwrap();
        assert_eq!(p.photosynthesis.kphio, 0.081785);
    }

    #[test]
    fn stress_is_one_above_theta_star_and_y0_at_theta0() {
        let s = PModelParams::resolve(DEFAULT_PMODEL)
            .unwrap()
            .soil_moisture_stress;
        assert_eq!(s.factor(0.7, 0.5), 1.0);
        // At theta0 = 0: 1 - q theta*^2 = a + b alpha = 0.733 x 0.5.
        assert!((s.factor(0.0, 0.5) - 0.3665).abs() < 1e-12);
    }
}
