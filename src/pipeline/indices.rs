//! `carbonmap indices`: a scene stack to index rasters per period. Inputs are checked up front, then the
//! analysis grid runs on the engine block by block: the reader reads every scene of a block and evaluates the
//! indices (scenes in parallel), the kernel composites every output (outputs in parallel), the engine writes
//! them (outputs in parallel), and every output is renamed into place only once all of them are complete. The
//! next block is read after the current one is written (`engine::run::run_local`): reading ahead held a second
//! block of every scene's values (peak 274 MiB against 229 MiB for 7 indices x 12 months at 1024 px) and
//! gained no time on 2 cores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Datelike;
use rayon::prelude::*;

use crate::composite::{self, Period, PeriodSpec, Stat};
use crate::engine::run::{Plane, StripOut};
use crate::error::{Error, Result};
use crate::indices::{CompiledIndex, ConstOverrides, IndexTable};
use crate::io::{self, Grid, OutBand, PendingOutput, RasterWriter, Window, WriteOptions};
use crate::progress::Progress;
use crate::scene::{SceneReader, Stack};

/// How the analysis grid is chosen.
#[derive(Debug, Clone)]
pub enum GridChoice {
    /// The grid of the stack's first acquisition (its finest file).
    FirstScene,
    /// The grid of a reference raster.
    Reference(PathBuf),
    /// CRS, resolution and bounds.
    Spec {
        crs: String,
        res: f64,
        bounds: [f64; 4],
    },
    /// A window of another choice's grid: one shard of a sharded run (`--window`).
    Window(Box<GridChoice>, Window),
}

impl GridChoice {
    pub fn resolve(&self, stack: &Stack) -> Result<Grid> {
        match self {
            // The finest-resolution file of the first acquisition (a SAFE's B01 is 60 m, its B04 10 m).
            GridChoice::FirstScene => {
                let grids = stack.scenes[0]
                    .files()
                    .map(|f| f.grid())
                    .collect::<Result<Vec<_>>>()?;
                Ok(grids
                    .into_iter()
                    .min_by(|a, b| a.pixel_area().total_cmp(&b.pixel_area()))
                    .expect("a scene has at least one file"))
            }
            GridChoice::Reference(p) => Grid::from_raster(p),
            GridChoice::Spec { crs, res, bounds } => Grid::from_spec(crs, *res, *bounds),
            GridChoice::Window(whole, w) => whole.resolve(stack)?.window(w),
        }
    }
}

/// What `carbonmap indices` does.
#[derive(Debug, Clone)]
pub struct IndicesJob {
    pub stack: PathBuf,
    pub out_dir: PathBuf,
    pub indices: Vec<String>,
    pub period: PeriodSpec,
    pub stats: Vec<Stat>,
    pub gap_fill: bool,
    pub grid: GridChoice,
    pub constants: Vec<String>,
    /// A user's index table instead of models/indices.toml.
    pub index_table: Option<PathBuf>,
    pub write: WriteOptions,
    /// Working-memory budget for one strip of values, in MiB.
    pub memory_mb: usize,
}

/// One written raster.
#[derive(Debug, Clone)]
pub struct OutputRecord {
    pub index: String,
    pub period: String,
    pub path: PathBuf,
    pub acquisitions: usize,
    /// Fraction of (pixel, acquisition) pairs that were clear, over the period's acquisitions.
    pub clear_fraction: f64,
    /// Pixels with at least one clear observation in the period.
    pub pixels_with_data: u64,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct IndicesSummary {
    pub grid: Grid,
    pub outputs: Vec<OutputRecord>,
    pub warnings: Vec<String>,
}

/// Maximum number of output rasters open at once; more outputs are written in several passes (each pass reads
/// the stack again).
const MAX_OPEN_OUTPUTS: usize = 256;

struct OutputPlan {
    index: usize,
    period: usize,
    path: PathBuf,
}

/// Everything checked and resolved before any computation.
struct Prepared {
    stack: Stack,
    grid: Grid,
    compiled: Vec<CompiledIndex>,
    /// Band letters read for every scene, in order.
    letters: Vec<String>,
    /// For each compiled index, positions of its bands in `letters`.
    band_pos: Vec<Vec<usize>>,
    periods: Vec<Period>,
}

fn prepare(job: &IndicesJob) -> Result<Prepared> {
    let table = match &job.index_table {
        Some(p) => IndexTable::from_file(p)?,
        None => IndexTable::builtin()?,
    };
    let defs = table.select(&job.indices)?;
    let overrides = ConstOverrides::parse(&job.constants)?;
    overrides.check(&defs)?;
    let compiled = defs
        .iter()
        .map(|d| CompiledIndex::new(d, &overrides.for_index(d)))
        .collect::<Result<Vec<_>>>()?;
    let stack = Stack::open(&job.stack)?;
    let grid = job.grid.resolve(&stack)?;
    let (letters, band_pos) = bands_of(&stack, &grid, &compiled)?;
    let dates: Vec<_> = stack.scenes.iter().map(|s| s.date).collect();
    let periods = composite::periods(&job.period, &dates);
    if periods.is_empty() {
        return Err(Error::Usage(
            "no compositing period contains an acquisition".into(),
        ));
    }
    Ok(Prepared {
        stack,
        grid,
        compiled,
        letters,
        band_pos,
        periods,
    })
}

/// The band letters `compiled` read (each once, in order) and, per index, the positions of its bands among
/// them; checks that the stack has every band, its QA band and CRSs, and overlaps `grid`.
pub(crate) fn bands_of(
    stack: &Stack,
    grid: &Grid,
    compiled: &[CompiledIndex],
) -> Result<(Vec<String>, Vec<Vec<usize>>)> {
    let mut letters: Vec<String> = Vec::new();
    let mut needs = Vec::new();
    for c in compiled {
        for b in &c.def.bands {
            if !letters.contains(b) {
                letters.push(b.clone());
            }
            needs.push((b.clone(), c.def.name.clone()));
        }
    }
    stack.check(grid, &needs)?;
    let band_pos = compiled
        .iter()
        .map(|c| {
            c.def
                .bands
                .iter()
                .map(|b| letters.iter().position(|l| l == b).unwrap())
                .collect()
        })
        .collect();
    Ok((letters, band_pos))
}

/// Metadata tags common to every output of a run.
fn base_metadata(p: &Prepared, job: &IndicesJob) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("CARBONMAP_VERSION".into(), crate::VERSION.into());
    m.insert("SENSOR".into(), p.stack.profile.name.clone());
    m.insert(
        "SENSOR_PROFILE".into(),
        p.stack.profile.source.display().to_string(),
    );
    m.insert("STACK_MANIFEST".into(), job.stack.display().to_string());
    m.insert(
        "MASKED_QA_CATEGORIES".into(),
        p.stack
            .mask
            .as_ref()
            .map(|m| m.categories.join(","))
            .unwrap_or_else(|| "none".into()),
    );
    m.insert(
        "GAP_FILL".into(),
        if job.gap_fill {
            "linear in time between clear observations".into()
        } else {
            "none".into()
        },
    );
    m.insert("COMPOSITE_PERIOD".into(), job.period.name().into());
    m
}

/// Run the indices stage.
/// One output per index and period, in index order.
fn output_plans(job: &IndicesJob, prep: &Prepared) -> Vec<OutputPlan> {
    let mut plans = Vec::new();
    for (ii, c) in prep.compiled.iter().enumerate() {
        for (pi, p) in prep.periods.iter().enumerate() {
            plans.push(OutputPlan {
                index: ii,
                period: pi,
                path: job.out_dir.join(format!("{}_{}.tif", c.def.name, p.label)),
            });
        }
    }
    plans
}

/// The scenes read (members of any period, or all of them when gap filling), their day numbers and days of
/// year, and a reader each. Each scene has its own GDAL handles; the Mutex makes sure one thread at a time
/// uses them, so the scenes of a block can be read in parallel (GDAL 3.6 datasets are not thread-safe, but
/// are Send).
struct Scenes<'a> {
    needed: Vec<usize>,
    days: Vec<f64>,
    doys: Vec<f64>,
    readers: Vec<Mutex<SceneReader<'a>>>,
}

impl<'a> Scenes<'a> {
    fn open(prep: &'a Prepared, job: &IndicesJob) -> Result<Scenes<'a>> {
        let stack = &prep.stack;
        let needed: Vec<usize> = (0..stack.scenes.len())
            .filter(|s| job.gap_fill || prep.periods.iter().any(|p| p.members.contains(s)))
            .collect();
        let date = |s: &usize| stack.scenes[*s].date;
        // Opened in parallel; the first failure in scene order is the one reported.
        let readers = needed
            .par_iter()
            .map(|&s| {
                SceneReader::new(stack, &stack.scenes[s], &prep.letters, &prep.grid).map(Mutex::new)
            })
            .collect::<Vec<Result<_>>>()
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(Scenes {
            days: needed
                .iter()
                .map(|s| date(s).num_days_from_ce_f64())
                .collect(),
            doys: needed.iter().map(|s| date(s).ordinal() as f64).collect(),
            needed,
            readers,
        })
    }
}

/// What a run has finished: outputs waiting for the commit, their records, warnings.
#[derive(Default)]
struct Finished {
    pending: Vec<PendingOutput>,
    records: Vec<OutputRecord>,
    warnings: Vec<String>,
}

pub fn run_indices(job: &IndicesJob, progress: &dyn Progress) -> Result<IndicesSummary> {
    let prep = prepare(job)?;
    let plans = output_plans(job, &prep);
    let mut done = Finished::default();
    for p in prep.periods.iter().filter(|p| p.members.is_empty()) {
        let msg = format!(
            "period {} ({} to {}) has no acquisition; its composites are all NaN",
            p.label, p.start, p.end
        );
        progress.warn(&msg);
        done.warnings.push(msg);
    }
    let scenes = Scenes::open(&prep, job)?;
    let base = base_metadata(&prep, job);
    let n_passes = plans.len().div_ceil(MAX_OPEN_OUTPUTS);
    let grid = &prep.grid;
    for (pass_no, outputs) in plans.chunks(MAX_OPEN_OUTPUTS).enumerate() {
        let pass = Pass::new(&prep, &scenes, outputs);
        let name = match n_passes {
            1 => "indices".to_string(),
            _ => format!("indices (pass {} of {n_passes})", pass_no + 1),
        };
        pass.run(job, &base, (&name, pass_no == 0), progress, &mut done)?;
    }
    // Every raster is complete: rename all into place, then write the summary table.
    for p in done.pending {
        p.commit()?;
    }
    write_summary(
        &job.out_dir.join("indices_summary.csv"),
        &done.records,
        grid,
    )?;
    Ok(IndicesSummary {
        grid: grid.clone(),
        outputs: done.records,
        warnings: done.warnings,
    })
}

/// One pass over the grid for up to MAX_OPEN_OUTPUTS outputs (and, in the first, every period's
/// clear-observation count).
struct Pass<'a> {
    prep: &'a Prepared,
    scenes: &'a Scenes<'a>,
    outputs: &'a [OutputPlan],
    /// The indices these outputs use, each computed once per block.
    indices: Vec<usize>,
    /// Each output's and each period's members as positions in the block's scene axis.
    output_members: Vec<Vec<usize>>,
    period_members: Vec<Vec<usize>>,
}

impl<'a> Pass<'a> {
    fn new(prep: &'a Prepared, scenes: &'a Scenes<'a>, outputs: &'a [OutputPlan]) -> Pass<'a> {
        let mut indices: Vec<usize> = outputs.iter().map(|o| o.index).collect();
        indices.sort_unstable();
        indices.dedup();
        let output_members = outputs
            .iter()
            .map(|o| positions_in(&scenes.needed, &prep.periods[o.period].members))
            .collect();
        let period_members = prep
            .periods
            .iter()
            .map(|p| positions_in(&scenes.needed, &p.members))
            .collect();
        Pass {
            prep,
            scenes,
            outputs,
            indices,
            output_members,
            period_members,
        }
    }

    /// Run the pass on the engine: the outputs' (and, in the first pass, every period's clear-observation
    /// count's) writers, block by block; then their records.
    fn run(
        &self,
        job: &IndicesJob,
        base: &BTreeMap<String, String>,
        (name, first): (&str, bool),
        progress: &dyn Progress,
        done: &mut Finished,
    ) -> Result<()> {
        let prep = self.prep;
        let mut writers = self
            .outputs
            .iter()
            .map(|o| index_writer(prep, job, base, o))
            .collect::<Result<Vec<_>>>()?;
        // The clear-observation count, once per period (in the first pass).
        if first {
            for p in &prep.periods {
                writers.push(count_writer(prep, job, base, p)?);
            }
        }
        let n = self.outputs.len();
        let members: Vec<&[usize]> = (0..writers.len())
            .map(|i| match i < n {
                true => &self.output_members[i][..],
                false => &self.period_members[i - n][..],
            })
            .collect();
        let (rows, cols) = block_size(prep, job, self, writers.len() - n);
        let grid = &prep.grid;
        let mut totals = vec![(0u64, 0u64); n];
        crate::engine::run::run_local(
            name,
            crate::engine::strips::blocks(grid.width, grid.height, rows, cols),
            &mut writers,
            progress,
            (
                |block: Window| self.read(&block),
                |block: Window, scenes| self.kernel(job, &members, &block, scenes),
            ),
            |_, counts: Vec<(u64, u64)>| {
                for (t, (obs, wd)) in totals.iter_mut().zip(counts) {
                    t.0 += obs;
                    t.1 += wd;
                }
            },
        )?;
        done.pending
            .extend(crate::engine::write::finish_all(writers)?);
        for (o, (obs, wd)) in self.outputs.iter().zip(totals) {
            let (record, warning) = output_record(prep, o, obs, wd);
            if let Some(msg) = warning {
                progress.warn(&msg);
                done.warnings.push(msg);
            }
            done.records.push(record);
        }
        Ok(())
    }

    /// The reader: every scene's values of the pass's indices over a block (NaN where not clear), and each
    /// scene's clear flags, scenes in parallel.
    fn read(&self, block: &Window) -> Result<(Vec<Vec<f32>>, Vec<bool>)> {
        let prep = self.prep;
        strip_index_values(
            &self.scenes.readers,
            &prep.compiled,
            &prep.band_pos,
            &self.indices,
            block,
        )
    }

    /// The kernel: a block's index values (gap filled when asked) composited into every writer's planes,
    /// writers in parallel (`members`: each writer's scenes, positions in the block's scene axis). Per writer:
    /// clear observations and pixels with data.
    fn kernel(
        &self,
        job: &IndicesJob,
        members: &[&[usize]],
        block: &Window,
        (mut values, scene_clear): (Vec<Vec<f32>>, Vec<bool>),
    ) -> Result<StripOut<Vec<(u64, u64)>>> {
        let npx = block.len();
        let clear = clear_then_fill(&mut values, npx, job.gap_fill.then_some(&self.scenes.days));
        let scenes = (&values[..], &clear[..], &scene_clear[..]);
        let (planes, side) = members
            .par_iter()
            .enumerate()
            .map(|(i, m)| self.planes(job, i, npx, scenes, m))
            .unzip();
        Ok(StripOut { planes, side })
    }

    /// Where output `i`'s index is among the pass's indices.
    fn index_position(&self, i: usize) -> usize {
        self.indices
            .iter()
            .position(|&x| x == self.outputs[i].index)
            .expect("the pass's index")
    }

    /// Writer `i`'s planes of a block from the block's scenes (`values` and `clear` per index of the pass,
    /// [scene][pixel]; `scene_clear` per [scene][pixel]): a period's clear-observation count (writers past the
    /// outputs), or an output's composite over its `members` (positions in the scene axis). Per output: clear
    /// observations and pixels with data.
    fn planes(
        &self,
        job: &IndicesJob,
        i: usize,
        npx: usize,
        (values, clear, scene_clear): (&[Vec<f32>], &[Vec<bool>], &[bool]),
        members: &[usize],
    ) -> (Vec<Plane>, (u64, u64)) {
        if i >= self.outputs.len() {
            return (vec![clear_counts(scene_clear, npx, members).into()], (0, 0));
        }
        let k = self.index_position(i);
        let per_date = job.period == PeriodSpec::Date;
        let (bands, counts) = composite_strip(
            &values[k],
            &clear[k],
            npx,
            members,
            &self.scenes.doys,
            &job.stats,
            per_date,
        );
        let obs = counts.iter().map(|&c| c as u64).sum::<u64>();
        let with_data = counts.iter().filter(|&&c| c > 0).count() as u64;
        (
            bands.into_iter().map(Plane::from).collect(),
            (obs, with_data),
        )
    }
}

/// The writer of one index x period output: one band per statistic (or the value, per date), with the index's
/// formula, constants, citation and the period's acquisitions in its metadata.
fn index_writer(
    prep: &Prepared,
    job: &IndicesJob,
    base: &BTreeMap<String, String>,
    o: &OutputPlan,
) -> Result<RasterWriter> {
    let c = &prep.compiled[o.index];
    let p = &prep.periods[o.period];
    let bands: Vec<OutBand> = if job.period == PeriodSpec::Date {
        vec![OutBand {
            description: c.def.name.clone(),
            unit: c.def.unit.clone(),
        }]
    } else {
        job.stats
            .iter()
            .map(|s| OutBand {
                description: format!("{} {}", c.def.name, s.name()),
                unit: s.unit(&c.def.unit),
            })
            .collect()
    };
    let mut md = base.clone();
    md.insert("INDEX".into(), c.def.name.clone());
    md.insert("INDEX_LONG_NAME".into(), c.def.long_name.clone());
    md.insert("INDEX_FORMULA".into(), c.def.formula.clone());
    md.insert("INDEX_CITATION".into(), c.def.citation.clone());
    md.insert("INDEX_UNITS".into(), c.def.unit.clone());
    md.insert(
        "INDEX_CONSTANTS".into(),
        c.constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    period_metadata(&mut md, prep, p);
    RasterWriter::create::<f32>(&o.path, &prep.grid, &bands, None, &md, &job.write)
}

/// The period's label, dates and acquisitions as metadata tags.
fn period_metadata(md: &mut BTreeMap<String, String>, prep: &Prepared, p: &Period) {
    md.insert("PERIOD".into(), p.label.clone());
    md.insert("PERIOD_START".into(), p.start.to_string());
    md.insert("PERIOD_END".into(), p.end.to_string());
    let dates: Vec<String> = p
        .members
        .iter()
        .map(|&s| prep.stack.scenes[s].date.to_string())
        .collect();
    md.insert("ACQUISITIONS".into(), dates.join(","));
}

/// Block size for the memory budget. Per pixel: the values of every pass index for every scene read (f32)
/// and each scene's clear flag (one block: it is read after the previous one is written); the indices' clear flags
/// (1 byte each); the DNs (u16, the QA band's too) and reflectance planes (f64) of the scenes being read, one
/// per thread; a gap-fill copy of one index's series (f32); every writer's planes until written (the outputs'
/// statistics, f32; `n_counts` periods' counts, u16), and as much again in GDAL's cache between writing and
/// flushing; and per thread one output's composite bands and count (f32 / u32, twice while transposing).
fn block_size(prep: &Prepared, job: &IndicesJob, pass: &Pass, n_counts: usize) -> (usize, usize) {
    let nstat = if job.period == PeriodSpec::Date {
        1
    } else {
        job.stats.len()
    };
    let (n_indices, n_scenes) = (pass.indices.len(), pass.scenes.needed.len());
    let threads = rayon::current_num_threads();
    let per_px = n_indices * n_scenes * 4
        + n_scenes
        + n_indices * n_scenes
        + threads * (prep.letters.len() * 8 + (prep.letters.len() + 1) * 2)
        + if job.gap_fill { n_scenes * 4 } else { 0 }
        + 2 * (pass.outputs.len() * nstat * 4 + n_counts * 2)
        + threads * (nstat * 2 + 1) * 4;
    let grid = &prep.grid;
    crate::engine::strips::block(grid.width, grid.height, per_px, nstat * 4, job.memory_mb)
}

/// Positions of the scenes `members` among the scenes read (`needed`).
fn positions_in(needed: &[usize], members: &[usize]) -> Vec<usize> {
    members
        .iter()
        .map(|s| {
            needed
                .iter()
                .position(|n| n == s)
                .expect("members are needed scenes")
        })
        .collect()
}

/// The summary row of a finished output, and a warning when its period had acquisitions but no clear one.
fn output_record(
    prep: &Prepared,
    o: &OutputPlan,
    obs: u64,
    with_data: u64,
) -> (OutputRecord, Option<String>) {
    let p = &prep.periods[o.period];
    let name = &prep.compiled[o.index].def.name;
    let total = (p.members.len() * prep.grid.width * prep.grid.height) as f64;
    let warning = (!p.members.is_empty() && obs == 0).then(|| {
        format!(
            "{name} {}: no clear observation at any pixel in {} acquisition(s) (all cloud or no data); the composite is NaN",
            p.label,
            p.members.len()
        )
    });
    let record = OutputRecord {
        index: name.clone(),
        period: p.label.clone(),
        path: o.path.clone(),
        acquisitions: p.members.len(),
        clear_fraction: if total > 0.0 { obs as f64 / total } else { 0.0 },
        pixels_with_data: with_data,
    };
    (record, warning)
}

/// Index values of rows `row0 .. row0 + nrows` for every reader's scene: `values[k][s * npx + px]` for the
/// k-th of `which` (positions in `compiled`) and the s-th reader; NaN where not clear or not computable.
/// Also each scene's clear flags `clear[s * npx + px]`: clear (QA) with data in every band read.
pub(crate) fn strip_index_values(
    readers: &[Mutex<SceneReader>],
    compiled: &[CompiledIndex],
    band_pos: &[Vec<usize>],
    which: &[usize],
    block: &Window,
) -> Result<(Vec<Vec<f32>>, Vec<bool>)> {
    let npx = block.len();
    let mut values: Vec<Vec<f32>> = vec![vec![f32::NAN; readers.len() * npx]; which.len()];
    let mut clear = vec![false; readers.len() * npx];
    let eval = (compiled, band_pos, which);
    scene_slices(&mut values, &mut clear, npx)
        .into_par_iter()
        .zip(readers.par_iter())
        .try_for_each(|((outs, clr), r)| scene_index_values(r, eval, block, outs, clr))?;
    Ok((values, clear))
}

/// Each scene's part of every index's values and of the clear flags ([scene][pixel] planes, `npx` pixels per
/// scene), so that the scenes can be filled in parallel.
fn scene_slices<'v>(
    values: &'v mut [Vec<f32>],
    clear: &'v mut [bool],
    npx: usize,
) -> Vec<(Vec<&'v mut [f32]>, &'v mut [bool])> {
    let len = clear.len();
    let values = values.iter_mut().map(|v| &mut v[..]);
    crate::engine::parts::cut_alike(values, len, npx.max(1))
        .into_iter()
        .zip(clear.chunks_mut(npx.max(1)))
        .collect()
}

/// One scene over a block: its bands read, whether each pixel has data in every band (`clear`), and each index
/// of `which` into `outs` (in `which`'s order).
fn scene_index_values(
    reader: &Mutex<SceneReader>,
    (compiled, band_pos, which): (&[CompiledIndex], &[Vec<usize>], &[usize]),
    block: &Window,
    outs: Vec<&mut [f32]>,
    clear: &mut [bool],
) -> Result<()> {
    let planes = reader.lock().expect("reader lock").read_window(block)?;
    for (px, c) in clear.iter_mut().enumerate() {
        *c = planes.iter().all(|p| !p[px].is_nan());
    }
    for (out, &ii) in outs.into_iter().zip(which) {
        let bands: Vec<&[f64]> = band_pos[ii].iter().map(|&lp| &planes[lp][..]).collect();
        compiled[ii].eval_run(&bands, out);
    }
    Ok(())
}

/// Clear observations per pixel among the scenes `members` (positions in the strip's scene axis).
fn clear_counts(clear: &[bool], npx: usize, members: &[usize]) -> Vec<u16> {
    let mut counts = vec![0u16; npx];
    for &m in members {
        for (c, &f) in counts.iter_mut().zip(&clear[m * npx..(m + 1) * npx]) {
            *c += f as u16;
        }
    }
    counts
}

/// The writer of `clear_observations_PERIOD.tif` (UInt16): per pixel, the period's acquisitions that were clear
/// (QA) with data in every band the run reads. Written once per period, for all indices.
fn count_writer(
    prep: &Prepared,
    job: &IndicesJob,
    base: &BTreeMap<String, String>,
    p: &Period,
) -> Result<RasterWriter> {
    let mut md = base.clone();
    md.insert("QUANTITY".into(), "clear observations".into());
    md.insert("UNITS".into(), "count".into());
    md.insert("BANDS_READ".into(), prep.letters.join(","));
    period_metadata(&mut md, prep, p);
    RasterWriter::create::<u16>(
        &job.out_dir
            .join(format!("clear_observations_{}.tif", p.label)),
        &prep.grid,
        &[OutBand {
            description: "clear observations".into(),
            unit: "count".into(),
        }],
        None,
        &md,
        &job.write,
    )
}

trait DayNumber {
    fn num_days_from_ce_f64(&self) -> f64;
}

impl DayNumber for chrono::NaiveDate {
    fn num_days_from_ce_f64(&self) -> f64 {
        self.num_days_from_ce() as f64
    }
}

/// Linear gap filling of every pixel's series in a strip laid out as [scene][pixel].
/// Each index's clear flags per scene and pixel (before gap filling: summaries count clear observations only),
/// then the gaps filled in time when `days` (the scenes' day numbers) are given.
pub(crate) fn clear_then_fill(
    values: &mut [Vec<f32>],
    npx: usize,
    days: Option<&[f64]>,
) -> Vec<Vec<bool>> {
    let clear = values
        .iter()
        .map(|v| v.iter().map(|x| !x.is_nan()).collect())
        .collect();
    if let Some(days) = days {
        for v in values.iter_mut() {
            gap_fill_strip(v, npx, days);
        }
    }
    clear
}

pub(crate) fn gap_fill_strip(values: &mut [f32], npx: usize, days: &[f64]) {
    let nscenes = days.len();
    // Gather each pixel's series into a [pixel][scene] buffer, fill in parallel, scatter back.
    let mut by_px = vec![0f32; npx * nscenes];
    for si in 0..nscenes {
        for px in 0..npx {
            by_px[px * nscenes + si] = values[si * npx + px];
        }
    }
    by_px.par_chunks_mut(nscenes).for_each(|series| {
        let mut s: Vec<f64> = series.iter().map(|&v| v as f64).collect();
        composite::gap_fill_linear(&mut s, days);
        for (o, v) in series.iter_mut().zip(s) {
            *o = v as f32;
        }
    });
    for si in 0..nscenes {
        for px in 0..npx {
            values[si * npx + px] = by_px[px * nscenes + si];
        }
    }
}

/// Composite one strip: per statistic a plane, and the clear-observation count per pixel. `doys` are the
/// days of year of the strip's scenes (the axis of `values`).
pub(crate) fn composite_strip(
    values: &[f32],
    clear: &[bool],
    npx: usize,
    members: &[usize],
    doys: &[f64],
    stats: &[Stat],
    per_date: bool,
) -> (Vec<Vec<f32>>, Vec<u32>) {
    let nb = if per_date { 1 } else { stats.len() };
    // [pixel][band] results and counts, computed in parallel chunks with scratch vectors per chunk.
    const CHUNK: usize = 4096;
    let mut flat = vec![f32::NAN; npx * nb];
    let mut counts = vec![0u32; npx];
    flat.par_chunks_mut(CHUNK * nb)
        .zip(counts.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(ci, (out, cnt))| {
            let mut vals: Vec<f64> = Vec::with_capacity(members.len());
            let mut days: Vec<f64> = Vec::with_capacity(members.len());
            let mut scratch: Vec<f64> = Vec::with_capacity(members.len());
            for (j, c) in cnt.iter_mut().enumerate() {
                let px = ci * CHUNK + j;
                vals.clear();
                days.clear();
                for &m in members {
                    let v = values[m * npx + px];
                    if clear[m * npx + px] {
                        *c += 1;
                    }
                    if !v.is_nan() {
                        vals.push(v as f64);
                        days.push(doys[m]);
                    }
                }
                if vals.is_empty() {
                    continue;
                }
                let o = &mut out[j * nb..(j + 1) * nb];
                if per_date {
                    o[0] = vals[0] as f32;
                } else {
                    for (b, s) in stats.iter().enumerate() {
                        o[b] = s.compute(&vals, &days, &mut scratch) as f32;
                    }
                }
            }
        });
    let bands = (0..nb)
        .map(|b| (0..npx).map(|px| flat[px * nb + b]).collect())
        .collect();
    (bands, counts)
}

fn write_summary(path: &Path, records: &[OutputRecord], grid: &Grid) -> Result<()> {
    let npx = (grid.width * grid.height) as f64;
    let mut s = String::from("index,period,file,acquisitions,clear_observation_fraction,pixels_with_clear_data_fraction\n");
    for r in records {
        s.push_str(&format!(
            "{},{},{},{},{:.6},{:.6}\n",
            r.index,
            r.period,
            r.path.file_name().unwrap().to_string_lossy(),
            r.acquisitions,
            r.clear_fraction,
            r.pixels_with_data as f64 / npx
        ));
    }
    io::write_atomic(path, s.as_bytes())
}
