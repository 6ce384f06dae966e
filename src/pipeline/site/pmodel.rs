//! The P-model at a site: daily GPP with every intermediate term, the SPLASH bucket and the Stocker
//! soil-moisture stress, annual sums of GPP and the water balance; `--fit` calibrates it (fit.rs).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::climate::ClimateConstants;
use crate::drivers::Var;
use crate::error::{Error, Result};
use crate::npp::pmodel::{PDrivers, PModelParams, PTerms};
use crate::npp::splash::{SplashParams, WaterRun};
use crate::units;

use super::series::Series;
use super::water::WaterInputs;
use super::{cell, fit, observed_by_day, ModelRun, SiteJob};

/// The P-model's daily drivers of a series, and their terms with the set's own kphio.
pub struct Prepared {
    pub series: Series,
    pub drivers: Vec<PDrivers>,
    pub water_inputs: Option<WaterInputs>,
    pub patm_source: &'static str,
}

pub fn prepare(job: &SiteJob, p: &PModelParams, splash: &SplashParams) -> Result<Prepared> {
    let climate = ClimateConstants::builtin()?;
    let umol_per_j = climate.radiation.umol_per_joule_par;
    let mut needs = vec![
        (Var::Tmean, "the P-model"),
        (Var::Vpd, "the P-model"),
        (Var::Par, "the P-model (PPFD)"),
        (Var::Fpar, "the P-model"),
        (Var::Co2, "the P-model"),
    ];
    let stressed = job.soil_water != Some(false);
    if stressed {
        needs.extend(WaterInputs::NEEDS);
    }
    let mut optional = vec![Var::Patm];
    optional.extend(WaterInputs::SUNSHINE);
    let series = Series::load(&job.drivers, job.years, &needs, &optional)?;
    let (patm, patm_source): (Vec<f64>, _) = match (series.get(Var::Patm), series.elevation) {
        (Some(p), _) => (p.to_vec(), "the patm column"),
        (None, Some(z)) => (
            vec![splash.pressure(&p.core, z); series.dates.len()],
            "station.elevation (standard atmosphere)",
        ),
        (None, None) => {
            return Err(Error::config(
                &series.source,
                "the P-model needs a patm column or station.elevation",
            ))
        }
    };
    let secs = units::seconds_per_day();
    let (tc, vpd, par, fpar, co2) = (
        series.req(Var::Tmean),
        series.req(Var::Vpd),
        series.req(Var::Par),
        series.req(Var::Fpar),
        series.req(Var::Co2),
    );
    let drivers = (0..series.dates.len())
        .map(|i| PDrivers {
            tc: tc[i],
            vpd_pa: vpd[i],
            co2_ppm: co2[i],
            patm_pa: patm[i],
            fapar: fpar[i],
            // PAR MJ m-2 d-1 -> umol m-2 s-1 (a daily mean): x 1e6 J MJ-1 x umol J-1 / s d-1.
            ppfd_umol_m2_s: par[i] * 1e6 * umol_per_j / secs,
        })
        .collect();
    let water_inputs = if stressed {
        Some(WaterInputs::new(&series, splash, umol_per_j)?)
    } else {
        None
    };
    Ok(Prepared {
        series,
        drivers,
        water_inputs,
        patm_source,
    })
}

/// ug C m-2 s-1 (a mean rate over the day) to g C m-2 d-1.
pub fn per_day(gpp_ugc_m2_s: f64) -> f64 {
    gpp_ugc_m2_s * 1e-6 * units::seconds_per_day()
}

pub fn run(job: &SiteJob, observed: &BTreeMap<NaiveDate, f64>) -> Result<ModelRun> {
    let mut p = PModelParams::resolve(&job.params)?;
    // A correction on epsilon max scales the quantum yield (GPP is proportional to it).
    let correction = super::site_correction(job)?;
    match &correction {
        Some((f, crate::correction::Target::EpsilonMax, _)) => p.photosynthesis.kphio *= f,
        Some((_, crate::correction::Target::Npp, _)) => {
            return Err(Error::Usage(
                "the correction table applies to npp, but the P-model at a site gives GPP: use a table that applies to epsilon_max".into(),
            ))
        }
        None => {}
    }
    let splash = SplashParams::builtin()?;
    let prep = prepare(job, &p, &splash)?;
    let mut fit_note = None;
    if job.fit {
        let f = fit::fit(job, &p, &splash, &prep, observed)?;
        fit_note = Some(f.report.clone());
        p = f.params;
    }
    let bucket = job
        .whc_mm
        .or(p.soil_moisture_stress.bucket_mm)
        .unwrap_or(splash.bucket_mm);
    let water = match &prep.water_inputs {
        Some(w) => Some(w.run(&splash, &p, bucket)?),
        None => None,
    };
    let terms: Vec<PTerms> = prep.drivers.iter().map(|d| p.gpp(d, job.pathway)).collect();
    let (daily, annual, gpp) = tables(&p, &prep, &terms, water.as_ref(), bucket, observed);
    let mut title = format!(
        "P-model at one site: {} ({:?}), parameter set {} (kphio {}), {}-{}; pressure from {}",
        p.name,
        job.pathway,
        p.source.display(),
        p.photosynthesis.kphio,
        job.years.0,
        job.years.1,
        prep.patm_source
    );
    if let (Some(w), Some(wi)) = (&water, &prep.water_inputs) {
        let s = p.soil_moisture_stress;
        title.push_str(&format!(
            "\nsoil-moisture stress: theta* {}, a {}, b {}, bucket {bucket} mm, AET/PET {:.4}, spin-up {} years{}; sunshine from {}",
            s.theta_star,
            s.a,
            s.b,
            w.mean_alpha(),
            w.spinup_years,
            if w.converged { "" } else { " (NOT converged)" },
            wi.sunshine_source
        ));
    }
    if let Some(n) = fit_note {
        title.push_str(&format!("\n{n}"));
    }
    if let Some((_, _, what)) = &correction {
        title.push_str(&format!("\n{what} (kphio scaled)"));
    }
    Ok(ModelRun {
        title,
        daily_csv: daily,
        annual_csv: annual,
        dates: prep.series.dates.clone(),
        gpp,
        facts: serde_json::json!({
            "name": "P-model",
            "parameter_set": p.name,
            "kphio": p.photosynthesis.kphio,
            "soil_moisture_stress": water.is_some(),
            "bucket_mm": water.as_ref().map(|_| bucket),
        }),
    })
}

/// The daily and annual tables and the daily GPP.
fn tables(
    p: &PModelParams,
    prep: &Prepared,
    terms: &[PTerms],
    water: Option<&WaterRun>,
    bucket: f64,
    observed: &BTreeMap<NaiveDate, f64>,
) -> (String, String, Vec<f64>) {
    let s = &prep.series;
    let obs = observed_by_day(s, observed);
    let alpha = water.map(|w| w.mean_alpha());
    let mut daily = String::from("date,tmean_degC,vpd_Pa,co2_ppm,patm_Pa,fapar,ppfd_umol_m2_s,sunshine_fraction,precip_mm,gammastar_Pa,kmm_Pa,ns_star,ca_Pa,kphio,chi,mj,lue_gC_mol,gpp_unstressed_gC_m2_d,soil_water_start_mm,soil_water_fraction,aet_mm,pet_mm,runoff_mm,soil_moisture_stress,gpp_model_gC_m2_d,gpp_observed_gC_m2_d\n");
    let mut annual = String::from("year,days,gpp_model_gC_m2_yr,gpp_unstressed_gC_m2_yr,precip_mm_yr,aet_mm_yr,pet_mm_yr,mean_soil_moisture_stress,days_with_observation,gpp_model_on_observed_days_gC_m2,gpp_observed_gC_m2\n");
    let mut gpp = Vec::with_capacity(terms.len());
    let mut per_year: BTreeMap<i32, [f64; 9]> = BTreeMap::new();
    for (i, t) in terms.iter().enumerate() {
        let d = &prep.drivers[i];
        let unstressed = per_day(t.gpp_ugc_m2_s);
        let w = water.map(|w| (w.start_of_day(i), w.days[i]));
        let stress = w.map(|(start, _)| {
            p.soil_moisture_stress
                .factor(start / bucket, alpha.expect("water run"))
        });
        let g = unstressed * stress.unwrap_or(1.0);
        gpp.push(g);
        let wi = prep.water_inputs.as_ref().map(|x| x.days[i]);
        let _ = writeln!(
            daily,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{unstressed},{},{},{},{},{},{},{g},{}",
            s.dates[i],
            d.tc,
            d.vpd_pa,
            d.co2_ppm,
            d.patm_pa,
            d.fapar,
            d.ppfd_umol_m2_s,
            cell(wi.map(|x| x.sunshine_fraction)),
            cell(wi.map(|x| x.precip_mm)),
            t.gammastar_pa,
            t.kmm_pa,
            t.ns_star,
            t.ca_pa,
            t.kphio,
            t.chi,
            t.mj,
            t.lue_gc_mol,
            cell(w.map(|x| x.0)),
            cell(w.map(|x| x.0 / bucket)),
            cell(w.map(|x| x.1.aet_mm)),
            cell(w.map(|x| x.1.pet_mm)),
            cell(w.map(|x| x.1.runoff_mm)),
            cell(stress),
            cell(obs[i]),
        );
        let y = per_year.entry(s.year_of(i)).or_default();
        y[0] += 1.0;
        y[1] += g;
        y[2] += unstressed;
        y[3] += wi.map_or(f64::NAN, |x| x.precip_mm);
        y[4] += w.map_or(f64::NAN, |x| x.1.aet_mm);
        y[5] += w.map_or(f64::NAN, |x| x.1.pet_mm);
        y[6] += stress.unwrap_or(f64::NAN);
        if let Some(o) = obs[i] {
            y[7] += 1.0;
            y[8] += o;
        }
    }
    for (year, y) in &per_year {
        let (start, end) = year_span(s, *year);
        let on_obs: f64 = (start..end)
            .filter(|&i| obs[i].is_some())
            .map(|i| gpp[i])
            .sum();
        let _ = writeln!(
            annual,
            "{year},{},{},{},{},{},{},{},{},{},{}",
            y[0],
            y[1],
            y[2],
            fin(y[3]),
            fin(y[4]),
            fin(y[5]),
            fin(y[6] / y[0]),
            y[7],
            cell((y[7] > 0.0).then_some(on_obs)),
            cell((y[7] > 0.0).then_some(y[8])),
        );
    }
    (daily, annual, gpp)
}

fn fin(v: f64) -> String {
    cell(v.is_finite().then_some(v))
}

/// First day and one past the last day of `year` in the series.
pub fn year_span(s: &Series, year: i32) -> (usize, usize) {
    let k = s
        .year_starts
        .iter()
        .position(|(y, _)| *y == year)
        .expect("year in the series");
    let end = s.year_starts.get(k + 1).map_or(s.dates.len(), |x| x.1);
    (s.year_starts[k].1, end)
}
