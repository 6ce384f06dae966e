//! `carbonmap validate`: a model output against observations. The model is a raster sampled at plot locations
//! (plots in any CRS, reprojected; optionally the mean of a window of pixels) or a table joined on a key (a
//! date, for a flux-tower series). Observations are converted to the model's unit (both declared, never
//! assumed). Agreement statistics overall, per class, per zone level and per grouping column, as CSV and JSON,
//! with a scatter plot and, for plots, a residual map.
//!
//! Plots outside the raster, on no data, or without a model row are listed in the samples table with their
//! status and counted in a warning; they never enter the statistics silently as zeros.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Problems, Result};
use crate::io::{self, PointSample, RasterInfo};
use crate::landcover::Legend;
use crate::plots::{self, Plot, PlotSpec};
use crate::progress::Progress;
use crate::report;
use crate::units::CarbonUnit;
use crate::validate::Metrics;
use crate::zones::{ZoneSpec, Zones, OUTSIDE};

/// Where the modelled values come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A raster sampled at the plots.
    Raster {
        path: PathBuf,
        band: usize,
        /// The band's unit when the file does not declare one that carbonmap can parse.
        unit: Option<String>,
        /// Window side in pixels (odd): the mean of the valid pixels around the plot's pixel.
        window: usize,
    },
    /// A CSV joined to the observations on a key column.
    Table {
        path: PathBuf,
        key_field: String,
        value_field: String,
        unit: String,
    },
}

/// Class of each plot from a land-cover map and its legend (the class's vegetation type).
#[derive(Debug, Clone)]
pub struct ClassMap {
    pub path: PathBuf,
    pub band: usize,
    pub legend: String,
}

/// The inputs shared by `validate` and `calibrate`.
#[derive(Debug, Clone)]
pub struct SampleJob {
    pub plots: PlotSpec,
    pub model: ModelSource,
    pub zones: Option<ZoneSpec>,
    pub landcover: Option<ClassMap>,
}

/// What `carbonmap validate` does.
#[derive(Debug, Clone)]
pub struct ValidateJob {
    pub inputs: SampleJob,
    /// What is compared, for titles and table headers (for example "NPP").
    pub quantity: String,
    pub out_dir: PathBuf,
}

/// Why a plot has no model value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    OutsideRaster,
    NoData,
    NoModelRow,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::OutsideRaster => "outside-raster",
            Status::NoData => "no-data",
            Status::NoModelRow => "no-model-row",
        }
    }
}

/// One observation with its model value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub plot: Plot,
    /// The observation in the model's unit.
    pub observed: f64,
    pub model: f64,
    /// Valid pixels in the window (raster models).
    pub pixels: usize,
    pub status: Status,
    /// Plot class: the class column, else the vegetation type under the plot on the land-cover map.
    pub class: Option<String>,
    /// Zone key, one value per level (empty when no zones).
    pub zone: Vec<String>,
    /// Position in the model raster's CRS.
    pub map_xy: Option<(f64, f64)>,
}

/// Samples and what they mean.
pub struct Samples {
    pub samples: Vec<Sample>,
    pub unit: CarbonUnit,
    pub zone_levels: Vec<String>,
    pub group_fields: Vec<String>,
    pub keyed_by_date: bool,
    pub map_crs_is_geographic: bool,
    pub warnings: Vec<String>,
    pub plots_path: PathBuf,
}

impl Samples {
    pub fn ok(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|s| s.status == Status::Ok)
    }
}

/// The model's unit: a raster band's declared one (checked against --model-unit), or the table's declared one.
fn model_unit(
    model: &ModelSource,
    raster: Option<&RasterInfo>,
    problems: &mut Problems,
) -> Option<CarbonUnit> {
    match model {
        ModelSource::Raster {
            path, band, unit, ..
        } => {
            let info = raster?;
            let b = problems.take(info.band(*band))?;
            let declared = CarbonUnit::parse(&b.unit).ok();
            match (declared, unit) {
                (Some(d), Some(u)) if d.text != *u => {
                    problems.push(Error::band(
                        path,
                        band.to_string(),
                        format!("declares unit \"{}\" but --model-unit says \"{u}\"", d.text),
                    ));
                    None
                }
                (Some(d), _) => Some(d),
                (None, Some(u)) => problems.take(CarbonUnit::parse_for(u, path)),
                (None, None) => {
                    problems.push(Error::band(
                        path,
                        band.to_string(),
                        format!(
                            "unit {} is not one carbonmap can convert; declare it with --model-unit (for example \"g C m-2 yr-1\")",
                            if b.unit.is_empty() { "missing".to_string() } else { format!("\"{}\"", b.unit) }
                        ),
                    ));
                    None
                }
            }
        }
        ModelSource::Table { path, unit, .. } => problems.take(CarbonUnit::parse_for(unit, path)),
    }
}

/// Load plots, model values, classes and zones; check everything first.
pub fn collect(job: &SampleJob, progress: &dyn Progress) -> Result<Samples> {
    let mut problems = Problems::new();
    let keyed = matches!(job.model, ModelSource::Table { .. });
    let mut spec = job.plots.clone();
    if let ModelSource::Table { key_field, .. } = &job.model {
        spec.key_field = Some(spec.key_field.clone().unwrap_or_else(|| key_field.clone()));
    }
    let plots = problems.take(plots::load(&spec));
    let raster = match &job.model {
        ModelSource::Raster { path, .. } => problems.take(RasterInfo::read(path)),
        ModelSource::Table { .. } => None,
    };
    let unit = model_unit(&job.model, raster.as_ref(), &mut problems);
    if keyed && (job.zones.is_some() || job.landcover.is_some()) {
        problems.push(Error::Usage(
            "zones and land-cover maps need plot coordinates: use them with --raster, not --model-table"
                .into(),
        ));
    }
    let legend = job
        .landcover
        .as_ref()
        .and_then(|l| problems.take(Legend::resolve(&l.legend)));
    if let (Some(p), Some(u)) = (&plots, &unit) {
        let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pl in &p.plots {
            if let Err(e) = pl.unit.factor_to(u) {
                bad.entry(e).or_default().push(pl.origin.clone());
            }
        }
        for (e, origins) in bad {
            problems.push(Error::input(
                &p.path,
                format!(
                    "{e} ({}: {})",
                    origins.len(),
                    origins[..origins.len().min(5)].join(", ")
                ),
            ));
        }
    }
    let grid = raster.as_ref().and_then(|i| problems.take(i.grid()));
    let zones = match (&job.zones, &grid) {
        (Some(z), Some(g)) => problems.take(Zones::load(z, g)),
        _ => None,
    };
    problems.finish()?;
    let plots = plots.expect("checked");
    let unit = unit.expect("checked");
    let mut warnings = Vec::new();
    if !plots.without_observation.is_empty() {
        warnings.push(format!(
            "{}: {} row(s) without an observation in {} were left out ({})",
            plots.path.display(),
            plots.without_observation.len(),
            spec.observed_field,
            plots.without_observation[..plots.without_observation.len().min(5)].join(", ")
        ));
    }
    if !plots.unmapped_classes.is_empty() {
        warnings.push(format!(
            "{}: class codes the class map does not map (their plots have no class): {}",
            plots.path.display(),
            plots
                .unmapped_classes
                .iter()
                .map(|(c, n)| format!("{c} ({n} plots)"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let n = plots.plots.len();
    let observed: Vec<f64> = plots
        .plots
        .iter()
        .map(|p| p.observed * p.unit.factor_to(&unit).expect("checked"))
        .collect();
    let mut model = vec![f64::NAN; n];
    let mut status = vec![Status::Ok; n];
    let mut pixels = vec![0usize; n];
    let mut map_xy = vec![None; n];
    let mut zone_keys = vec![Vec::new(); n];
    let mut classes: Vec<Option<String>> = plots.plots.iter().map(|p| p.class.clone()).collect();
    let mut keyed_by_date = false;
    let mut geographic = false;
    progress.start("validate", n as u64);
    match &job.model {
        ModelSource::Table {
            path,
            key_field,
            value_field,
            ..
        } => {
            let table = plots::read_keyed(path, key_field, value_field)?;
            keyed_by_date = plots.plots.iter().all(|p| {
                chrono::NaiveDate::parse_from_str(p.key.as_deref().unwrap_or(""), "%Y-%m-%d")
                    .is_ok()
            });
            for (i, p) in plots.plots.iter().enumerate() {
                match table.get(p.key.as_deref().expect("keyed")) {
                    Some(v) if v.is_finite() => model[i] = *v,
                    Some(_) => status[i] = Status::NoData,
                    None => status[i] = Status::NoModelRow,
                }
            }
        }
        ModelSource::Raster {
            path, band, window, ..
        } => {
            let grid = grid.expect("checked");
            geographic = grid.spatial_ref()?.is_geographic();
            let (xs, ys) = plots.coordinates_in(&grid.crs_wkt)?;
            let got = io::sample_points(path, *band, &xs, &ys, *window)?;
            let mut zone_rows: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
            for i in 0..n {
                map_xy[i] = Some((xs[i], ys[i]));
                match got[i] {
                    PointSample::Outside => status[i] = Status::OutsideRaster,
                    PointSample::NoData => status[i] = Status::NoData,
                    PointSample::Value { mean, pixels: k } => {
                        model[i] = mean;
                        pixels[i] = k;
                    }
                }
                if let (Some(z), Some((c, r))) = (&zones, grid.pixel_of(xs[i], ys[i])) {
                    let row = match zone_rows.entry(r) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(z.read_rows(r, 1)?)
                        }
                    };
                    let id = row[c];
                    if id != OUTSIDE {
                        zone_keys[i] = z.key(id);
                    }
                }
                progress.advance(1);
            }
            if let (Some(lc), Some(legend)) = (&job.landcover, &legend) {
                let lc_crs = RasterInfo::read(&lc.path)?.grid()?.crs_wkt;
                let (lx, ly) = plots.coordinates_in(&lc_crs)?;
                let codes = io::sample_points(&lc.path, lc.band, &lx, &ly, 1)?;
                for (i, c) in codes.iter().enumerate() {
                    if classes[i].is_some() {
                        continue;
                    }
                    if let PointSample::Value { mean, .. } = c {
                        let code = mean.round() as i64;
                        classes[i] = legend
                            .classes
                            .iter()
                            .find(|k| k.code == code)
                            .map(|k| k.vegetation_type.clone());
                    }
                }
            }
        }
    }
    progress.finish();
    let zone_levels = zones
        .as_ref()
        .map(|z| z.levels.clone())
        .unwrap_or_else(|| spec.zone_field.iter().cloned().collect::<Vec<_>>());
    let samples: Vec<Sample> = plots
        .plots
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let zone = if zones.is_some() {
                std::mem::take(&mut zone_keys[i])
            } else {
                p.zone.iter().cloned().collect()
            };
            Sample {
                observed: observed[i],
                model: model[i],
                pixels: pixels[i],
                status: status[i],
                class: classes[i].take(),
                zone,
                map_xy: map_xy[i],
                plot: p,
            }
        })
        .collect();
    for st in [Status::OutsideRaster, Status::NoData, Status::NoModelRow] {
        let ids: Vec<&str> = samples
            .iter()
            .filter(|s| s.status == st)
            .map(|s| s.plot.id.as_str())
            .collect();
        if !ids.is_empty() {
            warnings.push(format!(
                "{} plot(s) {} (listed in the samples table, not in the statistics): {}{}",
                ids.len(),
                match st {
                    Status::OutsideRaster => "outside the raster",
                    Status::NoData => "on no data",
                    _ => "without a model row",
                },
                ids[..ids.len().min(8)].join(", "),
                if ids.len() > 8 { ", ..." } else { "" }
            ));
        }
    }
    if samples.iter().all(|s| s.status != Status::Ok) {
        return Err(Error::input(
            &spec.path,
            "no plot has a model value (all outside the raster, on no data or without a model row)",
        ));
    }
    for w in &warnings {
        progress.warn(w);
    }
    Ok(Samples {
        samples,
        unit,
        zone_levels,
        group_fields: spec.group_fields.clone(),
        keyed_by_date,
        map_crs_is_geographic: geographic,
        warnings,
        plots_path: spec.path.clone(),
    })
}

/// Agreement of one subset.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMetrics {
    /// "all", "class", "zone:<level>", a grouping column, or "year".
    pub scope: String,
    pub group: String,
    pub metrics: Metrics,
}

/// Metrics overall and per class, zone level, grouping column and year (for date-keyed tables).
pub fn metrics_by_group(
    s: &Samples,
    observed: impl Fn(&Sample) -> f64,
    model: impl Fn(&Sample) -> f64,
) -> Vec<GroupMetrics> {
    type GroupKey<'a> = Box<dyn Fn(&Sample) -> Option<String> + 'a>;
    let mut scopes: Vec<(String, GroupKey)> =
        vec![("all".into(), Box::new(|_| Some("all".into())))];
    scopes.push(("class".into(), Box::new(|x: &Sample| x.class.clone())));
    for (l, name) in s.zone_levels.iter().enumerate() {
        scopes.push((
            format!("zone:{name}"),
            Box::new(move |x: &Sample| x.zone.get(l).cloned()),
        ));
    }
    for (g, name) in s.group_fields.iter().enumerate() {
        scopes.push((
            name.clone(),
            Box::new(move |x: &Sample| x.plot.groups.get(g).cloned()),
        ));
    }
    if s.keyed_by_date {
        scopes.push((
            "year".into(),
            Box::new(|x: &Sample| x.plot.key.as_ref().map(|k| k[..4].to_string())),
        ));
    }
    let mut out = Vec::new();
    for (scope, key) in &scopes {
        let mut groups: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for x in s.ok() {
            if let Some(k) = key(x) {
                let e = groups.entry(k).or_default();
                e.0.push(observed(x));
                e.1.push(model(x));
            }
        }
        for (group, (o, m)) in groups {
            out.push(GroupMetrics {
                scope: scope.clone(),
                group,
                metrics: Metrics::compute(&o, &m),
            });
        }
    }
    out
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Metrics as CSV; the unit is in the headers of every column that carries one. With `stages`, each set of
/// rows is tagged in a leading `stage` column (for example before / after a correction).
pub fn metrics_csv(stages: &[(Option<&str>, &[GroupMetrics])], unit: &str) -> String {
    let tagged = stages.iter().any(|s| s.0.is_some());
    let mut s = format!(
        "{}scope,group,n,mean_observed ({unit}),mean_model ({unit}),bias ({unit}),rmse ({unit}),mae ({unit}),r2,nse,slope,intercept ({unit})\n",
        if tagged { "stage," } else { "" }
    );
    for (stage, rows) in stages {
        for r in *rows {
            let m = &r.metrics;
            if let Some(st) = stage {
                let _ = write!(s, "{st},");
            }
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                quote(&r.scope),
                quote(&r.group),
                m.n,
                num(m.mean_observed),
                num(m.mean_model),
                num(m.bias),
                num(m.rmse),
                num(m.mae),
                num(m.r2),
                num(m.nse),
                num(m.slope),
                num(m.intercept)
            );
        }
    }
    s
}

/// A printable table of metrics.
pub fn metrics_table(rows: &[GroupMetrics], unit: &str) -> String {
    let mut s = format!(
        "{:<22} {:<34} {:>5} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}   ({unit})\n",
        "scope", "group", "n", "obs mean", "bias", "RMSE", "MAE", "R2", "slope"
    );
    for r in rows {
        let m = &r.metrics;
        let f = |v: f64, p: usize| {
            if v.is_finite() {
                format!("{v:.p$}")
            } else {
                "-".into()
            }
        };
        let g: String = r.group.chars().take(34).collect();
        let _ = writeln!(
            s,
            "{:<22} {:<34} {:>5} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            r.scope,
            g,
            m.n,
            f(m.mean_observed, 2),
            f(m.bias, 2),
            f(m.rmse, 2),
            f(m.mae, 2),
            f(m.r2, 3),
            f(m.slope, 3)
        );
    }
    s
}

/// The per-plot table.
fn samples_csv(s: &Samples) -> String {
    let u = &s.unit.text;
    let mut h = vec![
        "id".to_string(),
        "origin".into(),
        "key".into(),
        "x".into(),
        "y".into(),
        "class".into(),
    ];
    h.extend(s.zone_levels.iter().map(|l| format!("zone:{l}")));
    h.extend(s.group_fields.iter().cloned());
    h.extend([
        format!("observed ({u})"),
        format!("model ({u})"),
        format!("residual model-observed ({u})"),
        "window_pixels".into(),
        "status".into(),
    ]);
    let mut out = h.iter().map(|x| quote(x)).collect::<Vec<_>>().join(",") + "\n";
    for x in &s.samples {
        let mut f = vec![
            quote(&x.plot.id),
            quote(&x.plot.origin),
            quote(x.plot.key.as_deref().unwrap_or("")),
            num(x.plot.x),
            num(x.plot.y),
            quote(x.class.as_deref().unwrap_or("")),
        ];
        for l in 0..s.zone_levels.len() {
            f.push(quote(x.zone.get(l).map(|z| z.as_str()).unwrap_or("")));
        }
        f.extend(x.plot.groups.iter().map(|g| quote(g)));
        f.extend([
            num(x.observed),
            num(x.model),
            num(x.model - x.observed),
            x.pixels.to_string(),
            x.status.name().into(),
        ]);
        out.push_str(&f.join(","));
        out.push('\n');
    }
    out
}

/// Run the validation; returns the printable report.
pub fn run_validate(job: &ValidateJob, progress: &dyn Progress) -> Result<String> {
    let s = collect(&job.inputs, progress)?;
    crate::commit::prepare_folder(&job.out_dir)?;
    let rows = metrics_by_group(&s, |x| x.observed, |x| x.model);
    let unit = s.unit.text.clone();
    io::write_atomic(
        &job.out_dir.join("validation_samples.csv"),
        samples_csv(&s).as_bytes(),
    )?;
    io::write_atomic(
        &job.out_dir.join("validation_metrics.csv"),
        metrics_csv(&[(None, &rows)], &unit).as_bytes(),
    )?;
    let counts: BTreeMap<&str, usize> = s.samples.iter().fold(BTreeMap::new(), |mut m, x| {
        *m.entry(x.status.name()).or_default() += 1;
        m
    });
    let json = serde_json::json!({
        "carbonmap_version": crate::VERSION,
        "quantity": job.quantity,
        "unit": unit,
        "plots": s.plots_path,
        "model": match &job.inputs.model {
            ModelSource::Raster { path, band, window, .. } => serde_json::json!({"raster": path, "band": band, "window_pixels": window}),
            ModelSource::Table { path, key_field, value_field, .. } => serde_json::json!({"table": path, "key": key_field, "column": value_field}),
        },
        "plot_status": counts,
        "warnings": s.warnings,
        "definitions": "bias = mean(model - observed); r2 = squared Pearson correlation; nse = Nash-Sutcliffe efficiency; slope and intercept of model = intercept + slope x observed (ordinary least squares)",
        "metrics": rows,
    });
    io::write_atomic(
        &job.out_dir.join("validation_metrics.json"),
        serde_json::to_string_pretty(&json)
            .expect("serialisable")
            .as_bytes(),
    )?;
    let points: Vec<report::ScatterPoint> = s
        .ok()
        .map(|x| report::ScatterPoint {
            observed: x.observed,
            model: x.model,
            class: x
                .class
                .clone()
                .unwrap_or_else(|| match (&x.plot.key, s.keyed_by_date) {
                    (Some(k), true) => k[..4].to_string(),
                    _ => "(no class)".into(),
                }),
        })
        .collect();
    report::scatter_png(
        &job.out_dir.join("validation_scatter.png"),
        &points,
        &format!("{}: model vs observed (n = {})", job.quantity, points.len()),
        &format!("{} ({unit})", job.quantity),
    )?;
    if matches!(job.inputs.model, ModelSource::Raster { .. }) {
        let pts: Vec<(f64, f64, f64)> = s
            .ok()
            .filter_map(|x| x.map_xy.map(|(a, b)| (a, b, x.model - x.observed)))
            .collect();
        report::residual_map_png(
            &job.out_dir.join("validation_residuals.png"),
            &pts,
            &format!("{}: model - observed at the plots", job.quantity),
            &format!("residual, {unit}"),
            s.map_crs_is_geographic,
        )?;
    }
    let mut out = format!(
        "{} vs {} ({} observations, {} with a model value)\n",
        job.quantity,
        s.plots_path.display(),
        s.samples.len(),
        s.ok().count()
    );
    out.push_str(&metrics_table(&rows, &unit));
    Ok(out)
}
