//! Plots paired with model values: plots, model raster or table, classes and zones checked together (every
//! problem at once), then each plot sampled at its pixel (or window) or looked up by key, with a status for
//! every plot that has no model value.

use std::collections::BTreeMap;

use super::{ModelSource, Sample, SampleJob, Samples, Status};
use crate::error::{Error, Problems, Result};
use crate::io::{self, Grid, PointSample, RasterInfo};
use crate::landcover::Legend;
use crate::plots::{self, PlotSpec, Plots};
use crate::progress::Progress;
use crate::units::CarbonUnit;
use crate::zones::{Zones, OUTSIDE};

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

/// The inputs, every one checked.
struct Inputs {
    spec: PlotSpec,
    plots: Plots,
    unit: CarbonUnit,
    legend: Option<Legend>,
    grid: Option<Grid>,
    zones: Option<Zones>,
}

/// Read and check plots, model, land-cover legend and zones, reporting every problem at once.
fn inputs(job: &SampleJob) -> Result<Inputs> {
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
        unit_problems(p, u, &mut problems);
    }
    let grid = raster.as_ref().and_then(|i| problems.take(i.grid()));
    let zones = match (&job.zones, &grid) {
        (Some(z), Some(g)) => problems.take(Zones::load(z, g)),
        _ => None,
    };
    problems.finish()?;
    Ok(Inputs {
        spec,
        plots: plots.expect("checked"),
        unit: unit.expect("checked"),
        legend,
        grid,
        zones,
    })
}

/// Observation units that do not convert to the model's, grouped by problem with the first rows named.
fn unit_problems(p: &Plots, u: &CarbonUnit, problems: &mut Problems) {
    let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pl in &p.plots {
        if let Err(e) = pl.unit.factor_to(u) {
            bad.entry(e).or_default().push(pl.origin.clone());
        }
    }
    for (e, origins) in bad {
        let first = origins[..origins.len().min(5)].join(", ");
        problems.push(Error::input(
            &p.path,
            format!("{e} ({}: {first})", origins.len()),
        ));
    }
}

/// Rows left out of the plots file, and class codes the class map does not map.
fn plot_warnings(plots: &Plots, spec: &PlotSpec) -> Vec<String> {
    let mut warnings = Vec::new();
    let missing = &plots.without_observation;
    if !missing.is_empty() {
        warnings.push(format!(
            "{}: {} row(s) without an observation in {} were left out ({})",
            plots.path.display(),
            missing.len(),
            spec.observed_field,
            missing[..missing.len().min(5)].join(", ")
        ));
    }
    if !plots.unmapped_classes.is_empty() {
        let codes: Vec<String> = plots
            .unmapped_classes
            .iter()
            .map(|(c, n)| format!("{c} ({n} plots)"))
            .collect();
        warnings.push(format!(
            "{}: class codes the class map does not map (their plots have no class): {}",
            plots.path.display(),
            codes.join(", ")
        ));
    }
    warnings
}

/// What sampling found for each plot.
struct Sampled {
    model: Vec<f64>,
    status: Vec<Status>,
    pixels: Vec<usize>,
    map_xy: Vec<Option<(f64, f64)>>,
    zone_keys: Vec<Vec<String>>,
    classes: Vec<Option<String>>,
    keyed_by_date: bool,
    geographic: bool,
}

impl Sampled {
    fn new(plots: &Plots) -> Sampled {
        let n = plots.plots.len();
        Sampled {
            model: vec![f64::NAN; n],
            status: vec![Status::Ok; n],
            pixels: vec![0; n],
            map_xy: vec![None; n],
            zone_keys: vec![Vec::new(); n],
            classes: plots.plots.iter().map(|p| p.class.clone()).collect(),
            keyed_by_date: false,
            geographic: false,
        }
    }

    /// A model table: each plot's key looked up (dates make a date-keyed series).
    fn from_table(
        &mut self,
        plots: &Plots,
        (path, key, value): (&std::path::Path, &str, &str),
    ) -> Result<()> {
        let table = plots::read_keyed(path, key, value)?;
        self.keyed_by_date = plots.plots.iter().all(|p| {
            chrono::NaiveDate::parse_from_str(p.key.as_deref().unwrap_or(""), "%Y-%m-%d").is_ok()
        });
        for (i, p) in plots.plots.iter().enumerate() {
            match table.get(p.key.as_deref().expect("keyed")) {
                Some(v) if v.is_finite() => self.model[i] = *v,
                Some(_) => self.status[i] = Status::NoData,
                None => self.status[i] = Status::NoModelRow,
            }
        }
        Ok(())
    }

    /// A model raster: each plot sampled at its pixel or window, and given the zone of its pixel.
    fn from_raster(
        &mut self,
        inputs: &Inputs,
        (path, band, window): (&std::path::Path, usize, usize),
        progress: &dyn Progress,
    ) -> Result<()> {
        let grid = inputs.grid.as_ref().expect("checked");
        self.geographic = grid.spatial_ref()?.is_geographic();
        let (xs, ys) = inputs.plots.coordinates_in(&grid.crs_wkt)?;
        let got = io::sample_points(path, band, &xs, &ys, window)?;
        let mut zone_rows: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
        for i in 0..xs.len() {
            self.map_xy[i] = Some((xs[i], ys[i]));
            match got[i] {
                PointSample::Outside => self.status[i] = Status::OutsideRaster,
                PointSample::NoData => self.status[i] = Status::NoData,
                PointSample::Value { mean, pixels: k } => {
                    self.model[i] = mean;
                    self.pixels[i] = k;
                }
            }
            if let (Some(z), Some((c, r))) = (&inputs.zones, grid.pixel_of(xs[i], ys[i])) {
                let row = match zone_rows.entry(r) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => e.insert(z.read_rows(r, 1)?),
                };
                if row[c] != OUTSIDE {
                    self.zone_keys[i] = z.key(row[c]);
                }
            }
            progress.advance(1);
        }
        Ok(())
    }

    /// Plots without a class of their own take the vegetation type of the land-cover map's class under them.
    fn classes_from_map(&mut self, job: &SampleJob, inputs: &Inputs) -> Result<()> {
        let (Some(lc), Some(legend)) = (&job.landcover, &inputs.legend) else {
            return Ok(());
        };
        let lc_crs = RasterInfo::read(&lc.path)?.grid()?.crs_wkt;
        let (lx, ly) = inputs.plots.coordinates_in(&lc_crs)?;
        let codes = io::sample_points(&lc.path, lc.band, &lx, &ly, 1)?;
        for (class, c) in self.classes.iter_mut().zip(&codes) {
            if let (None, PointSample::Value { mean, .. }) = (&class, c) {
                let code = mean.round() as i64;
                *class = legend
                    .classes
                    .iter()
                    .find(|k| k.code == code)
                    .map(|k| k.vegetation_type.clone());
            }
        }
        Ok(())
    }
}

/// One warning per status without a model value, naming the first plots.
fn status_warnings(samples: &[Sample]) -> Vec<String> {
    let mut warnings = Vec::new();
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
    warnings
}

/// Load plots, model values, classes and zones; check everything first.
pub fn collect(job: &SampleJob, progress: &dyn Progress) -> Result<Samples> {
    let inputs = inputs(job)?;
    let mut warnings = plot_warnings(&inputs.plots, &inputs.spec);
    let mut got = Sampled::new(&inputs.plots);
    progress.start("validate", inputs.plots.plots.len() as u64);
    match &job.model {
        ModelSource::Table {
            path,
            key_field,
            value_field,
            ..
        } => got.from_table(&inputs.plots, (path, key_field, value_field))?,
        ModelSource::Raster {
            path, band, window, ..
        } => {
            got.from_raster(&inputs, (path, *band, *window), progress)?;
            got.classes_from_map(job, &inputs)?;
        }
    }
    progress.finish();
    let Inputs {
        spec,
        plots,
        unit,
        zones,
        ..
    } = inputs;
    let zone_levels = zones
        .as_ref()
        .map(|z| z.levels.clone())
        .unwrap_or_else(|| spec.zone_field.iter().cloned().collect::<Vec<_>>());
    let samples: Vec<Sample> = plots
        .plots
        .into_iter()
        .enumerate()
        .map(|(i, p)| Sample {
            observed: p.observed * p.unit.factor_to(&unit).expect("checked"),
            model: got.model[i],
            pixels: got.pixels[i],
            status: got.status[i],
            class: got.classes[i].take(),
            zone: if zones.is_some() {
                std::mem::take(&mut got.zone_keys[i])
            } else {
                p.zone.iter().cloned().collect()
            },
            map_xy: got.map_xy[i],
            plot: p,
        })
        .collect();
    warnings.extend(status_warnings(&samples));
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
        keyed_by_date: got.keyed_by_date,
        map_crs_is_geographic: got.geographic,
        warnings,
        plots_path: spec.path.clone(),
    })
}
