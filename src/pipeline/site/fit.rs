//! `site --model pmodel --fit`: kphio, the soil-moisture stress curve and the bucket fitted to a tower's daily
//! GPP on the grid of models/pmodel/calibration.toml, with leave-one-year-out cross-validation. Writes the
//! fitted parameter set (pmodel_fitted.toml, usable with --params) and site_cross_validation.csv.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::io;
use crate::models;
use crate::npp::pmodel::{PModelParams, Stress};
use crate::npp::splash::SplashParams;
use crate::validate::Metrics;

use super::pmodel::{per_day, Prepared};
use super::SiteJob;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Span {
    min: f64,
    max: f64,
    step: f64,
}

impl Span {
    fn values(&self) -> Vec<f64> {
        let n = ((self.max - self.min) / self.step + 1e-9).floor() as usize;
        // Rounded to 1e-9 so that grid values read as written (0.42, not 0.42000000000000004).
        (0..=n)
            .map(|i| ((self.min + i as f64 * self.step) * 1e9).round() / 1e9)
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grid {
    #[allow(dead_code)]
    citation: String,
    bucket_mm: Vec<f64>,
    theta_star: Span,
    a: Span,
}

/// One grid point's fit to a set of years.
#[derive(Debug, Clone, Copy)]
struct Fitted {
    bucket_mm: f64,
    theta_star: f64,
    a: f64,
    /// kphio as a multiple of the set's own.
    scale: f64,
    sse: f64,
}

pub struct FitResult {
    pub params: PModelParams,
    pub report: String,
}

/// One day used in fitting: its year, observed GPP, GPP without stress (set's kphio), relative soil water at
/// the start of the day per bucket.
struct FitDay {
    year: i32,
    obs: f64,
    gpp: f64,
}

/// Per-year sums of a candidate: sum o G, sum G, sum G^2, sum o, sum o^2.
type YearSums = BTreeMap<i32, [f64; 5]>;

fn sums(days: &[FitDay], soilm: &[f64], s: &Stress, alpha: f64) -> YearSums {
    let mut out: YearSums = BTreeMap::new();
    for (d, &m) in days.iter().zip(soilm) {
        let g = d.gpp * s.factor(m, alpha);
        let e = out.entry(d.year).or_default();
        e[0] += d.obs * g;
        e[1] += g;
        e[2] += g * g;
        e[3] += d.obs;
        e[4] += d.obs * d.obs;
    }
    out
}

/// Ratio-of-sums scale and SSE over every year but `held_out`.
fn score(y: &YearSums, held_out: Option<i32>) -> (f64, f64) {
    let mut t = [0.0; 5];
    for (year, v) in y {
        if Some(*year) != held_out {
            for k in 0..5 {
                t[k] += v[k];
            }
        }
    }
    let scale = t[3] / t[1];
    // sum (o - k G)^2 = sum o^2 - 2 k sum o G + k^2 sum G^2.
    (scale, t[4] - 2.0 * scale * t[0] + scale * scale * t[2])
}

pub fn fit(
    job: &SiteJob,
    p: &PModelParams,
    splash: &SplashParams,
    prep: &Prepared,
    observed: &BTreeMap<NaiveDate, f64>,
) -> Result<FitResult> {
    let rel = "pmodel/calibration.toml";
    let grid: Grid = models::parse_toml(
        models::embedded(rel).expect("embedded"),
        &models::embedded_path(rel),
    )?;
    let Some(wi) = &prep.water_inputs else {
        return Err(Error::Usage(
            "--fit fits the soil-moisture stress: leave --soil-water on".into(),
        ));
    };
    let s = &prep.series;
    // Days with an observation and a defined GPP.
    let mut idx = vec![];
    let mut days = vec![];
    for (i, d) in prep.drivers.iter().enumerate() {
        let g = per_day(p.gpp(d, job.pathway).gpp_ugc_m2_s);
        if let (Some(&o), true) = (observed.get(&s.dates[i]), g.is_finite()) {
            idx.push(i);
            days.push(FitDay {
                year: s.dates[i].year(),
                obs: o,
                gpp: g,
            });
        }
    }
    let years: Vec<i32> = {
        let mut y: Vec<i32> = days.iter().map(|d| d.year).collect();
        y.dedup();
        y
    };
    if years.len() < 2 {
        return Err(Error::Usage(format!(
            "--fit needs observations in at least two years to cross-validate (found {})",
            years.len()
        )));
    }
    let buckets = match job.whc_mm {
        Some(w) => vec![w],
        None => grid.bucket_mm.clone(),
    };
    // Best grid point per fold (None = all years).
    let folds: Vec<Option<i32>> = std::iter::once(None)
        .chain(years.iter().map(|y| Some(*y)))
        .collect();
    let mut best: Vec<Option<Fitted>> = vec![None; folds.len()];
    let mut soil_by_bucket = BTreeMap::new();
    for &bucket in &buckets {
        let run = wi.run(splash, p, bucket)?;
        let alpha = run.mean_alpha();
        let soilm: Vec<f64> = idx.iter().map(|&i| run.start_of_day(i) / bucket).collect();
        for &theta_star in &grid.theta_star.values() {
            for &a in &grid.a.values() {
                let st = Stress {
                    theta_star,
                    a,
                    bucket_mm: None,
                    ..p.soil_moisture_stress
                };
                let y = sums(&days, &soilm, &st, alpha);
                for (k, fold) in folds.iter().enumerate() {
                    let (scale, sse) = score(&y, *fold);
                    if best[k].is_none_or(|b| sse < b.sse) {
                        best[k] = Some(Fitted {
                            bucket_mm: bucket,
                            theta_star,
                            a,
                            scale,
                            sse,
                        });
                    }
                }
            }
        }
        soil_by_bucket.insert(bucket.to_bits(), (soilm, alpha));
    }
    let best: Vec<Fitted> = best
        .into_iter()
        .map(|b| b.expect("grid not empty"))
        .collect();
    let (pooled, lines) = held_out(job, p, &best, &folds, &days, &soil_by_bucket)?;
    let fitted = fitted_set(job, p, &best, &years, &pooled)?;
    let text = toml::to_string(&fitted).map_err(|e| Error::Usage(format!("fitted set: {e}")))?;
    let header = format!(
        "# P-model parameter set fitted by `carbonmap site --model pmodel --fit` at {} ({}-{}); use with --params.\n# Every constant not fitted is the value of {} with the citation given there.\n",
        job.drivers.display(),
        job.years.0,
        job.years.1,
        p.source.display()
    );
    io::write_atomic(
        &job.out_dir.join("pmodel_fitted.toml"),
        format!("{header}{text}").as_bytes(),
    )?;
    let f = &best[0];
    let report = format!(
        "fitted on {} days of {}-{}: kphio {:.6}, theta* {:.2}, a {:.2}, bucket {} mm (pmodel_fitted.toml)\nleave-one-year-out (site_cross_validation.csv): pooled R2 {:.3}, RMSE {:.3}, bias {:+.3} g C m-2 d-1\n{}",
        days.len(),
        years[0],
        years[years.len() - 1],
        p.photosynthesis.kphio * f.scale,
        f.theta_star,
        f.a,
        f.bucket_mm,
        pooled.r2,
        pooled.rmse,
        pooled.bias,
        lines.join("\n")
    );
    let mut params = fitted;
    params.source = job.out_dir.join("pmodel_fitted.toml");
    Ok(FitResult { params, report })
}

/// Each held-out year predicted with the fit of the other years: site_cross_validation.csv, the pooled daily
/// metrics and a report line per year.
fn held_out(
    job: &SiteJob,
    p: &PModelParams,
    best: &[Fitted],
    folds: &[Option<i32>],
    days: &[FitDay],
    soil_by_bucket: &BTreeMap<u64, (Vec<f64>, f64)>,
) -> Result<(Metrics, Vec<String>)> {
    let stress_of = |f: &Fitted| Stress {
        theta_star: f.theta_star,
        a: f.a,
        bucket_mm: None,
        ..p.soil_moisture_stress
    };
    // Held-out predictions.
    let mut cv = String::from("held_out_year,bucket_mm,theta_star,a,kphio,days,r2,rmse_gC_m2_d,bias_gC_m2_d,gpp_model_gC_m2,gpp_observed_gC_m2,annual_bias_percent\n");
    let (mut all_o, mut all_m) = (vec![], vec![]);
    let mut lines = vec![];
    for (k, fold) in folds.iter().enumerate().skip(1) {
        let f = &best[k];
        let (soilm, alpha) = &soil_by_bucket[&f.bucket_mm.to_bits()];
        let st = stress_of(f);
        let (mut o, mut m) = (vec![], vec![]);
        for (d, &sm) in days.iter().zip(soilm) {
            if Some(d.year) == *fold {
                o.push(d.obs);
                m.push(f.scale * d.gpp * st.factor(sm, *alpha));
            }
        }
        let met = Metrics::compute(&o, &m);
        let (so, sm): (f64, f64) = (o.iter().sum(), m.iter().sum());
        let pct = 100.0 * (sm - so) / so;
        let _ = writeln!(
            cv,
            "{},{},{},{},{},{},{},{},{},{sm},{so},{pct}",
            fold.expect("fold year"),
            f.bucket_mm,
            f.theta_star,
            f.a,
            p.photosynthesis.kphio * f.scale,
            met.n,
            met.r2,
            met.rmse,
            met.bias
        );
        lines.push(format!(
            "  {}: R2 {:.3}, RMSE {:.3}, annual bias {pct:+.1} % (bucket {} mm, theta* {:.2}, a {:.2}, kphio {:.5})",
            fold.expect("fold year"),
            met.r2,
            met.rmse,
            f.bucket_mm,
            f.theta_star,
            f.a,
            p.photosynthesis.kphio * f.scale
        ));
        all_o.extend(o);
        all_m.extend(m);
    }
    let pooled = Metrics::compute(&all_o, &all_m);
    let _ = writeln!(
        cv,
        "all,,,,,{},{},{},{},{},{},",
        pooled.n,
        pooled.r2,
        pooled.rmse,
        pooled.bias,
        all_m.iter().sum::<f64>(),
        all_o.iter().sum::<f64>()
    );
    io::write_atomic(
        &job.out_dir.join("site_cross_validation.csv"),
        cv.as_bytes(),
    )?;
    Ok((pooled, lines))
}

/// The fitted set: the all-years fit, with the spread over the folds as its uncertainty.
fn fitted_set(
    job: &SiteJob,
    p: &PModelParams,
    best: &[Fitted],
    years: &[i32],
    pooled: &Metrics,
) -> Result<PModelParams> {
    let f = &best[0];
    let mut out = p.clone();
    out.name = format!("{}-fitted", p.name);
    out.photosynthesis.kphio = p.photosynthesis.kphio * f.scale;
    out.soil_moisture_stress.theta_star = f.theta_star;
    out.soil_moisture_stress.a = f.a;
    out.soil_moisture_stress.bucket_mm = Some(f.bucket_mm);
    let spread = |g: &dyn Fn(&Fitted) -> f64| {
        let v: Vec<f64> = best[1..].iter().map(g).collect();
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        toml::Value::Array(vec![lo.into(), hi.into()])
    };
    let mut t = toml::Table::new();
    t.insert("carbonmap_version".into(), crate::VERSION.into());
    t.insert(
        "site_drivers".into(),
        job.drivers.display().to_string().into(),
    );
    t.insert(
        "years".into(),
        toml::Value::Array(years.iter().map(|y| i64::from(*y).into()).collect()),
    );
    t.insert(
        "observed".into(),
        job.observed
            .as_ref()
            .map(|o| o.display().to_string())
            .unwrap_or_default()
            .into(),
    );
    t.insert("method".into(), "grid of models/pmodel/calibration.toml; kphio by ratio of sums, the rest by least squares on daily GPP".into());
    t.insert(
        "cross_validation".into(),
        format!(
            "leave one year out: pooled daily R2 {:.4}, RMSE {:.4} g C m-2 d-1, n {}",
            pooled.r2, pooled.rmse, pooled.n
        )
        .into(),
    );
    t.insert(
        "kphio_range_over_folds".into(),
        spread(&|x| p.photosynthesis.kphio * x.scale),
    );
    t.insert(
        "theta_star_range_over_folds".into(),
        spread(&|x| x.theta_star),
    );
    t.insert("a_range_over_folds".into(), spread(&|x| x.a));
    t.insert(
        "bucket_mm_range_over_folds".into(),
        spread(&|x| x.bucket_mm),
    );
    t.insert("fitted_from".into(), p.source.display().to_string().into());
    out.calibration = Some(t);
    Ok(out)
}
