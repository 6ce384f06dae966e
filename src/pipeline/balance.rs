//! Fusion of a carbon-sink raster with an emission lattice into net carbon balance (`carbonmap balance`), and
//! mass-conserving regridding between any two grids (`carbonmap regrid`).
//!
//! Both directions use the exact area-weighted overlaps of `lattice::overlap`:
//! - the sink (t CO2 yr-1 per pixel = density x the pixel's true area) is split over lattice cells by the share
//!   of each pixel's area inside each cell;
//! - each cell's emissions are spread over the fine pixels that cover it, uniformly by area or weighted by a
//!   proxy (built-up classes, for example). A cell only partly covered by the fine grid gives that part its area
//!   share of the cell's emissions (assumed uniform over the cell), spread by the proxy within it.
//!
//! Sign convention, written into every output: net balance = emissions - sequestration, positive = net source;
//! neutrality ratio = sequestration / emissions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Problems, Result};

mod draws;
mod indicators;
mod regrid;
mod scale;
mod tables;
pub use regrid::{percent_of, run_regrid, RegridJob, RegridSummary};
use tables::{cells_table, write_zones_gpkg, zone_table_rows, zones_table, CellRow, Indicators};
pub(crate) mod sector_params;
mod whole_cells;
use crate::engine::run::{Plane, StripOut};
use crate::io::{
    self, BandRequest, Grid, GridReader, OutBand, RasterWriter, Resampling, Window, WriteOptions,
};
use crate::lattice::overlap::{Overlapper, Spread, StripOverlap};
use crate::lattice::{Lattice, LatticeSpec};
use crate::progress::Progress;
use crate::report::{self, MapText, Preview};
use crate::units::{CarbonUnit, DENSITY_OUT, MASS_OUT};
use crate::zones::{ZoneSpec, Zones, OUTSIDE};
pub use indicators::PopulationSpec;
pub use scale::EmissionFactor;

pub const SIGN_CONVENTION: &str = "net balance = emissions - sequestration; positive = net source (emissions exceed sequestration), negative = net sink; neutrality ratio = sequestration / emissions";

/// A proxy for spreading emissions within a cell: land-cover classes with weights, or a weight raster.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub path: PathBuf,
    pub band: usize,
    /// (class code, weight); empty = the raster's values are the weights.
    pub classes: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct BalanceJob {
    pub sink: PathBuf,
    pub sink_band: usize,
    /// Unit of the sink raster when the file does not declare one (or to override a period total).
    pub sink_unit: Option<String>,
    pub lattice: LatticeSpec,
    pub proxy: Option<ProxySpec>,
    pub zones: Option<ZoneSpec>,
    /// Population for per-person indicators, and per-zone targets (see `indicators`).
    pub population: Option<PopulationSpec>,
    pub targets: Option<PathBuf>,
    /// A previous run's zones_balance.csv, for the change since then (missing: a warning).
    pub previous: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub write: WriteOptions,
    /// A scenario's emission changes (empty: the lattice as given).
    pub emission_factors: Vec<EmissionFactor>,
    /// The sink's name in the outputs' metadata when `sink` is a working file (a scenario's).
    pub sink_label: Option<String>,
    /// Monte Carlo over emission sectors' and the sink's relative errors (`--draws`).
    pub draws: Option<crate::pipeline::npp::draws::DrawSpec>,
}

#[derive(Debug, Clone)]
pub struct BalanceSummary {
    pub outputs: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Totals over the sink raster, t CO2 yr-1.
    pub emissions_t: f64,
    pub sequestration_t: f64,
    /// Share of the sink raster's area outside the lattice (or in lattice cells without data).
    pub uncovered_fraction: f64,
}

/// Check emission changes against the lattice's sectors and the zones (on `grid`), before anything is computed.
pub fn check_emission_factors(
    list: &[EmissionFactor],
    lattice: &LatticeSpec,
    zones: Option<&ZoneSpec>,
    grid: &Grid,
) -> Result<()> {
    let lat = Lattice::load(lattice)?;
    let z = zones.map(|z| Zones::load(z, grid)).transpose()?;
    scale::Factors::resolve(list, &lat.sectors, z.as_ref(), grid, &lattice.path).map(|_| ())
}

/// The sink raster's unit: declared by the user, by the band, or by carbonmap's own UNITS tag.
fn sink_unit(job: &BalanceJob, info: &io::RasterInfo) -> Result<CarbonUnit> {
    let band = info.band(job.sink_band)?;
    let declared = job
        .sink_unit
        .clone()
        .or_else(|| Some(band.unit.clone()).filter(|u| !u.trim().is_empty()))
        .or_else(|| info.metadata.get("UNITS").cloned())
        .ok_or_else(|| {
            Error::input(
                &job.sink,
                "the sink raster's unit is not declared: give --sink-unit (for example \"t CO2 ha-1 yr-1\")",
            )
        })?;
    if let Some(period) = declared.split("per period").nth(1) {
        return Err(Error::input(
            &job.sink,
            format!(
                "the sink is a total over the period{period} (unit \"{declared}\"), not a rate per year, and emissions are per year; run `carbonmap npp --months 1-12` for an annual sink, or declare --sink-unit \"t CO2 ha-1 yr-1\" to take the period's total as the year's (this is written into the outputs)"
            ),
        ));
    }
    CarbonUnit::parse_for(&declared, &job.sink)
}

struct Prepared {
    grid: Grid,
    sink_unit: CarbonUnit,
    sink_nodata: Option<f64>,
    lattice: Lattice,
    proxy: Option<ProxyReader>,
    zones: Option<Zones>,
    population: Option<indicators::Population>,
    targets: Option<indicators::Targets>,
    previous: Option<indicators::Previous>,
    factors: Option<scale::Factors>,
    /// `--draws`: the uncertainty file, read and checked before any computing (the draws use this copy).
    uncertainty: Option<crate::pipeline::npp::draws::UncertaintyFile>,
    /// `--draws` with an allocation error that varies between cells: zones keep their emissions per cell.
    per_cell: bool,
}

fn prepare(job: &BalanceJob) -> Result<Prepared> {
    let mut problems = Problems::new();
    let info = problems.take(io::RasterInfo::read(&job.sink));
    let grid = info.as_ref().and_then(|i| problems.take(i.grid()));
    let unit = info.as_ref().and_then(|i| problems.take(sink_unit(job, i)));
    if info.is_some() {
        // A sink with no valid pixel would make every place a "net source" with sequestration 0.
        if let Ok(false) = io::has_valid_pixel(&job.sink, job.sink_band) {
            problems.push(Error::band(
                &job.sink,
                job.sink_band.to_string(),
                "has no valid pixel (every pixel is nodata or NaN): there is no sink to balance",
            ));
        }
    }
    let lattice = problems.take(Lattice::load(&job.lattice));
    if let (Some(g), Some(l)) = (&grid, &lattice) {
        let sb = io::transform_bounds(&g.crs_wkt, &l.grid.crs_wkt, g.bounds());
        let lb = l.grid.bounds();
        match sb {
            Ok(b) if b[0] < lb[2] && b[2] > lb[0] && b[1] < lb[3] && b[3] > lb[1] => {}
            Ok(b) => problems.push(Error::input(
                &job.lattice.path,
                format!(
                    "the lattice (bounds {:.4?} in its CRS) and the sink raster {} (bounds {:.4?} in the lattice's CRS) do not overlap",
                    lb,
                    job.sink.display(),
                    b
                ),
            )),
            Err(e) => problems.push(e),
        }
    }
    let proxy = match (&job.proxy, &grid) {
        (Some(p), Some(g)) => problems.take(ProxyReader::open(p, g)),
        _ => None,
    };
    let zones = match (&job.zones, &grid) {
        (Some(z), Some(g)) => problems.take(Zones::load(z, g)),
        _ => None,
    };
    let population = match (&job.population, &grid) {
        (Some(s), Some(g)) => problems.take(indicators::Population::open(s, g)),
        _ => None,
    };
    let targets = match &job.targets {
        Some(t) if job.zones.is_none() || zones.is_some() => {
            problems.take(indicators::Targets::load(t, zones.as_ref()))
        }
        _ => None,
    };
    let previous = match &job.previous {
        Some(p) => problems.take(indicators::Previous::load(p)).flatten(),
        None => None,
    };
    let factors = match (&lattice, &grid) {
        (Some(l), Some(g)) if job.zones.is_none() || zones.is_some() => problems
            .take(scale::Factors::resolve(
                &job.emission_factors,
                &l.sectors,
                zones.as_ref(),
                g,
                &job.lattice.path,
            ))
            .flatten(),
        _ => None,
    };
    let uncertainty = match (&job.draws, &lattice) {
        (Some(spec), Some(l)) => problems.take(draws_sectors(spec, l)),
        _ => None,
    };
    let per_cell = uncertainty.as_ref().is_some_and(|f| {
        f.parameters
            .iter()
            .any(|p| p.target == "emissions" && p.length_km.is_some())
    });
    problems.finish()?;
    Ok(Prepared {
        uncertainty,
        per_cell,
        factors,
        population,
        targets,
        previous,
        sink_nodata: info
            .as_ref()
            .and_then(|i| i.bands[job.sink_band - 1].nodata),
        grid: grid.expect("checked"),
        sink_unit: unit.expect("checked"),
        lattice: lattice.expect("checked"),
        proxy,
        zones,
    })
}

/// `--draws`: the uncertainty file, checked before any computing, and every sector a user's file names a
/// sector of the lattice (a misspelt sector would silently go without its error). A built-in file's sector
/// entries name one inventory's sectors (documented in the file) and apply where a lattice has them.
fn draws_sectors(
    spec: &crate::pipeline::npp::draws::DrawSpec,
    lattice: &Lattice,
) -> Result<crate::pipeline::npp::draws::UncertaintyFile> {
    let (f, path) = crate::pipeline::npp::draws::UncertaintyFile::resolve(&spec.file)?;
    if crate::models::is_user_file(&spec.file.to_string_lossy()) {
        sector_params::check_named(&f.parameters, &path, &lattice.path, &lattice.sectors)?;
    }
    Ok(f)
}

/// Per-zone sums.
#[derive(Debug, Clone, Default)]
struct ZoneAcc {
    pixels: u64,
    area_m2: f64,
    valid_area_m2: f64,
    emissions: Vec<f64>,
    sequestration: f64,
    /// Persons (with a population raster).
    population: f64,
    /// Area of the zones' polygons, and of their part inside the sink raster (planar, in the zones' CRS; for
    /// the share measured).
    shape_area: f64,
    shape_area_inside: f64,
    /// With an allocation error that varies between cells (`sector_params::CellField`): per lattice cell, the
    /// zone's emissions from it per sector (t CO2 yr-1); empty otherwise.
    by_cell: BTreeMap<usize, Vec<f64>>,
}

impl ZoneAcc {
    /// Emissions from cells, per sector (cell, then its sectors): one pixel's pieces, or another zone's sums.
    fn add_cells<'e>(&mut self, pieces: impl IntoIterator<Item = (usize, &'e [f64])>) {
        for (c, e) in pieces {
            let acc = self.by_cell.entry(c).or_insert_with(|| vec![0.0; e.len()]);
            acc.iter_mut().zip(e).for_each(|(a, b)| *a += b);
        }
    }

    /// One pixel of true area `area_m2`: its emissions per sector (None = unknown) and its sink mass (NaN =
    /// no data), t CO2 yr-1.
    fn add_pixel(&mut self, area_m2: f64, emissions: Option<&[f64]>, sink: f64, persons: f64) {
        self.pixels += 1;
        self.population += persons;
        self.area_m2 += area_m2;
        if let Some(e) = emissions {
            if self.emissions.len() < e.len() {
                self.emissions.resize(e.len(), 0.0);
            }
            for (a, b) in self.emissions.iter_mut().zip(e) {
                *a += b;
            }
        }
        if sink.is_finite() {
            self.valid_area_m2 += area_m2;
            self.sequestration += sink;
        }
    }

    fn add(&mut self, other: &ZoneAcc) {
        self.pixels += other.pixels;
        self.area_m2 += other.area_m2;
        self.valid_area_m2 += other.valid_area_m2;
        if self.emissions.len() < other.emissions.len() {
            self.emissions.resize(other.emissions.len(), 0.0);
        }
        for (a, b) in self.emissions.iter_mut().zip(&other.emissions) {
            *a += b;
        }
        self.sequestration += other.sequestration;
        self.population += other.population;
        self.shape_area += other.shape_area;
        self.shape_area_inside += other.shape_area_inside;
        self.add_cells(other.by_cell.iter().map(|(c, e)| (*c, e.as_slice())));
    }

    /// Share of the zone's area inside the sink raster (NaN without polygons: raster zones, the whole area).
    fn share_measured(&self) -> f64 {
        if self.shape_area > 0.0 {
            self.shape_area_inside / self.shape_area
        } else {
            f64::NAN
        }
    }
}

/// Read one strip of the sink as t CO2 yr-1 per pixel (NaN = no data).
fn sink_mass(
    reader: &GridReader,
    p: &Prepared,
    areas: &[f64],
    row0: usize,
    nrows: usize,
) -> Result<Vec<f64>> {
    let w = p.grid.width;
    let mut v = vec![0f64; w * nrows];
    reader.read_rows(0, row0, nrows, &mut v)?;
    // Each pixel on its own (no sum): the same values on any thread count.
    let (nodata, unit) = (p.sink_nodata, &p.sink_unit);
    v.par_iter_mut().zip(areas).for_each(|(x, &a)| {
        *x = if !x.is_finite() || nodata == Some(*x) {
            f64::NAN
        } else {
            unit.to_tco2_yr(*x, a)
        };
    });
    Ok(v)
}

/// The true area (m2) of every pixel of a strip, computed in parallel (each pixel on its own).
fn strip_areas(
    areas: &crate::area::PixelAreas,
    width: usize,
    row0: usize,
    nrows: usize,
) -> Vec<f64> {
    (0..width * nrows)
        .into_par_iter()
        .map(|i| areas.at(i % width, row0 + i / width))
        .collect()
}

/// A proxy raster on the fine grid, read strip by strip as weights.
struct ProxyReader {
    reader: GridReader,
    spec: ProxySpec,
    width: usize,
}

impl ProxyReader {
    fn open(spec: &ProxySpec, grid: &Grid) -> Result<ProxyReader> {
        let continuous = spec.classes.is_empty();
        let reader = GridReader::new(
            &spec.path,
            &[BandRequest {
                index: spec.band.max(1),
                name: format!("proxy (band {})", spec.band.max(1)),
            }],
            grid,
            if continuous {
                Resampling::Average
            } else {
                Resampling::Nearest
            },
            None,
            if continuous { f64::NAN } else { -1.0 },
        )?;
        Ok(ProxyReader {
            reader,
            spec: spec.clone(),
            width: grid.width,
        })
    }

    /// Weights of rows `row0 .. row0 + nrows`: the class weights (0 for other classes), or the raster's
    /// values (0 where negative or no data).
    fn weights(&self, row0: usize, nrows: usize) -> Result<Vec<f64>> {
        let n = self.width * nrows;
        if self.spec.classes.is_empty() {
            let mut v = vec![0f64; n];
            self.reader.read_rows(0, row0, nrows, &mut v)?;
            Ok(v.into_iter()
                .map(|x| if x.is_finite() && x > 0.0 { x } else { 0.0 })
                .collect())
        } else {
            let mut v = vec![0i64; n];
            self.reader.read_rows(0, row0, nrows, &mut v)?;
            Ok(v.into_iter()
                .map(|c| {
                    self.spec
                        .classes
                        .iter()
                        .find(|(k, _)| *k == c)
                        .map_or(0.0, |(_, w)| *w)
                })
                .collect())
        }
    }
}

/// The sink covers less than this share of the lattice cells it draws emissions from: a warning says so (the
/// area's emissions then depend on how each cell is spread). models/balance.toml.
fn low_cell_coverage() -> Result<f64> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Thresholds {
        low_cell_coverage: f64,
        #[allow(dead_code)]
        citation: String,
    }
    let rel = "balance.toml";
    let t: Thresholds = crate::models::parse_toml(
        crate::models::embedded(rel).expect("embedded"),
        &crate::models::embedded_path(rel),
    )?;
    Ok(t.low_cell_coverage)
}

/// With a proxy that covers the touched lattice cells beyond the sink raster, spread each cell by the proxy
/// over the whole cell; warn when the sink covers little of the cells it draws from. Returns the note for the
/// outputs' DOWNSCALING metadata.
#[allow(clippy::too_many_arguments)]
fn spread_whole_cells(
    job: &BalanceJob,
    p: &Prepared,
    lat: &Lattice,
    ov: &Overlapper,
    spread: &mut Spread,
    usable: &[bool],
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> Result<String> {
    let touched: Vec<bool> = (0..usable.len())
        .map(|c| usable[c] && spread.covered(c) > 0.0)
        .collect();
    let (n, mut cov) = (touched.iter().filter(|t| **t).count(), 0.0);
    for c in (0..touched.len()).filter(|&c| touched[c]) {
        cov += spread.coverage(c) / n as f64;
    }
    let mut warn = |m: String| {
        progress.warn(&m);
        warnings.push(m);
    };
    let note = match (&job.proxy, &p.proxy) {
        (Some(spec), Some(_)) => match whole_cells::weights(spec, lat, &ov.space, &touched)? {
            Ok(w) => {
                spread.use_whole_cells(w);
                "; each lattice cell spread by the proxy over the whole cell (the proxy covers the cells beyond the sink raster)".to_string()
            }
            Err(why) => {
                if cov < 1.0 {
                    warn(format!("{why}: each cell's emissions are spread over the part of it the sink covers, in proportion to that part's area share"));
                }
                "; within the sink raster's part of each lattice cell (the proxy does not cover the whole cells)".to_string()
            }
        },
        _ => String::new(),
    };
    if n > 0 && cov < low_cell_coverage()? {
        warn(format!(
            "the sink raster covers on average {:.1}% of the {n} lattice cell(s) it draws emissions from: the area's emissions depend on how each cell's emissions are spread{}",
            100.0 * cov,
            if spread_is_whole(spread, &touched) { " (here by the proxy over whole cells)" } else { "; a proxy raster covering the whole cells spreads them by what is inside and outside the area" }
        ));
    }
    Ok(note)
}

fn spread_is_whole(spread: &Spread, touched: &[bool]) -> bool {
    (0..touched.len()).any(|c| touched[c] && spread.whole_cell(c))
}

fn proxy_weights(
    proxy: &Option<ProxyReader>,
    row0: usize,
    nrows: usize,
) -> Result<Option<Vec<f64>>> {
    proxy.as_ref().map(|p| p.weights(row0, nrows)).transpose()
}

/// What pass 1 of `balance` gathers per lattice cell: the fine grid's cover and proxy weight (`spread`), the
/// measuring area with a valid sink value, the sink's mass (t CO2 yr-1); and the sink's true area in all and
/// outside usable cells (m2).
struct Pass1 {
    spread: Spread,
    valid: Vec<f64>,
    seq: Vec<f64>,
    area_total: f64,
    area_uncovered: f64,
}

/// Pass 1: what each lattice cell receives from the sink, how much of it the fine grid covers, and the
/// proxy's weight in it.
fn sink_onto_lattice(
    p: &Prepared,
    ov: &Overlapper,
    areas: &crate::area::PixelAreas,
    sink_reader: &GridReader,
    usable: &[bool],
    progress: &dyn Progress,
) -> Result<Pass1> {
    let grid = &p.grid;
    let ncell = usable.len();
    let mut r = Pass1 {
        spread: Spread::new(ncell),
        valid: vec![0f64; ncell],
        seq: vec![0f64; ncell],
        area_total: 0.0,
        area_uncovered: 0.0,
    };
    // The sums run in pixel order on the calling thread; the next strip's overlaps are computed beside them.
    let kernel = |w: Window, (s, a): (StripOverlap, Vec<f64>)| {
        let m = sink_mass(sink_reader, p, &a, w.row0, w.nrows)?;
        let wts = proxy_weights(&p.proxy, w.row0, w.nrows)?;
        for i in 0..w.len() {
            let ap = s.pixel_area[i];
            let a_true = a[i];
            r.area_total += a_true;
            let mut inside = 0.0;
            for (c, a) in s.pieces(i) {
                if !usable[c] {
                    continue;
                }
                inside += a;
                r.spread.add(c, a, wts.as_ref().map_or(1.0, |w| w[i]));
                if m[i].is_finite() {
                    r.valid[c] += a;
                    r.seq[c] += m[i] * a / ap;
                }
            }
            if ap.is_finite() && ap > 0.0 {
                r.area_uncovered += a_true * (1.0 - inside / ap).max(0.0);
            } else {
                r.area_uncovered += a_true;
            }
        }
        Ok(StripOut::none())
    };
    crate::engine::run::run(
        "balance: sink onto the lattice",
        pass_strips(grid),
        &mut [],
        progress,
        (overlaps_reader(ov, areas), kernel),
        |_, ()| {},
    )?;
    r.spread.finish(&ov.space);
    Ok(r)
}

/// The windows of both passes: full-width strips of `strip_rows` rows.
fn pass_strips(grid: &Grid) -> Vec<Window> {
    crate::engine::run::strips(grid.width, grid.height, strip_rows(grid))
}

/// The reader of both passes: a strip's overlaps with the lattice and its pixels' true areas (m2), computed
/// (in parallel inside) beside the previous strip's sums and writing. Every strip's values are computed on
/// their own, so the outputs do not depend on the overlap in time; two strips' overlaps are held at once.
fn overlaps_reader<'a>(
    ov: &'a Overlapper,
    areas: &'a crate::area::PixelAreas,
) -> impl FnMut(Window) -> Result<(StripOverlap, Vec<f64>)> + Send + 'a {
    move |w: Window| {
        let s = ov.strip(w.row0, w.nrows)?;
        Ok((s, strip_areas(areas, w.ncols, w.row0, w.nrows)))
    }
}

/// Metadata every `balance` raster carries: version, sign convention, inputs with their declared units and
/// the downscaling method (`whole_cells`: how cells were spread, from `spread_whole_cells`).
fn balance_metadata(job: &BalanceJob, p: &Prepared, whole_cells: &str) -> BTreeMap<String, String> {
    let lat = &p.lattice;
    let mut md = BTreeMap::new();
    md.insert("CARBONMAP_VERSION".to_string(), crate::VERSION.to_string());
    md.insert("SIGN_CONVENTION".into(), SIGN_CONVENTION.into());
    md.insert(
        "SINK".into(),
        job.sink_label
            .clone()
            .unwrap_or_else(|| job.sink.display().to_string()),
    );
    if !job.emission_factors.is_empty() {
        let list: Vec<String> = job
            .emission_factors
            .iter()
            .map(EmissionFactor::describe)
            .collect();
        md.insert("EMISSION_CHANGES".into(), list.join("; "));
    }
    md.insert("SINK_UNIT_DECLARED".into(), p.sink_unit.text.clone());
    md.insert("LATTICE".into(), lat.path.display().to_string());
    md.insert("LATTICE_UNIT_DECLARED".into(), lat.unit.text.clone());
    md.insert("LATTICE_SECTORS".into(), lat.sectors.join(","));
    md.insert(
        "DOWNSCALING".into(),
        match &job.proxy {
            None => "uniform by area within each lattice cell (exact area-weighted overlap)".into(),
            Some(px) if px.classes.is_empty() => {
                format!(
                    "weighted by proxy raster {}{whole_cells}",
                    px.path.display()
                )
            }
            Some(px) => format!(
                "weighted by proxy classes {} of {}{whole_cells}",
                px.classes
                    .iter()
                    .map(|(c, w)| format!("{c}={w}"))
                    .collect::<Vec<_>>()
                    .join(","),
                px.path.display()
            ),
        },
    );
    md.insert(
        "UNITS_C_TO_CO2".into(),
        format!("{} (models/units.toml)", crate::units::co2_per_c()),
    );
    md
}

/// The window of lattice cells the fine grid touches (a raster grid) and its cells, row-major.
fn touched_window(lat: &Lattice, spread: &Spread) -> (Grid, Vec<usize>) {
    let ncell = lat.cells();
    let lw = lat.grid.width;
    let touched: Vec<usize> = (0..ncell).filter(|&c| spread.covered(c) > 0.0).collect();
    let (r0, r1) = (
        touched.iter().map(|c| c / lw).min().unwrap_or(0),
        touched.iter().map(|c| c / lw).max().unwrap_or(0),
    );
    let (c0, c1) = (
        touched.iter().map(|c| c % lw).min().unwrap_or(0),
        touched.iter().map(|c| c % lw).max().unwrap_or(0),
    );
    let win = Grid {
        crs_wkt: lat.grid.crs_wkt.clone(),
        gt: [
            lat.grid.gt[0] + c0 as f64 * lat.grid.gt[1],
            lat.grid.gt[1],
            0.0,
            lat.grid.gt[3] + r0 as f64 * lat.grid.gt[5],
            0.0,
            lat.grid.gt[5],
        ],
        width: c1 - c0 + 1,
        height: r1 - r0 + 1,
    };
    let cells = (r0..=r1)
        .flat_map(|r| (c0..=c1).map(move |c| r * lw + c))
        .collect();
    (win, cells)
}

/// `lattice_balance.tif`: per cell of the window, each sector's and the total emissions of the whole cell,
/// the coverage, and the covered part's emissions, sequestration, net balance and ratio.
fn lattice_raster(
    job: &BalanceJob,
    lat: &Lattice,
    win: &Grid,
    cell_rows: &[CellRow],
    md: &BTreeMap<String, String>,
) -> Result<RasterWriter> {
    let nsec = lat.sectors.len();
    let lat_path = job.out_dir.join("lattice_balance.tif");
    let mut lat_bands: Vec<OutBand> = lat
        .sectors
        .iter()
        .map(|s| OutBand {
            description: format!("emissions {s} (whole cell)"),
            unit: format!("{MASS_OUT} per cell"),
        })
        .collect();
    for (d, u) in [
        (
            "emissions total (whole cell)",
            format!("{MASS_OUT} per cell"),
        ),
        (
            "coverage fraction (cell area covered by the sink raster)",
            "1".into(),
        ),
        (
            "emissions in the covered part",
            format!("{MASS_OUT} per cell"),
        ),
        (
            "sequestration in the covered part",
            format!("{MASS_OUT} per cell"),
        ),
        (
            "net balance in the covered part (emissions - sequestration)",
            format!("{MASS_OUT} per cell"),
        ),
        ("neutrality ratio (sequestration / emissions)", "1".into()),
    ] {
        lat_bands.push(OutBand {
            description: d.into(),
            unit: u,
        });
    }
    let mut m_lat = md.clone();
    m_lat.insert(
        "QUANTITY".into(),
        "emissions, sequestration and net balance per lattice cell".into(),
    );
    m_lat.insert(
        "UNITS".into(),
        format!("{MASS_OUT} per cell (coverage and ratio: fractions)"),
    );
    // Its style and map show the net balance (band 1 is the first sector's emissions).
    m_lat.insert(crate::io::MAP_BAND.into(), (nsec + 5).to_string());
    let mut lat_w =
        RasterWriter::create::<f64>(&lat_path, win, &lat_bands, None, &m_lat, &job.write)?;
    let mut bandvals: Vec<Vec<f64>> = vec![Vec::with_capacity(cell_rows.len()); nsec + 6];
    for r in cell_rows {
        let c = r.cell;
        for k in 0..nsec {
            bandvals[k].push(lat.mass[k][c]);
        }
        let (net, ratio) = r.net_ratio();
        for (k, v) in [
            lat.total(c),
            r.coverage,
            r.emissions_covered,
            r.sequestration,
            net,
            ratio,
        ]
        .into_iter()
        .enumerate()
        {
            bandvals[nsec + k].push(if r.coverage > 0.0 || k < 2 {
                v
            } else {
                f64::NAN
            });
        }
    }
    for (k, v) in bandvals.into_iter().enumerate() {
        lat_w.write_rows(k, 0, v)?;
    }

    Ok(lat_w)
}

pub fn run_balance(job: &BalanceJob, progress: &dyn Progress) -> Result<BalanceSummary> {
    let p = prepare(job)?;
    let mut warnings: Vec<String> = p.lattice.warnings.clone();
    if let (Some(path), None) = (&job.previous, &p.previous) {
        warnings.push(format!(
            "no previous zone table at {} (the first season?): the zone table has no change columns",
            path.display()
        ));
    }
    for w in &warnings {
        progress.warn(w);
    }
    let grid = p.grid.clone();
    let lat = &p.lattice;
    let ncell = lat.cells();
    let ov = Overlapper::new(&grid, &lat.grid)?;
    let areas = crate::area::PixelAreas::of(&grid)?;
    let sink_reader = GridReader::new(
        &job.sink,
        &[BandRequest {
            index: job.sink_band,
            name: format!("sink (band {})", job.sink_band),
        }],
        &grid,
        Resampling::Bilinear,
        None,
        f64::NAN,
    )?;

    // Pass 1: what each lattice cell receives from the sink, how much of it the fine grid covers, and the
    // proxy's weight in it.
    // Cells with data (a vector lattice may lack cells; NaN in any sector = no data).
    let usable: Vec<bool> = (0..ncell)
        .map(|c| lat.has_cell(c) && !lat.total(c).is_nan())
        .collect();
    let Pass1 {
        mut spread,
        valid,
        seq,
        area_total,
        area_uncovered,
    } = sink_onto_lattice(&p, &ov, &areas, &sink_reader, &usable, progress)?;
    let uncovered_fraction = if area_total > 0.0 {
        area_uncovered / area_total
    } else {
        0.0
    };
    if uncovered_fraction > 1e-9 {
        let msg = uncovered_warning(uncovered_fraction, area_uncovered, lat);
        progress.warn(&msg);
        warnings.push(msg);
    }
    let whole_cells = spread_whole_cells(
        job,
        &p,
        lat,
        &ov,
        &mut spread,
        &usable,
        progress,
        &mut warnings,
    )?;
    if let Some(msg) = fallback_warning(&p, &spread) {
        progress.warn(&msg);
        warnings.push(msg);
    }

    // Pass 2: fine emissions and net balance, zone sums, the map preview.
    let md = balance_metadata(job, &p, &whole_cells);
    let (em_w, net_w) = fine_writers(job, &grid, lat, &md)?;
    let mut writers = [em_w, net_w];
    let style = report::net_balance_style()?;
    let mut preview = Preview::new(grid.width, grid.height, style.max_pixels);
    let (all, zone_acc, changed) = fine_pass(
        &p,
        (&ov, &areas, &sink_reader),
        (&spread, &usable),
        &mut writers,
        &mut preview,
        progress,
    )?;

    // The rasters and the lattice table, then the zone tables and the map.
    let mut outputs = lattice_outputs(
        job,
        lat,
        (&spread, &valid, &seq, changed.as_deref()),
        &md,
        writers,
    )?;
    let (zone_files, zone_shapes) = zone_outputs(job, &p, &all, &zone_acc)?;
    outputs.extend(zone_files);
    if let Some(spec) = &job.draws {
        let fine = (
            &spread,
            valid.as_slice(),
            seq.as_slice(),
            changed.as_deref(),
        );
        let totals = (&all, &zone_acc);
        let more = draws::outputs(job, &p, totals, fine, (spec, &outputs), progress)?;
        outputs.extend(more);
    }
    outputs.push(balance_map(job, &p, (&preview, &zone_shapes), &style)?);
    Ok(BalanceSummary {
        outputs,
        warnings,
        emissions_t: all.emissions.iter().sum(),
        sequestration_t: all.sequestration,
        uncovered_fraction,
    })
}

/// For rows `row0`..`row0 + nrows` of the fine grid, the lattice cell holding each pixel's centre (None
/// outside the lattice).
fn pixel_cells(
    grid: &Grid,
    lat: &Lattice,
    row0: usize,
    nrows: usize,
) -> Result<Vec<Option<usize>>> {
    let (mut xs, mut ys) = grid.pixel_centres(row0, nrows);
    if grid.crs_wkt != lat.grid.crs_wkt {
        io::transform_points(&grid.crs_wkt, &lat.grid.crs_wkt, &mut xs, &mut ys)?;
    }
    Ok(xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| {
            let (col, row) = lat.grid.pixel_of(x, y)?;
            Some(row * lat.grid.width + col)
        })
        .collect())
}

/// `--draws`: net_balance_tCO2_ha_yr_draws.tif, each pixel's net balance with mean, sd and 5/50/95th
/// percentiles of the draws: net_d = sum_k f_d(k) e_k - s_d q (f: `sector_params`), from the fine emission bands
/// (per sector) and the sink density q = total emissions - net balance. Runs on the engine: the reader reads
/// the fine rasters' strips, the kernel draws every pixel (in parallel).
fn draws_raster(
    job: &BalanceJob,
    p: &Prepared,
    outputs: &[PathBuf],
    (d, seed): (&crate::pipeline::npp::draws::Draws, u64),
    field: Option<&sector_params::CellField>,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let find = |name: &str| {
        outputs
            .iter()
            .find(|o| o.file_name().is_some_and(|n| n == name))
            .map(|o| crate::commit::readable(o))
            .ok_or_else(|| Error::Processing(format!("the balance wrote no {name}")))
    };
    let (em, net) = (
        find("emissions_tCO2_ha_yr.tif")?,
        find("net_balance_tCO2_ha_yr.tif")?,
    );
    let grid = &p.grid;
    let nsec = p.lattice.sectors.len();
    // Band 1 holds the total; with several sectors, bands 2.. hold each. The total is read last.
    let sector_bands: Vec<usize> = if nsec > 1 {
        (2..nsec + 2).collect()
    } else {
        vec![1]
    };
    let em_readers = sector_bands
        .iter()
        .chain([1usize].iter())
        .map(|&b| io::band_reader(&em, b, grid, f64::NAN))
        .collect::<Result<Vec<_>>>()?;
    let net_reader = io::band_reader(&net, 1, grid, f64::NAN)?;
    let read = move |w: Window| {
        let mut e = vec![vec![0f64; w.len()]; em_readers.len()];
        for (r, buf) in em_readers.iter().zip(e.iter_mut()) {
            r.read_rows(0, w.row0, w.nrows, buf)?;
        }
        let mut nb = vec![0f64; w.len()];
        net_reader.read_rows(0, w.row0, w.nrows, &mut nb)?;
        Ok((e, nb))
    };
    let draws = PixelDraws {
        d,
        ks: p
            .lattice
            .sectors
            .iter()
            .map(|s| d.emissions_params(s))
            .collect(),
        sk: d.sequestration_param(),
        field,
    };
    let kernel = |w: Window, (e, nb): (Vec<Vec<f64>>, Vec<f64>)| {
        // With an allocation field, each pixel's sectors under it take the multiplier of the cell that holds
        // the pixel's centre.
        let cells = match field {
            Some(_) => Some(pixel_cells(grid, &p.lattice, w.row0, w.nrows)?),
            None => None,
        };
        let stats = draws.strip(&e, &nb, cells.as_deref());
        let planes = (0..crate::pipeline::npp::draws::STATS.len())
            .map(|b| Plane::from(stats.iter().map(|s| s[b] as f32).collect::<Vec<_>>()))
            .collect();
        Ok(StripOut {
            planes: vec![planes],
            side: (),
        })
    };
    let rows = crate::engine::strips::rows(
        grid.width,
        grid.height,
        8 * (nsec + 2) + 8 * d.n.min(64),
        20,
        64,
    );
    let mut writers = [draws_writer(job, grid, d, seed)?];
    crate::engine::run::run(
        "balance: draws",
        crate::engine::run::strips(grid.width, grid.height, rows),
        &mut writers,
        progress,
        (read, kernel),
        |_, ()| {},
    )?;
    let [w] = writers;
    w.finish()?.commit()
}

/// The writer of net_balance_tCO2_ha_yr_draws.tif: one band per statistic of the draws.
fn draws_writer(
    job: &BalanceJob,
    grid: &Grid,
    d: &crate::pipeline::npp::draws::Draws,
    seed: u64,
) -> Result<RasterWriter> {
    use crate::pipeline::npp::draws::STATS;
    let bands: Vec<OutBand> = STATS
        .iter()
        .map(|s| OutBand {
            description: format!("net balance {s} of {} draws", d.n),
            unit: DENSITY_OUT.to_string(),
        })
        .collect();
    let mut md = BTreeMap::new();
    md.insert("SIGN_CONVENTION".to_string(), SIGN_CONVENTION.to_string());
    md.insert(
        "DRAWS".to_string(),
        format!("{} draws, seed {}, of {}", d.n, seed, d.path.display()),
    );
    let target = job.out_dir.join("net_balance_tCO2_ha_yr_draws.tif");
    RasterWriter::create::<f32>(&target, grid, &bands, None, &md, &job.write)
}

/// The draws of every pixel's net balance: the draws, each sector's and the sequestration's parameters, and
/// the allocation field when there is one.
struct PixelDraws<'a> {
    d: &'a crate::pipeline::npp::draws::Draws,
    ks: Vec<sector_params::SectorParams>,
    sk: Option<usize>,
    field: Option<&'a sector_params::CellField>,
}

impl PixelDraws<'_> {
    /// The draws' statistics of a strip's pixels (in parallel, each on its own) from the sectors' fine
    /// emissions `e` (the sectors', then the total) and the net balance `nb`; `cells`: each pixel's cell
    /// under the allocation field.
    fn strip(&self, e: &[Vec<f64>], nb: &[f64], cells: Option<&[Option<usize>]>) -> Vec<[f64; 5]> {
        use crate::pipeline::npp::draws::summary;
        let (d, ks, nsec) = (self.d, &self.ks, self.ks.len());
        let total = &e[nsec];
        (0..nb.len())
            .into_par_iter()
            .map_init(Vec::new, |v: &mut Vec<f64>, px| {
                let q = total[px] - nb[px];
                if !q.is_finite() {
                    return [f64::NAN; 5];
                }
                v.clear();
                // The field's multipliers of the pixel's cell (None without a field).
                let cell = self.field.zip(cells.and_then(|c| c[px]));
                let a = cell.map(|(f, c)| (f, f.of(d, c)));
                v.extend((0..d.n).map(|i| {
                    let em: f64 = (0..nsec)
                        .map(|k| {
                            let factor = match &a {
                                Some((f, a)) if f.covers(ks[k]) => d.at(i, ks[k].0) * a[i],
                                _ => d.sector_factor(i, ks[k]),
                            };
                            e[k][px] * factor
                        })
                        .sum();
                    em - q * d.at(i, self.sk)
                }));
                summary(v)
            })
            .collect()
    }
}

/// Pass 2 of `balance`: each strip's fine emissions and net balance written, the map preview and every pixel
/// added to the totals and its zone's.
fn fine_pass(
    p: &Prepared,
    (ov, areas, sink_reader): (&Overlapper, &crate::area::PixelAreas, &GridReader),
    (spread, usable): (&Spread, &[bool]),
    writers: &mut [RasterWriter],
    preview: &mut Preview,
    progress: &dyn Progress,
) -> Result<(ZoneAcc, BTreeMap<i32, ZoneAcc>, Option<Vec<f64>>)> {
    let (grid, lat) = (&p.grid, &p.lattice);
    // Per cell and sector (cell-major), the covered part's emissions with the emission changes.
    let mut cells = vec![0f64; usable.len() * lat.sectors.len()];
    let mut zone_acc: BTreeMap<i32, ZoneAcc> = BTreeMap::new();
    let mut all = ZoneAcc {
        emissions: vec![0.0; lat.sectors.len()],
        ..Default::default()
    };
    // The sums run in pixel order on the calling thread; the next strip's overlaps are computed beside them.
    let kernel = |w: Window, (s, a): (StripOverlap, Vec<f64>)| {
        let (row0, nrows) = (w.row0, w.nrows);
        let m = sink_mass(sink_reader, p, &a, row0, nrows)?;
        let wts = proxy_weights(&p.proxy, row0, nrows)?;
        let (zone_ids, pop) = zones_and_population(p, &a, row0, nrows)?;
        let mult = p
            .factors
            .as_ref()
            .map(|f| f.strip(zone_ids.as_deref(), grid, row0, nrows))
            .transpose()?;
        let fine = FineCtx {
            per_cell: p.per_cell,
            lat,
            factors: mult.as_deref(),
            spread,
            usable,
            areas: &a,
        };
        let (em, em_total, net) = fine.strip(
            &s,
            &m,
            wts.as_deref(),
            (zone_ids.as_deref(), pop.as_deref()),
            (&mut all, &mut zone_acc, &mut cells),
        );
        preview.add_rows(row0, grid.width, &net);
        Ok(StripOut {
            planes: fine_planes(em, em_total, net),
            side: (),
        })
    };
    crate::engine::run::run(
        "balance: emissions onto the fine grid",
        pass_strips(grid),
        writers,
        progress,
        (overlaps_reader(ov, areas), kernel),
        |_, ()| {},
    )?;
    Ok((all, zone_acc, p.factors.is_some().then_some(cells)))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Ground size of one preview pixel in metres (geographic grids: east-west at the centre latitude).
fn metres_per_preview_pixel(grid: &Grid, k: usize) -> Result<f64> {
    let srs = grid.spatial_ref()?;
    if srs.is_geographic() {
        let lat = io::grid_centre_latitude(grid)?;
        Ok(grid.gt[1].abs().to_radians()
            * io::earth_radius_m()?
            * lat.to_radians().cos()
            * k as f64)
    } else {
        Ok(grid.gt[1].abs() * srs.linear_units() * k as f64)
    }
}

/// The grid's extent as a polygon in its CRS.
fn extent_polygon(grid: &Grid, what: &Path) -> Result<gdal::vector::Geometry> {
    let [x0, y0, x1, y1] = grid.bounds();
    gdal::vector::Geometry::from_wkt(&format!(
        "POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
    ))
    .map_err(|e| Error::gdal(what, "sink extent", e))
}

/// Each vector zone's polygon area and the area of its part inside the sink raster's extent (planar, in the
/// zones' CRS, which is the grid's: the ratio is what matters).
fn zone_shape_areas(z: &Zones, grid: &Grid) -> Result<Vec<(f64, f64)>> {
    let extent = extent_polygon(&grid, &z.path)?;
    Ok(z.shapes
        .iter()
        .map(|g| match g {
            Some(g) => (
                g.area(),
                io::clip_to_rect(g, &extent).map_or(0.0, |i| i.area()),
            ),
            None => (0.0, 0.0),
        })
        .collect())
}

/// One strip's planes of the fine rasters: the emissions raster's total (band 1) and each sector (bands 2..,
/// when several), and the net balance raster's.
fn fine_planes(em: Vec<Vec<f32>>, em_total: Vec<f32>, net: Vec<f32>) -> Vec<Vec<Plane>> {
    let mut em_planes = vec![Plane::from(em_total)];
    if em.len() > 1 {
        em_planes.extend(em.into_iter().map(Plane::from));
    }
    vec![em_planes, vec![Plane::from(net)]]
}

/// Working memory of both passes per strip pixel (the overlaps with the lattice, the corners, the sink's mass,
/// zones, and every sector's fine emissions), as a round figure: the peak fell by 63 MiB when 4096 px strips
/// went from 256 to 128 rows (0.5 M pixels fewer held), about 130 bytes each, with one sector.
const BYTES_PER_STRIP_PX: usize = 128;
/// Memory one strip of either pass is held to (MiB); two strips are in memory at once (`engine::run` reads the
/// next one beside the current one), so the passes hold about 64 MiB: 32 MiB / 128 bytes gives half a tile row
/// at 2048 px and halves the rows for each doubling beyond (the writers still flush whole tile rows).
const STRIP_BUDGET_MB: usize = 32;

/// Rows per strip of both passes (the same in both; shares and values are summed pixel by pixel in row-major
/// order, so the strips' height changes no sum).
fn strip_rows(grid: &Grid) -> usize {
    crate::engine::strips::sub_tile_rows(grid.width, BYTES_PER_STRIP_PX, STRIP_BUDGET_MB)
}

/// The lattice cells the fine grid touches, as a raster window and a table; the fine rasters finished and
/// committed with it. Returns the paths written.
fn lattice_outputs(
    job: &BalanceJob,
    lat: &Lattice,
    (spread, valid, seq, changed): (&Spread, &[f64], &[f64], Option<&[f64]>),
    md: &BTreeMap<String, String>,
    fine: [RasterWriter; 2],
) -> Result<Vec<PathBuf>> {
    let (win, cells) = touched_window(lat, spread);
    let rows = cell_rows(lat, spread, (valid, seq, changed), cells);
    let lat_w = lattice_raster(job, lat, &win, &rows, md)?;
    let [em_w, net_w] = fine;
    let all = vec![em_w, net_w, lat_w];
    let mut outputs: Vec<PathBuf> = all.iter().map(|w| w.target().to_path_buf()).collect();
    for pd in crate::engine::write::finish_all(all)? {
        pd.commit()?;
    }
    let cells_csv = job.out_dir.join("lattice_balance.csv");
    io::write_table(
        &cells_csv,
        &cells_table(lat, &rows)?,
        &[format!(
            "{SIGN_CONVENTION}; masses in {MASS_OUT}; empty = no data"
        )],
    )?;
    outputs.push(cells_csv);
    Ok(outputs)
}

/// The warning for the share of the sink's area outside the lattice (or in cells without data).
fn uncovered_warning(fraction: f64, area_m2: f64, lat: &Lattice) -> String {
    format!(
        "{} ({}) of the sink raster's area lies outside the lattice {} (or in cells without data): emissions there are unknown (no data in the fine maps), and its sequestration is counted only in the zone tables",
        percent(fraction),
        if area_m2 >= 1e4 {
            format!("{:.2} ha", area_m2 / 1e4)
        } else {
            format!("{area_m2:.2} m2")
        },
        lat.path.display()
    )
}

/// The warning for cells with emissions but no proxy weight in the covered area (spread uniformly there).
fn fallback_warning(p: &Prepared, spread: &Spread) -> Option<String> {
    let lat = &p.lattice;
    let fallback: Vec<usize> = (0..lat.cells())
        .filter(|&c| {
            p.proxy.is_some()
                && spread.unweighted(c)
                && !spread.whole_cell(c)
                && lat.total(c) != 0.0
        })
        .collect();
    (!fallback.is_empty()).then(|| format!(
        "{} lattice cell(s) have emissions but no proxy weight in the covered area ({}...); their emissions are spread uniformly by area there",
        fallback.len(),
        fallback.iter().take(5).map(|&c| lat.cell_id(c)).collect::<Vec<_>>().join(", ")
    ))
}

/// A strip's zone ids and persons per pixel (when zones and a population raster are given).
type ZonesAndPopulation = (Option<Vec<i32>>, Option<Vec<f64>>);

fn zones_and_population(
    p: &Prepared,
    areas: &[f64],
    row0: usize,
    nrows: usize,
) -> Result<ZonesAndPopulation> {
    let zone_ids = match &p.zones {
        Some(z) => Some(z.read_rows(row0, nrows)?),
        None => None,
    };
    let pop = match &p.population {
        Some(pr) => Some(pr.persons(row0, nrows, |i| areas[i])?),
        None => None,
    };
    Ok((zone_ids, pop))
}

/// The touched lattice cells' table rows: coverage, share with a sink value, covered emissions and sequestration.
fn cell_rows(
    lat: &Lattice,
    spread: &Spread,
    (valid, seq, changed): (&[f64], &[f64], Option<&[f64]>),
    cells: Vec<usize>,
) -> Vec<CellRow> {
    cells
        .into_iter()
        .map(|c| {
            // With emission changes, the covered part's emissions as changed; else the lattice's share.
            let nsec = lat.sectors.len();
            let em_cov = changed.map_or(lat.total(c) * spread.received(c), |v| {
                v[c * nsec..(c + 1) * nsec].iter().sum()
            });
            CellRow {
                cell: c,
                coverage: spread.coverage(c),
                valid: if spread.covered(c) > 0.0 {
                    valid[c] / spread.covered(c)
                } else {
                    f64::NAN
                },
                emissions_covered: em_cov,
                sequestration: if valid[c] > 0.0 { seq[c] } else { f64::NAN },
            }
        })
        .collect()
}

/// The zone table (CSV) and, for vector zones, the GeoPackage with each level's shapes; returns their paths.
fn zone_outputs(
    job: &BalanceJob,
    p: &Prepared,
    all: &ZoneAcc,
    zone_acc: &BTreeMap<i32, ZoneAcc>,
) -> Result<(Vec<PathBuf>, Vec<tables::ZoneShape>)> {
    let mut out = Vec::new();
    let mut zone_shapes = Vec::new();
    let zones_csv = job.out_dir.join("zones_balance.csv");
    let shapes = match &p.zones {
        Some(z) if z.is_vector() => zone_shape_areas(z, &p.grid)?,
        _ => Vec::new(),
    };
    let zone_rows = zone_table_rows(p.zones.as_ref(), all, zone_acc, &shapes);
    io::write_table(
        &zones_csv,
        &zones_table(&p.lattice, &zone_rows, &Indicators::of(p),)?,
        &[format!("{SIGN_CONVENTION}; masses in {MASS_OUT} over the zone's pixels of the sink raster; emissions downscaled from the lattice; empty = no data")],
    )?;
    out.push(zones_csv);
    if let Some(z) = p.zones.as_ref().filter(|z| z.is_vector()) {
        let gpkg = job.out_dir.join("zones_balance.gpkg");
        zone_shapes = write_zones_gpkg(&gpkg, (z, &p.lattice), &zone_rows, &Indicators::of(p))?;
        out.push(gpkg);
    }
    Ok((out, zone_shapes))
}

/// The net balance map (PNG) with the zones' outlines.
fn balance_map(
    job: &BalanceJob,
    p: &Prepared,
    (preview, zones): (&Preview, &[tables::ZoneShape]),
    style: &report::DivergingStyle,
) -> Result<PathBuf> {
    let png = job.out_dir.join("net_balance.png");
    let mpp = metres_per_preview_pixel(&p.grid, preview.k)?;
    report::diverging_png(
        &png,
        preview,
        mpp,
        &MapText {
            title: &format!(
                "Net carbon balance: {} - {}",
                file_name(&p.lattice.path),
                // A scenario's sink is a working file: its title names the output it becomes.
                file_name(job.sink_label.as_deref().map_or(&job.sink, Path::new))
            ),
            quantity: "net balance, t CO2 ha-1 yr-1",
            frame: Some(&io::MapFrame::of(&p.grid)?),
            outlines: &zone_outlines(zones, &p.grid),
            sign: "positive (red) = net source: emissions exceed sequestration; negative (blue) = net sink",
        },
        style,
    )?;
    Ok(png)
}

/// Every level's zone shapes (already clipped to the sink raster's extent), in its pixel coordinates, for the
/// map (which draws one level's: `report::outline_level`).
fn zone_outlines(zones: &[tables::ZoneShape], grid: &Grid) -> Vec<report::Outline> {
    use gdal::vector::Geometry;
    let gt = grid.gt;
    let to_px = |(x, y, _): (f64, f64, f64)| ((x - gt[0]) / gt[1], (y - gt[3]) / gt[5]);
    let mut out = Vec::new();
    for (level, name, g) in zones {
        // Exterior rings of a polygon or of each part of a multipolygon.
        let polygons: Vec<Geometry> = if g.geometry_name().eq_ignore_ascii_case("POLYGON") {
            vec![g.clone()]
        } else {
            (0..g.geometry_count())
                .map(|i| (*g.get_geometry(i)).clone())
                .collect()
        };
        let rings: Vec<Vec<(f64, f64)>> = polygons
            .iter()
            .filter(|p| p.geometry_count() > 0)
            .map(|p| {
                let ring = p.get_geometry(0);
                (0..ring.point_count() as i32)
                    .map(|i| to_px(ring.get_point(i)))
                    .collect()
            })
            .collect();
        if !rings.is_empty() {
            out.push(report::Outline {
                name: name.clone(),
                rings,
                level: *level,
            });
        }
    }
    out
}

/// The fine output rasters of `balance`: emissions (total, and per sector when there are several) and the net
/// balance, in t CO2 ha-1 yr-1.
fn fine_writers(
    job: &BalanceJob,
    grid: &Grid,
    lat: &Lattice,
    md: &BTreeMap<String, String>,
) -> Result<(RasterWriter, RasterWriter)> {
    let nsec = lat.sectors.len();
    let mut em_bands = vec![OutBand {
        description: "emissions total".into(),
        unit: DENSITY_OUT.into(),
    }];
    if nsec > 1 {
        em_bands.extend(lat.sectors.iter().map(|s| OutBand {
            description: format!("emissions {s}"),
            unit: DENSITY_OUT.into(),
        }));
    }
    let mut m_em = md.clone();
    m_em.insert(
        "QUANTITY".into(),
        "emissions downscaled from the lattice".into(),
    );
    m_em.insert("UNITS".into(), DENSITY_OUT.into());
    let em_path = job.out_dir.join("emissions_tCO2_ha_yr.tif");
    let em_w = RasterWriter::create::<f32>(&em_path, grid, &em_bands, None, &m_em, &job.write)?;
    let mut m_net = md.clone();
    m_net.insert("QUANTITY".into(), "net carbon balance".into());
    m_net.insert("UNITS".into(), DENSITY_OUT.into());
    let net_path = job.out_dir.join("net_balance_tCO2_ha_yr.tif");
    let net_w = RasterWriter::create::<f32>(
        &net_path,
        grid,
        &[OutBand {
            description: "net balance (emissions - sequestration)".into(),
            unit: DENSITY_OUT.into(),
        }],
        None,
        &m_net,
        &job.write,
    )?;
    Ok((em_w, net_w))
}

/// What pass 2 of `balance` needs to spread the lattice over one strip of the fine grid.
struct FineCtx<'a> {
    lat: &'a Lattice,
    /// The strip's emission multipliers (pixel-major, one per sector), with emission changes.
    factors: Option<&'a [f64]>,
    spread: &'a Spread,
    usable: &'a [bool],
    /// The strip's true pixel areas (m2), pixel by pixel.
    areas: &'a [f64],
    /// Keep each zone's emissions per cell (an allocation error that varies between cells).
    per_cell: bool,
}

impl FineCtx<'_> {
    /// Emissions per sector and in total and the net balance (t CO2 ha-1 yr-1) of the strip starting at `row0`
    /// (NaN where a pixel touches a cell without data); adds every pixel to the totals and to its zone.
    fn strip(
        &self,
        s: &StripOverlap,
        m: &[f64],
        wts: Option<&[f64]>,
        (zone_ids, pop): (Option<&[i32]>, Option<&[f64]>),
        (all, zone_acc, cells): (&mut ZoneAcc, &mut BTreeMap<i32, ZoneAcc>, &mut [f64]),
    ) -> (Vec<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let nsec = self.lat.sectors.len();
        let n = s.width * s.nrows;
        let mut em = vec![vec![f32::NAN; n]; nsec];
        let mut em_total = vec![f32::NAN; n];
        let mut net = vec![f32::NAN; n];
        let mut e = vec![0f64; nsec];
        let mut pieces: Vec<(usize, Vec<f64>)> = Vec::new();
        for i in 0..n {
            let a_true = self.areas[i];
            let ha = a_true / 1e4;
            let w = wts.as_ref().map_or(1.0, |w| w[i]);
            e.iter_mut().for_each(|x| *x = 0.0);
            let mut any = false;
            let mut missing = false;
            pieces.clear();
            for (c, a) in s.pieces(i) {
                if !self.usable[c] {
                    missing = true;
                    continue;
                }
                any = true;
                let f = self.spread.share(c, a, w);
                if self.per_cell {
                    let fm = |k: usize| self.factors.map_or(1.0, |m| m[i * nsec + k]);
                    pieces.push((
                        c,
                        (0..nsec).map(|k| self.lat.mass[k][c] * f * fm(k)).collect(),
                    ));
                }
                for (k, x) in e.iter_mut().enumerate() {
                    *x += self.lat.mass[k][c] * f;
                }
                // With emission changes, the cell's covered emissions as changed (t CO2 yr-1).
                if let Some(fm) = self.factors {
                    for k in 0..nsec {
                        cells[c * nsec + k] += self.lat.mass[k][c] * f * fm[i * nsec + k];
                    }
                }
            }
            let known = any && !missing;
            if let Some(f) = self.factors {
                e.iter_mut()
                    .zip(&f[i * nsec..(i + 1) * nsec])
                    .for_each(|(x, m)| *x *= m);
            }
            let etot: f64 = e.iter().sum();
            if known {
                for k in 0..nsec {
                    em[k][i] = (e[k] / ha) as f32;
                }
                em_total[i] = (etot / ha) as f32;
                if m[i].is_finite() {
                    net[i] = ((etot - m[i]) / ha) as f32;
                }
            }
            let known_e = known.then_some(e.as_slice());
            let persons = pop.map_or(0.0, |p| p[i]);
            all.add_pixel(a_true, known_e, m[i], persons);
            let cells_of = if known { &pieces[..] } else { &[][..] };
            let cells_of = || cells_of.iter().map(|(c, e)| (*c, e.as_slice()));
            all.add_cells(cells_of());
            if let Some(z) = zone_ids.as_ref().filter(|z| z[i] != OUTSIDE) {
                let acc = zone_acc.entry(z[i]).or_default();
                acc.add_pixel(a_true, known_e, m[i], persons);
                acc.add_cells(cells_of());
            }
        }
        (em, em_total, net)
    }
}

/// A fraction as a percentage that never reads 0.00% for a fraction that is not zero.
fn percent(fraction: f64) -> String {
    let pct = 100.0 * fraction;
    if pct == 0.0 || pct >= 0.01 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1e}%")
    }
}
