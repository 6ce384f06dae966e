//! Gridded driver archives read by their time coordinate (`time = "coordinate"`): NetCDF variables through
//! GDAL's classic view (one band per time stamp, `NETCDF_DIM_<time>` with `<time>#units`), Zarr arrays through
//! GDAL's multidimensional API (the first dimension is time, its coordinate array gives the stamps). ERA5's
//! (time, expver, y, x) variables are read with their expver slices merged (`merge_expver`).
//!
//! Each step of the year takes the samples whose time stamp (shifted by `time_shift_hours`) falls in it. One
//! sample per step (a monthly file for monthly drivers) is read as it is. Several (hourly or daily fields) are
//! aggregated on the file's own grid before any warping, as station tables are: the samples of each calendar
//! day by the variable's rule (mean, sum, min or max), then the days of the step by their mean (sum for sums).
//! Every day of the step must be present with the file's full number of samples per day; a missing day or hour
//! is an error naming it, nothing is filled. A nodata sample makes its pixel's step nodata. The aggregates go
//! to a scratch GeoTIFF (float64, north-up; in a `Scratch` folder, which a killed run's successor removes)
//! that lives as long as the drivers and is read like any driver
//! raster: memory holds one strip of rows of the source, whatever its size and length.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags, Metadata};

use crate::engine::run::{Plane, StripOut};
use crate::error::{Error, Result};
use crate::io::{self, Grid, OutBand, RasterInfo, RasterWriter, Window, WriteOptions};
use crate::scratch::Scratch;

use super::cftime::{Calendar, TimeAxis};
use super::subdaily::Agg;
use super::{Step, StepInfo};

/// What a `[raster.NAME]` entry with `time = "coordinate"` asks for.
pub struct Request<'a> {
    /// The source: a GDAL subdataset name (NETCDF:"f.nc":t2m, ZARR:"store.zarr":/t2m) or a file.
    pub path: &'a Path,
    pub name: &'a str,
    pub steps: &'a [StepInfo],
    pub step: Step,
    pub year: i32,
    pub agg: Agg,
    pub shift_hours: f64,
    /// A CRS for files that carry none (ERA5's latitude/longitude without a grid mapping).
    pub crs: Option<&'a str>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

/// The bands to read for each step, in the source itself or in a scratch file of aggregates.
#[derive(Clone)]
pub struct Selection {
    pub path: PathBuf,
    pub grid: Grid,
    pub bands: Vec<usize>,
    pub scale: f64,
    pub offset: f64,
    pub nodata: Option<f64>,
    /// The scratch folder of the aggregates, removed when the last driver using it is dropped.
    pub scratch: Option<Arc<Scratch>>,
    /// How the steps were made, for provenance ("mean of 24 samples a day over each month's days").
    pub note: Option<String>,
    /// A source with several samples a step, planned (every day and sample present) but not yet aggregated:
    /// no bands until `aggregate_planned` makes them.
    pub planned: Option<Planned>,
}

/// What aggregating a planned source needs: the source, its samples and their days per step, its packing,
/// and its classic view and north-up grid.
#[derive(Clone)]
pub struct Planned {
    path: PathBuf,
    name: String,
    agg: Agg,
    axis: Axis,
    plan: Vec<Vec<Vec<usize>>>,
    packing: Packing,
    info: RasterInfo,
    grid: Grid,
}

/// Each sample's date and time (None: no time, or a 360_day date Gregorian lacks), and the calendar.
type Stamps = (Vec<Option<NaiveDateTime>>, Calendar);

/// The samples of a source: their time stamps and how to read them.
#[derive(Clone)]
struct Axis {
    times: Vec<Option<NaiveDateTime>>,
    /// The time coordinate's calendar (`cftime.rs`).
    calendar: Calendar,
    /// A Zarr store and array (multidimensional reads), else the classic bands of `path`.
    zarr: Option<(PathBuf, String)>,
    /// A NetCDF variable of (time, expver, y, x), as ERA5 requests that reach into the preliminary ERA5T
    /// months came: its number of `expver` slices, merged value by value (see `merge_expver`).
    expver: Option<usize>,
}

/// The name of ERA5's experiment-version dimension: 1 (or 0001) is ERA5, 5 is ERA5T, the preliminary data of
/// the last months; a time step has values in one of them (ECMWF, "ERA5: data documentation", section on
/// ERA5T, and its advice to combine the two along expver).
const EXPVER: &str = "expver";

/// The source's samples for each step: its own bands when each step has one sample in a plain file, else a
/// plan of the samples (every day of every step present with its full number of samples), aggregated by
/// `aggregate_planned` (`carbonmap check` stops at the plan).
pub fn select(r: &Request) -> Result<Selection> {
    let axis = axis(r.path)?;
    let plan = plan(r, &axis.times, axis.calendar)?;
    let first = match &axis.zarr {
        Some(_) => slice_path(r.path, 0),
        None => r.path.to_path_buf(),
    };
    let info = RasterInfo::read(&first)?;
    let band = &info.bands[0];
    let packing = Packing {
        scale: r.scale.or(band.scale).unwrap_or(1.0),
        offset: r.offset.or(band.offset).unwrap_or(0.0),
        nodata: band.nodata,
    };
    let grid = source_grid(r, &info)?;
    // Longitudes 0..360 are aggregated into a window in -180..180 terms (`aggregate_window`).
    let direct = axis.zarr.is_none()
        && axis.expver.is_none()
        && !io::longitudes_past_180(&grid)
        && r.crs.is_none()
        && plan.iter().all(|s| s.len() == 1 && s[0].len() == 1);
    Ok(Selection {
        path: r.path.to_path_buf(),
        grid: if direct { info.grid()? } else { grid.clone() },
        bands: match direct {
            true => plan.iter().map(|s| s[0][0] + 1).collect(),
            false => Vec::new(),
        },
        scale: packing.scale,
        offset: packing.offset,
        nodata: packing.nodata,
        scratch: None,
        note: calendar_note(axis.calendar).map(|c| format!("one sample a step{c}")),
        planned: (!direct).then(|| Planned {
            path: r.path.to_path_buf(),
            name: r.name.to_string(),
            agg: r.agg,
            axis,
            plan,
            packing,
            info,
            grid,
        }),
    })
}

/// Aggregates made while a `Reuse` lives, by what they were made from.
static KEPT: Mutex<Option<Vec<(MadeFrom, Selection)>>> = Mutex::new(None);

/// While one lives, the aggregates made are kept (their scratch folders too) and a request for the same
/// source, samples, rule and cells takes them instead of aggregating again: a scenario runs the NPP job for
/// its base and for itself on the same grid and drivers.
pub struct Reuse(());

impl Reuse {
    pub fn begin() -> Reuse {
        *KEPT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        Reuse(())
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        *KEPT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What an aggregate depends on: the source and variable, the rule, the samples of each day of each step,
/// the packing (scale, offset and nodata, as bits) and the cells.
type MadeFrom = (
    (PathBuf, String, Agg),
    Vec<Vec<Vec<usize>>>,
    (u64, u64, Option<u64>),
    (usize, usize, usize, usize),
);

fn made_from(p: &Planned, w: &Window) -> MadeFrom {
    let pk = &p.packing;
    (
        (p.path.clone(), p.name.clone(), p.agg),
        p.plan.clone(),
        (
            pk.scale.to_bits(),
            pk.offset.to_bits(),
            pk.nodata.map(f64::to_bits),
        ),
        (w.col0, w.row0, w.ncols, w.nrows),
    )
}

/// A planned source's steps aggregated into a scratch GeoTIFF, over the source cells under `within` (the
/// analysis grid) or over every cell; taken from the aggregates kept by a `Reuse` when it was made before.
pub fn aggregate_planned(p: &Planned, within: Option<&Grid>) -> Result<Selection> {
    let grid = &p.grid;
    let window = within.and_then(|g| footprint(grid, g));
    let window = window.unwrap_or(Window {
        col0: 0,
        row0: 0,
        ncols: grid.width,
        nrows: grid.height,
    });
    let key = made_from(p, &window);
    let kept = |k: &Option<Vec<(MadeFrom, Selection)>>| {
        k.as_ref()
            .and_then(|v| v.iter().find(|(x, _)| *x == key).map(|(_, s)| s.clone()))
    };
    if let Some(s) = kept(&KEPT.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(s);
    }
    let s = aggregate_window(p, &window)?;
    if let Some(v) = KEPT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        v.push((key, s.clone()));
    }
    Ok(s)
}

/// `aggregate_planned` over `window` of the source's cells.
fn aggregate_window(p: &Planned, window: &Window) -> Result<Selection> {
    let dir = Arc::new(Scratch::new(
        "carbonmap-drivers-",
        &format!("the aggregates of {}", p.path.display()),
    )?);
    let out = dir.path().join(format!("{}.tif", p.name));
    let grid = &p.grid;
    let mut sub = sub_grid(grid, window);
    // A window east of 180 degrees in a 0..360 file lies in the western hemisphere: its aggregates are
    // placed there (the analysis grid's longitudes are -180..180).
    if io::longitudes_past_180(grid) && sub.gt[0] >= 180.0 - 1e-9 {
        sub.gt[0] -= 360.0;
    }
    aggregate(p, (&sub, window), &out)?;
    let per_day = p.plan.iter().flatten().map(|d| d.len()).max().unwrap_or(1);
    let cells = match (window.ncols, window.nrows) == (grid.width, grid.height) {
        true => String::new(),
        false => format!(
            " over the analysis grid's {} x {} of its {} x {} cells",
            window.ncols, window.nrows, grid.width, grid.height
        ),
    };
    let days = if p.agg.adds_days() {
        "their sum"
    } else {
        "their mean"
    };
    let expver = match p.axis.expver {
        Some(k) => {
            format!("; its {k} expver slices merged, each value from the first that has one")
        }
        None => String::new(),
    } + &calendar_note(p.axis.calendar).unwrap_or_default();
    Ok(Selection {
        path: out,
        grid: sub,
        bands: (1..=p.plan.len()).collect(),
        scale: 1.0,
        offset: 0.0,
        nodata: None,
        scratch: Some(dir),
        planned: None,
        note: Some(format!(
            "{}, days to the step by {days}{cells}{expver}",
            match p.agg {
                Agg::Accumulated =>
                    format!("the last of {per_day} sample(s) a day (running totals)"),
                a => format!("{} of {per_day} sample(s) a day", a.name()),
            }
        )),
    })
}

/// Provenance of a time axis counted in a calendar other than the Gregorian one.
fn calendar_note(c: Calendar) -> Option<String> {
    c.non_gregorian()
        .map(|c| format!("; its days counted in the {c} calendar"))
}

/// Source cells kept around the analysis grid's footprint: bilinear interpolation reads the neighbours of the
/// cell holding a point (one cell), and one more absorbs the footprint's densified edges.
const FOOTPRINT_MARGIN_CELLS: usize = 2;

/// The cells of the source's north-up `grid` under the analysis grid, with `FOOTPRINT_MARGIN_CELLS` around
/// them; None when the footprint cannot be found or does not meet the source (every cell is then aggregated,
/// and the drivers' coverage check says what is missing).
fn footprint(grid: &Grid, analysis: &Grid) -> Option<Window> {
    let b = io::transform_bounds(&analysis.crs_wkt, &grid.crs_wkt, analysis.bounds()).ok()?;
    let b = io::in_raster_longitudes(grid, b);
    let gt = grid.gt;
    let mut cols = [(b[0] - gt[0]) / gt[1], (b[2] - gt[0]) / gt[1]];
    let rows = [(b[3] - gt[3]) / gt[5], (b[1] - gt[3]) / gt[5]];
    let m = FOOTPRINT_MARGIN_CELLS as f64;
    let span = |[lo, hi]: [f64; 2], n: usize| -> Option<(usize, usize)> {
        let (lo, hi) = ((lo.floor() - m).max(0.0), (hi.ceil() + m).min(n as f64));
        (lo.is_finite() && hi.is_finite() && hi > lo).then_some((lo as usize, (hi - lo) as usize))
    };
    // Round the globe, columns count on past the last (`with_reader` wraps them to the first), and a
    // footprint whose margin reaches west of the first column is counted from the last round.
    let width = grid.width as f64;
    let wraps = io::wraps_globe(grid);
    if wraps && cols[0].floor() - m < 0.0 {
        cols = [cols[0] + width, cols[1] + width];
    }
    let (mut col0, mut ncols) = span(cols, if wraps { 2 * grid.width } else { grid.width })?;
    if ncols >= grid.width {
        (col0, ncols) = (0, grid.width);
    }
    let (row0, nrows) = span(rows, grid.height)?;
    Some(Window {
        col0,
        row0,
        ncols,
        nrows,
    })
}

/// The grid of a window of `grid` (north-up).
fn sub_grid(grid: &Grid, w: &Window) -> Grid {
    let gt = grid.gt;
    Grid {
        crs_wkt: grid.crs_wkt.clone(),
        gt: [
            gt[0] + w.col0 as f64 * gt[1],
            gt[1],
            0.0,
            gt[3] + w.row0 as f64 * gt[5],
            0.0,
            gt[5],
        ],
        width: w.ncols,
        height: w.nrows,
    }
}

/// The time stamps of a NetCDF variable's bands, or of a Zarr array's first dimension.
fn axis(path: &Path) -> Result<Axis> {
    let text = path.to_string_lossy();
    match io::subdataset_parts(&text) {
        Some(("ZARR", store, array)) => {
            let store = PathBuf::from(store);
            let array = array.trim_start_matches('/').to_string();
            let (times, calendar) = zarr_times(&store, &array)?;
            Ok(Axis {
                times,
                calendar,
                zarr: Some((store, array)),
                expver: None,
            })
        }
        Some(("NETCDF", file, var)) if let Some(a) = expver_axis(Path::new(file), var)? => Ok(a),
        _ => {
            let (times, calendar) = band_times(path)?;
            Ok(Axis {
                times,
                calendar,
                zarr: None,
                expver: None,
            })
        }
    }
}

/// The samples of a NetCDF variable of four dimensions whose second is `expver` (time, expver, y, x); None
/// for any other variable, or a file the multidimensional API cannot open (the classic view says why).
fn expver_axis(file: &Path, var: &str) -> Result<Option<Axis>> {
    let Ok(ds) = open_multidim(file) else {
        return Ok(None);
    };
    let Ok(root) = ds.root_group() else {
        return Ok(None);
    };
    let Ok(a) = root.open_md_array(var, Default::default()) else {
        return Ok(None);
    };
    let dims = a.dimensions().unwrap_or_default();
    if dims.len() != 4 || dims[1].name() != EXPVER {
        return Ok(None);
    }
    let (times, calendar) = dim_times(file, &root, &dims[0])?;
    Ok(Some(Axis {
        times,
        calendar,
        zarr: None,
        expver: Some(dims[1].size()),
    }))
}

/// The classic 2-D view of time index `i` of a Zarr array (GDAL: ZARR:"store":/array:i).
fn slice_path(path: &Path, i: usize) -> PathBuf {
    PathBuf::from(format!("{}:{i}", path.display()))
}

/// The file's own grid, north-up (a south-up grid, as Zarr arrays with ascending latitude give, is flipped
/// when the aggregates are written), with the declared CRS where the file has none.
fn source_grid(r: &Request, info: &RasterInfo) -> Result<Grid> {
    let declared = r.crs.map(io::crs_wkt).transpose()?;
    let crs_wkt = match (&info.crs_wkt, declared) {
        (Some(own), Some(d)) if !io::same_crs(own, &d) => {
            return Err(Error::input(
                r.path,
                format!("has its own CRS, not the declared crs = \"{}\"", r.crs.unwrap_or_default()),
            ))
        }
        (Some(own), _) => own.clone(),
        (None, Some(d)) => d,
        (None, None) => {
            return Err(Error::input(
                r.path,
                "has no coordinate reference system: declare it in the drivers file (crs = \"EPSG:4326\" for \
                 latitude and longitude in degrees, as ERA5)",
            ))
        }
    };
    let gt = info
        .gt
        .ok_or_else(|| Error::input(r.path, "has no geotransform (no georeferencing)"))?;
    if gt[2] != 0.0 || gt[4] != 0.0 {
        return Err(Error::input(
            r.path,
            "is rotated (geotransform terms 2 and 4 are not zero)",
        ));
    }
    let gt = if gt[5] > 0.0 {
        [
            gt[0],
            gt[1],
            0.0,
            gt[3] + gt[5] * info.height as f64,
            0.0,
            -gt[5],
        ]
    } else {
        gt
    };
    Ok(Grid {
        crs_wkt,
        gt,
        width: info.width,
        height: info.height,
    })
}

/// For each step, its calendar days, and for each day the indices of its samples. Exactly one sample in a
/// step (whatever its day) reads that sample; otherwise every day of the step needs the file's full count.
/// The source's calendar: a noleap file has no 29 February to expect; a 360_day file's 30-day months cannot
/// be laid on the year's days, so it gives one sample a step or is refused.
fn plan(
    r: &Request,
    times: &[Option<NaiveDateTime>],
    calendar: Calendar,
) -> Result<Vec<Vec<Vec<usize>>>> {
    let shift = chrono::Duration::milliseconds((r.shift_hours * 3_600_000.0).round() as i64);
    let stamps: Vec<Option<NaiveDateTime>> = times.iter().map(|t| t.map(|t| t + shift)).collect();
    let leap_day = |d: &NaiveDate| d.month() == 2 && d.day() == 29;
    let days: Vec<Vec<NaiveDate>> = r
        .steps
        .iter()
        .map(|s| step_days(r.step, r.year, s))
        .map(|mut ds| {
            if calendar == Calendar::NoLeap {
                ds.retain(|d| !leap_day(d));
            }
            ds
        })
        .collect();
    if days.iter().any(Vec::is_empty) {
        return Err(Error::input(
            r.path,
            format!(
                "{}: its calendar (noleap) has no 29 February, one of the daily steps of {}",
                r.name, r.year
            ),
        ));
    }
    let samples_of = |d: NaiveDate| -> Vec<usize> {
        stamps
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some_and(|t| t.date() == d))
            .map(|(i, _)| i)
            .collect()
    };
    let per_step: Vec<Vec<Vec<usize>>> = days
        .iter()
        .map(|ds| ds.iter().map(|&d| samples_of(d)).collect())
        .collect();
    if per_step
        .iter()
        .all(|s| s.iter().map(Vec::len).sum::<usize>() == 1)
    {
        return Ok(per_step
            .iter()
            .map(|s| vec![s.iter().flatten().copied().collect()])
            .collect());
    }
    if calendar == Calendar::Day360 {
        return Err(Error::input(
            r.path,
            format!(
                "{}: its calendar (360_day) has twelve months of 30 days, which cannot be laid on {}'s days: \
                 give one sample a step (monthly fields for monthly drivers; `cdo monmean` makes them)",
                r.name, r.year
            ),
        ));
    }
    let full = per_step.iter().flatten().map(Vec::len).max().unwrap_or(0);
    let mut problems = Vec::new();
    for (ds, s) in days.iter().zip(&per_step) {
        for (d, samples) in ds.iter().zip(s) {
            if samples.len() < full {
                problems.push(format!("{d}: {} of {full} samples", samples.len()));
            }
        }
    }
    if full == 0 || !problems.is_empty() {
        let n = problems.len();
        problems.truncate(8);
        if n > 8 {
            problems.push(format!("and {} more day(s)", n - 8));
        }
        return Err(Error::input(
            r.path,
            format!(
                "by its time coordinate, {} for {}: {}",
                r.name,
                r.year,
                if full == 0 {
                    "no sample in the year".to_string()
                } else {
                    problems.join("; ")
                }
            ),
        ));
    }
    Ok(per_step)
}

/// The calendar days of a step (a month, or one day).
fn step_days(step: Step, year: i32, s: &StepInfo) -> Vec<NaiveDate> {
    match step {
        Step::Day => vec![NaiveDate::from_yo_opt(year, s.doy).expect("a day of the year")],
        Step::Month => (1..=s.days)
            .map(|d| NaiveDate::from_ymd_opt(year, s.month, d).expect("a day of the month"))
            .collect(),
    }
}

/// How stored values become physical ones.
#[derive(Clone)]
struct Packing {
    scale: f64,
    offset: f64,
    nodata: Option<f64>,
}

impl Packing {
    #[inline]
    fn unpack(&self, raw: f64) -> f64 {
        if raw.is_nan() || self.nodata == Some(raw) {
            f64::NAN
        } else {
            raw * self.scale + self.offset
        }
    }
}

/// Working memory of one strip of the step aggregation, in MiB.
const STRIP_MB: usize = 32;

/// Write each step's aggregate to `out`, strip by strip of source rows (on the engine: the reader aggregates
/// every step of a strip, the kernel puts the rows in north-up order).
fn aggregate(p: &Planned, (grid, window): (&Grid, &Window), out: &Path) -> Result<()> {
    let (axis, plan, packing, info) = (&p.axis, &p.plan, &p.packing, &p.info);
    let bands: Vec<OutBand> = (0..plan.len())
        .map(|i| OutBand {
            description: format!("{} step {}", p.name, i + 1),
            unit: String::new(),
        })
        .collect();
    let w = RasterWriter::create::<f64>(
        out,
        grid,
        &bands,
        None,
        &Default::default(),
        &WriteOptions::default(),
    )?;
    let south_up = info.gt.is_some_and(|gt| gt[5] > 0.0);
    let height = info.height;
    // The window's width; its rows from row0 down (north-up), as the source's from the north or the south.
    let (col0, width, row0) = (window.col0, window.ncols, window.row0);
    // Per strip pixel: every step's values, and a day's sum and a sample being read (f64).
    let rows = crate::engine::strips::sub_tile_rows(width, 8 * (plan.len() + 2), STRIP_MB);
    let mut writers = [w];
    let size = (info.width, height);
    let rising = std::cell::Cell::new(Rising::default());
    with_reader(
        &p.path,
        (axis, packing.nodata),
        (size, south_up),
        (col0, width),
        |read, flip| {
            // The source's rows of a strip (bottom-up sources: the mirrored rows), each step aggregated.
            let read_strip = |s: Window| {
                let mut strip_rising = Rising::default();
                let src0 = if flip {
                    height - (row0 + s.row0) - s.nrows
                } else {
                    row0 + s.row0
                };
                let steps = plan
                    .iter()
                    .map(|days| {
                        let (v, r) = step_values(days, p.agg, packing, s.len(), |i, buf| {
                            read(i, src0, s.nrows, buf)
                        })?;
                        strip_rising.add(r);
                        Ok(v)
                    })
                    .collect::<Result<Vec<_>>>();
                rising.set({
                    let mut all = rising.get();
                    all.add(strip_rising);
                    all
                });
                steps
            };
            let kernel = |_: Window, steps: Vec<Vec<f64>>| {
                let planes = steps
                    .into_iter()
                    .map(|v| match flip {
                        true => Plane::from(
                            v.chunks(width).rev().flatten().copied().collect::<Vec<_>>(),
                        ),
                        false => Plane::from(v),
                    })
                    .collect();
                Ok(StripOut {
                    planes: vec![planes],
                    side: (),
                })
            };
            // The reader stays on this thread (the source's GDAL handles belong to it).
            crate::engine::run::run_local(
                "gridded drivers: steps",
                crate::engine::run::strips(width, window.nrows, rows),
                &mut writers,
                &crate::progress::Silent,
                (read_strip, kernel),
                |_, ()| {},
            )
        },
    )?;
    let [w] = writers;
    let r = rising.get();
    if r.running_totals() {
        return Err(Error::input(
            &p.path,
            format!(
                "{}: its values only rise through {:.0} % of the days on which they change: running totals since \
                 the start of the day (as ERA5-Land's accumulations), not totals per time stamp, which summing \
                 would count many times over. Give aggregate = \"accumulated\" (each day's last sample), with \
                 time_shift_hours = -1 for ERA5-Land (its 00 UTC value closes the day before)",
                p.name,
                100.0 * r.rising as f64 / r.changing as f64
            ),
        ));
    }
    w.finish()?.keep_scratch()?;
    Ok(())
}

/// Pixel-days of summed samples whose values change after the first sample of the day, and of those, the ones
/// that only rise: running totals since the start of the day (ERA5-Land's accumulations) rise every day,
/// totals per time stamp (hourly rain, radiation) fall again within most days.
#[derive(Debug, Default, Clone, Copy)]
struct Rising {
    changing: u64,
    rising: u64,
}

impl Rising {
    /// Share of changing pixel-days above which summed samples are taken for running totals.
    const SHARE: f64 = 0.9;
    /// Fewest changing pixel-days for the test to speak.
    const MIN_DAYS: u64 = 50;

    fn add(&mut self, o: Rising) {
        self.changing += o.changing;
        self.rising += o.rising;
    }

    fn running_totals(&self) -> bool {
        self.changing >= Self::MIN_DAYS && self.rising as f64 >= Self::SHARE * self.changing as f64
    }
}

/// One day's samples of a pixel after its first: (seen one, last value, fell, rose).
#[derive(Clone, Copy, Default)]
struct DayTrend(bool, f64, bool, bool);

impl DayTrend {
    #[inline]
    fn see(&mut self, v: f64) {
        if self.0 {
            self.2 |= v < self.1;
            self.3 |= v > self.1;
        }
        (self.0, self.1) = (true, v);
    }
}

/// One step's values over a strip: each day's samples folded by `agg`, then the days (sum or mean). For sums,
/// how the days' values move (`Rising`).
fn step_values(
    days: &[Vec<usize>],
    agg: Agg,
    packing: &Packing,
    n: usize,
    mut read: impl FnMut(usize, &mut [f64]) -> Result<()>,
) -> Result<(Vec<f64>, Rising)> {
    let mut step = vec![0.0f64; n];
    let mut buf = vec![0.0f64; n];
    let mut rising = Rising::default();
    for samples in days {
        let mut day = vec![
            match agg {
                Agg::Min => f64::INFINITY,
                Agg::Max => f64::NEG_INFINITY,
                Agg::Mean | Agg::Sum | Agg::Accumulated => 0.0,
            };
            n
        ];
        let track = agg == Agg::Sum && samples.len() > 2;
        let mut trend = vec![DayTrend::default(); if track { n } else { 0 }];
        for (k, &i) in samples.iter().enumerate() {
            read(i, &mut buf)?;
            for (px, (d, &raw)) in day.iter_mut().zip(&buf).enumerate() {
                let v = packing.unpack(raw);
                if track && k > 0 {
                    trend[px].see(v);
                }
                *d = if v.is_nan() || d.is_nan() {
                    f64::NAN
                } else {
                    match agg {
                        Agg::Mean | Agg::Sum => *d + v,
                        Agg::Min => d.min(v),
                        Agg::Max => d.max(v),
                        Agg::Accumulated => v,
                    }
                };
            }
        }
        for t in trend.iter().filter(|t| t.2 || t.3) {
            rising.changing += 1;
            rising.rising += u64::from(t.3 && !t.2);
        }
        let per_day = if agg == Agg::Mean {
            samples.len() as f64
        } else {
            1.0
        };
        for (s, d) in step.iter_mut().zip(&day) {
            *s += d / per_day;
        }
    }
    if !agg.adds_days() {
        let n_days = days.len() as f64;
        step.iter_mut().for_each(|s| *s /= n_days);
    }
    Ok((step, rising))
}

/// The reader `with_reader` gives: (sample, first source row, rows, buffer).
type ReadSample<'a> = dyn FnMut(usize, usize, usize, &mut [f64]) -> Result<()> + 'a;

/// Run `f` with a reader of the samples (a Zarr array, a NetCDF variable through the multidimensional API
/// where it can, else classic bands) and whether its rows run south to north. `south_up`: the classic view's
/// (of the source, or of a Zarr array's first slice).
fn with_reader(
    path: &Path,
    (axis, nodata): (&Axis, Option<f64>),
    (size, south_up): ((usize, usize), bool),
    (col0, width): (usize, usize),
    f: impl FnOnce(&mut ReadSample, bool) -> Result<()>,
) -> Result<()> {
    // A window past the last column (round the globe, `footprint`): whole rows read, its columns picked.
    let total = size.0;
    let wraps = col0 + width > total;
    let f = |read: &mut ReadSample, flip: bool| match wraps {
        false => f(read, flip),
        true => {
            let mut rows_read = Vec::new();
            let mut pick = |i: usize, row0: usize, rows: usize, buf: &mut [f64]| {
                rows_read.resize(rows * total, 0.0);
                read(i, row0, rows, &mut rows_read)?;
                for (out, row) in buf.chunks_mut(width).zip(rows_read.chunks(total)) {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = row[(col0 + j) % total];
                    }
                }
                Ok(())
            };
            f(&mut pick, flip)
        }
    };
    let (col0, width) = if wraps { (0, total) } else { (col0, width) };
    let netcdf = match &axis.zarr {
        None => netcdf_array(path, size, (axis.times.len(), axis.expver)),
        Some(_) => None,
    };
    if let Some((file, var, bottom_up)) = netcdf {
        let layers = axis.expver.map(|k| (k, nodata));
        return with_md_reader(&file, &var, (col0, width), layers, |read| {
            f(read, bottom_up)
        });
    }
    if axis.expver.is_some() {
        return Err(Error::input(
            path,
            "has an expver dimension but no y coordinate that rises or falls: it cannot be read",
        ));
    }
    match &axis.zarr {
        None => {
            let ds = io::open(path)?;
            let mut read = |i: usize, row0: usize, rows: usize, buf: &mut [f64]| -> Result<()> {
                let band = ds.rasterband(i + 1).map_err(|e| {
                    Error::band(path, (i + 1).to_string(), format!("cannot be opened: {e}"))
                })?;
                let b = band
                    .read_as::<f64>(
                        (col0 as isize, row0 as isize),
                        (width, rows),
                        (width, rows),
                        None,
                    )
                    .map_err(|e| {
                        Error::band(path, (i + 1).to_string(), format!("cannot be read: {e}"))
                    })?;
                buf.copy_from_slice(b.data());
                Ok(())
            };
            f(&mut read, south_up)
        }
        Some((store, array)) => {
            with_md_reader(store, array, (col0, width), None, |read| f(read, south_up))
        }
    }
}

/// Run `f` with a reader of a (time, y, x) array of a multidimensional dataset (Zarr store, NetCDF file), or
/// of a (time, expver, y, x) one with `layers` (the number of expver slices and the stored nodata value), its
/// slices merged.
fn with_md_reader(
    store: &Path,
    array: &str,
    (col0, width): (usize, usize),
    layers: Option<(usize, Option<f64>)>,
    f: impl FnOnce(&mut ReadSample) -> Result<()>,
) -> Result<()> {
    with_md_array(store, array, |_, a| {
        let failed = |i: usize, e| {
            Error::input(
                store,
                format!("{array}: time index {i} cannot be read: {e}"),
            )
        };
        let mut slice = Vec::new();
        let mut read = |i: usize, row0: usize, rows: usize, buf: &mut [f64]| -> Result<()> {
            let (i0, r0, c0) = (i as u64, row0 as u64, col0 as u64);
            let Some((k, nodata)) = layers else {
                let (start, count) = (vec![i0, r0, c0], vec![1, rows, width]);
                return a
                    .read_into_slice(buf, start, count)
                    .map_err(|e| failed(i, e));
            };
            slice.resize(buf.len(), 0.0);
            for e in 0..k {
                let (start, count) = (vec![i0, e as u64, r0, c0], vec![1, 1, rows, width]);
                let out = if e == 0 { &mut *buf } else { &mut slice[..] };
                a.read_into_slice(out, start, count)
                    .map_err(|err| failed(i, err))?;
                if e > 0 {
                    merge_expver(buf, &slice, nodata);
                }
            }
            Ok(())
        };
        f(&mut read)
    })
}

/// ERA5 with ERA5T (`EXPVER`): a value of `merged` that is missing (NaN or the stored nodata) takes the next
/// slice's value; where both have one, the earlier slice's stays (ERA5 over its preliminary release).
fn merge_expver(merged: &mut [f64], next: &[f64], nodata: Option<f64>) {
    for (m, &v) in merged.iter_mut().zip(next) {
        if m.is_nan() || nodata == Some(*m) {
            *m = v;
        }
    }
}

/// A NetCDF variable that GDAL's multidimensional API reads as (time, y, x) arrays of the classic view's size
/// (or (time, expver, y, x) with `expver` slices), with an ascending or descending y coordinate: its file,
/// name, and whether its rows run south to north (the classic view shows them north first). Reading it so is about 5 times faster than one classic band a
/// sample (a year of hourly ERA5 t2m on 100 x 100 cells: 0.8 s against 4.0 s), whose every read goes
/// through the netCDF and HDF5 layers anew. None (read classic bands): any other layout.
fn netcdf_array(
    path: &Path,
    (width, height): (usize, usize),
    (n, expver): (usize, Option<usize>),
) -> Option<(PathBuf, String, bool)> {
    let text = path.to_string_lossy();
    let ("NETCDF", file, var) = io::subdataset_parts(&text)? else {
        return None;
    };
    let file = PathBuf::from(file);
    let ds = open_multidim(&file).ok()?;
    let root = ds.root_group().ok()?;
    let a = root.open_md_array(var, Default::default()).ok()?;
    let dims = a.dimensions().ok()?;
    let sizes: Vec<usize> = dims.iter().map(|d| d.size()).collect();
    let want = match expver {
        Some(k) => vec![n, k, height, width],
        None => vec![n, height, width],
    };
    if sizes != want {
        return None;
    }
    let y = root
        .open_md_array(&dims[dims.len() - 2].name(), Default::default())
        .ok()?;
    let ys = y.read_as::<f64>(vec![0], vec![height]).ok()?;
    let (first, last) = (*ys.first()?, *ys.last()?);
    match first.partial_cmp(&last)? {
        std::cmp::Ordering::Less => Some((file, var.to_string(), true)),
        std::cmp::Ordering::Greater => Some((file, var.to_string(), false)),
        std::cmp::Ordering::Equal => None,
    }
}

fn open_multidim(store: &Path) -> Result<Dataset> {
    io::init();
    if !store.exists() {
        return Err(Error::input(store, "file does not exist"));
    }
    Dataset::open_ex(
        store,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_MULTIDIM_RASTER,
            ..Default::default()
        },
    )
    .map_err(|e| {
        Error::input(
            store,
            format!("not a multidimensional dataset GDAL can read ({e})"),
        )
    })
}

/// The time stamps of a Zarr array's first dimension, from its coordinate array and that array's units.
fn zarr_times(store: &Path, array: &str) -> Result<Stamps> {
    with_md_array(store, array, |root, a| {
        zarr_array_times(store, array, root, a)
    })
}

/// Run `f` with the root group of a multidimensional dataset and one of its arrays.
fn with_md_array<T>(
    store: &Path,
    array: &str,
    f: impl FnOnce(&gdal::raster::Group, &gdal::raster::MDArray) -> Result<T>,
) -> Result<T> {
    let ds = open_multidim(store)?;
    let root = ds
        .root_group()
        .map_err(|e| Error::gdal(store, "root group", e))?;
    let a = root
        .open_md_array(array, Default::default())
        .map_err(|e| Error::input(store, format!("has no array \"{array}\" ({e})")))?;
    f(&root, &a)
}

/// `zarr_times` of an array opened in its group.
fn zarr_array_times(
    store: &Path,
    array: &str,
    root: &gdal::raster::Group,
    a: &gdal::raster::MDArray,
) -> Result<Stamps> {
    let dims = a
        .dimensions()
        .map_err(|e| Error::gdal(store, "dimensions", e))?;
    if dims.len() != 3 {
        return Err(Error::input(
            store,
            format!(
                "{array}: has {} dimension(s); time, y and x are expected",
                dims.len()
            ),
        ));
    }
    dim_times(store, root, &dims[0])
}

/// The time stamps of a dimension, from its coordinate array and that array's units.
fn dim_times(
    store: &Path,
    root: &gdal::raster::Group,
    dim: &gdal::raster::Dimension,
) -> Result<Stamps> {
    let tname = dim.name();
    let t = root
        .open_md_array(&tname, Default::default())
        .map_err(|e| {
            Error::input(
                store,
                format!("its time dimension \"{tname}\" has no coordinate array ({e})"),
            )
        })?;
    // GDAL gives a CF "units" attribute as the array's unit (Zarr), or as an attribute.
    let units = Some(t.unit())
        .filter(|u| !u.is_empty())
        .or_else(|| t.attribute("units").ok().map(|u| u.read_as_string()))
        .ok_or_else(|| {
            Error::input(
                store,
                format!("{tname}: has no units (such as \"hours since 1900-01-01\")"),
            )
        })?;
    let values = t
        .read_as::<f64>(vec![0], vec![dim.size()])
        .map_err(|e| Error::input(store, format!("{tname}: cannot be read: {e}")))?;
    let calendar = t.attribute("calendar").ok().map(|c| c.read_as_string());
    let calendar = Calendar::parse(store, calendar.as_deref())?;
    let axis = TimeAxis::parse(store, &units, calendar)?;
    Ok((values.iter().map(|&v| axis.stamp(v)).collect(), calendar))
}

/// The time stamp of each band of a NetCDF variable: its extra dimension with "UNIT since DATE" units
/// (`time`, or another name such as ERA5's `valid_time`), in its calendar.
pub fn band_times(path: &Path) -> Result<Stamps> {
    let ds = io::open(path)?;
    let extra = ds.metadata_item("NETCDF_DIM_EXTRA", "").unwrap_or_default();
    let dims: Vec<&str> = extra
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let timed: Vec<(&str, String)> = dims
        .iter()
        .chain(["time"].iter())
        .filter_map(|d| ds.metadata_item(&format!("{d}#units"), "").map(|u| (*d, u)))
        .filter(|(_, u)| u.contains(" since "))
        .collect();
    let Some((dim, units)) = timed.first() else {
        return Err(Error::input(
            path,
            "has no time coordinate with units (\"UNIT since DATE\"): select bands by number instead",
        ));
    };
    if dims.len() > 1 {
        return Err(Error::input(
            path,
            format!(
                "has {} extra dimensions ({}): only a time axis is read",
                dims.len(),
                dims.join(", ")
            ),
        ));
    }
    let calendar = ds.metadata_item(&format!("{dim}#calendar"), "");
    let calendar = Calendar::parse(path, calendar.as_deref())?;
    let axis = TimeAxis::parse(path, units, calendar)?;
    let key = format!("NETCDF_DIM_{dim}");
    let times = (1..=ds.raster_count())
        .map(|b| {
            let band = ds
                .rasterband(b)
                .map_err(|e| Error::band(path, b.to_string(), format!("cannot be opened: {e}")))?;
            Ok(band
                .metadata_item(&key, "")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .and_then(|v| axis.stamp(v)))
        })
        .collect::<Result<_>>()?;
    Ok((times, calendar))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2021's hourly values on 2 x 2 cells (NetCDF, ERA5's layout), planned into monthly means.
    fn planned(d: &Path) -> Planned {
        let make = "import sys, numpy as np\nfrom osgeo import gdal\n\
            ds = gdal.GetDriverByName('netCDF').CreateMultiDimensional(sys.argv[1])\n\
            rg = ds.GetRootGroup(); f8 = gdal.ExtendedDataType.Create(gdal.GDT_Float64)\n\
            dt = rg.CreateDimension('time', 'TEMPORAL', None, 8760)\n\
            dy = rg.CreateDimension('latitude', 'HORIZONTAL_Y', None, 2)\n\
            dx = rg.CreateDimension('longitude', 'HORIZONTAL_X', None, 2)\n\
            t = rg.CreateMDArray('time', [dt], f8); t.Write(np.arange(1060680.0, 1060680.0 + 8760))\n\
            t.CreateAttribute('units', [], gdal.ExtendedDataType.CreateString()).WriteString('hours since 1900-01-01')\n\
            rg.CreateMDArray('latitude', [dy], f8).Write(np.array([51.5, 51.0]))\n\
            rg.CreateMDArray('longitude', [dx], f8).Write(np.array([-4.0, -3.5]))\n\
            rg.CreateMDArray('t2m', [dt, dy, dx], f8).Write(np.full((8760, 2, 2), 280.0))\n";
        let f = d.join("h.nc");
        let ok = std::process::Command::new("/usr/bin/python3")
            .args(["-c", make])
            .arg(&f)
            .status()
            .expect("python3 with osgeo");
        assert!(ok.success());
        let path = PathBuf::from(format!("NETCDF:\"{}\":t2m", f.display()));
        let steps = super::super::year_steps(Step::Month, 2021, false);
        let r = Request {
            path: &path,
            name: "tmean",
            steps: &steps,
            step: Step::Month,
            year: 2021,
            agg: Agg::Mean,
            shift_hours: 0.0,
            crs: Some("EPSG:4326"),
            scale: None,
            offset: None,
        };
        select(&r)
            .unwrap()
            .planned
            .expect("hourly samples are planned")
    }

    /// Daily samples of 2024 in the noleap calendar (365 of them, no 29 February): each month plans its own
    /// days, February 28 of them. Taken for standard-calendar samples, the same stamps lack 29 February.
    #[test]
    fn a_noleap_file_plans_a_leap_year_without_29_february() {
        let steps = super::super::year_steps(Step::Month, 2024, false);
        let path = PathBuf::from("cmip.nc");
        let r = Request {
            path: &path,
            name: "tmean",
            steps: &steps,
            step: Step::Month,
            year: 2024,
            agg: Agg::Mean,
            shift_hours: 0.0,
            crs: None,
            scale: None,
            offset: None,
        };
        // 2024-01-01 is noleap day 174 x 365 = 63,510 since 1850-01-01; noon stamps.
        let axis = TimeAxis::parse(&path, "days since 1850-01-01", Calendar::NoLeap).unwrap();
        let times: Vec<_> = (0..365).map(|d| axis.stamp(63_510.5 + d as f64)).collect();
        let plan = plan(&r, &times, Calendar::NoLeap).unwrap();
        let days: Vec<usize> = plan.iter().map(Vec::len).collect();
        assert_eq!(days, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]);
        assert_eq!(plan[2][0], vec![59], "1 March is the 60th sample");
        let err = super::plan(&r, &times, Calendar::Standard).unwrap_err();
        assert!(
            err.to_string().contains("2024-02-29: 0 of 1 samples"),
            "{err}"
        );
    }

    /// While a `Reuse` lives, the same archive planned again (a scenario's second NPP job) takes the
    /// aggregates made for the first, scratch folder and all; without one, each request aggregates anew.
    #[test]
    fn a_reuse_aggregates_once_for_two_jobs() {
        let tmp = tempfile::tempdir().unwrap();
        let p = planned(tmp.path());
        let made = |p: &Planned| aggregate_planned(p, None).unwrap().path;
        let (a, b) = (made(&p), made(&p.clone()));
        assert_ne!(a, b, "without a Reuse, two scratch files");
        let reuse = Reuse::begin();
        let first = aggregate_planned(&p, None).unwrap();
        let again = aggregate_planned(&p.clone(), None).unwrap();
        assert_eq!(first.path, again.path);
        assert!(Arc::ptr_eq(
            first.scratch.as_ref().unwrap(),
            again.scratch.as_ref().unwrap()
        ));
        // 2021 (hours since 1900: 44,195 days x 24 = 1,060,680 at its first hour), by month.
        assert_eq!(first.bands.len(), 12);
        drop((first, again, reuse));
        assert!(KEPT.lock().unwrap().is_none());
    }

    #[test]
    fn a_day_aggregates_then_the_days_of_the_step() {
        // Two days of two samples each, stored as 0, 2 | 4, 6 with offset 1: values 1, 3 | 5, 7.
        let packing = Packing {
            scale: 1.0,
            offset: 1.0,
            nodata: Some(-9.0),
        };
        let raw = [0.0, 2.0, 4.0, 6.0];
        let days = vec![vec![0, 1], vec![2, 3]];
        let run = |agg| {
            step_values(&days, agg, &packing, 1, |i, b| {
                b[0] = raw[i];
                Ok(())
            })
            .unwrap()
            .0[0]
        };
        // mean: days 2 and 6, mean 4; sum: days 4 and 12, total 16; min: 1 and 5 -> 3; max: 3 and 7 -> 5.
        assert_eq!(run(Agg::Mean), 4.0);
        assert_eq!(run(Agg::Sum), 16.0);
        assert_eq!(run(Agg::Min), 3.0);
        assert_eq!(run(Agg::Max), 5.0);
        // accumulated: each day's last sample, 3 and 7, the days added: 10.
        assert_eq!(run(Agg::Accumulated), 10.0);
        let (gap, _) = step_values(&days, Agg::Max, &packing, 1, |i, b| {
            b[0] = if i == 1 { -9.0 } else { raw[i] };
            Ok(())
        })
        .unwrap();
        assert!(gap[0].is_nan(), "a nodata sample makes the step nodata");
    }
}
