//! `carbonmap landcover train` and `predict`: a land-cover classifier trained on labelled samples (a
//! land-cover raster, points or polygons from a vector file, or a CSV of coordinates) with features from a
//! scene stack, assessed on spatially blocked held-out samples, saved with a sidecar that describes exactly
//! which features it expects; and prediction strip by strip into a class raster with a colour table, a
//! confidence raster and a per-class area table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::features::{FeatureDef, FeatureEngine, FeatureSpec};
use super::GridChoice;
use crate::engine::run::{Plane, StripOut};
use crate::error::{Error, Problems, Result};
use crate::io::{
    self, BandRequest, Grid, GridReader, OutBand, RasterWriter, Resampling, Window, WriteOptions,
};
use crate::landcover::accuracy::{block_fold, Assessment, ConfusionMatrix};
use crate::landcover::forest::{Forest, ForestParams, Samples};
use crate::landcover::{self, ClassArea, Legend};
use crate::progress::Progress;

/// Where the training labels come from.
#[derive(Debug, Clone)]
pub enum LabelSource {
    /// A land-cover raster (band number); its codes are the classes.
    Raster { path: PathBuf, band: usize },
    /// Points or polygons of a vector file (GeoPackage, GeoJSON, Shapefile ...), class in `field`.
    Vector {
        path: PathBuf,
        layer: Option<String>,
        field: String,
    },
    /// A CSV with coordinate columns (in `crs`, EPSG:4326 by default) and a class column.
    Csv {
        path: PathBuf,
        x_field: String,
        y_field: String,
        crs: Option<String>,
        field: String,
    },
}

impl LabelSource {
    pub fn path(&self) -> &Path {
        match self {
            LabelSource::Raster { path, .. }
            | LabelSource::Vector { path, .. }
            | LabelSource::Csv { path, .. } => path,
        }
    }
}

/// What `carbonmap landcover train` does.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub stack: PathBuf,
    pub grid: GridChoice,
    pub features: FeatureSpec,
    pub index_table: Option<PathBuf>,
    pub labels: LabelSource,
    /// Legend giving class names and colours (and checking raster codes).
    pub legend: Option<String>,
    /// Label codes or names that are not classes (besides the raster's and the legend's nodata).
    pub ignore: Vec<String>,
    pub kind: ClassifierKind,
    pub params: ForestParams,
    /// At most this many samples per class are kept (a seeded reservoir sample).
    pub max_per_class: usize,
    /// Side of the square blocks of the spatial holdout, in metres of the grid's CRS (degrees on geographic
    /// grids are converted at the equator: give metres).
    pub block_size: f64,
    /// Blocks are dealt into this many folds; fold 1 is held out for the assessment.
    pub folds: usize,
    pub model: PathBuf,
    pub out_dir: PathBuf,
    pub memory_mb: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierKind {
    RandomForest,
    DecisionTree,
}

/// One class of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub code: u16,
    pub name: String,
    /// "#rrggbb"
    pub color: String,
    /// Vegetation type from the legend (empty without one).
    #[serde(default)]
    pub vegetation_type: String,
    /// The label text the class was read from.
    pub label: String,
}

/// The sidecar of a saved model: everything needed to check that a stack fits it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sidecar {
    pub carbonmap_version: String,
    pub model_file: String,
    pub model_sha256: String,
    pub kind: ClassifierKind,
    pub params: ForestParams,
    pub feature_spec: FeatureSpec,
    /// Features in the order the model reads them.
    pub features: Vec<FeatureDef>,
    pub index_table: String,
    pub sensor: String,
    pub stack: String,
    pub grid_crs_wkt: String,
    pub grid_pixel_size: [f64; 2],
    pub classes: Vec<ClassInfo>,
    pub training: TrainingRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub labels: String,
    pub legend: Option<String>,
    /// SHA-256 of the training samples (features, classes and pixel positions, in order).
    pub samples_sha256: String,
    pub train_samples: usize,
    pub test_samples: usize,
    pub per_class_train: BTreeMap<String, usize>,
    pub per_class_test: BTreeMap<String, usize>,
    pub block_size_m: f64,
    pub block_px: usize,
    pub folds: usize,
    pub held_out_fold: usize,
    pub max_samples_per_class: usize,
    pub overall_accuracy: f64,
    pub kappa: f64,
}

/// What training produced.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub assessment: Assessment,
    pub sidecar: Sidecar,
    pub model: PathBuf,
    pub sidecar_path: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// The sidecar path of a model file: `MODEL.sidecar.json`.
pub fn sidecar_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".sidecar.json");
    PathBuf::from(s)
}

/// Labels resolved on the analysis grid.
enum LabelPlan {
    Raster {
        reader: GridReader,
        /// Raster code -> class index.
        classes: BTreeMap<i64, usize>,
    },
    Polygons {
        geoms: Vec<gdal::vector::Geometry>,
        /// Class index + 1 per geometry.
        values: Vec<f64>,
    },
    /// (row, col) -> class index.
    Points(BTreeMap<(usize, usize), usize>),
}

/// Sentinel for pixels without a label.
const NO_LABEL: i32 = -1;

impl LabelPlan {
    /// Class index per pixel of rows `row0 .. row0 + nrows` (NO_LABEL where unlabelled).
    fn strip(&self, grid: &Grid, row0: usize, nrows: usize) -> Result<Vec<i32>> {
        let npx = grid.width * nrows;
        match self {
            LabelPlan::Raster { reader, classes } => {
                let mut buf = vec![0i64; npx];
                reader.read_rows(0, row0, nrows, &mut buf)?;
                Ok(buf
                    .into_iter()
                    .map(|v| classes.get(&v).map_or(NO_LABEL, |&k| k as i32))
                    .collect())
            }
            LabelPlan::Polygons { geoms, values } => {
                let v = io::rasterize_rows(geoms, values, grid, row0, nrows, 0)?;
                Ok(v.into_iter().map(|x| x - 1).collect())
            }
            LabelPlan::Points(map) => {
                let mut out = vec![NO_LABEL; npx];
                for (&(r, c), &k) in map.range((row0, 0)..(row0 + nrows, 0)) {
                    out[(r - row0) * grid.width + c] = k as i32;
                }
                Ok(out)
            }
        }
    }
}

/// Class texts -> classes (codes, names, colours). Integer texts are codes; other texts get codes 1, 2, ...
/// in sorted order, or the code of the legend class with that name.
fn make_classes(texts: &[String], legend: Option<&Legend>) -> Result<Vec<ClassInfo>> {
    let palette = crate::report::class_palette()?;
    let hex = |(r, g, b): (u8, u8, u8)| format!("#{r:02x}{g:02x}{b:02x}");
    let all_int = texts.iter().all(|t| t.parse::<i64>().is_ok());
    let mut out = Vec::new();
    let mut not_in_legend = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let from_legend = legend.and_then(|l| {
            if all_int {
                l.class(t.parse().unwrap())
            } else {
                l.classes.iter().find(|c| c.name.eq_ignore_ascii_case(t))
            }
        });
        if legend.is_some() && from_legend.is_none() {
            not_in_legend.push(t.as_str());
            continue;
        }
        let code: i64 = match (from_legend, all_int) {
            (Some(c), _) => c.code,
            (None, true) => t.parse().unwrap(),
            (None, false) => i as i64 + 1,
        };
        if !(1..=u16::MAX as i64).contains(&code) {
            return Err(Error::Usage(format!(
                "class '{t}': code {code} cannot be written (class rasters use codes 1..65535; 0 means no data)"
            )));
        }
        out.push(ClassInfo {
            code: code as u16,
            name: from_legend.map_or_else(|| t.clone(), |c| c.name.clone()),
            color: from_legend.map_or_else(|| hex(palette[i % palette.len()]), |c| c.color.clone()),
            vegetation_type: from_legend.map_or_else(String::new, |c| c.vegetation_type.clone()),
            label: t.clone(),
        });
    }
    if let (Some(l), false) = (legend, not_in_legend.is_empty()) {
        return Err(Error::config(
            &l.source,
            format!(
                "legend '{}' has no class for label(s) {}",
                l.product,
                not_in_legend.join(", ")
            ),
        ));
    }
    let mut codes: Vec<u16> = out.iter().map(|c| c.code).collect();
    codes.sort_unstable();
    codes.dedup();
    if codes.len() != out.len() {
        return Err(Error::Usage("two labels map to the same class code".into()));
    }
    Ok(out)
}

/// Labels from a land-cover raster: its codes are the classes.
fn raster_labels(
    job: &TrainJob,
    grid: &Grid,
    legend: Option<&Legend>,
    path: &Path,
    band: usize,
) -> Result<(Vec<ClassInfo>, LabelPlan)> {
    let info = io::RasterInfo::read(path)?;
    if io::coverage_fraction(grid, &info.grid()?)? <= 0.0 {
        return Err(Error::input(
            path,
            "labels outside the stack: the label raster does not overlap the analysis grid",
        ));
    }
    let (hist, file_nodata) = landcover::histogram(path, band)?;
    if let Some(l) = legend {
        // Every code must be in the legend (missing codes listed with pixel counts).
        landcover::check_codes(path, band, l, &hist, file_nodata)?;
    }
    let skip = |v: i64| {
        job.ignore.contains(&v.to_string())
            || file_nodata.is_some_and(|nd| nd == v as f64)
            || legend.is_some_and(|l| l.nodata.contains(&v))
    };
    let codes: Vec<i64> = hist.keys().copied().filter(|v| !skip(*v)).collect();
    if codes.is_empty() {
        return Err(Error::band(
            path,
            band.to_string(),
            "holds no class codes (only nodata or ignored values)",
        ));
    }
    let texts: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
    let classes = make_classes(&texts, legend)?;
    let reader = GridReader::new(
        path,
        &[BandRequest {
            index: band,
            name: band.to_string(),
        }],
        grid,
        Resampling::Nearest,
        None,
        // Outside the label raster: a value that is never a class (skipped like nodata).
        f64::from(i32::MIN),
    )?;
    let map = codes.iter().enumerate().map(|(k, &c)| (c, k)).collect();
    Ok((
        classes,
        LabelPlan::Raster {
            reader,
            classes: map,
        },
    ))
}

/// Labels from the points or polygons of a vector file, class in `field`.
fn vector_labels(
    job: &TrainJob,
    grid: &Grid,
    legend: Option<&Legend>,
    warnings: &mut Vec<String>,
    path: &Path,
    layer: Option<&str>,
    field: &str,
) -> Result<(Vec<ClassInfo>, LabelPlan)> {
    let lyr = io::read_vector(path, layer, &[field.to_string()])?;
    let Some(crs) = lyr.crs_wkt.clone() else {
        return Err(Error::input(path, "the layer has no CRS"));
    };
    let mut texts: Vec<String> = Vec::new();
    let mut rows: Vec<(String, gdal::vector::Geometry)> = Vec::new();
    let mut problems = Problems::new();
    for f in lyr.features {
        let Some(g) = f.geometry else {
            problems.push(Error::input(
                path,
                format!("feature {}: no geometry", f.fid),
            ));
            continue;
        };
        let Some(v) = f.fields[0].as_ref().map(|v| v.text()) else {
            problems.push(Error::input(
                path,
                format!("feature {}: field \"{field}\" is empty", f.fid),
            ));
            continue;
        };
        rows.push((v, g));
    }
    problems.finish()?;
    for (v, _) in &rows {
        if !texts.contains(v) && !job.ignore.contains(v) {
            texts.push(v.clone());
        }
    }
    rows.retain(|(v, _)| texts.contains(v));
    sort_texts(&mut texts);
    let classes = make_classes(&texts, legend)?;
    let mut geoms: Vec<gdal::vector::Geometry> = rows.iter().map(|r| r.1.clone()).collect();
    io::reproject_geometries(&mut geoms, &crs, &grid.crs_wkt)?;
    let kinds: Vec<bool> = geoms
        .iter()
        .map(|g| g.geometry_name().eq_ignore_ascii_case("POINT"))
        .collect();
    let k_of = |t: &str| texts.iter().position(|x| x == t).unwrap();
    if kinds.iter().all(|&p| p) {
        let mut labels = PointLabels::default();
        let mut outside = Vec::new();
        for ((v, _), g) in rows.iter().zip(&geoms) {
            let (x, y, _) = g.get_point(0);
            match grid.pixel_of(x, y) {
                Some((c, r)) => labels.add((r, c), k_of(v)),
                None => outside.push(format!("({x:.3}, {y:.3})")),
            }
        }
        let map = labels.finish(path, warnings);
        points_outside(path, &outside, map.len())?;
        Ok((classes, LabelPlan::Points(map)))
    } else if kinds.iter().any(|&p| p) {
        Err(Error::input(
            path,
            "mixes points and polygons; give one kind of label geometry",
        ))
    } else {
        let b = grid.bounds();
        let outside = geoms
            .iter()
            .filter(|g| {
                let e = g.envelope();
                e.MaxX < b[0] || e.MinX > b[2] || e.MaxY < b[1] || e.MinY > b[3]
            })
            .count();
        if outside == geoms.len() {
            return Err(Error::input(
                path,
                format!(
                    "labels outside the stack: none of the {} polygons overlaps the analysis grid",
                    geoms.len()
                ),
            ));
        }
        if outside > 0 {
            warnings.push(format!(
                "{}: {outside} of {} polygons lie outside the analysis grid and give no samples",
                path.display(),
                geoms.len()
            ));
        }
        let values = rows.iter().map(|(v, _)| k_of(v) as f64 + 1.0).collect();
        Ok((classes, LabelPlan::Polygons { geoms, values }))
    }
}

/// Resolve the labels on `grid`: classes and a per-strip label source. Points outside the grid are an error.
fn plan_labels(
    job: &TrainJob,
    grid: &Grid,
    legend: Option<&Legend>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<ClassInfo>, LabelPlan)> {
    match &job.labels {
        LabelSource::Raster { path, band } => raster_labels(job, grid, legend, path, *band),
        LabelSource::Vector { path, layer, field } => {
            vector_labels(job, grid, legend, warnings, path, layer.as_deref(), field)
        }
        LabelSource::Csv {
            path,
            x_field,
            y_field,
            crs,
            field,
        } => {
            let pts = read_label_csv(path, x_field, y_field, field)?;
            let from = io::crs_wkt(crs.as_deref().unwrap_or("EPSG:4326"))?;
            let mut xs: Vec<f64> = pts.iter().map(|p| p.1).collect();
            let mut ys: Vec<f64> = pts.iter().map(|p| p.2).collect();
            io::transform_points(&from, &grid.crs_wkt, &mut xs, &mut ys)?;
            let mut texts: Vec<String> = Vec::new();
            for p in &pts {
                if !texts.contains(&p.3) && !job.ignore.contains(&p.3) {
                    texts.push(p.3.clone());
                }
            }
            sort_texts(&mut texts);
            let classes = make_classes(&texts, legend)?;
            let mut labels = PointLabels::default();
            let mut outside = Vec::new();
            for (i, p) in pts.iter().enumerate() {
                let Some(k) = texts.iter().position(|t| *t == p.3) else {
                    continue;
                };
                match grid.pixel_of(xs[i], ys[i]) {
                    Some((c, r)) => labels.add((r, c), k),
                    None => outside.push(p.0.clone()),
                }
            }
            let map = labels.finish(path, warnings);
            points_outside(path, &outside, map.len())?;
            Ok((classes, LabelPlan::Points(map)))
        }
    }
}

/// Label points by pixel. Several points in one pixel are one sample; points of different classes in one
/// pixel make it ambiguous, and it is left out. Both are counted and reported, never dropped silently.
#[derive(Default)]
struct PointLabels {
    map: BTreeMap<(usize, usize), usize>,
    same_pixel: usize,
    conflicting: std::collections::BTreeSet<(usize, usize)>,
}

impl PointLabels {
    fn add(&mut self, px: (usize, usize), class: usize) {
        match self.map.insert(px, class) {
            Some(prev) if prev != class => {
                self.conflicting.insert(px);
            }
            Some(_) => self.same_pixel += 1,
            None => {}
        }
    }

    fn finish(
        mut self,
        path: &Path,
        warnings: &mut Vec<String>,
    ) -> BTreeMap<(usize, usize), usize> {
        if self.same_pixel > 0 {
            warnings.push(format!(
                "{}: {} label point(s) fall in a pixel that another point of the same class labels already; each \
                 pixel is one sample",
                path.display(),
                self.same_pixel
            ));
        }
        if !self.conflicting.is_empty() {
            warnings.push(format!(
                "{}: {} pixel(s) hold label points of different classes and are left out of training and \
                 assessment",
                path.display(),
                self.conflicting.len()
            ));
            for px in &self.conflicting {
                self.map.remove(px);
            }
        }
        self.map
    }
}

fn points_outside(path: &Path, outside: &[String], inside: usize) -> Result<()> {
    if outside.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = outside.iter().take(5).map(|s| s.as_str()).collect();
    Err(Error::input(
        path,
        format!(
            "labels outside the stack: {} of {} label points fall outside the analysis grid (first: {}); crop the labels to the stack or give the right --labels-crs",
            outside.len(),
            outside.len() + inside,
            shown.join(", ")
        ),
    ))
}

/// Numeric texts in numeric order, others alphabetically.
fn sort_texts(texts: &mut [String]) {
    texts.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
}

/// (origin, x, y, label) rows of a label CSV; an empty label is an error naming the line.
fn read_label_csv(
    path: &Path,
    x_field: &str,
    y_field: &str,
    field: &str,
) -> Result<Vec<(String, f64, f64, String)>> {
    let rows = crate::plots::read_csv(path, Some((x_field, y_field)), &[field.to_string()])?;
    let mut problems = Problems::new();
    let mut out = Vec::new();
    for r in rows {
        match (&r.vals[0], r.point) {
            (Some(label), Some((x, y))) => out.push((r.origin, x, y, label.clone())),
            _ => problems.push(Error::input(
                path,
                format!("{}: {field} is empty", r.origin),
            )),
        }
    }
    problems.finish()?;
    if out.is_empty() {
        return Err(Error::input(path, "holds no labelled rows"));
    }
    Ok(out)
}

/// A kept sample.
#[derive(Clone)]
struct Sample {
    col: usize,
    row: usize,
    class: usize,
    features: Vec<f32>,
}

/// Seeded reservoir sampling per class (Vitter's algorithm R), in raster order: deterministic for a seed.
/// One pass over the grid: features where there are labels, kept per class by reservoir sampling; and per
/// class the labelled pixels skipped for lack of data (a warning each).
fn collect_samples(
    job: &TrainJob,
    engine: &FeatureEngine,
    plan: &LabelPlan,
    classes: &[ClassInfo],
    warnings: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<(Reservoirs, Vec<u64>)> {
    let grid = &engine.grid;
    let readers = engine.readers()?;
    let mut res = Reservoirs {
        cap: job.max_per_class,
        seen: vec![0; classes.len()],
        kept: vec![Vec::new(); classes.len()],
        rng: ChaCha8Rng::seed_from_u64(job.params.seed),
    };
    let mut without_data = vec![0u64; classes.len()];
    let rows = engine.strip_rows(job.memory_mb);
    progress.start("training samples", grid.height as u64);
    let mut row0 = 0;
    while row0 < grid.height {
        let nrows = rows.min(grid.height - row0);
        let labels = plan.strip(&grid, row0, nrows)?;
        if labels.iter().any(|&l| l >= 0) {
            let planes = engine.strip(&readers, row0, nrows)?;
            for (px, &l) in labels.iter().enumerate() {
                if l < 0 {
                    continue;
                }
                if !planes.iter().all(|pl| pl[px].is_finite()) {
                    without_data[l as usize] += 1;
                    continue;
                }
                res.offer(Sample {
                    col: px % grid.width,
                    row: row0 + px / grid.width,
                    class: l as usize,
                    features: planes.iter().map(|pl| pl[px]).collect(),
                });
            }
        }
        progress.advance(nrows as u64);
        row0 += nrows;
    }
    progress.finish();
    drop(readers);
    for (k, n) in without_data.iter().enumerate() {
        if *n > 0 {
            warnings.push(format!(
                "class {}: {n} labelled pixels skipped (a feature has no clear observation there)",
                classes[k].name
            ));
        }
    }

    Ok((res, without_data))
}

/// The fold (of `--folds`) whose blocks are held out for testing.
const HELD_OUT_FOLD: usize = 0;

/// Spatially blocked split: samples in the held-out fold's blocks test, the others train.
fn split_by_block(
    kept: Vec<Vec<Sample>>,
    block_px: usize,
    job: &TrainJob,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut train_s: Vec<Sample> = Vec::new();
    let mut test_s: Vec<Sample> = Vec::new();
    for kept in kept {
        for s in kept {
            if block_fold(s.col, s.row, block_px, job.folds, job.params.seed) == HELD_OUT_FOLD {
                test_s.push(s);
            } else {
                train_s.push(s);
            }
        }
    }
    (train_s, test_s)
}

struct Reservoirs {
    cap: usize,
    seen: Vec<u64>,
    kept: Vec<Vec<Sample>>,
    rng: ChaCha8Rng,
}

impl Reservoirs {
    fn offer(&mut self, s: Sample) {
        let k = s.class;
        self.seen[k] += 1;
        if self.kept[k].len() < self.cap {
            self.kept[k].push(s);
        } else {
            let j = self.rng.gen_range(0..self.seen[k]);
            if (j as usize) < self.cap {
                self.kept[k][j as usize] = s;
            }
        }
    }
}

/// Block side in pixels for a side in metres.
fn block_pixels(grid: &Grid, block_m: f64) -> Result<usize> {
    let px = grid.gt[1].abs().max(grid.gt[5].abs());
    let metres_per_unit = if grid.spatial_ref()?.is_geographic() {
        // Degrees: the length of one degree of latitude on the sphere of models/earth.toml.
        io::earth_radius_m()? * std::f64::consts::PI / 180.0
    } else {
        1.0
    };
    Ok(((block_m / (px * metres_per_unit)).round() as usize).max(1))
}

/// The training options a command line cannot check by type.
fn check_train_options(job: &TrainJob) -> Result<()> {
    if job.folds < 2 {
        return Err(Error::Usage(
            "--folds must be at least 2 (one fold is held out)".into(),
        ));
    }
    if job.max_per_class == 0 {
        return Err(Error::Usage(
            "--max-samples-per-class must be at least 1".into(),
        ));
    }
    if job.block_size.is_nan() || job.block_size <= 0.0 {
        return Err(Error::Usage(
            "--block-size must be a positive length in metres".into(),
        ));
    }
    Ok(())
}

/// Samples per class in a set.
fn class_counts(v: &[Sample], n_classes: usize) -> Vec<usize> {
    let mut c = vec![0usize; n_classes];
    for s in v {
        c[s.class] += 1;
    }
    c
}

/// A class without training samples is an error (all at once); one without held-out samples a warning.
fn check_class_counts(
    job: &TrainJob,
    classes: &[ClassInfo],
    (seen, without_data): (&[u64], &[u64]),
    (n_train, n_test): (&[usize], &[usize]),
    warnings: &mut Vec<String>,
) -> Result<()> {
    let mut problems = Problems::new();
    for (k, c) in classes.iter().enumerate() {
        if n_train[k] == 0 {
            problems.push(Error::input(
                job.labels.path(),
                format!(
                    "class {} ({}) has no training samples ({} labelled pixels, {} held out for testing, {} without data): add labels for it, use smaller --block-size, or leave it out with --ignore",
                    c.code, c.name, seen[k], n_test[k], without_data[k]
                ),
            ));
        }
    }
    problems.finish()?;
    for (k, c) in classes.iter().enumerate() {
        if n_test[k] == 0 {
            warnings.push(format!(
                "class {} ({}): no held-out samples, so its accuracy is not assessed",
                c.code, c.name
            ));
        }
    }
    Ok(())
}

/// Features as one row-major matrix, and the classes.
fn flat(v: &[Sample], p: usize) -> (Vec<f32>, Vec<usize>) {
    let mut x = Vec::with_capacity(v.len() * p);
    for s in v {
        x.extend_from_slice(&s.features);
    }
    (x, v.iter().map(|s| s.class).collect())
}

/// SHA-256 of every sample (position, class, features) in order: the model's training set named.
fn samples_sha256(train_s: &[Sample], test_s: &[Sample]) -> String {
    let mut hasher = Sha256::new();
    for s in train_s.iter().chain(test_s) {
        hasher.update((s.col as u64).to_le_bytes());
        hasher.update((s.row as u64).to_le_bytes());
        hasher.update((s.class as u64).to_le_bytes());
        for v in &s.features {
            hasher.update(v.to_le_bytes());
        }
    }
    format!("{:x}", hasher.finalize())
}

/// The held-out samples' confusion matrix and accuracy (labels "CODE NAME").
fn assess(forest: &Forest, classes: &[ClassInfo], (xte, yte): (&[f32], &[usize])) -> Assessment {
    let labels: Vec<String> = classes
        .iter()
        .map(|c| format!("{} {}", c.code, c.name))
        .collect();
    let mut predicted = vec![0usize; yte.len()];
    let mut confidence = vec![0f32; yte.len()];
    predict_parallel(forest, xte, &mut predicted, &mut confidence);
    let pairs = predicted.into_iter().zip(yte.iter().copied());
    ConfusionMatrix::from_pairs(labels, pairs).assess()
}

pub fn train(job: &TrainJob, progress: &dyn Progress) -> Result<TrainSummary> {
    check_train_options(job)?;
    let legend = job.legend.as_deref().map(Legend::resolve).transpose()?;
    let engine = FeatureEngine::open(
        &job.stack,
        &job.grid,
        &job.features,
        job.index_table.as_deref(),
    )?;
    let grid = engine.grid.clone();
    let mut warnings = Vec::new();
    let (classes, plan) = plan_labels(job, &grid, legend.as_ref(), &mut warnings)?;
    let block_px = block_pixels(&grid, job.block_size)?;

    // One pass over the grid: features where there are labels, kept per class by reservoir sampling.
    let p = engine.defs.len();
    let (mut res, without_data) =
        collect_samples(job, &engine, &plan, &classes, &mut warnings, progress)?;
    let (mut train_s, mut test_s) = split_by_block(std::mem::take(&mut res.kept), block_px, job);
    // Raster order within each set, so that the sample hash and the model do not depend on class order.
    train_s.sort_by_key(|s| (s.row, s.col));
    test_s.sort_by_key(|s| (s.row, s.col));
    let n_train = class_counts(&train_s, classes.len());
    let n_test = class_counts(&test_s, classes.len());
    check_class_counts(
        job,
        &classes,
        (&res.seen, &without_data),
        (&n_train, &n_test),
        &mut warnings,
    )?;
    for w in &warnings {
        progress.warn(w);
    }
    let (xtr, ytr) = flat(&train_s, p);
    let (xte, yte) = flat(&test_s, p);
    let samples_sha256 = samples_sha256(&train_s, &test_s);

    // One-vs-rest: a forest of `trees` binary trees per class; the bar counts trees.
    progress.start("training trees", (classes.len() * job.params.trees) as u64);
    let forest = Forest::train_with_progress(
        &Samples {
            x: &xtr,
            p,
            y: &ytr,
            n_classes: classes.len(),
        },
        &job.params,
        &|| progress.advance(1),
    )?;
    progress.finish();

    let assessment = assess(&forest, &classes, (&xte, &yte));

    // Model, then sidecar (which names the model's hash), each written atomically.
    let model_json = serde_json::to_vec(&forest)
        .map_err(|e| Error::Processing(format!("cannot encode the model: {e}")))?;
    let per_class = |c: &[usize]| -> BTreeMap<String, usize> {
        classes
            .iter()
            .zip(c)
            .map(|(cl, n)| (format!("{} {}", cl.code, cl.name), *n))
            .collect()
    };
    let sidecar = Sidecar {
        carbonmap_version: crate::VERSION.into(),
        model_file: job
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        model_sha256: io::sha256_hex(&model_json),
        kind: job.kind,
        params: job.params.clone(),
        feature_spec: job.features.clone(),
        features: engine.defs.clone(),
        index_table: job.index_table.as_ref().map_or_else(
            || "built-in (models/indices.toml)".into(),
            |p| p.display().to_string(),
        ),
        sensor: engine.stack.profile.name.clone(),
        stack: job.stack.display().to_string(),
        grid_crs_wkt: grid.crs_wkt.clone(),
        grid_pixel_size: [grid.gt[1], grid.gt[5].abs()],
        classes: classes.clone(),
        training: TrainingRecord {
            labels: job.labels.path().display().to_string(),
            legend: legend.as_ref().map(|l| l.product.clone()),
            samples_sha256,
            train_samples: train_s.len(),
            test_samples: test_s.len(),
            per_class_train: per_class(&n_train),
            per_class_test: per_class(&n_test),
            block_size_m: job.block_size,
            block_px,
            folds: job.folds,
            held_out_fold: HELD_OUT_FOLD + 1,
            max_samples_per_class: job.max_per_class,
            overall_accuracy: assessment.overall_accuracy,
            kappa: assessment.kappa,
        },
    };
    let side = sidecar_path(&job.model);
    let side_json = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| Error::Processing(format!("cannot encode the sidecar: {e}")))?;
    io::write_atomic(&job.model, &model_json)?;
    io::write_atomic(&side, &side_json)?;

    let table = samples_table(&grid, &classes, [&train_s, &test_s], block_px);
    let outputs = write_assessment(job, &assessment, table, block_px)?;
    Ok(TrainSummary {
        assessment,
        sidecar,
        model: job.model.clone(),
        sidecar_path: side,
        outputs,
        warnings,
    })
}

/// Every sample with its position and block, so that the holdout can be inspected (and mapped).
fn samples_table(
    grid: &Grid,
    classes: &[ClassInfo],
    [train_s, test_s]: [&[Sample]; 2],
    block_px: usize,
) -> String {
    let mut table = String::from("x,y,col,row,block_col,block_row,class_code,class_name,set\n");
    for (set, v) in [("train", train_s), ("test", test_s)] {
        for smp in v.iter() {
            let (x, y) = grid.pixel_centre(smp.col, smp.row);
            let c = &classes[smp.class];
            table.push_str(&format!(
                "{x},{y},{},{},{},{},{},\"{}\",{set}\n",
                smp.col,
                smp.row,
                smp.col / block_px,
                smp.row / block_px,
                c.code,
                c.name.replace('"', "'")
            ));
        }
    }
    table
}

/// `accuracy.json`, `accuracy_classes.csv`, `confusion_matrix.csv` and `training_samples.csv` beside the model.
fn write_assessment(
    job: &TrainJob,
    assessment: &Assessment,
    table: String,
    block_px: usize,
) -> Result<Vec<PathBuf>> {
    let mut outputs = Vec::new();
    let acc_json = serde_json::json!({
        "carbonmap_version": crate::VERSION,
        // Relative to this file when the model is beside it, so the report does not depend on where the
        // output folder was written.
        "model": job.model.strip_prefix(&job.out_dir).unwrap_or(&job.model).display().to_string(),
        "held_out": format!("fold 1 of {} ({} m blocks, {block_px} pixels)", job.folds, job.block_size),
        "assessment": assessment,
    });
    for (name, bytes) in [
        (
            "accuracy.json",
            serde_json::to_vec_pretty(&acc_json).expect("JSON of plain values"),
        ),
        (
            "accuracy_classes.csv",
            assessment.classes_csv().into_bytes(),
        ),
        (
            "confusion_matrix.csv",
            assessment.confusion_csv().into_bytes(),
        ),
        ("training_samples.csv", table.into_bytes()),
    ] {
        let path = job.out_dir.join(name);
        io::write_atomic(&path, &bytes)?;
        outputs.push(path);
    }
    Ok(outputs)
}

/// `Forest::predict_rows` over chunks of rows in parallel (each row's result does not depend on the chunking).
fn predict_parallel(forest: &Forest, x: &[f32], class: &mut [usize], confidence: &mut [f32]) {
    const CHUNK: usize = 1024;
    let p = forest.n_features;
    x.par_chunks(CHUNK * p)
        .zip(class.par_chunks_mut(CHUNK))
        .zip(confidence.par_chunks_mut(CHUNK))
        .for_each(|((x, c), f)| forest.predict_rows(x, c, f));
}

/// A saved model with its sidecar, checked.
pub struct LoadedModel {
    pub forest: Forest,
    pub sidecar: Sidecar,
}

/// Load a model and its sidecar; a missing, damaged or mismatched file is an error naming it.
pub fn load_model(model: &Path) -> Result<LoadedModel> {
    let side = sidecar_path(model);
    let read = |p: &Path| io::read_text(p, "a carbonmap model (JSON)").map(String::into_bytes);
    let side_bytes = read(&side).map_err(|_| {
        Error::input(
            &side,
            "the model's sidecar is missing (`carbonmap landcover train` writes it beside the model)",
        )
    })?;
    let sidecar: Sidecar = serde_json::from_slice(&side_bytes)
        .map_err(|e| Error::input(&side, format!("is not a carbonmap model sidecar: {e}")))?;
    let bytes = read(model)?;
    if io::sha256_hex(&bytes) != sidecar.model_sha256 {
        return Err(Error::input(
            model,
            "corrupt or replaced model file: its SHA-256 differs from the one its sidecar records",
        ));
    }
    let forest: Forest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(model, format!("corrupt model file: {e}")))?;
    forest
        .validate()
        .map_err(|e| Error::input(model, format!("corrupt model file: {e}")))?;
    if forest.n_features != sidecar.features.len() || forest.n_classes != sidecar.classes.len() {
        return Err(Error::input(
            model,
            "corrupt model file: its feature or class count differs from the sidecar's",
        ));
    }
    Ok(LoadedModel { forest, sidecar })
}

/// What `carbonmap landcover predict` does.
#[derive(Debug, Clone)]
pub struct PredictJob {
    pub stack: PathBuf,
    pub grid: GridChoice,
    pub model: PathBuf,
    pub index_table: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub write: WriteOptions,
    pub memory_mb: usize,
}

#[derive(Debug, Clone)]
pub struct PredictSummary {
    pub class_raster: PathBuf,
    pub confidence_raster: PathBuf,
    pub area_table: PathBuf,
    pub areas: Vec<ClassArea>,
    pub unclassified_pixels: u64,
}

/// Compare the stack's features with the model's; every difference is listed.
fn check_features(model: &Path, side: &Sidecar, engine: &FeatureEngine) -> Result<()> {
    let mut problems = Vec::new();
    if engine.defs.len() != side.features.len() {
        problems.push(format!(
            "the stack gives {} features, the model expects {}",
            engine.defs.len(),
            side.features.len()
        ));
    }
    for (a, b) in side.features.iter().zip(&engine.defs) {
        if a.bands != b.bands {
            problems.push(format!(
                "feature {}: the model was trained with bands {:?} (sensor {}), the stack has {:?} (sensor {})",
                a.name, a.bands, side.sensor, b.bands, engine.stack.profile.name
            ));
        } else if a != b {
            problems.push(format!(
                "feature {}: the model's definition (formula {}, constants {:?}, {}) differs from this run's ({} , {:?}, {})",
                a.name, a.formula, a.constants, a.stat, b.formula, b.constants, b.stat
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", model.display()))
                .collect(),
        ))
    }
}

/// The stack must have every band the model's features read, under the same band names.
fn check_stack_bands(
    job: &PredictJob,
    sidecar: &Sidecar,
    stack: &crate::scene::Stack,
) -> Result<()> {
    let mut problems = Vec::new();
    for f in &sidecar.features {
        for (letter, name) in &f.bands {
            match stack.band_name(letter) {
                None => problems.push(format!(
                    "{}: the model reads band {letter} ({name} of sensor {}) for feature {}, which stack {} (sensor {}) lacks",
                    job.model.display(), sidecar.sensor, f.name, job.stack.display(), stack.profile.name
                )),
                Some(n) if n != name => problems.push(format!(
                    "{}: the model reads band {letter} as {name} (sensor {}) for feature {}; stack {} maps {letter} to {n} (sensor {})",
                    job.model.display(), sidecar.sensor, f.name, job.stack.display(), stack.profile.name
                )),
                _ => {}
            }
        }
    }
    problems.sort();
    problems.dedup();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// The features the model was trained on, from this stack (its problems headed by the model's feature list).
fn predict_engine(
    job: &PredictJob,
    sidecar: &Sidecar,
    stack: crate::scene::Stack,
) -> Result<FeatureEngine> {
    let engine = FeatureEngine::new(
        stack,
        &job.grid,
        &sidecar.feature_spec,
        job.index_table.as_deref(),
    )
    .map_err(|e| {
        let mut v = e.into_problems();
        let names: Vec<&str> = sidecar.features.iter().map(|f| f.name.as_str()).collect();
        v.insert(
            0,
            format!(
                "{}: the stack does not give the features model {} was trained on ({}):",
                job.stack.display(),
                job.model.display(),
                names.join(", ")
            ),
        );
        Error::Invalid(v)
    })?;
    check_features(&job.model, sidecar, &engine)?;
    Ok(engine)
}

/// The class raster (Byte, or UInt16 for codes above 255, with the classes' names and colours) and the
/// confidence raster, with the model's provenance.
fn predict_writers(
    job: &PredictJob,
    sidecar: &Sidecar,
    grid: &Grid,
) -> Result<(RasterWriter, RasterWriter, bool)> {
    let max_code = sidecar.classes.iter().map(|c| c.code).max().unwrap_or(0);
    let wide = max_code > u8::MAX as u16;
    let join = |v: Vec<String>, sep: &str| v.join(sep);
    let mut md = BTreeMap::new();
    md.insert("CARBONMAP_VERSION".to_string(), crate::VERSION.to_string());
    md.insert("MODEL".into(), job.model.display().to_string());
    md.insert("MODEL_SHA256".into(), sidecar.model_sha256.clone());
    md.insert("CLASSIFIER".into(), format!("{:?}", sidecar.kind));
    md.insert("STACK".into(), job.stack.display().to_string());
    let features = sidecar.features.iter().map(|f| f.name.clone()).collect();
    md.insert("FEATURES".into(), join(features, ","));
    let classes = sidecar
        .classes
        .iter()
        .map(|c| format!("{}={}", c.code, c.name))
        .collect();
    md.insert("CLASSES".into(), join(classes, ";"));
    let class_band = [OutBand {
        description: "land-cover class (0 = no data: a feature has no clear observation)".into(),
        unit: "class code".into(),
    }];
    let class_path = job.out_dir.join("landcover.tif");
    let mut cw = if wide {
        RasterWriter::create::<u16>(&class_path, grid, &class_band, Some(0.0), &md, &job.write)?
    } else {
        RasterWriter::create::<u8>(&class_path, grid, &class_band, Some(0.0), &md, &job.write)?
    };
    let cats: Vec<(u16, String, (u8, u8, u8))> = sidecar
        .classes
        .iter()
        .map(|c| {
            let rgb = landcover::hex_rgb(&c.color).unwrap_or((128, 128, 128));
            (c.code, c.name.clone(), rgb)
        })
        .collect();
    cw.set_categories(0, &cats)?;
    let conf_band = [OutBand {
        description: "classifier confidence: mean tree probability of the predicted class".into(),
        unit: "1".into(),
    }];
    let conf_path = job.out_dir.join("landcover_confidence.tif");
    let fw = RasterWriter::create::<f32>(&conf_path, grid, &conf_band, None, &md, &job.write)?;
    Ok((cw, fw, wide))
}

/// Pixels and true area per class, and the pixels without a class.
struct PredictCounts {
    pixels: Vec<u64>,
    area_m2: Vec<f64>,
    unclassified: u64,
}

/// A strip's classes and confidences from its feature planes (`[feature][pixel]`): the class raster's codes
/// (0 without data) and the confidence, and each pixel's class index (`usize::MAX` without data) for the counts.
fn predict_strip(
    forest: &Forest,
    sidecar: &Sidecar,
    wide: bool,
    planes: Vec<Vec<f32>>,
) -> StripOut<Vec<usize>> {
    let (p, npx) = (planes.len(), planes.first().map_or(0, Vec::len));
    // Pixel rows of features.
    let mut x = vec![0f32; npx * p];
    for (fi, pl) in planes.iter().enumerate() {
        for (px, v) in pl.iter().enumerate() {
            x[px * p + fi] = *v;
        }
    }
    let mut cls = vec![usize::MAX; npx];
    let mut conf = vec![f32::NAN; npx];
    predict_parallel(forest, &x, &mut cls, &mut conf);
    let codes = cls
        .iter()
        .map(|&ci| sidecar.classes.get(ci).map_or(0, |c| c.code));
    let class_plane: Plane = if wide {
        codes.collect::<Vec<u16>>().into()
    } else {
        codes.map(|c| c as u8).collect::<Vec<u8>>().into()
    };
    StripOut {
        planes: vec![vec![class_plane], vec![conf.into()]],
        side: cls,
    }
}

pub fn predict(job: &PredictJob, progress: &dyn Progress) -> Result<PredictSummary> {
    let LoadedModel { forest, sidecar } = load_model(&job.model)?;
    let stack = crate::scene::Stack::open(&job.stack)?;
    check_stack_bands(job, &sidecar, &stack)?;
    let engine = predict_engine(job, &sidecar, stack)?;
    let grid = engine.grid.clone();
    let (cw, fw, wide) = predict_writers(job, &sidecar, &grid)?;
    let areas = crate::area::PixelAreas::of(&grid)?;
    let n = sidecar.classes.len();
    let mut counts = PredictCounts {
        pixels: vec![0; n],
        area_m2: vec![0.0; n],
        unclassified: 0,
    };
    let readers = engine.readers()?;
    // Two strips are in flight: the one classified and the one read beside it; the budget holds both.
    let rows = engine.strip_rows((job.memory_mb / 2).max(1));
    let mut writers = [cw, fw];
    let read = |s: Window| engine.strip(&readers, s.row0, s.nrows);
    let kernel =
        |_: Window, planes: Vec<Vec<f32>>| Ok(predict_strip(&forest, &sidecar, wide, planes));
    crate::engine::run::run(
        "predict",
        crate::engine::run::strips(grid.width, grid.height, rows),
        &mut writers,
        progress,
        (read, kernel),
        |s, cls: Vec<usize>| {
            for (i, &ci) in cls.iter().enumerate() {
                if ci == usize::MAX {
                    counts.unclassified += 1;
                } else {
                    counts.pixels[ci] += 1;
                    counts.area_m2[ci] += areas.at(i % grid.width, s.row0 + i / grid.width);
                }
            }
        },
    )?;
    drop(readers);
    let [cw, fw] = writers;
    let (class_raster, confidence_raster) = (cw.target().to_path_buf(), fw.target().to_path_buf());
    let pending = [cw.finish()?, fw.finish()?];
    let areas: Vec<ClassArea> = sidecar
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| ClassArea {
            code: c.code as i64,
            name: c.name.clone(),
            vegetation_type: c.vegetation_type.clone(),
            pixels: counts.pixels[i],
            area_ha: counts.area_m2[i] / 1e4,
        })
        .collect();
    for pnd in pending {
        pnd.commit()?;
    }
    let area_path = job.out_dir.join("landcover_area.csv");
    io::write_atomic(&area_path, landcover::area_table_csv(&areas).as_bytes())?;
    Ok(PredictSummary {
        class_raster,
        confidence_raster,
        area_table: area_path,
        areas,
        unclassified_pixels: counts.unclassified,
    })
}
