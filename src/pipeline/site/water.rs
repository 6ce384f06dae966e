//! The site's soil-water balance (SPLASH) from its daily series: the sunshine fraction from a column, from cloud
//! cover, or from the measured light (SPLASH's transmissivity inverted), and the bucket from the user, the
//! parameter set or SPLASH's default.

use crate::drivers::Var;
use crate::error::{Error, Result};
use crate::npp::pmodel::PModelParams;
use crate::npp::splash::{Day, Site, SplashParams, WaterRun};

use super::series::Series;

/// The daily inputs of the bucket, ready to run with any bucket size.
pub struct WaterInputs {
    pub days: Vec<Day>,
    pub latitude: f64,
    pub elevation_m: f64,
    /// Where the sunshine fraction came from (written in the report).
    pub sunshine_source: &'static str,
}

/// PAR energy (MJ m-2 d-1) to photons (mol m-2 d-1) with models/climate.toml's umol J-1.
pub fn par_to_mol_m2_d(par_mj_m2_d: f64, umol_per_j: f64) -> f64 {
    par_mj_m2_d * umol_per_j
}

impl WaterInputs {
    /// Variables the bucket needs besides light (precipitation, temperature).
    pub const NEEDS: [(Var, &'static str); 2] = [
        (Var::Precip, "the soil-water balance"),
        (Var::Tmean, "the soil-water balance"),
    ];
    /// Optional sources of the sunshine fraction, in order of preference (PAR last, inverted).
    pub const SUNSHINE: [Var; 3] = [Var::SunshineFraction, Var::CloudCover, Var::Par];

    pub fn new(series: &Series, splash: &SplashParams, umol_per_j: f64) -> Result<WaterInputs> {
        let (Some(latitude), Some(elevation_m)) = (series.latitude, series.elevation) else {
            return Err(Error::config(
                &series.source,
                "the soil-water balance needs station.latitude and station.elevation (m)",
            ));
        };
        let precip = series.req(Var::Precip);
        let tc = series.req(Var::Tmean);
        let site = Site {
            latitude,
            elevation_m,
            bucket_mm: splash.bucket_mm,
        };
        let (sunshine, sunshine_source): (Vec<f64>, &'static str) = if let Some(sf) =
            series.get(Var::SunshineFraction)
        {
            (sf.to_vec(), "the sunshine_fraction column")
        } else if let Some(cc) = series.get(Var::CloudCover) {
            (
                cc.iter().map(|c| 1.0 - c / 100.0).collect(),
                "1 - cloud_cover / 100",
            )
        } else if let Some(par) = series.get(Var::Par) {
            let sf = series
                .dates
                .iter()
                .zip(par)
                .map(|(d, p)| splash.sunshine_from_ppfd(&site, *d, par_to_mol_m2_d(*p, umol_per_j)))
                .collect();
            (
                sf,
                "the measured PAR (SPLASH's clear-sky transmissivity inverted, clamped to 0..1)",
            )
        } else {
            return Err(Error::config(
                &series.source,
                "the soil-water balance needs a sunshine_fraction, cloud_cover or par column",
            ));
        };
        let days = series
            .dates
            .iter()
            .enumerate()
            .map(|(i, &date)| Day {
                date,
                sunshine_fraction: sunshine[i],
                tc: tc[i],
                precip_mm: precip[i],
            })
            .collect();
        Ok(WaterInputs {
            days,
            latitude,
            elevation_m,
            sunshine_source,
        })
    }

    pub fn run(&self, splash: &SplashParams, p: &PModelParams, bucket_mm: f64) -> Result<WaterRun> {
        let site = Site {
            latitude: self.latitude,
            elevation_m: self.elevation_m,
            bucket_mm,
        };
        splash.run(&p.core, &p.water, &site, &self.days)
    }
}
