//! SPLASH v1.0 (Davis et al. 2017): daily radiation terms, condensation, potential and actual
//! evapotranspiration, and a one-layer soil-water bucket, spun up over the first year. Constants:
//! models/pmodel/splash.toml. Tested against pyrealm 2.0.0 in tests/pmodel_reference.rs.

use std::f64::consts::PI;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models;
use crate::npp::pmodel::Core;
use crate::npp::water::{horner, WaterConstants};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplashParams {
    pub citation: String,
    pub bucket_mm: f64,
    pub entrainment: f64,
    pub supply_rate_mm_h: f64,
    pub shortwave_albedo: f64,
    pub visible_albedo: f64,
    pub ppfd_umol_per_j: f64,
    pub transmissivity: [f64; 3],
    pub net_longwave: [f64; 2],
    pub solar_constant_w_m2: f64,
    pub eccentricity: f64,
    pub obliquity_deg: f64,
    pub perihelion_deg: f64,
    pub lapse_rate_k_m: f64,
    pub gravity_m_s2: f64,
    pub molar_mass_air_kg_mol: f64,
    pub molar_mass_vapour_kg_mol: f64,
    pub svp_slope: [f64; 3],
    pub vaporisation_enthalpy: [f64; 2],
    pub specific_heat_poly: Vec<f64>,
    pub spinup_tolerance_mm: f64,
    pub spinup_max_years: usize,
    #[serde(skip)]
    pub source: PathBuf,
}

/// Where the bucket is.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub latitude: f64,
    pub elevation_m: f64,
    pub bucket_mm: f64,
}

/// One day's drivers: sunshine fraction (0-1), mean air temperature (C), precipitation (mm d-1).
#[derive(Debug, Clone, Copy)]
pub struct Day {
    pub date: NaiveDate,
    pub sunshine_fraction: f64,
    pub tc: f64,
    pub precip_mm: f64,
}

/// A day's fluxes that do not depend on soil water.
#[derive(Debug, Clone, Copy)]
struct Fluxes {
    ru: f64,
    rv: f64,
    rw: f64,
    rnl: f64,
    hn_deg: f64,
    rx: f64,
    cond_mm: f64,
    pet_mm: f64,
}

/// A day of the water balance: bucket at the end of the day and the day's fluxes, mm.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaterDay {
    pub wn_mm: f64,
    pub aet_mm: f64,
    pub pet_mm: f64,
    pub cond_mm: f64,
    pub runoff_mm: f64,
}

/// A whole run: the spun-up bucket at the start, each day, and whether the spin-up converged.
#[derive(Debug, Clone)]
pub struct WaterRun {
    pub initial_mm: f64,
    pub days: Vec<WaterDay>,
    pub spinup_years: usize,
    pub converged: bool,
}

impl WaterRun {
    /// Mean ratio of actual to potential evapotranspiration over the run, sum(AET) / sum(PET): the aridity
    /// index alpha of the Stocker et al. (2018) soil-moisture stress.
    pub fn mean_alpha(&self) -> f64 {
        let aet: f64 = self.days.iter().map(|d| d.aet_mm).sum();
        let pet: f64 = self.days.iter().map(|d| d.pet_mm).sum();
        aet / pet
    }

    /// Soil water at the start of day `i` (the end of the day before), mm.
    pub fn start_of_day(&self, i: usize) -> f64 {
        if i == 0 {
            self.initial_mm
        } else {
            self.days[i - 1].wn_mm
        }
    }
}

fn rad(deg: f64) -> f64 {
    deg * (PI / 180.0)
}

fn deg(rad: f64) -> f64 {
    rad * (180.0 / PI)
}

impl SplashParams {
    pub fn builtin() -> Result<Self> {
        let rel = "pmodel/splash.toml";
        let mut p: SplashParams = models::parse_toml(
            models::embedded(rel).expect("embedded"),
            &models::embedded_path(rel),
        )?;
        p.source = models::embedded_path(rel);
        Ok(p)
    }

    /// Atmospheric pressure from elevation, Pa (standard atmosphere, Allen 1973; as pyrealm calc_patm).
    pub fn pressure(&self, core: &Core, elevation_m: f64) -> f64 {
        let exp = self.gravity_m_s2 * self.molar_mass_air_kg_mol
            / (core.gas_constant_j_mol_k * self.lapse_rate_k_m);
        core.standard_pressure_pa
            * (1.0 - self.lapse_rate_k_m * elevation_m / core.standard_temperature_k).powf(exp)
    }

    /// True anomaly and true longitude of the Earth for a day of the year, degrees (Berger 1978).
    fn longitudes(&self, ordinal: f64, days_in_year: f64) -> (f64, f64) {
        let e = self.eccentricity;
        let (e2, e3) = (e * e, e * e * e);
        let xse = (1.0 - e2).sqrt();
        let w = rad(self.perihelion_deg);
        let xlam = deg(((e / 2.0 + e3 / 8.0) * (1.0 + xse) * w.sin()
            - e2 / 4.0 * (0.5 + xse) * (2.0 * w).sin()
            + e3 / 8.0 * (1.0 / 3.0 + xse) * (3.0 * w).sin())
            * 2.0);
        let dlamm = xlam + (ordinal - 80.0) * (360.0 / days_in_year);
        let ranm = rad(dlamm - self.perihelion_deg);
        let ranv = ranm
            + (2.0 * e - e3 / 4.0) * ranm.sin()
            + 5.0 / 4.0 * e2 * (2.0 * ranm).sin()
            + 13.0 / 12.0 * e3 * (3.0 * ranm).sin();
        let lambda = (deg(ranv) + self.perihelion_deg).rem_euclid(360.0);
        let nu = (lambda - self.perihelion_deg).rem_euclid(360.0);
        (nu, lambda)
    }

    fn fluxes(
        &self,
        (water, c_to_k): (&WaterConstants, f64),
        site: &Site,
        pa: f64,
        d: &Day,
    ) -> Fluxes {
        let year_days = if d.date.leap_year() { 366.0 } else { 365.0 };
        let (nu, lambda) = self.longitudes(d.date.ordinal() as f64, year_days);
        let e = self.eccentricity;
        let dr = (1.0 / ((1.0 - e * e) / (1.0 + e * rad(nu).cos()))).powi(2);
        let delta = deg((rad(lambda).sin() * rad(self.obliquity_deg).sin()).asin());
        let [c, dd, f] = self.transmissivity;
        let tau = (c + dd * d.sunshine_fraction) * (1.0 + f * site.elevation_m);
        let ru = rad(delta).sin() * rad(site.latitude).sin();
        let rv = rad(delta).cos() * rad(site.latitude).cos();
        let rw = (1.0 - self.shortwave_albedo) * tau * self.solar_constant_w_m2 * dr;
        let hs = deg((-(ru / rv).clamp(-1.0, 1.0)).acos());
        let [b, a] = self.net_longwave;
        let rnl = (b + (1.0 - b) * d.sunshine_fraction) * (a - d.tc);
        let hn = deg(((rnl - rw * ru) / (rw * rv)).clamp(-1.0, 1.0).acos());
        let secs = 86_400.0 / PI;
        let rn_d = secs * (rad(hn) * (rw * ru - rnl) + rw * rv * rad(hn).sin());
        let rnn_d = (rw * rv * (rad(hs).sin() - rad(hn).sin()) + rw * ru * rad(hs - hn)
            - rnl * (PI - rad(hn)))
            * secs;
        // Evaporation terms (Davis et al. 2017 eqs. 33-36).
        let tc = d.tc;
        let [s1, s2, s3] = self.svp_slope;
        let sat = s1 * s2 * s3 * ((tc * s1 / (tc + s2)).exp() / (tc + s2).powi(2));
        let [l0, l1] = self.vaporisation_enthalpy;
        let lv = l0 * ((tc + c_to_k) / (tc + c_to_k - l1)).powi(2);
        let pw = water.density(tc, pa);
        let cp = 1e3 * horner(tc.clamp(0.0, 100.0), &self.specific_heat_poly);
        let psy = cp * self.molar_mass_air_kg_mol * pa / (self.molar_mass_vapour_kg_mol * lv);
        let econ = sat / (lv * pw * (sat + psy));
        Fluxes {
            ru,
            rv,
            rw,
            rnl,
            hn_deg: hn,
            rx: 3.6e6 * (1.0 + self.entrainment) * econ,
            cond_mm: 1e3 * econ * rnn_d.abs(),
            pet_mm: (1.0 + self.entrainment) * 1e3 * econ * rn_d,
        }
    }

    /// Actual evapotranspiration of a day given the soil water at its start (Davis et al. 2017 eq. 27).
    fn aet(&self, f: &Fluxes, wn: f64, bucket: f64) -> f64 {
        let sw = self.supply_rate_mm_h * wn / bucket;
        let hi_pre = sw / (f.rw * f.rv * f.rx) + f.rnl / (f.rw * f.rv) - f.ru / f.rv;
        let hi = deg(hi_pre.clamp(-1.0, 1.0).acos());
        (sw * rad(hi)
            + f.rx * f.rw * f.rv * (rad(f.hn_deg).sin() - rad(hi).sin())
            + (f.rx * f.rw * f.ru - f.rx * f.rnl) * rad(f.hn_deg - hi))
            * (24.0 / PI)
    }

    fn step(&self, f: &Fluxes, wn: f64, d: &Day, bucket: f64) -> WaterDay {
        let aet = self.aet(f, wn, bucket);
        let next = wn + d.precip_mm + f.cond_mm - aet;
        WaterDay {
            wn_mm: next.clamp(0.0, bucket),
            aet_mm: aet,
            pet_mm: f.pet_mm,
            cond_mm: f.cond_mm,
            runoff_mm: (next - bucket).max(0.0),
        }
    }

    /// The water balance over `days` (consecutive days), spun up by repeating the first year from an empty
    /// bucket until it repeats itself.
    pub fn run(
        &self,
        core: &Core,
        water: &WaterConstants,
        site: &Site,
        days: &[Day],
    ) -> Result<WaterRun> {
        let first = days
            .first()
            .ok_or_else(|| Error::Usage("SPLASH needs at least one day".into()))?;
        let year_later = first
            .date
            .checked_add_months(chrono::Months::new(12))
            .expect("date in range");
        let spin_days = (year_later - first.date).num_days() as usize;
        if days.len() < spin_days {
            return Err(Error::Usage(format!(
                "SPLASH spins its bucket up over a year: the drivers have {} days from {}, a year needs {spin_days}",
                days.len(),
                first.date
            )));
        }
        let pa = self.pressure(core, site.elevation_m);
        let fluxes: Vec<Fluxes> = days
            .iter()
            .map(|d| self.fluxes((water, core.celsius_to_kelvin), site, pa, d))
            .collect();
        let (mut start, mut years, mut converged) = (0.0, 0, false);
        while !converged && years < self.spinup_max_years {
            years += 1;
            let mut wn = start;
            for i in 0..spin_days {
                wn = self.step(&fluxes[i], wn, &days[i], site.bucket_mm).wn_mm;
            }
            converged = (start - wn).abs() <= self.spinup_tolerance_mm;
            start = wn;
        }
        let mut wn = start;
        let mut out = Vec::with_capacity(days.len());
        for (f, d) in fluxes.iter().zip(days) {
            let w = self.step(f, wn, d, site.bucket_mm);
            wn = w.wn_mm;
            out.push(w);
        }
        Ok(WaterRun {
            initial_mm: start,
            days: out,
            spinup_years: years,
            converged,
        })
    }

    /// Sunshine fraction that makes SPLASH's clear-sky PPFD (Davis et al. 2017 eqs. 11-12, 17) equal an
    /// observed daily PPFD (mol m-2 d-1), clamped to 0..1: for stations that measure light but not sunshine.
    pub fn sunshine_from_ppfd(&self, site: &Site, date: NaiveDate, ppfd_mol_m2_d: f64) -> f64 {
        let year_days = if date.leap_year() { 366.0 } else { 365.0 };
        let (nu, lambda) = self.longitudes(date.ordinal() as f64, year_days);
        let e = self.eccentricity;
        let dr = (1.0 / ((1.0 - e * e) / (1.0 + e * rad(nu).cos()))).powi(2);
        let delta = deg((rad(lambda).sin() * rad(self.obliquity_deg).sin()).asin());
        let ru = rad(delta).sin() * rad(site.latitude).sin();
        let rv = rad(delta).cos() * rad(site.latitude).cos();
        let hs = deg((-(ru / rv).clamp(-1.0, 1.0)).acos());
        let ra =
            (86_400.0 / PI) * self.solar_constant_w_m2 * dr * (ru * rad(hs) + rv * rad(hs).sin());
        let [c, d, f] = self.transmissivity;
        let per_tau = 1e-6 * self.ppfd_umol_per_j * (1.0 - self.visible_albedo) * ra;
        let tau = ppfd_mol_m2_d / per_tau;
        ((tau / (1.0 + f * site.elevation_m) - c) / d).clamp(0.0, 1.0)
    }
}
