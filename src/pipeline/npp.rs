//! `carbonmap npp`: monthly NDVI composites, a land-cover map with its legend and climate drivers to NPP, soil
//! heterotrophic respiration, NEP and sequestration rasters, with a per-class summary table.
//!
//! Every input is checked before computing (NDVI files for each simulated month on one grid, land-cover codes
//! in the legend, parameters for every class present, drivers complete, in plausible units and covering the
//! grid). The grid is then processed in strips of whole tile rows: read on this thread, computed in parallel
//! per pixel (rayon), written in order, so outputs do not depend on the thread count.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::correction::CorrectionTable;
use crate::drivers::{Drivers, Plane, Var};
mod casa_strip;
pub mod confusion;
pub mod draws;
mod draws_out;
pub mod driver_error;
pub mod field;
mod fill;
mod mod17_strip;
pub mod period;
mod pixel_draws;
mod prepare;
mod run;
use fill::{Timeline, W0};
use period::{NppPeriod, YearMonth};
pub use run::run_npp;

use crate::error::{Error, Problems, Result};
use crate::io::{self, Grid, OutBand, RasterInfo, RasterWriter, Window, WriteOptions};
use crate::landcover::Legend;
use crate::npp::casa::{CasaParams, CasaType, WaterMethod};
use crate::npp::fpar::FparConstants;
use crate::npp::mod17::{Bplut, Mod17Class, Mod17Constants};
use crate::npp::pmodel::PModelParams;
use crate::npp::rh::RhModel;
use crate::zones::{ZoneSpec, Zones};

/// Which light-use-efficiency model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NppModel {
    Casa,
    Mod17,
    /// P-model GPP (optimal photosynthesis) with MOD17's maintenance and growth respiration for NPP.
    PModel,
}

impl NppModel {
    pub fn name(self) -> &'static str {
        match self {
            NppModel::Casa => "CASA",
            NppModel::Mod17 => "MOD17",
            NppModel::PModel => "P-model",
        }
    }

    /// The model's name in file names and on the command line (casa, mod17, pmodel).
    pub fn key(self) -> &'static str {
        match self {
            NppModel::Casa => "casa",
            NppModel::Mod17 => "mod17",
            NppModel::PModel => "pmodel",
        }
    }

    /// MOD17's respiration and classes (MOD17 itself, and the P-model's NPP).
    fn mod17_like(self) -> bool {
        matches!(self, NppModel::Mod17 | NppModel::PModel)
    }
}

/// What `carbonmap npp` does.
#[derive(Debug, Clone)]
pub struct NppJob {
    pub model: NppModel,
    /// Folder of monthly composites from `carbonmap indices --period month` (files INDEX_YYYY-MM.tif).
    pub ndvi_dir: PathBuf,
    /// How messages name `ndvi_dir` when it is a working folder (a scenario's composites), else its path.
    pub ndvi_label: Option<String>,
    /// How the outputs' metadata name `landcover` when it is a working file (a scenario's), else its path.
    pub landcover_label: Option<String>,
    /// Index name in the file names (NDVI), or FPAR when `input_is_fpar`.
    pub ndvi_index: String,
    /// The monthly rasters are FPAR (0-1), not NDVI (MOD17 only).
    pub input_is_fpar: bool,
    /// Band of each composite (1 = the first statistic, the median by default).
    pub ndvi_band: usize,
    /// Year of the NDVI composites (default: the drivers' year).
    pub ndvi_year: Option<i32>,
    pub landcover: PathBuf,
    pub landcover_band: usize,
    pub legend: String,
    pub drivers: PathBuf,
    /// Year the simulated period ends in (the drivers' year).
    pub year: i32,
    /// First and last simulated month (1..=12); FIRST > LAST crosses the year boundary (see `period`).
    pub months: (u32, u32),
    pub casa_params: String,
    pub bplut: String,
    pub rh_model: String,
    /// P-model parameter set (name or .toml), for --model pmodel.
    pub pmodel_params: String,
    pub out_dir: PathBuf,
    /// Also write one band per month.
    pub monthly: bool,
    pub write: WriteOptions,
    pub memory_mb: usize,
    /// Refuse simulated months without a composite instead of filling them.
    pub strict_months: bool,
    /// Region-specific correction table (built-in name or CSV) and the zones it names.
    pub corrections: Option<String>,
    pub zones: Option<ZoneSpec>,
    /// Monte Carlo over the parameters of an uncertainty file (`--draws`).
    pub draws: Option<draws::DrawSpec>,
}

/// Per-class summary row.
#[derive(Debug, Clone, Default)]
pub struct ClassSummary {
    pub code: i64,
    pub name: String,
    pub vegetation_type: String,
    pub pixels: u64,
    /// Pixels of the class whose result is NaN (missing NDVI or drivers).
    pub pixels_without_result: u64,
    /// Pixel-months of the class whose NDVI was filled (every rule), and by dormancy and climatology.
    pub filled_pixel_months: u64,
    pub dormant_pixel_months: u64,
    pub climatology_pixel_months: u64,
    /// Pixels left without NDVI in a simulated month (no value anywhere in their series).
    pub pixels_without_ndvi: u64,
    pub area_m2: f64,
    /// Sums over pixels with a result of value x area (g C), per output.
    sums: BTreeMap<&'static str, f64>,
    /// Sums of values (for means over pixels with a result).
    value_sums: BTreeMap<&'static str, f64>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct NppSummary {
    pub outputs: Vec<PathBuf>,
    pub table: PathBuf,
    /// The summary table's text (the file itself reaches its name when the command commits).
    pub table_text: String,
    pub classes: Vec<ClassSummary>,
    pub period_label: String,
    pub warnings: Vec<String>,
}

/// Parameters resolved for one legend class.
#[derive(Debug, Clone)]
enum ClassModel {
    /// No uptake by definition (reason recorded in the parameter table).
    Zero,
    Casa {
        t: CasaType,
        /// MOD17 class, for the VPD water scalar.
        m17: Option<Mod17Class>,
    },
    Mod17(Mod17Class),
}

/// The land-cover readers' value outside the map (no class), for the stage and its draws alike.
const LC_FILL: f64 = -2_147_483_647.0;

const OUTS_CASA: [&str; 4] = ["NPP", "Rh", "NEP", "sequestration"];
const OUTS_MOD17: [&str; 5] = ["GPP", "NPP", "Rh", "NEP", "sequestration"];
/// Outputs with one band per month (`--monthly`), in the order of the strip functions' monthly triples.
/// MOD17 defines NPP per year only (live-wood and growth respiration are annual), so it has none monthly.
const MONTHLY_CASA: [&str; 3] = ["NPP", "Rh", "NEP"];
const MONTHLY_MOD17: [&str; 2] = ["GPP", "Rh"];

/// g C m-2 to t CO2 ha-1: x the CO2/C mass ratio (models/units.toml) x 1e4 m2 ha-1 / 1e6 g t-1.
fn gc_m2_to_tco2_ha(v: f64) -> f64 {
    v * crate::units::co2_per_c() * 1e-2
}

struct Prepared {
    grid: Grid,
    legend: Legend,
    class_models: BTreeMap<i64, ClassModel>,
    /// The composites that exist around the model year: (timeline index, file); the fill reads them all.
    ndvi_files: Vec<(usize, PathBuf)>,
    /// Simulated months without a composite (filled per pixel).
    missing_months: Vec<YearMonth>,
    timeline: Timeline,
    /// Per legend class, the dormancy threshold of its vegetation type (models/gapfill.toml).
    dormancy: Vec<Option<f64>>,
    /// Classes with a larger share of filled pixel-months are warned about (models/gapfill.toml).
    fill_warn_fraction: f64,
    /// One per calendar year of the model year, in order.
    drivers: Vec<Drivers>,
    /// Per month of the model year: which `drivers` and the indices of its steps there.
    window_steps: Vec<(usize, Vec<usize>)>,
    casa: CasaParams,
    bplut: Bplut,
    k17: Mod17Constants,
    fpar: FparConstants,
    rh: RhModel,
    /// The P-model's parameters (--model pmodel) and PAR's photons per joule (models/climate.toml).
    pmodel: Option<(PModelParams, f64)>,
    period: NppPeriod,
    lc_nodata: Option<f64>,
    input_is_fpar: bool,
    corrections: Option<(CorrectionTable, Option<Zones>)>,
    /// The classifier's confusion matrix for the draws (`--confusion`).
    confusion: Option<confusion::Confusion>,
    /// `--draws`: the uncertainty file, read and checked before any computing (the draws use this copy).
    uncertainty: Option<draws::UncertaintyFile>,
    /// The drivers whose errors the draws take (`driver_error::declared`): the model runs again with each
    /// moved by +-sd.
    driver_errors: Vec<(usize, f64)>,
    /// The class parameters whose errors the draws take, with their moved class models.
    class_moves: Vec<driver_error::ClassMove>,
}

/// The composites around the model year (the year before, the model year, the year after) that exist, each
/// checked and on one grid; the simulated months without one (refused with `--strict-months`).
fn ndvi_composites(
    job: &NppJob,
    period: &NppPeriod,
    timeline: &Timeline,
    problems: &mut Problems,
) -> (Vec<(usize, PathBuf)>, Vec<YearMonth>, Option<Grid>) {
    // The composites' year may differ from the drivers' (--ndvi-year): every month is shifted alike.
    let shift = job.ndvi_year.unwrap_or(job.year) - job.year;
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    let mut missing = Vec::new();
    let mut grid: Option<Grid> = None;
    let sim = period.sim_range();
    let path = |&(y, m): &YearMonth| {
        let y = y + shift;
        job.ndvi_dir
            .join(format!("{}_{y}-{m:02}.tif", job.ndvi_index))
    };
    // Each composite's grid read in parallel (opening a file asks PROJ for its CRS); checked in month order.
    let grids: Vec<Option<Result<Grid>>> = timeline
        .months
        .par_iter()
        .map(|ym| {
            let p = path(ym);
            p.exists().then(|| {
                RasterInfo::read(&p).and_then(|i| {
                    i.band(job.ndvi_band)?;
                    i.grid()
                })
            })
        })
        .collect();
    for ((t, &(y, m)), read) in timeline.months.iter().enumerate().zip(grids) {
        let p = path(&(y, m));
        let y = y + shift;
        let Some(read) = read else {
            if t >= W0 && sim.contains(&(t - W0)) {
                if job.strict_months {
                    problems.push(Error::input(
                        &p,
                        format!(
                            "no {} composite for {y}-{m:02} (--strict-months: make monthly composites with `carbonmap indices --period month`, narrow --months, or drop --strict-months to fill it)",
                            job.ndvi_index
                        ),
                    ));
                } else {
                    missing.push((y, m));
                }
            }
            continue;
        };
        match read {
            Ok(g) => {
                if job.input_is_fpar {
                    check_fpar_range(&p, job.ndvi_band, problems);
                }
                match &grid {
                    None => grid = Some(g),
                    Some(g0) if !g0.same_pixels(&g) => problems.push(Error::input(
                        &p,
                        format!(
                            "is not on the grid of {} (composites of one run share a grid)",
                            files
                                .first()
                                .map(|f| f.1.display().to_string())
                                .unwrap_or_default()
                        ),
                    )),
                    Some(_) => {}
                }
            }
            Err(e) => problems.push(e),
        }
        files.push((t, p));
    }
    if files.is_empty() {
        problems.push(Error::input(
            &job.ndvi_dir,
            format!(
                "no {} composite for the model year {} or the years either side ({}_YYYY-MM.tif): make monthly composites with `carbonmap indices --period month`",
                job.ndvi_index,
                period.describe_window(),
                job.ndvi_index
            ),
        ));
    }
    (files, missing, grid)
}

/// FPAR rasters must hold fractions.
fn check_fpar_range(p: &std::path::Path, band: usize, problems: &mut Problems) {
    if let Ok(&[Some((lo, hi))]) = io::bands_min_max(p, &[band]).as_deref() {
        if lo < 0.0 || hi > 1.0 {
            problems.push(Error::band(
                p,
                band.to_string(),
                format!("FPAR values {lo}..{hi} are outside 0..1 (percent, or a scaled product such as MOD15 x 100? rescale it first)"),
            ));
        }
    }
}

/// The driver variables a model needs, and what for.
fn driver_needs(model: NppModel, casa: &CasaParams, d: &Drivers) -> Vec<(Var, &'static str)> {
    let mut needs: Vec<(Var, &str)> = vec![
        (Var::Tmean, "temperature stress, dormancy and Rh"),
        (Var::Precip, "Rh"),
    ];
    match model {
        NppModel::Casa => {
            needs.push((Var::Srad, "SOL, total solar radiation"));
            if casa.water.method == WaterMethod::Vpd {
                needs.push((Var::Vpd, "VPD water scalar"));
            }
        }
        NppModel::Mod17 => {
            needs.push((Var::Tmin, "Tmin scalar"));
            needs.push((Var::Vpd, "VPD scalar"));
            if !d.available(Var::Par) {
                needs.push((Var::Srad, "PAR = shortwave x PAR fraction"));
            }
        }
        NppModel::PModel => {
            needs.push((Var::Vpd, "P-model optimal ci/ca"));
            needs.push((Var::Co2, "P-model ambient CO2"));
            needs.push((Var::Patm, "P-model pressure (a patm column or raster)"));
            if !d.available(Var::Par) {
                needs.push((Var::Srad, "PPFD from PAR = shortwave x PAR fraction"));
            }
        }
    }
    needs
}

/// What `carbonmap check` can say about an `npp` stage's drivers before any stage has run: the drivers of every
/// calendar year of the model year load, and give (or derive) every variable the model needs. Gridded
/// archives are checked without aggregating them (`Drivers::inspect`). Returns the driver rasters and their
/// grids, for the check's overlap test.
pub fn check_drivers(
    path: &std::path::Path,
    year: i32,
    months: &str,
    model: &str,
    casa_params: &str,
) -> Result<Vec<(std::path::PathBuf, crate::io::Grid)>> {
    let mut problems = Problems::new();
    let mut grids = Vec::new();
    let period = problems.take(period::parse_months(months).and_then(|m| NppPeriod::new(year, m)));
    let model = match model.to_ascii_lowercase().as_str() {
        "mod17" => NppModel::Mod17,
        "pmodel" => NppModel::PModel,
        _ => NppModel::Casa,
    };
    let casa = problems.take(CasaParams::resolve(casa_params));
    if let (Some(period), Some(casa)) = (period, casa) {
        let mut seen = std::collections::BTreeSet::new();
        for y in period.years() {
            let r = Drivers::inspect(path, y).and_then(|d| {
                d.check_available(&driver_needs(model, &casa, &d))?;
                for g in d.raster_grids() {
                    if !grids.contains(&g) {
                        grids.push(g);
                    }
                }
                Ok(())
            });
            if let Err(e) = r {
                for p in e.into_problems() {
                    if seen.insert(p.clone()) {
                        problems.push(Error::Invalid(vec![p]));
                    }
                }
            }
        }
    }
    problems.finish()?;
    Ok(grids)
}

/// Per-pixel results over the simulated period (g C m-2), NaN where not computable.
#[derive(Debug, Clone, Copy)]
struct PixelOut {
    gpp: f64,
    npp: f64,
    rh: f64,
}

/// The model's own parameter sets and citations (CASA; or MOD17's BPLUT, FPAR and LAI, with the P-model's).
fn model_metadata(job: &NppJob, p: &Prepared, md: &mut BTreeMap<String, String>) {
    match job.model {
        NppModel::Casa => {
            md.insert(
                "CASA_PARAMETERS".into(),
                format!("{} ({})", p.casa.name, p.casa.source.display()),
            );
            md.insert("CASA_CITATION".into(), p.casa.citation.clone());
            md.insert(
                "CASA_WATER_STRESS".into(),
                format!("{:?}", p.casa.water.method),
            );
        }
        NppModel::Mod17 | NppModel::PModel => {
            if let Some((pm, _)) = &p.pmodel {
                md.insert(
                    "PMODEL_PARAMETERS".into(),
                    format!(
                        "{} ({}; kphio {}; C3; no soil-moisture stress on rasters: `site --model pmodel` has it)",
                        pm.name,
                        pm.source.display(),
                        pm.photosynthesis.kphio
                    ),
                );
                md.insert("PMODEL_CITATION".into(), pm.citation.clone());
                md.insert(
                    "PMODEL_NPP".into(),
                    "GPP from the P-model; NPP = 0.8 (GPP - maintenance respiration of the class's MOD17 BPLUT), as MOD17".into(),
                );
            }
            md.insert(
                "MOD17_BPLUT".into(),
                format!("{} ({})", p.bplut.name, p.bplut.source.display()),
            );
            md.insert("MOD17_CITATION".into(), p.k17.citation.clone());
            md.insert(
                "FPAR".into(),
                if p.input_is_fpar {
                    "user FPAR rasters".into()
                } else {
                    format!("from NDVI, linear: {}", p.fpar.linear.citation)
                },
            );
            md.insert("LAI_FROM_FPAR".into(), p.fpar.lai.citation.clone());
        }
    }
}

/// Metadata common to every output of an NPP run: model, period and model year, inputs and their provenance,
/// fill rules, parameters and the sign convention.
fn output_metadata(job: &NppJob, p: &Prepared) -> BTreeMap<String, String> {
    let nmonths = p.period.sim.len();
    let mut md = BTreeMap::new();
    md.insert("CARBONMAP_VERSION".to_string(), crate::VERSION.to_string());
    md.insert("MODEL".into(), job.model.name().into());
    md.insert("PERIOD".into(), p.period.label.clone());
    let (first, last) = (p.period.sim[0], p.period.sim[nmonths - 1]);
    md.insert(
        "MONTHS".into(),
        format!("{}-{:02}..{}-{:02}", first.0, first.1, last.0, last.1),
    );
    md.insert(
        "MODEL_YEAR".into(),
        format!(
            "{}: annual quantities (Thornthwaite heat index, CASA optimum temperature, MOD17 live-wood mass from the largest LAI) over these 12 months{}",
            p.period.describe_window(),
            if p.period.full_year() { "" } else { ", which extend beyond the reported period" }
        ),
    );
    md.insert(
        "LANDCOVER".into(),
        job.landcover_label
            .clone()
            .unwrap_or_else(|| job.landcover.display().to_string()),
    );
    md.insert(
        "LEGEND".into(),
        format!("{} ({})", p.legend.product, p.legend.source.display()),
    );
    md.insert("DRIVERS".into(), job.drivers.display().to_string());
    // A scenario's composites are working files: the metadata name what they were made from.
    let ndvi_files = || {
        p.ndvi_files
            .iter()
            .map(|f| f.1.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    md.insert(
        "NDVI".into(),
        job.ndvi_label.clone().unwrap_or_else(ndvi_files),
    );
    md.insert(
        "NDVI_FILL".into(),
        "per pixel, months without a value (no composite, or no clear observation) by the first rule of \
         models/gapfill.toml that gives one: dormancy (a month colder than the class's threshold takes the \
         pixel's lowest observed value), linear interpolation in time (using the years either side), cyclic \
         interpolation within the model year, the same month of the years either side; \
         filled_months_<period>.tif counts them"
            .into(),
    );
    for v in [
        Var::Tmean,
        Var::Tmin,
        Var::Precip,
        Var::Srad,
        Var::Par,
        Var::Vpd,
        Var::Co2,
        Var::Patm,
    ] {
        md.insert(
            format!("DRIVER_{}", v.name().to_uppercase()),
            p.drivers[0].provenance(v),
        );
    }
    md.insert(
        "RH_MODEL".into(),
        format!("{} ({}; form {:?})", p.rh.name, p.rh.citation, p.rh.form),
    );
    model_metadata(job, p, &mut md);
    if let Some((t, z)) = &p.corrections {
        md.insert(
            "CORRECTIONS".into(),
            format!(
                "{} (applies to {}; zone x class, then zone, then class, then none{})",
                t.path.display(),
                t.target.name(),
                z.as_ref()
                    .map(|z| format!(
                        "; zones {} level {}",
                        z.path.display(),
                        z.levels.last().map(String::as_str).unwrap_or("")
                    ))
                    .unwrap_or_default()
            ),
        );
    }
    md.insert(
        "SIGN_CONVENTION".into(),
        "NPP, GPP, Rh >= 0 are fluxes; NEP = NPP - Rh, positive = net uptake by the ecosystem (a sink); sequestration = NEP x 44/12 in t CO2 ha-1".into(),
    );
    md
}

/// Warnings per class: a large share of filled pixel-months (with the share per rule), and pixels without a
/// result with the number per reason.
fn class_warnings(job: &NppJob, p: &Prepared, summaries: &[ClassSummary]) -> Result<Vec<String>> {
    let nmonths = p.period.sim.len();
    let mut out = Vec::new();
    // Classes without uptake by definition do not use the index: their fills are counted, not warned about.
    let uses_index =
        |s: &ClassSummary| !matches!(p.class_models.get(&s.code), Some(ClassModel::Zero));
    for s in summaries.iter().filter(|s| s.pixels > 0 && uses_index(s)) {
        let frac = s.filled_pixel_months as f64 / (s.pixels as f64 * nmonths as f64);
        if frac > p.fill_warn_fraction {
            let pm = s.pixels as f64 * nmonths as f64;
            let msg = format!(
                "class {} ({}): {:.1}% of its pixel-months of {} {} were filled (no composite or no clear observation), more than {:.0}% (models/gapfill.toml): {:.1}% dormant (winter floor), {:.1}% climatology, the rest interpolated in time; see filled_months_{}.tif",
                s.code, s.name, 100.0 * frac, p.period.label, job.ndvi_index, 100.0 * p.fill_warn_fraction,
                100.0 * s.dormant_pixel_months as f64 / pm, 100.0 * s.climatology_pixel_months as f64 / pm,
                p.period.label
            );
            out.push(msg);
        }
    }
    for s in summaries.iter().filter(|s| s.pixels_without_result > 0) {
        let no_ndvi = s.pixels_without_ndvi.min(s.pixels_without_result);
        let msg = format!(
            "class {} ({}): {} of {} pixels ({:.2}%) have no result and are NaN in every output: {} without any {} value in their series (no clear observation in {} or the years either side), {} with drivers without data there",
            s.code,
            s.name,
            s.pixels_without_result,
            s.pixels,
            100.0 * s.pixels_without_result as f64 / s.pixels as f64,
            no_ndvi,
            job.ndvi_index,
            p.period.describe_window(),
            s.pixels_without_result - no_ndvi
        );
        out.push(msg);
    }
    Ok(out)
}

/// Warnings about the inputs of a run: months without a composite, climatology drivers, MOD17 over a period
/// shorter than its year.
fn input_warnings(job: &NppJob, p: &Prepared) -> Vec<String> {
    let mut out = Vec::new();
    let mut warn = |msg: String| out.push(msg);
    if !p.missing_months.is_empty() {
        warn(format!(
            "no {} composite for {} in {}: filled per pixel by the rules of models/gapfill.toml (dormancy, interpolation in time, climatology; {} composite(s) of {} and the years either side read; --strict-months refuses instead)",
            job.ndvi_index,
            p.missing_months.iter().map(|(y, m)| format!("{y}-{m:02}")).collect::<Vec<_>>().join(", "),
            job.ndvi_label.clone().unwrap_or_else(|| job.ndvi_dir.display().to_string()),
            p.ndvi_files.len(),
            p.period.describe_window(),
        ));
    }
    if p.drivers[0].climatology_table {
        warn(format!(
            "{}: the station table is a monthly climatology (no year column): its 12 months stand for {}",
            p.drivers[0].source.display(),
            p.period.describe_window()
        ));
    }
    let filled_driver_months: Vec<String> = p
        .drivers
        .iter()
        .flat_map(|d| d.filled_months.clone())
        .collect();
    if !filled_driver_months.is_empty() {
        warn(format!(
            "{}: {} not in the station table, filled with the station's monthly climatology",
            p.drivers[0].source.display(),
            filled_driver_months.join(", ")
        ));
    }
    if job.model.mod17_like() && !p.period.full_year() {
        warn(format!(
            "MOD17 defines NPP per year: NPP of {} is that period's GPP minus its own maintenance respiration (leaf, fine root, and live wood with the live-wood mass of the model year {}) and growth respiration; the other months' respiration is not in it. Run the 12 months (--months 1-12) for the annual NPP",
            p.period.label,
            p.period.describe_window()
        ));
    }
    out
}

/// "yr-1" for 12 months, else "per period LABEL".
fn per_label(period: &NppPeriod) -> String {
    if period.full_year() {
        "yr-1".to_string()
    } else {
        format!("per period {}", period.label)
    }
}

/// The writers of a run: one per output, the monthly ones (`--monthly`), the filled-months count, and the
/// correction factors (with corrections).
struct NppWriters {
    main: Vec<RasterWriter>,
    monthly: Vec<RasterWriter>,
    filled: Option<RasterWriter>,
    factor: Option<RasterWriter>,
    /// Each pixel's sensitivity of NPP and Rh to each declared driver (`driver_error.rs`).
    sensitivity: Option<RasterWriter>,
}

fn npp_writers(
    job: &NppJob,
    p: &Prepared,
    md: &BTreeMap<String, String>,
    outs: &[&'static str],
) -> Result<NppWriters> {
    let grid = &p.grid;
    let label = &p.period.label;
    let nmonths = p.period.sim.len();
    let per = per_label(&p.period);
    let meta = |quantity: String, units: &str| {
        let mut m = md.clone();
        m.insert("QUANTITY".into(), quantity);
        m.insert("UNITS".into(), units.into());
        m
    };
    let band = |description: String, unit: &str| OutBand {
        description,
        unit: unit.into(),
    };
    let unit_of = |o: &str| -> String {
        if o == "sequestration" {
            format!("t CO2 ha-1 {per}")
        } else {
            format!("g C m-2 {per}")
        }
    };
    let file_of = |o: &str, monthly: bool| -> PathBuf {
        let u = if o == "sequestration" {
            "tCO2_ha"
        } else {
            "gC_m2"
        };
        let m = if monthly { "_monthly" } else { "" };
        job.out_dir.join(format!("{o}_{u}{m}_{label}.tif"))
    };
    let main = outs
        .iter()
        .map(|o| {
            let u = unit_of(o);
            let bands = [band(format!("{o} {label}"), &u)];
            let m = meta(o.to_string(), &u);
            RasterWriter::create::<f32>(&file_of(o, false), grid, &bands, None, &m, &job.write)
        })
        .collect::<Result<Vec<_>>>()?;
    let monthly_outs: &[&str] = match (job.monthly, job.model) {
        (false, _) => &[],
        (true, NppModel::Casa) => &MONTHLY_CASA,
        (true, NppModel::Mod17 | NppModel::PModel) => &MONTHLY_MOD17,
    };
    let monthly = monthly_outs
        .iter()
        .map(|o| {
            let bands: Vec<OutBand> = p
                .period
                .sim
                .iter()
                .map(|(y, mm)| band(format!("{o} {y}-{mm:02}"), "g C m-2 month-1"))
                .collect();
            let m = meta(format!("{o} per month"), "g C m-2 month-1");
            RasterWriter::create::<f32>(&file_of(o, true), grid, &bands, None, &m, &job.write)
        })
        .collect::<Result<Vec<_>>>()?;
    // Months filled per pixel (see fill.rs), a count band beside the outputs.
    let what = &job.ndvi_index;
    let filled = RasterWriter::create::<u8>(
        &job.out_dir.join(format!("filled_months_{label}.tif")),
        grid,
        &[band(
            format!("{what} months of {label} filled (of {nmonths})"),
            "count",
        )],
        None,
        &meta(
            format!("{what} months filled (models/gapfill.toml)"),
            "count",
        ),
        &job.write,
    )?;
    // The factor each pixel's correction used (with corrections only).
    let factor = p
        .corrections
        .as_ref()
        .map(|(t, _)| {
            let q = format!("correction factor on {}", t.target.name());
            let target = job.out_dir.join(format!("correction_factor_{label}.tif"));
            let bands = [band(q.clone(), "1")];
            RasterWriter::create::<f32>(&target, grid, &bands, None, &meta(q, "1"), &job.write)
        })
        .transpose()?;
    let sensitivity = (!p.driver_errors.is_empty())
        .then(|| {
            let flux = format!("g C m-2 {per}");
            let bands: Vec<OutBand> = driver_error::bands(&p.driver_errors, &flux)
                .into_iter()
                .map(|(d, u)| band(d, &u))
                .collect();
            let q =
                "sensitivity of NPP and Rh to the drivers' errors (driver_error.rs)".to_string();
            let target = job.out_dir.join(format!("driver_sensitivity_{label}.tif"));
            RasterWriter::create::<f32>(&target, grid, &bands, None, &meta(q, &flux), &job.write)
        })
        .transpose()?;
    Ok(NppWriters {
        main,
        monthly,
        filled: Some(filled),
        factor,
        sensitivity,
    })
}

/// The per-class table: pixel count and area, and per output the mean over pixels with a result and the total
/// over the class's area (t C or t CO2).
fn summary_csv(rows: &[ClassSummary], outs: &[&str], nmonths: usize) -> String {
    let mut h = vec![
        "code".to_string(),
        "class".into(),
        "vegetation_type".into(),
        "pixels".into(),
        "pixels_without_result".into(),
        "area_ha".into(),
        "ndvi_filled_fraction".into(),
        "ndvi_dormant_fraction".into(),
        "ndvi_climatology_fraction".into(),
        "pixels_without_ndvi".into(),
    ];
    for o in outs {
        if *o == "sequestration" {
            h.push("sequestration_mean_tCO2_ha".into());
            h.push("sequestration_total_tCO2".into());
        } else {
            h.push(format!("{o}_mean_gC_m2"));
            h.push(format!("{o}_total_tC"));
        }
    }
    let mut s = format!("{}\n", h.join(","));
    for r in rows.iter().filter(|r| r.pixels > 0) {
        let n = (r.pixels - r.pixels_without_result) as f64;
        let pm = r.pixels as f64 * nmonths as f64;
        let mut f = vec![
            r.code.to_string(),
            format!("\"{}\"", r.name.replace('"', "'")),
            r.vegetation_type.clone(),
            r.pixels.to_string(),
            r.pixels_without_result.to_string(),
            format!("{:.4}", r.area_m2 / 1e4),
            format!("{}", r.filled_pixel_months as f64 / pm),
            format!("{}", r.dormant_pixel_months as f64 / pm),
            format!("{}", r.climatology_pixel_months as f64 / pm),
            r.pixels_without_ndvi.to_string(),
        ];
        for o in outs {
            let mean = if n > 0.0 {
                r.value_sums.get(o).copied().unwrap_or(0.0) / n
            } else {
                f64::NAN
            };
            // g C -> t C is 1e-6; sequestration (t CO2 ha-1) x m2 / 1e4 m2 ha-1 -> t CO2.
            let total = r.sums.get(o).copied().unwrap_or(0.0)
                * if *o == "sequestration" { 1e-4 } else { 1e-6 };
            f.push(format!("{mean:.4}"));
            f.push(format!("{total:.6}"));
        }
        s.push_str(&f.join(","));
        s.push('\n');
    }
    s
}

type StripResult = (Vec<PixelOut>, Vec<Vec<Vec<f32>>>);

/// One variable over a strip for the given months of the model year (monthly drivers: one step each), in order.
fn read_months(
    (drivers, window_steps): (&[Drivers], &[(usize, Vec<usize>)]),
    var: Var,
    months: std::ops::Range<usize>,
    w: &Window,
) -> Result<Vec<Plane>> {
    let mut out = Vec::with_capacity(months.len());
    for (part, d) in drivers.iter().enumerate() {
        let steps: Vec<usize> = months
            .clone()
            .filter(|&k| window_steps[k].0 == part)
            .flat_map(|k| window_steps[k].1.iter().copied())
            .collect();
        if !steps.is_empty() {
            out.extend(d.read_steps(var, &steps, w)?);
        }
    }
    Ok(out)
}

/// The mean air temperature of each month of the model year over a strip (daily drivers averaged).
fn window_tmean(
    (drivers, window_steps): (&[Drivers], &[(usize, Vec<usize>)]),
    w: &Window,
) -> Result<Vec<Plane>> {
    let d = (drivers, window_steps);
    if window_steps.iter().all(|(_, steps)| steps.len() == 1) {
        // Monthly drivers: every month in one read (a coarse raster's interpolation stencil computed once).
        return read_months(d, Var::Tmean, 0..window_steps.len(), w);
    }
    let mut out = Vec::with_capacity(12);
    for (k, (part, steps)) in window_steps.iter().enumerate() {
        if steps.len() == 1 {
            out.extend(read_months(
                (drivers, window_steps),
                Var::Tmean,
                k..k + 1,
                w,
            )?);
            continue;
        }
        let planes = drivers[*part].read_steps(Var::Tmean, steps, w)?;
        let n = planes.len() as f64;
        let mean = if planes.iter().all(|pl| matches!(pl, Plane::Uniform(_))) {
            Plane::Uniform(planes.iter().map(|pl| pl.at(0)).sum::<f64>() / n)
        } else {
            Plane::Grid(
                (0..w.len())
                    .map(|px| (planes.iter().map(|pl| pl.at(px)).sum::<f64>() / n) as f32)
                    .collect(),
            )
        };
        out.push(mean);
    }
    Ok(out)
}

/// Separate per-pixel results and per-output monthly planes ([output][month][pixel]).
fn split_monthly(
    per_px: Vec<(PixelOut, Vec<[f32; 3]>)>,
    nmonths: usize,
    order: &[usize],
) -> StripResult {
    let npx = per_px.len();
    let mut monthly = vec![vec![vec![f32::NAN; npx]; nmonths]; order.len()];
    let mut res = Vec::with_capacity(npx);
    for (px, (r, m)) in per_px.into_iter().enumerate() {
        for (k, vals) in m.iter().enumerate() {
            for (o, &j) in order.iter().enumerate() {
                monthly[o][k][px] = vals[j];
            }
        }
        res.push(r);
    }
    (res, monthly)
}
