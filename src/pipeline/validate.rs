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

use crate::error::Result;
use crate::io;
use crate::plots::{Plot, PlotSpec};
use crate::progress::Progress;
use crate::report;
use crate::units::CarbonUnit;
use crate::validate::Metrics;
use crate::zones::ZoneSpec;

mod collect;
pub use collect::collect;

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
