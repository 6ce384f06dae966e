//! Scenarios: "what if" land cover changed. A scenario file names a base (the inputs of `carbonmap npp`) and
//! changes to its land cover (inside the polygons of any OGR file, or from an alternate land-cover raster).
//! Pixels whose class changes have no observed index series for their new class: each month they take the
//! median NDVI of unchanged pixels of the new class near the change (space for time; `substitute`). Base and
//! scenario then run through the same NPP job, and the differences (scenario minus base) are written as
//! rasters and, per zone, beside the base and scenario totals (`compare`).
//!
//! Everything that can be checked before computing is checked first, all problems at once (exit 2): files,
//! classes the legend does not know, a rule that changes no pixel (polygons outside the grid, or every pixel
//! inside already of the new class).

mod absolute;
mod climatology;
mod compare;
mod landcover;
mod load;
mod paired;
mod report;
mod substitute;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Problems, Result};
use crate::io::{Grid, WriteOptions};
use crate::landcover::Legend;
use crate::lattice::LatticeSpec;
use crate::pipeline::balance::{run_balance, BalanceJob, EmissionFactor};
use crate::pipeline::npp::{run_npp, NppJob, NppSummary};
use crate::progress::Progress;
use crate::zones::ZoneSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    description: Option<String>,
    base: BaseSpec,
    zones: Option<ZonesFile>,
    substitution: Option<SubstitutionSpec>,
    #[serde(default, rename = "change")]
    changes: Vec<ChangeSpec>,
    balance: Option<BalanceFile>,
    /// Parameter sets of the scenario's run (for example a calibrated one against the defaults).
    parameters: Option<ParametersFile>,
    /// Paired Monte Carlo draws for the differences' intervals.
    uncertainty: Option<UncertaintySection>,
    #[serde(default, rename = "emissions")]
    emissions: Vec<EmissionsFile>,
}

/// `[uncertainty]`: an uncertainty file (as `npp --uncertainty`), the number of draws and the seed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UncertaintySection {
    file: PathBuf,
    draws: usize,
    #[serde(default = "one_u64")]
    seed: u64,
}

fn one_u64() -> u64 {
    1
}

/// The scenario run's own parameter sets (each defaults to the base's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParametersFile {
    casa_params: Option<String>,
    rh: Option<String>,
    bplut: Option<String>,
    pmodel_params: Option<String>,
}

/// The emission lattice both runs are balanced against (`carbonmap balance`'s lattice options).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceFile {
    lattice: PathBuf,
    lattice_unit: Option<String>,
    #[serde(default)]
    lattice_bands: Vec<String>,
}

/// One emission change: `factor` times a sector's emissions (every sector without `sector`), in the zone
/// whose `zone_field` is `zone` (everywhere without `zone`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmissionsFile {
    sector: Option<String>,
    zone_field: Option<String>,
    zone: Option<String>,
    /// Inside these polygons (any OGR file) instead of a zone.
    polygons: Option<PathBuf>,
    /// A factor on the emissions, or an absolute change (t CO2 yr-1, negative = a cut) of the zone's (or the
    /// whole area's) base emissions of the sector, turned into a factor once the base is balanced.
    factor: Option<f64>,
    change_tco2_yr: Option<f64>,
}

/// The base run: `carbonmap npp`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSpec {
    #[serde(default = "default_model")]
    model: String,
    ndvi: PathBuf,
    #[serde(default = "one")]
    ndvi_band: usize,
    landcover: PathBuf,
    #[serde(default = "one")]
    landcover_band: usize,
    legend: String,
    drivers: PathBuf,
    year: i32,
    #[serde(default = "all_months")]
    months: String,
    casa_params: Option<String>,
    rh: Option<String>,
    bplut: Option<String>,
    pmodel_params: Option<String>,
}

fn default_model() -> String {
    "casa".into()
}
fn one() -> usize {
    1
}
fn all_months() -> String {
    "1-12".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZonesFile {
    file: PathBuf,
    fields: Vec<String>,
    layer: Option<String>,
}

/// Where changed pixels find their new class's NDVI (required: the right neighbourhood depends on the
/// landscape, so carbonmap does not choose it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubstitutionSpec {
    /// Donors lie within this distance (m) of the changed pixels' bounding box.
    pub distance_m: f64,
    /// Fewer donors than this within the distance: the whole scene's pixels of the class are used (warned).
    pub min_pixels: u64,
    /// Monthly NDVI profiles per vegetation type for a class no pixel of the scene has (default: the built-in
    /// models/ndvi-climatology.toml).
    #[serde(default)]
    pub climatology: Option<PathBuf>,
}

/// One land-cover change: inside polygons, pixels (of classes `from`, or all) become class `to`; or, from an
/// alternate land-cover raster, every pixel where it has a class takes that class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    pub polygons: Option<PathBuf>,
    pub layer: Option<String>,
    pub raster: Option<PathBuf>,
    #[serde(default)]
    pub from: Vec<i64>,
    pub to: Option<i64>,
}

impl ChangeSpec {
    pub fn label(&self, i: usize) -> String {
        let src = self
            .polygons
            .as_ref()
            .or(self.raster.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("change {} ({src})", i + 1)
    }
}

/// What `carbonmap scenario` does.
#[derive(Debug, Clone)]
pub struct ScenarioJob {
    pub file: PathBuf,
    pub out_dir: PathBuf,
    /// Overrides of the file's base.ndvi and base.year (a season's stage passes its own).
    pub ndvi: Option<PathBuf>,
    pub year: Option<i32>,
    pub months: Option<String>,
    pub write: WriteOptions,
    pub memory_mb: usize,
}

#[derive(Debug, Clone)]
pub struct ScenarioSummary {
    pub name: String,
    pub changed_pixels: u64,
    pub changed_ha: f64,
    /// The zone table's text (the file reaches its name when the command commits).
    pub zone_table: String,
    pub outputs: Vec<PathBuf>,
    /// The scenario's own warnings (the NPP runs report theirs as they go).
    pub warnings: Vec<String>,
}

/// A scenario file read, its paths made relative to it and every problem listed.
struct Scenario {
    name: String,
    description: String,
    base: NppJob,
    zones: Option<ZoneSpec>,
    substitution: SubstitutionSpec,
    changes: Vec<ChangeSpec>,
    legend: Legend,
    /// The lattice, the scenario's emission changes, and those given as absolute changes (index, t CO2 yr-1).
    balance: Option<(LatticeSpec, Vec<EmissionFactor>, Vec<(usize, f64)>)>,
    /// The scenario's NPP job with its own parameter sets (inputs and output folder are set when it runs).
    scenario_params: NppJob,
    /// Paired draws (`[uncertainty]`).
    draws: Option<crate::pipeline::npp::draws::Draws>,
}

/// One change's own problems: its source, its classes.
fn check_change(
    file: &Path,
    i: usize,
    c: &ChangeSpec,
    legend: Option<&Legend>,
    problems: &mut Problems,
) {
    let label = c.label(i);
    match (&c.polygons, &c.raster) {
        (Some(p), None) | (None, Some(p)) => {
            if !p.exists() {
                problems.push(Error::input(p, format!("{label}: file does not exist")));
            }
        }
        _ => problems.push(Error::config(
            file,
            format!("{label}: give exactly one of polygons or raster"),
        )),
    }
    if c.polygons.is_some() && c.to.is_none() {
        problems.push(Error::config(
            file,
            format!("{label}: polygons need the new class: to = CODE"),
        ));
    }
    if c.raster.is_some() && (c.to.is_some() || !c.from.is_empty()) {
        problems.push(Error::config(
            file,
            format!("{label}: a raster change takes the raster's classes (no from or to)"),
        ));
    }
    let Some(legend) = legend else { return };
    for code in c.from.iter().chain(c.to.iter()) {
        if legend.class(*code).is_none() {
            problems.push(Error::config(
                file,
                format!(
                    "{label}: class {code} is not in the legend {}",
                    legend.product
                ),
            ));
        }
    }
}

/// The analysis grid: the grid of the base's NDVI composites.
fn ndvi_grid(base: &NppJob) -> Result<Grid> {
    let first = substitute::composites(&base.ndvi_dir, &base.ndvi_index)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Error::input(
                &base.ndvi_dir,
                "has no NDVI_YYYY-MM.tif composites (carbonmap indices --period month)",
            )
        })?;
    Grid::from_raster(&first)
}

pub fn run_scenario(job: &ScenarioJob, progress: &dyn Progress) -> Result<ScenarioSummary> {
    let s = load::load(job)?;
    let grid = ndvi_grid(&s.base)?;
    if let Some((lattice, factors, _)) = &s.balance {
        crate::pipeline::balance::check_emission_factors(
            factors,
            lattice,
            s.zones.as_ref(),
            &grid,
        )?;
    }
    crate::commit::prepare_folder(&job.out_dir)?;
    let scratch = scratch_folder(&job.out_dir)?;
    let lc = landcover::build(&s, &grid, scratch.path(), &job.out_dir.join("scenario"))?;
    let mut warnings = lc.warnings.clone();
    let subst = substitute::run(&s, &grid, &lc, scratch.path())?;
    warnings.extend(subst.warnings.iter().cloned());
    // Hourly or daily driver archives are aggregated once for both runs (same drivers, same grid).
    let reuse = crate::drivers::ReuseAggregates::begin();
    let base = run_npp(&s.base, progress)?;
    let scen = run_npp(&scenario_npp_job(&s, &lc, &subst, &job.out_dir), progress)?;
    drop(reuse);
    let cmp = compare::run(&s, &grid, &base, &scen, &lc, &job.out_dir, &job.write)?;
    let tables = compare::change_tables(&s, &lc, &subst, &job.out_dir, &base.period_label)?;
    let mut outputs = base.outputs.clone();
    outputs.extend(scen.outputs.iter().cloned());
    outputs.extend(cmp.outputs.iter().cloned());
    outputs.extend(tables);
    outputs.push(lc.output.clone());
    let mut rows: Vec<report::MapRow> = [
        ("sequestration_tCO2_ha_", "sequestration"),
        ("NPP_gC_m2_", "NPP"),
    ]
    .iter()
    .filter_map(|(prefix, title)| {
        map_row(
            (&base.outputs, &scen.outputs, &cmp.outputs),
            prefix,
            &format!("{title}, {}", base.period_label),
        )
    })
    .collect();
    let mut zone_table = cmp.zone_table;
    let bal = balances(&s, &grid, (&base, &scen), job, progress)?;
    if let Some(d) = &s.draws {
        let emissions = bal.as_ref().map(|b| {
            let find = |outs: &[PathBuf]| {
                outs.iter()
                    .find(|p| {
                        p.file_name()
                            .is_some_and(|n| n == "emissions_tCO2_ha_yr.tif")
                    })
                    .map(|p| compare::readable(p))
            };
            (find(&b.base), find(&b.scenario))
        });
        let emissions = match emissions {
            Some((Some(a), Some(b))) => Some((a, b)),
            _ => None,
        };
        outputs.push(paired::paired_draws(
            &s,
            &grid,
            (&base, &scen),
            &lc,
            d,
            emissions.as_ref().map(|(a, b)| (a.as_path(), b.as_path())),
            &job.out_dir,
        )?);
    }
    if let Some(b) = bal {
        rows.extend(map_row(
            (&b.base, &b.scenario, &b.compared),
            "net_balance_tCO2_ha_yr",
            "net balance",
        ));
        outputs.extend(b.base.into_iter().chain(b.scenario).chain(b.compared));
        zone_table += &b.table;
    }
    let tables: Vec<PathBuf> = outputs
        .iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "csv")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("scenario_"))
        })
        .cloned()
        .collect();
    let html = report::write(&s, &job.out_dir, scratch.path(), &rows, &tables, &warnings)?;
    outputs.push(html);
    Ok(ScenarioSummary {
        name: s.name,
        changed_pixels: lc.changed_pixels(),
        changed_ha: lc.changed_m2 / 1e4,
        zone_table,
        outputs,
        warnings,
    })
}

/// Working files (the scenario's land cover and composites) in a hidden folder beside the output folder,
/// removed when the run ends: `.carbonmap-scenario-OUT.` and six random letters or digits. Those that killed
/// runs into the same output folder left are removed first: this run holds that folder's lock
/// (`commit::prepare_folder`), so none of them is in use.
fn scratch_folder(out_dir: &Path) -> Result<tempfile::TempDir> {
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out_dir.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".carbonmap-scenario-{name}.");
    remove_stale_scratch(parent, &prefix);
    tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(SCRATCH_RANDOM)
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, "cannot create a scratch folder", e))
}

/// Letters or digits after a scratch folder's prefix (tempfile's own default).
const SCRATCH_RANDOM: usize = 6;

/// Remove the folders in `parent` named `prefix` and exactly `SCRATCH_RANDOM` letters or digits (another
/// output folder's scratch, `OUT-b.`..., never matches).
fn remove_stale_scratch(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name.strip_prefix(prefix).is_some_and(|r| {
            r.len() == SCRATCH_RANDOM && r.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if stale && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The scenario's NPP job: its own parameter sets, and its land cover and composites when they changed
/// (without land-cover changes it reads the base's as they are).
fn scenario_npp_job(
    s: &Scenario,
    lc: &landcover::LandCover,
    subst: &substitute::Substitution,
    out_dir: &Path,
) -> NppJob {
    let job = NppJob {
        out_dir: out_dir.join("scenario"),
        ..s.scenario_params.clone()
    };
    if s.changes.is_empty() {
        return job;
    }
    NppJob {
        ndvi_label: Some(format!(
            "the scenario's composites (those of {}, substituted where the land cover changes)",
            s.base.ndvi_dir.display()
        )),
        ndvi_dir: subst.ndvi_dir.clone(),
        ndvi_band: 1,
        landcover: lc.scratch.clone(),
        landcover_label: Some(format!(
            "{} in the scenario's output folder (band 1 of its working copy)",
            in_folder(&lc.output, out_dir)
        )),
        landcover_band: 1,
        ..job
    }
}

/// `path` relative to the scenario's output folder `out`: the outputs name each other so, since the folder may be
/// a season stage's working folder, renamed when the stage completes.
fn in_folder(path: &Path, out: &Path) -> String {
    path.strip_prefix(out).unwrap_or(path).display().to_string()
}

/// Both runs' balances (with a [balance] section) and their comparison.
struct Balances {
    base: Vec<PathBuf>,
    scenario: Vec<PathBuf>,
    compared: Vec<PathBuf>,
    table: String,
}

fn balances(
    s: &Scenario,
    grid: &Grid,
    (base, scen): (&NppSummary, &NppSummary),
    job: &ScenarioJob,
    progress: &dyn Progress,
) -> Result<Option<Balances>> {
    let Some((lattice, factors, absolute)) = &s.balance else {
        return Ok(None);
    };
    let bal = |summary: &NppSummary, run: &str, factors: Vec<EmissionFactor>| {
        let seq = summary
            .outputs
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("sequestration_tCO2_ha_"))
            })
            .expect("every NPP run writes sequestration");
        run_balance(
            &BalanceJob {
                sink: compare::readable(seq),
                sink_band: 1,
                sink_unit: None,
                lattice: lattice.clone(),
                proxy: None,
                zones: s.zones.clone(),
                population: None,
                targets: None,
                previous: None,
                out_dir: job.out_dir.join(run).join("balance"),
                write: job.write.clone(),
                emission_factors: factors,
                // Relative to the scenario's output folder.
                sink_label: Some(in_folder(seq, &job.out_dir)),
                draws: None,
            },
            progress,
        )
    };
    let b = bal(base, "base", Vec::new())?;
    let factors = absolute::factors(factors, absolute, &b, grid)?;
    let c = bal(scen, "scenario", factors)?;
    let (compared, table) = compare::balance(s, grid, &b, &c, &job.out_dir, &job.write)?;
    Ok(Some(Balances {
        base: b.outputs,
        scenario: c.outputs,
        compared,
        table,
    }))
}

/// The base's, the scenario's and the difference's rasters of one quantity (by file-name prefix).
fn map_row(
    (base, scen, diff): (&[PathBuf], &[PathBuf], &[PathBuf]),
    prefix: &str,
    title: &str,
) -> Option<report::MapRow> {
    let find = |list: &[PathBuf], want_diff: bool| {
        list.iter()
            .find(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                n.starts_with(prefix)
                    && n.ends_with(".tif")
                    && n.contains("_difference") == want_diff
            })
            .cloned()
    };
    Some(report::MapRow {
        title: title.to_string(),
        base: find(base, false)?,
        scenario: find(scen, false)?,
        difference: find(diff, true)?,
    })
}
