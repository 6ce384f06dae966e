//! `carbonmap validate-rh`: every soil heterotrophic-respiration model of models/rh/ (or those named) against
//! plot records of annual Rh (ForC's R_het_soil), with climate for each plot from monthly normal rasters where
//! they cover it (12 bands, Jan..Dec: a seasonal cycle) or else the plot's own mean annual temperature and
//! precipitation (12 equal months: no seasonal cycle, which the report says). Writes rh_validation.csv (per
//! model and group: n, means, bias, RMSE) and rh_plots.csv (each plot, its climate source and each model).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{self, PointSample};
use crate::models;
use crate::npp::rh::RhModel;
use crate::plots;
use crate::units::CarbonUnit;

/// What `carbonmap validate-rh` does.
#[derive(Debug, Clone)]
pub struct RhCheckJob {
    pub plots: PathBuf,
    pub variable_field: String,
    pub variable: String,
    pub value_field: String,
    pub value_unit: String,
    pub group_field: String,
    pub lon_field: String,
    pub lat_field: String,
    pub mat_field: String,
    pub map_field: String,
    /// Monthly normal temperature (C) and precipitation (mm month-1) rasters, 12 bands each.
    pub temperature: Option<PathBuf>,
    pub precipitation: Option<PathBuf>,
    /// Models by name or file; empty = every built-in model.
    pub models: Vec<String>,
    /// Fit a scale factor for each model (ratio of sums), cross-validated leaving one site out; writes
    /// rh_fitted_MODEL.toml.
    pub fit: bool,
    /// Column naming the site of each record (the cross-validation groups).
    pub site_field: String,
    /// Also compare NEP = NPP - Rh with the NEP (and -NEE) records of plots that have an NPP record
    /// (`npp_variable`) at the same site and plot (`plot_field`).
    pub nep: bool,
    pub plot_field: String,
    pub npp_variable: String,
    pub out_dir: PathBuf,
}

/// A plot's climate: 12 (temperature C, precipitation mm) months and where they came from.
struct Climate {
    months: Vec<(f64, f64)>,
    source: &'static str,
}

struct Plot {
    origin: String,
    variable: String,
    site: String,
    plot: String,
    group: String,
    observed: f64,
    climate: Option<Climate>,
}

const NORMALS: &str = "monthly normals (rasters)";
const ANNUAL: &str = "plot MAT and MAP (12 equal months)";

/// Monthly normals at each point (None where a month is missing), points in lon/lat (EPSG:4326).
fn normals(path: &Path, lons: &[f64], lats: &[f64]) -> Result<Vec<Option<Vec<f64>>>> {
    let info = io::RasterInfo::read(path)?;
    if info.bands.len() != 12 {
        return Err(Error::input(
            path,
            format!(
                "has {} bands; monthly normals need 12 (January..December)",
                info.bands.len()
            ),
        ));
    }
    let (mut xs, mut ys) = (lons.to_vec(), lats.to_vec());
    if let Some(wkt) = &info.crs_wkt {
        io::transform_points(&io::crs_wkt("EPSG:4326")?, wkt, &mut xs, &mut ys)?;
    }
    let mut out: Vec<Option<Vec<f64>>> = vec![Some(Vec::with_capacity(12)); xs.len()];
    for band in 1..=12 {
        for (o, s) in out
            .iter_mut()
            .zip(io::sample_points(path, band, &xs, &ys, 1)?)
        {
            match (o.as_mut(), s) {
                (Some(v), PointSample::Value { mean, .. }) => v.push(mean),
                _ => *o = None,
            }
        }
    }
    Ok(out)
}

/// Records of the variables named (value in g C m-2 yr-1), with each one's climate where known; and how many
/// records of `job.variable` have no value or no climate.
fn load_plots(job: &RhCheckJob, variables: &[&str]) -> Result<(Vec<Plot>, usize)> {
    let cols = vec![
        job.variable_field.clone(),
        job.value_field.clone(),
        job.group_field.clone(),
        job.mat_field.clone(),
        job.map_field.clone(),
        job.site_field.clone(),
        job.plot_field.clone(),
    ];
    let rows = plots::read_csv(&job.plots, Some((&job.lon_field, &job.lat_field)), &cols)?;
    let factor = CarbonUnit::parse(&job.value_unit)
        .and_then(|u| u.factor_to(&CarbonUnit::parse("g C m-2 yr-1").expect("valid")))
        .map_err(|e| Error::Usage(format!("--value-unit: {e}")))?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.vals[0].as_deref().is_some_and(|v| variables.contains(&v)))
        .collect();
    if !rows
        .iter()
        .any(|r| r.vals[0].as_deref() == Some(job.variable.as_str()))
    {
        return Err(Error::input(
            &job.plots,
            format!(
                "has no record with {} = {}",
                job.variable_field, job.variable
            ),
        ));
    }
    let lons: Vec<f64> = rows
        .iter()
        .map(|r| r.point.map_or(f64::NAN, |p| p.0))
        .collect();
    let lats: Vec<f64> = rows
        .iter()
        .map(|r| r.point.map_or(f64::NAN, |p| p.1))
        .collect();
    let (t, p) = match (&job.temperature, &job.precipitation) {
        (Some(t), Some(p)) => (normals(t, &lons, &lats)?, normals(p, &lons, &lats)?),
        (None, None) => (vec![None; rows.len()], vec![None; rows.len()]),
        _ => {
            return Err(Error::Usage(
                "--temperature and --precipitation go together (monthly normals of both)".into(),
            ))
        }
    };
    let num = |v: &Option<String>| v.as_deref().and_then(|s| s.trim().parse::<f64>().ok());
    let (mut out, mut skipped) = (vec![], 0);
    for (i, r) in rows.iter().enumerate() {
        let main = r.vals[0].as_deref() == Some(job.variable.as_str());
        let Some(obs) = num(&r.vals[1]) else {
            skipped += main as usize;
            continue;
        };
        let climate = match (&t[i], &p[i], num(&r.vals[3]), num(&r.vals[4])) {
            (Some(tm), Some(pm), _, _) => Some(Climate {
                months: tm.iter().copied().zip(pm.iter().copied()).collect(),
                source: NORMALS,
            }),
            (_, _, Some(mat), Some(map)) => Some(Climate {
                months: vec![(mat, map / 12.0); 12],
                source: ANNUAL,
            }),
            _ => None,
        };
        if main && climate.is_none() {
            skipped += 1;
            continue;
        }
        out.push(Plot {
            origin: r.origin.clone(),
            variable: r.vals[0].clone().unwrap_or_default(),
            site: r.vals[5].clone().unwrap_or_else(|| r.origin.clone()),
            plot: r.vals[6].clone().unwrap_or_default(),
            group: r.vals[2].clone().unwrap_or_else(|| "(none)".into()),
            observed: obs * factor,
            climate,
        });
    }
    Ok((out, skipped))
}

fn resolve_models(job: &RhCheckJob) -> Result<Vec<RhModel>> {
    let names: Vec<String> = if job.models.is_empty() {
        models::embedded_under("rh/")
            .map(|(rel, _)| {
                rel.trim_start_matches("rh/")
                    .trim_end_matches(".toml")
                    .to_string()
            })
            .collect()
    } else {
        job.models.clone()
    };
    names.iter().map(|n| RhModel::resolve(n)).collect()
}

/// A model's table rows, all records then each group, from (observed, model) pairs; returns the all-records
/// statistics.
fn group_rows(
    model: &str,
    pairs: &[(f64, f64)],
    groups: &BTreeMap<&str, Vec<usize>>,
    table: &mut String,
) -> [f64; 6] {
    let all: Vec<usize> = (0..pairs.len()).collect();
    let mut overall = [f64::NAN; 6];
    for (g, idx) in std::iter::once(("all", &all)).chain(groups.iter().map(|(g, v)| (*g, v))) {
        let sub: Vec<(f64, f64)> = idx.iter().map(|&i| pairs[i]).collect();
        let s = stats(&sub);
        let _ = writeln!(
            table,
            "{model},\"{g}\",{},{},{},{},{},{}",
            s[0], s[1], s[2], s[3], s[4], s[5]
        );
        if g == "all" {
            overall = s;
        }
    }
    overall
}

/// n, mean observed, mean model, bias, bias %, RMSE of (observed, model) pairs.
fn stats(pairs: &[(f64, f64)]) -> [f64; 6] {
    let n = pairs.len() as f64;
    let mo = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mm = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let rmse = (pairs.iter().map(|p| (p.1 - p.0).powi(2)).sum::<f64>() / n).sqrt();
    [n, mo, mm, mm - mo, 100.0 * (mm - mo) / mo, rmse]
}

pub fn run_rh_check(job: &RhCheckJob) -> Result<String> {
    let ms = resolve_models(job)?;
    let mut variables = vec![job.variable.as_str()];
    if job.nep {
        variables.extend([job.npp_variable.as_str(), "NEP", "NEE"]);
    }
    let (records, skipped) = load_plots(job, &variables)?;
    let (plots, others): (Vec<Plot>, Vec<Plot>) = records
        .into_iter()
        .partition(|p| p.variable == job.variable);
    let modelled: Vec<Vec<f64>> = plots
        .iter()
        .map(|p| {
            let c = p.climate.as_ref().expect("kept with climate");
            ms.iter().map(|m| m.annual(&c.months)).collect()
        })
        .collect();
    let mut per_plot = String::from("origin,group,climate,observed_gC_m2_yr");
    for m in &ms {
        let _ = write!(per_plot, ",{}_gC_m2_yr", m.name);
    }
    per_plot.push('\n');
    for (p, v) in plots.iter().zip(&modelled) {
        let _ = write!(
            per_plot,
            "{},\"{}\",{},{}",
            p.origin,
            p.group,
            p.climate.as_ref().map_or("", |c| c.source),
            p.observed
        );
        for x in v {
            let _ = write!(per_plot, ",{x}");
        }
        per_plot.push('\n');
    }
    let mut table = String::from("model,group,n,mean_observed_gC_m2_yr,mean_model_gC_m2_yr,bias_gC_m2_yr,bias_percent,rmse_gC_m2_yr\n");
    let mut report = format!(
        "Soil heterotrophic respiration against {} records of {} ({} without climate or value left out; climate: {} from {}, {} from {})\n",
        plots.len(),
        job.variable,
        skipped,
        plots.iter().filter(|p| p.climate.as_ref().is_some_and(|c| c.source == NORMALS)).count(),
        NORMALS,
        plots.iter().filter(|p| p.climate.as_ref().is_some_and(|c| c.source == ANNUAL)).count(),
        ANNUAL
    );
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in plots.iter().enumerate() {
        groups.entry(p.group.as_str()).or_default().push(i);
    }
    for (k, m) in ms.iter().enumerate() {
        let pairs: Vec<(f64, f64)> = plots
            .iter()
            .zip(&modelled)
            .map(|(p, v)| (p.observed, v[k]))
            .collect();
        let s = group_rows(&m.name, &pairs, &groups, &mut table);
        let _ = writeln!(
            report,
            "  {:<20} n {:>4}  observed {:>6.0}  model {:>6.0}  bias {:>+6.0} ({:+.1} %)  RMSE {:>5.0} g C m-2 yr-1",
            m.name, s[0], s[1], s[2], s[3], s[4], s[5]
        );
    }
    if job.fit {
        for (k, m) in ms.iter().enumerate() {
            let col: Vec<f64> = modelled.iter().map(|v| v[k]).collect();
            report.push_str(&fit_model(job, m, &plots, &col)?);
        }
    }
    if job.nep {
        report.push_str(&nep_check(job, &ms, &others)?);
    }
    io::write_atomic(&job.out_dir.join("rh_validation.csv"), table.as_bytes())?;
    io::write_atomic(&job.out_dir.join("rh_plots.csv"), per_plot.as_bytes())?;
    Ok(report)
}

/// NEP = NPP - Rh at plots with an NPP record and an NEP or NEE record (NEP = -NEE: ForC's NEE is negative for
/// uptake), NPP the mean of the plot's NPP records, Rh each model's at the plot's climate. Writes
/// nep_validation.csv (per model and group).
fn nep_check(job: &RhCheckJob, ms: &[RhModel], records: &[Plot]) -> Result<String> {
    let mut npp: BTreeMap<(&str, &str), (f64, usize)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.variable == job.npp_variable) {
        let e = npp.entry((r.site.as_str(), r.plot.as_str())).or_default();
        e.0 += r.observed;
        e.1 += 1;
    }
    let mut rows: Vec<(&Plot, f64, f64)> = Vec::new(); // record, observed NEP, plot NPP
    let mut without = 0;
    for r in records
        .iter()
        .filter(|r| r.variable == "NEP" || r.variable == "NEE")
    {
        match (npp.get(&(r.site.as_str(), r.plot.as_str())), &r.climate) {
            (Some(&(sum, n)), Some(_)) => {
                let nep = if r.variable == "NEE" {
                    -r.observed
                } else {
                    r.observed
                };
                rows.push((r, nep, sum / n as f64));
            }
            _ => without += 1,
        }
    }
    if rows.is_empty() {
        return Err(Error::input(
            &job.plots,
            format!(
                "--nep: no NEP or NEE record at a plot with an {} record and climate",
                job.npp_variable
            ),
        ));
    }
    let mut table = String::from("model,group,n,mean_observed_NEP_gC_m2_yr,mean_model_NEP_gC_m2_yr,bias_gC_m2_yr,bias_percent,rmse_gC_m2_yr\n");
    let mut report = format!(
        "NEP = plot {} - modelled Rh against {} NEP/NEE records ({} without an NPP record at the plot or climate left out)\n",
        job.npp_variable,
        rows.len(),
        without
    );
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        groups.entry(r.0.group.as_str()).or_default().push(i);
    }
    for m in ms {
        let pairs: Vec<(f64, f64)> = rows
            .iter()
            .map(|(r, nep, npp)| {
                (
                    *nep,
                    npp - m.annual(&r.climate.as_ref().expect("kept").months),
                )
            })
            .collect();
        let st = group_rows(&m.name, &pairs, &groups, &mut table);
        let _ = writeln!(
            report,
            "  {:<22} n {:>4}  observed NEP {:>5.0}  model {:>5.0}  bias {:>+5.0}  RMSE {:>4.0} g C m-2 yr-1",
            m.name, st[0], st[1], st[2], st[3], st[5]
        );
    }
    io::write_atomic(&job.out_dir.join("nep_validation.csv"), table.as_bytes())?;
    Ok(report)
}

/// A model's Rh scaled by the ratio of sums over the plots, cross-validated leaving one site out; writes the
/// scaled model as rh_fitted_NAME.toml and returns a report line.
fn fit_model(job: &RhCheckJob, m: &RhModel, plots: &[Plot], model: &[f64]) -> Result<String> {
    let (so, sm): (f64, f64) = (plots.iter().map(|p| p.observed).sum(), model.iter().sum());
    let factor = so / sm;
    let mut sites: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (p, v) in plots.iter().zip(model) {
        let e = sites.entry(p.site.as_str()).or_default();
        e.0 += p.observed;
        e.1 += v;
    }
    // Each site predicted with the factor of all the other sites.
    let (mut pred, mut sq) = (0.0, 0.0);
    for (p, v) in plots.iter().zip(model) {
        let (o_site, m_site) = sites[p.site.as_str()];
        let f = (so - o_site) / (sm - m_site);
        pred += f * v;
        sq += (f * v - p.observed).powi(2);
    }
    let n = plots.len() as f64;
    let cv_bias = 100.0 * (pred - so) / so;
    let cv_rmse = (sq / n).sqrt();
    let mut fitted = m.clone();
    fitted.name = format!("{}-fitted", m.name);
    fitted.fraction = m.fraction * factor;
    let mut t = toml::Table::new();
    t.insert("carbonmap_version".into(), crate::VERSION.into());
    t.insert("plots".into(), job.plots.display().to_string().into());
    t.insert(
        "records".into(),
        format!(
            "{} = {}: {} records at {} sites",
            job.variable_field,
            job.variable,
            plots.len(),
            sites.len()
        )
        .into(),
    );
    t.insert(
        "method".into(),
        "Rh scaled by sum(observed) / sum(model) (fraction multiplied)".into(),
    );
    t.insert("factor".into(), factor.into());
    t.insert(
        "cross_validation".into(),
        format!("leave one site out: bias {cv_bias:+.1} %, RMSE {cv_rmse:.0} g C m-2 yr-1").into(),
    );
    t.insert("fitted_from".into(), m.source.display().to_string().into());
    fitted.calibration = Some(t);
    let text = toml::to_string(&fitted).map_err(|e| Error::Usage(format!("fitted model: {e}")))?;
    let file = job.out_dir.join(format!("rh_fitted_{}.toml", m.name));
    io::write_atomic(&file, text.as_bytes())?;
    Ok(format!(
        "  {:<20} fitted x {factor:.4}: leave-one-site-out bias {cv_bias:+.1} %, RMSE {cv_rmse:.0} g C m-2 yr-1 ({})\n",
        m.name,
        file.display()
    ))
}
