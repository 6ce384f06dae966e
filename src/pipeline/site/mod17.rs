//! MOD17 at a site: daily GPP with its scalars and maintenance respiration, annual respiration terms and NPP;
//! optionally GPP times a soil-water scalar (the Stocker et al. 2018 stress from the SPLASH bucket), off by
//! default so that MOD17 stays the reference algorithm.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::climate::ClimateConstants;
use crate::drivers::Var;
use crate::error::{Error, Result};
use crate::npp::fpar::FparConstants;
use crate::npp::mod17::{Bplut, Mod17Class, Mod17Constants, Mod17Year};
use crate::npp::pmodel::PModelParams;
use crate::npp::splash::SplashParams;

use super::series::Series;
use super::water::WaterInputs;
use super::{cell, observed_by_day, ModelRun, SiteJob};

fn class<'a>(job: &SiteJob, bplut: &'a Bplut) -> Result<&'a Mod17Class> {
    let pft = job
        .pft
        .ok_or_else(|| Error::Usage("--pft is required with --model mod17".into()))?;
    bplut.class(pft).ok_or_else(|| {
        Error::Usage(format!(
            "--pft {pft}: BPLUT {} has parameters for PFTs {}",
            bplut.name,
            bplut
                .classes
                .iter()
                .map(|c| c.umd.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The soil-water scalar of each day (1 when off), and a description for the report.
fn water_scalar(job: &SiteJob, series: &Series) -> Result<(Vec<f64>, Option<String>)> {
    if job.soil_water != Some(true) {
        return Ok((vec![1.0; series.dates.len()], None));
    }
    let p = PModelParams::resolve(&job.params)?;
    let splash = SplashParams::builtin()?;
    let climate = ClimateConstants::builtin()?;
    let inputs = WaterInputs::new(series, &splash, climate.radiation.umol_per_joule_par)?;
    let bucket = job
        .whc_mm
        .or(p.soil_moisture_stress.bucket_mm)
        .unwrap_or(splash.bucket_mm);
    let run = inputs.run(&splash, &p, bucket)?;
    let alpha = run.mean_alpha();
    let s = p.soil_moisture_stress;
    let f = (0..series.dates.len())
        .map(|i| s.factor(run.start_of_day(i) / bucket, alpha))
        .collect();
    let note = format!(
        "soil-water scalar: Stocker stress (theta* {}, a {}, b {}) of {} with a {bucket} mm bucket, AET/PET {alpha:.3}; sunshine from {}",
        s.theta_star, s.a, s.b, p.name, inputs.sunshine_source
    );
    Ok((f, Some(note)))
}

/// The station series MOD17 needs (precipitation too for the soil-water scalar), and PAR (from shortwave
/// when only srad is given).
fn drivers(job: &SiteJob, k: &Mod17Constants) -> Result<(Series, Vec<f64>)> {
    let mut needs = vec![
        (Var::Fpar, "MOD17"),
        (Var::Tmin, "MOD17"),
        (Var::Tmean, "MOD17"),
        (Var::Vpd, "MOD17"),
    ];
    if job.soil_water == Some(true) {
        needs.push((Var::Precip, "the soil-water scalar"));
    }
    let mut optional = vec![Var::Par, Var::Srad, Var::Lai];
    optional.extend(WaterInputs::SUNSHINE);
    let series = Series::load(&job.drivers, job.years, &needs, &optional)?;
    let par: Vec<f64> = match (series.get(Var::Par), series.get(Var::Srad)) {
        (Some(p), _) => p.to_vec(),
        (None, Some(s)) => s.iter().map(|x| x * k.par_fraction_of_shortwave).collect(),
        (None, None) => {
            return Err(Error::config(
                &series.source,
                "MOD17 needs a par (or srad) station column",
            ))
        }
    };
    Ok((series, par))
}

pub fn run(job: &SiteJob, observed: &BTreeMap<NaiveDate, f64>) -> Result<ModelRun> {
    let bplut = Bplut::resolve(&job.bplut)?;
    let c = class(job, &bplut)?;
    let k = Mod17Constants::builtin()?;
    let fp = FparConstants::builtin()?;
    let (series, par) = drivers(job, &k)?;
    let (mut water, water_note) = water_scalar(job, &series)?;
    // A correction on epsilon max scales GPP (proportional to LUEmax); one on NPP scales the annual NPP.
    let correction = super::site_correction(job)?;
    let (eps_f, npp_f) = match &correction {
        Some((f, crate::correction::Target::EpsilonMax, _)) => (*f, 1.0),
        Some((f, crate::correction::Target::Npp, _)) => (1.0, *f),
        None => (1.0, 1.0),
    };
    for w in water.iter_mut() {
        *w *= eps_f;
    }
    let obs = observed_by_day(&series, observed);
    let (fpar, tmin, tmean, vpd) = (
        series.req(Var::Fpar),
        series.req(Var::Tmin),
        series.req(Var::Tmean),
        series.req(Var::Vpd),
    );
    let lai_given = series.get(Var::Lai);
    let mut daily = String::from("date,fpar,lai,tmin_degC,tmean_degC,vpd_Pa,par_MJ_m2_d,apar_MJ_m2_d,f_tmin,f_vpd,f_soil_water,gpp_model_gC_m2_d,r_leaf_gC_m2_d,r_froot_gC_m2_d,gpp_observed_gC_m2_d\n");
    let mut annual = String::from("year,days,gpp_model_gC_m2_yr,r_leaf_gC_m2_yr,r_froot_gC_m2_yr,r_livewood_gC_m2_yr,npp_model_gC_m2_yr,days_with_observation,gpp_model_on_observed_days_gC_m2,gpp_observed_gC_m2\n");
    let mut gpp_all = Vec::with_capacity(series.dates.len());
    for (y, &(year, start)) in series.year_starts.iter().enumerate() {
        let end = series
            .year_starts
            .get(y + 1)
            .map_or(series.dates.len(), |s| s.1);
        let mut acc = Mod17Year::default();
        let (mut so, mut sm, mut nobs) = (0.0, 0.0, 0usize);
        for i in start..end {
            let lai = lai_given.map_or_else(|| fp.lai(fpar[i]), |l| l[i]);
            let gpp = c.daily_gpp(fpar[i], tmin[i], vpd[i], par[i]) * water[i];
            let (rl, rf) = c.daily_respiration(&k, lai, tmean[i]);
            acc.add_days_scaled(
                c, &k, fpar[i], tmin[i], vpd[i], par[i], lai, tmean[i], water[i], 1,
            );
            if let Some(o) = obs[i] {
                so += o;
                sm += gpp;
                nobs += 1;
            }
            gpp_all.push(gpp);
            let _ = writeln!(
                daily,
                "{},{},{lai},{},{},{},{},{},{},{},{},{gpp},{rl},{rf},{}",
                series.dates[i],
                fpar[i],
                tmin[i],
                tmean[i],
                vpd[i],
                par[i],
                fpar[i] * par[i],
                c.f_tmin(tmin[i]),
                c.f_vpd(vpd[i]),
                water[i],
                cell(obs[i]),
            );
        }
        let mut a = acc.finish(c, &k);
        a.npp *= npp_f;
        let _ = writeln!(
            annual,
            "{year},{},{},{},{},{},{},{nobs},{},{}",
            end - start,
            a.gpp,
            a.r_leaf,
            a.r_froot,
            a.r_livewood,
            a.npp,
            cell((nobs > 0).then_some(sm)),
            cell((nobs > 0).then_some(so)),
        );
    }
    let lai_note = if lai_given.is_some() {
        "from the lai column"
    } else {
        "from FPAR (Beer's law, models/fpar.toml)"
    };
    let mut title = format!(
        "MOD17 at one site: PFT {} ({}), BPLUT {}, {}-{}; LAI {lai_note}",
        c.umd, c.label, bplut.name, job.years.0, job.years.1,
    );
    if let Some(n) = &water_note {
        title.push_str(&format!("\n{n}"));
    }
    if let Some((_, _, what)) = &correction {
        title.push_str(&format!("\n{what}"));
    }
    Ok(ModelRun {
        title,
        daily_csv: daily,
        annual_csv: annual,
        dates: series.dates.clone(),
        gpp: gpp_all,
        facts: serde_json::json!({
            "name": "MOD17",
            "pft": c.umd,
            "bplut": bplut.name,
            "soil_water": water_note,
            "correction": correction.as_ref().map(|c| c.2.clone()),
        }),
    })
}
