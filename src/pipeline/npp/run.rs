//! The NPP stage's run: inputs checked and opened, the grid in blocks (read, NDVI completed, corrections, the
//! model per pixel, written), class sums accumulated in pixel order, then one commit with the summary table and
//! the Monte Carlo draws.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rayon::prelude::*;

use super::casa_strip::strip_casa;
use super::driver_error::{curvature, slope, Perturb};
use super::fill::{self, FillCounts};
use super::mod17_strip::strip_mod17;
use super::prepare::prepare;
use super::{
    class_warnings, draws, gc_m2_to_tco2_ha, input_warnings, npp_writers, output_metadata,
    per_label, summary_csv, window_tmean, ClassModel, ClassSummary, NppJob, NppModel, NppSummary,
    NppWriters, PixelOut, Prepared, LC_FILL, OUTS_CASA, OUTS_MOD17,
};
use crate::area::PixelAreas;
use crate::correction::Level;
use crate::engine::run::{Plane, StripOut};
use crate::error::Result;
use crate::io::{self, BandRequest, GridReader, RasterWriter, Resampling, Window};
use crate::progress::Progress;
use crate::zones::OUTSIDE;

/// Run the NPP stage.
pub fn run_npp(job: &NppJob, progress: &dyn Progress) -> Result<NppSummary> {
    let mut p = prepare(job)?;
    let grid = p.grid.clone();
    for d in p.drivers.iter_mut() {
        d.open(&grid)?;
    }
    let mut warnings = Vec::new();
    for msg in input_warnings(job, &p) {
        progress.warn(&msg);
        warnings.push(msg);
    }
    let outs: &[&'static str] = match job.model {
        NppModel::Casa => &OUTS_CASA,
        NppModel::Mod17 | NppModel::PModel => &OUTS_MOD17,
    };
    let md = output_metadata(job, &p);
    let (mut writers, layout) = Layout::flat(npp_writers(job, &p, &md, outs)?);
    let readers = Readers::open(job, &p)?;
    let mut acc = Accumulator::new(&p);
    let (rows, cols) = block_size(job, &p, outs);
    let blocks = crate::engine::strips::blocks(grid.width, grid.height, rows, cols);
    // A block's inputs are read by a worker beside the previous block's work; the kernel runs here (the
    // correction zones' geometries cannot leave this thread).
    let parts = ReadParts::of(job, &p);
    let read = |w: Window| BlockIn::read(parts, &readers, &w);
    let kernel = |w: Window, input| run_block(job, &p, outs, layout, &w, input);
    crate::engine::run::run(
        "npp",
        blocks,
        &mut writers,
        progress,
        (read, kernel),
        |w, side: BlockSide| acc.add(&readers, outs, &w, side),
    )?;
    for msg in class_warnings(job, &p, &acc.summaries)? {
        progress.warn(&msg);
        warnings.push(msg);
    }
    if let Some(msg) = corrections_message(&p, &acc.level_pixels) {
        progress.warn(&msg);
        warnings.push(msg);
    }
    finish(job, &p, writers, acc.summaries, outs, warnings)
}

/// Strip height from the memory budget: per pixel, the composites around the model year, its 12 filled months
/// and temperatures, the simulated months' drivers (6 variables) and monthly outputs, and the next block's
/// composites and temperatures (read meanwhile); daily drivers are streamed one day at a time.
fn block_size(job: &NppJob, p: &Prepared, outs: &[&str]) -> (usize, usize) {
    let nmonths = p.period.sim.len();
    let nvars = 6;
    let next = p.ndvi_files.len() + 12;
    let per_px = 4 * (p.ndvi_files.len() + 24 + nmonths * (nvars + 3 * 2) + 16 + next) + 64;
    // With driver errors: four response bands per driver, and the two moved runs' results (24 bytes each) with
    // a band's values.
    let sens = 16 * p.driver_errors.len() + if p.driver_errors.is_empty() { 0 } else { 56 };
    let out_px = 4 * (outs.len() + if job.monthly { nmonths } else { 0 }) + 8 + sens;
    crate::engine::strips::block(p.grid.width, p.grid.height, per_px, out_px, job.memory_mb)
}

/// The stage's raster readers and the grid's true pixel areas.
struct Readers {
    /// One per composite, each read by one thread at a time.
    ndvi: Vec<Mutex<GridReader>>,
    /// Read by one thread at a time (a block's inputs are read beside the previous block's work).
    landcover: Mutex<GridReader>,
    areas: PixelAreas,
    /// Legend codes in legend order (a class's index).
    codes: Vec<i64>,
}

impl Readers {
    fn open(job: &NppJob, p: &Prepared) -> Result<Readers> {
        let ndvi = p
            .ndvi_files
            .iter()
            .map(|(_, f)| {
                let band = BandRequest {
                    index: job.ndvi_band,
                    name: job.ndvi_index.clone(),
                };
                GridReader::new(f, &[band], &p.grid, Resampling::Bilinear, None, f64::NAN)
                    .map(Mutex::new)
            })
            .collect::<Result<Vec<_>>>()?;
        let band = BandRequest {
            index: job.landcover_band,
            name: "land cover".into(),
        };
        let landcover = Mutex::new(GridReader::new(
            &job.landcover,
            &[band],
            &p.grid,
            Resampling::Nearest,
            None,
            LC_FILL,
        )?);
        Ok(Readers {
            ndvi,
            landcover,
            areas: PixelAreas::of(&p.grid)?,
            codes: p.legend.classes.iter().map(|c| c.code).collect(),
        })
    }

    /// The months' composites over a block, read in parallel.
    fn composites(&self, w: &Window) -> Result<Vec<Vec<f32>>> {
        self.ndvi
            .par_iter()
            .map(|r| {
                let mut b = vec![0f32; w.len()];
                r.lock()
                    .expect("NDVI reader lock")
                    .read_window::<f32>(0, w, &mut b)
                    .map(|()| b)
            })
            .collect()
    }

    /// Class index and model per pixel of a block (None: no data, outside the map, or a class without one).
    fn classes<'p>(
        &self,
        p: ReadParts<'p>,
        w: &Window,
    ) -> Result<Vec<Option<(usize, &'p ClassModel)>>> {
        let mut lc = vec![0i32; w.len()];
        self.landcover
            .lock()
            .expect("land-cover reader lock")
            .read_window::<i32>(0, w, &mut lc)?;
        Ok(lc
            .iter()
            .map(|&c| {
                let c = c as i64;
                if c as f64 == LC_FILL
                    || p.lc_nodata == Some(c as f64)
                    || p.legend.nodata.contains(&c)
                {
                    return None;
                }
                let ci = self.codes.iter().position(|&x| x == c)?;
                p.class_models.get(&c).map(|m| (ci, m))
            })
            .collect())
    }
}

/// What a block reads before its computation: each pixel's class and model, the months' composites, and the
/// model year's mean temperatures (CASA, dormancy).
struct BlockIn<'p> {
    models: Vec<Option<(usize, &'p ClassModel)>>,
    composites: Vec<Vec<f32>>,
    tmean: Vec<crate::drivers::Plane>,
}

/// What reading a block needs of the prepared stage (all of it can be read from another thread; `Prepared`
/// as a whole holds GDAL geometries, which stay on the thread that made them).
#[derive(Clone, Copy)]
struct ReadParts<'p> {
    legend: &'p crate::landcover::Legend,
    lc_nodata: Option<f64>,
    class_models: &'p BTreeMap<i64, ClassModel>,
    /// The model year's mean temperatures are read (CASA, or a class with a dormancy threshold).
    tmean: bool,
    drivers: (&'p [crate::drivers::Drivers], &'p [(usize, Vec<usize>)]),
}

impl<'p> ReadParts<'p> {
    fn of(job: &NppJob, p: &'p Prepared) -> ReadParts<'p> {
        ReadParts {
            legend: &p.legend,
            lc_nodata: p.lc_nodata,
            class_models: &p.class_models,
            tmean: job.model == NppModel::Casa || p.dormancy.iter().any(Option::is_some),
            drivers: (&p.drivers, &p.window_steps),
        }
    }
}

impl<'p> BlockIn<'p> {
    fn read(parts: ReadParts<'p>, readers: &Readers, w: &Window) -> Result<BlockIn<'p>> {
        let models = readers.classes(parts, w)?;
        let composites = readers.composites(w)?;
        let tmean = match parts.tmean {
            true => window_tmean(parts.drivers, w)?,
            false => Vec::new(),
        };
        Ok(BlockIn {
            models,
            composites,
            tmean,
        })
    }
}

/// Which writers a run has beyond one per output, in the order of the flat list (`finish`'s): the outputs,
/// the monthly outputs, the correction factors, the filled-months count, the driver sensitivities.
#[derive(Clone, Copy)]
struct Layout {
    /// Monthly writers (`--monthly`): the first this many of a block's monthly outputs.
    monthly: usize,
    factor: bool,
    filled: bool,
    sensitivity: bool,
}

impl Layout {
    fn flat(w: NppWriters) -> (Vec<RasterWriter>, Layout) {
        let layout = Layout {
            monthly: w.monthly.len(),
            factor: w.factor.is_some(),
            filled: w.filled.is_some(),
            sensitivity: w.sensitivity.is_some(),
        };
        let all = (w.main.into_iter().chain(w.monthly))
            .chain(w.factor)
            .chain(w.filled)
            .chain(w.sensitivity)
            .collect();
        (all, layout)
    }
}

/// What a block gives the class sums: each pixel's results, class and model and NDVI fills, and the pixels
/// corrected at each level.
struct BlockSide<'p> {
    results: Vec<PixelOut>,
    models: Vec<PixelModel<'p>>,
    fills: Vec<FillCounts>,
    level_pixels: [u64; 4],
}

/// One block's kernel: the NDVI series completed per pixel, correction factors, the model per pixel; every
/// writer's planes (in `Layout`'s order) and what the class sums need.
fn run_block<'p>(
    job: &NppJob,
    p: &Prepared,
    outs: &[&'static str],
    layout: Layout,
    w: &Window,
    input: BlockIn<'p>,
) -> Result<StripOut<BlockSide<'p>>> {
    let BlockIn {
        models,
        composites,
        tmean,
    } = input;
    let available: Vec<usize> = p.ndvi_files.iter().map(|(t, _)| *t).collect();
    let (dormancy, models_ref, tmean_ref) = (&p.dormancy, &models, &tmean);
    let dormant = move |px: usize, k: usize| -> bool {
        let Some((ci, _)) = models_ref[px] else {
            return false;
        };
        matches!(dormancy[ci], Some(th) if tmean_ref[k].at(px) < th)
    };
    let range = p.period.sim_range();
    let (ndvi, fills) = fill::fill_block(&p.timeline, &available, &composites, range, dormant);
    drop(composites);
    let mut level_pixels = [0; 4];
    let factors = block_factors(p, &models, w, &mut level_pixels)?;
    let target = p.corrections.as_ref().map(|c| c.0.target);
    let kernel = |perturb: Option<Perturb>, monthly: bool, models: &[PixelModel]| match job.model {
        NppModel::Casa => strip_casa(p, models, (&ndvi, &tmean), &factors, w, (monthly, perturb)),
        NppModel::Mod17 | NppModel::PModel => {
            strip_mod17(p, models, &ndvi, (&factors, target), w, perturb)
        }
    };
    let (results, monthly) = kernel(None, layout.monthly > 0, &models)?;
    let mut planes: Vec<Vec<Plane>> = outs
        .par_iter()
        .map(|o| {
            let value = value_of(o); // once per output, not per pixel (a string match)
            vec![results
                .iter()
                .map(|r| value(r) as f32)
                .collect::<Vec<f32>>()
                .into()]
        })
        .collect();
    // The block's monthly planes move into the writers (no copies).
    let monthly = monthly.into_iter().take(layout.monthly);
    planes.extend(monthly.map(|m| m.into_iter().map(Plane::from).collect()));
    if layout.factor {
        planes.push(vec![factors
            .iter()
            .map(|v| *v as f32)
            .collect::<Vec<f32>>()
            .into()]);
    }
    if layout.filled {
        planes.push(vec![fills
            .iter()
            .map(FillCounts::filled)
            .collect::<Vec<u8>>()
            .into()]);
    }
    if layout.sensitivity {
        let base = (&results[..], &models[..]);
        planes.push(sensitivity(
            (&p.driver_errors, &p.class_moves),
            base,
            &kernel,
        )?);
    }
    let side = BlockSide {
        results,
        models,
        fills,
        level_pixels,
    };
    Ok(StripOut { planes, side })
}

/// A pixel's legend class (index) and model, if it has one.
type PixelModel<'a> = Option<(usize, &'a ClassModel)>;

/// A block's model run: with a driver moved (or none), with monthly planes or not, on these pixels' models.
type Kernel<'a> = dyn Fn(Option<Perturb>, bool, &[PixelModel]) -> Result<super::StripResult> + 'a;

/// Each declared driver's response bands of a block (`driver_error.rs`): the model run again with the driver
/// moved by +sd and by -sd; per pixel the slope and the curvature of NPP and of Rh through the three values. A
/// class parameter moves every class by its own type's sd in one pair of runs (a pixel's sd is its class's; 0,
/// no response, for a class without an entry).
fn sensitivity(
    (declared, class_moves): (&[(usize, f64)], &[super::driver_error::ClassMove]),
    (base, models): (&[PixelOut], &[PixelModel]),
    kernel: &Kernel,
) -> Result<Vec<Plane>> {
    let mut bands = Vec::with_capacity(4 * declared.len());
    for &(driver, sd) in declared {
        let class = class_moves.iter().find(|c| c.driver == driver);
        let run = |sign: f64| match class {
            None => kernel(
                Some(Perturb {
                    driver,
                    delta: sign * sd,
                }),
                false,
                models,
            )
            .map(|r| r.0),
            Some(c) => {
                let m = &c.moved[usize::from(sign < 0.0)];
                let moved: Vec<PixelModel> = models
                    .iter()
                    .map(|x| x.map(|(ci, own)| (ci, m[ci].as_ref().unwrap_or(own))))
                    .collect();
                kernel(None, false, &moved).map(|r| r.0)
            }
        };
        let (plus, minus) = (run(1.0)?, run(-1.0)?);
        let sd_of = |px: usize| match class {
            None => sd,
            Some(c) => models[px].map_or(0.0, |(ci, _)| c.sd[ci]),
        };
        let of = |get: fn(&PixelOut) -> f64, f: fn(f64, f64, f64, f64) -> f64| -> Vec<f32> {
            (0..base.len())
                .map(|px| match sd_of(px) {
                    // A class without an entry is not moved: no response.
                    0.0 if class.is_some() => 0.0,
                    s => f(get(&plus[px]), get(&base[px]), get(&minus[px]), s) as f32,
                })
                .collect()
        };
        bands.push(of(|r| r.npp, slope).into());
        bands.push(of(|r| r.rh, slope).into());
        bands.push(of(|r| r.npp, curvature).into());
        bands.push(of(|r| r.rh, curvature).into());
    }
    Ok(bands)
}

/// An output's value for one pixel's result (sequestration in t CO2 ha-1 from NEP in g C m-2).
/// How output `o`'s value comes from a pixel's results.
fn value_of(o: &str) -> fn(&PixelOut) -> f64 {
    match o {
        "GPP" => |r| r.gpp,
        "NPP" => |r| r.npp,
        "Rh" => |r| r.rh,
        "NEP" => |r| r.npp - r.rh,
        _ => |r| gc_m2_to_tco2_ha(r.npp - r.rh),
    }
}

/// Correction factor per pixel of a block (1 without corrections, NaN where no class), counting the pixels
/// each level of the table corrected and writing the factor raster.
fn block_factors(
    p: &Prepared,
    models: &[Option<(usize, &ClassModel)>],
    w: &Window,
    level_pixels: &mut [u64; 4],
) -> Result<Vec<f64>> {
    let Some((t, z)) = &p.corrections else {
        return Ok(vec![1.0; w.len()]);
    };
    let zone_ids = match z {
        Some(z) => z.read_window(w)?,
        None => vec![OUTSIDE; w.len()],
    };
    let mut cache: BTreeMap<(i32, usize), (f64, Level)> = BTreeMap::new();
    let f: Vec<f64> = models
        .iter()
        .zip(&zone_ids)
        .map(|(m, &zid)| {
            let Some((ci, _)) = m else { return f64::NAN };
            let (f, level) = *cache.entry((zid, *ci)).or_insert_with(|| {
                let zone = match z {
                    Some(z) if zid != OUTSIDE => z.key(zid).last().cloned(),
                    _ => None,
                };
                t.lookup(
                    zone.as_deref(),
                    Some(&p.legend.classes[*ci].vegetation_type),
                )
            });
            level_pixels[level as usize] += 1;
            f
        })
        .collect();
    Ok(f)
}

/// Class sums in pixel order (deterministic whatever the thread count), and the pixels corrected at each
/// level, indexed by `Level as usize`.
struct Accumulator {
    summaries: Vec<ClassSummary>,
    level_pixels: [u64; 4],
}

impl Accumulator {
    fn new(p: &Prepared) -> Accumulator {
        let summaries = p
            .legend
            .classes
            .iter()
            .map(|c| ClassSummary {
                code: c.code,
                name: c.name.clone(),
                vegetation_type: c.vegetation_type.clone(),
                ..Default::default()
            })
            .collect();
        Accumulator {
            summaries,
            level_pixels: [0; 4],
        }
    }

    fn add(&mut self, readers: &Readers, outs: &[&'static str], w: &Window, side: BlockSide) {
        let (results, models, fills) = (&side.results, &side.models, &side.fills);
        for (n, add) in self.level_pixels.iter_mut().zip(side.level_pixels) {
            *n += add;
        }
        // The outputs' running sums per class in arrays for the block (the same additions in the same order as
        // into the maps pixel by pixel, without a map lookup per pixel), written back at the end.
        let load = |m: &BTreeMap<&'static str, f64>| -> Vec<f64> {
            outs.iter()
                .map(|o| m.get(o).copied().unwrap_or(0.0))
                .collect()
        };
        let mut vs: Vec<Vec<f64>> = self.summaries.iter().map(|s| load(&s.value_sums)).collect();
        let mut ss: Vec<Vec<f64>> = self.summaries.iter().map(|s| load(&s.sums)).collect();
        let mut summed = vec![false; self.summaries.len()];
        let values: Vec<fn(&PixelOut) -> f64> = outs.iter().map(|o| value_of(o)).collect();
        for (px, (r, m)) in results.iter().zip(models).enumerate() {
            let Some((ci, _)) = m else { continue };
            let s = &mut self.summaries[*ci];
            let area = readers
                .areas
                .at(w.col0 + px % w.ncols, w.row0 + px / w.ncols);
            s.pixels += 1;
            let f = fills[px];
            s.filled_pixel_months += f.filled() as u64;
            s.dormant_pixel_months += f.dormant as u64;
            s.climatology_pixel_months += f.climatology as u64;
            if !matches!(m, Some((_, ClassModel::Zero))) {
                s.pixels_without_ndvi += u64::from(f.none > 0);
            }
            s.area_m2 += area;
            if r.npp.is_nan() || r.rh.is_nan() {
                s.pixels_without_result += 1;
                continue;
            }
            summed[*ci] = true;
            for (k, get) in values.iter().enumerate() {
                let v = get(r);
                vs[*ci][k] += v;
                ss[*ci][k] += v * area;
            }
        }
        for (ci, s) in self
            .summaries
            .iter_mut()
            .enumerate()
            .filter(|(ci, _)| summed[*ci])
        {
            for (k, o) in outs.iter().enumerate() {
                s.value_sums.insert(o, vs[ci][k]);
                s.sums.insert(o, ss[ci][k]);
            }
        }
    }
}

/// How many pixels each level of the correction table corrected.
fn corrections_message(p: &Prepared, level_pixels: &[u64; 4]) -> Option<String> {
    let (t, _) = p.corrections.as_ref()?;
    let levels = [
        (Level::ZoneClass, "zone x class"),
        (Level::Zone, "zone"),
        (Level::Class, "class"),
        (Level::None, "none (factor 1)"),
    ];
    let counts: Vec<String> = levels
        .iter()
        .map(|(l, name)| format!("{name} {}", level_pixels[*l as usize]))
        .collect();
    Some(format!(
        "corrections {} ({}): pixels by the row that applied: {}",
        t.path.display(),
        t.target.name(),
        counts.join(", ")
    ))
}

/// Every raster verified and staged, the class table written, the draws computed from the period's NPP and Rh.
fn finish(
    job: &NppJob,
    p: &Prepared,
    all: Vec<RasterWriter>,
    summaries: Vec<ClassSummary>,
    outs: &[&str],
    warnings: Vec<String>,
) -> Result<NppSummary> {
    let mut outputs: Vec<_> = all.iter().map(|w| w.target().to_path_buf()).collect();
    for pd in crate::engine::write::finish_all(all)? {
        pd.commit()?;
    }
    let label = &p.period.label;
    let table = job
        .out_dir
        .join(format!("{}_summary_{label}.csv", job.model.key()));
    let table_text = summary_csv(&summaries, outs, p.period.sim.len());
    let per = per_label(&p.period);
    let notes = [format!(
        "fluxes in g C m-2 {per}, totals in t C (t CO2 for sequestration) over the class area; NEP = NPP - Rh, positive = net uptake (sink)"
    )];
    io::write_table(&table, table_text.as_bytes(), &notes)?;
    if let (Some(spec), Some(file)) = (&job.draws, &p.uncertainty) {
        let d = draws::Draws::new(file.clone(), &spec.file, spec.n, spec.seed);
        let find = |stem: &str| {
            let name = format!("{stem}_{label}.tif");
            outputs
                .iter()
                .find(|o| o.file_name().is_some_and(|n| n.to_string_lossy() == name))
                .cloned()
                .expect("the period outputs")
        };
        let (npp, rh) = (find("NPP_gC_m2"), find("Rh_gC_m2"));
        let sens = (!p.driver_errors.is_empty()).then(|| find("driver_sensitivity"));
        let seed = (spec.seed, p.confusion.as_ref());
        let inputs = (npp.as_path(), rh.as_path(), sens.as_deref());
        let files = super::draws_out::write(job, &p.legend, inputs, label, &d, seed)?;
        outputs.extend(files);
    }
    Ok(NppSummary {
        outputs,
        table,
        table_text,
        classes: summaries,
        period_label: p.period.label.clone(),
        warnings,
    })
}
