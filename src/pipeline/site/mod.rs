//! `carbonmap site`: a productivity model at one site from a daily station table (a flux-tower site): MOD17
//! (with an optional soil-water scalar) or the P-model with SPLASH soil water and the Stocker stress, every
//! daily and annual term written in full precision, an optional comparison against observed daily GPP, and for
//! the P-model a calibration of its parameters with leave-one-year-out cross-validation (`--fit`).

mod fit;
mod mod17;
mod pmodel;
mod series;
mod water;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::io;
use crate::npp::pmodel::Pathway;
use crate::plots;
use crate::units::{self, CarbonUnit};
use crate::validate::Metrics;

pub use series::Series;

/// Which model `site` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteModel {
    Mod17,
    PModel,
}

/// What `carbonmap site` does.
#[derive(Debug, Clone)]
pub struct SiteJob {
    pub drivers: PathBuf,
    pub model: SiteModel,
    /// MOD17 plant functional type (required by MOD17).
    pub pft: Option<u8>,
    pub years: (i32, i32),
    pub bplut: String,
    /// P-model parameter set (name or .toml).
    pub params: String,
    pub pathway: Pathway,
    /// Bucket size (soil water-holding capacity), mm; default: the parameter set's calibrated bucket, else
    /// SPLASH's default.
    pub whc_mm: Option<f64>,
    /// Soil-water limitation: default on for the P-model (Stocker stress), off for MOD17.
    pub soil_water: Option<bool>,
    /// Fit the P-model's kphio, stress curve and bucket to the observations (with cross-validation by year).
    pub fit: bool,
    /// A correction table (`npp --corrections` format) applied to the site's vegetation type and zone.
    pub corrections: Option<String>,
    /// The site's zone in the correction table.
    pub zone: Option<String>,
    /// The site's vegetation type (default: MOD17's type for --pft).
    pub vegetation_type: Option<String>,
    pub observed: Option<PathBuf>,
    pub observed_column: String,
    pub observed_unit: Option<String>,
    pub out_dir: PathBuf,
}

/// What a model run gives the common comparison and writer.
pub struct ModelRun {
    pub title: String,
    pub daily_csv: String,
    pub annual_csv: String,
    /// The days of the series and the modelled daily GPP, g C m-2 d-1, of each.
    pub dates: Vec<NaiveDate>,
    pub gpp: Vec<f64>,
    /// Model-specific facts for site_comparison.json.
    pub facts: serde_json::Value,
}

/// Observed daily GPP in g C m-2 d-1 by date. Units: any carbon flux density carbonmap parses ("g C m-2
/// d-1", "kg C m-2 d-1" ...), or the tower convention "umol m-2 s-1" (of CO2, one mole of C per mole)
/// converted with the molar mass of carbon (models/units.toml).
fn read_observed(job: &SiteJob) -> Result<BTreeMap<NaiveDate, f64>> {
    let Some(path) = &job.observed else {
        if job.fit {
            return Err(Error::Usage(
                "--fit needs --observed: parameters are fitted to observed daily GPP".into(),
            ));
        }
        return Ok(BTreeMap::new());
    };
    const MOLAR: &str = "umol m-2 s-1";
    let unit = job.observed_unit.as_deref().ok_or_else(|| {
        Error::Usage(format!(
            "--observed-unit is required with --observed (units are never assumed): for example \"g C m-2 d-1\" or \"{MOLAR}\""
        ))
    })?;
    let factor = if unit == MOLAR {
        // umol s-1 -> mol d-1 (x 1e-6 x 86400 s d-1, the day of the per-day units) -> g C.
        1e-6 * units::seconds_per_day() * units::carbon_g_per_mol()
    } else {
        CarbonUnit::parse(unit)
            .and_then(|u| u.factor_to(&CarbonUnit::parse("g C m-2 d-1").expect("valid")))
            .map_err(|e| Error::Usage(format!("--observed-unit: {e} (or \"{MOLAR}\")")))?
    };
    let mut out = BTreeMap::new();
    for (key, v) in plots::read_keyed(path, "date", &job.observed_column)? {
        let d = NaiveDate::parse_from_str(&key, "%Y-%m-%d")
            .map_err(|_| Error::input(path, format!("date \"{key}\" is not YYYY-MM-DD")))?;
        if v.is_finite() {
            out.insert(d, v * factor);
        }
    }
    Ok(out)
}

/// Observed value of each day of the series (None without an observation).
pub fn observed_by_day(series: &Series, observed: &BTreeMap<NaiveDate, f64>) -> Vec<Option<f64>> {
    series
        .dates
        .iter()
        .map(|d| observed.get(d).copied())
        .collect()
}

/// A value for a CSV cell: full precision (shortest text that reads back to the same float64), empty for none.
pub fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

/// Run the site model; returns a printable report (also written as site_comparison.json with observations).
pub fn run_site(job: &SiteJob) -> Result<String> {
    let observed = read_observed(job)?;
    let run = match job.model {
        SiteModel::Mod17 => {
            if job.fit {
                return Err(Error::Usage(
                    "--fit calibrates the P-model (--model pmodel); MOD17's BPLUT is calibrated with `carbonmap calibrate`".into(),
                ));
            }
            mod17::run(job, &observed)?
        }
        SiteModel::PModel => pmodel::run(job, &observed)?,
    };
    io::write_atomic(
        &job.out_dir.join("site_daily.csv"),
        run.daily_csv.as_bytes(),
    )?;
    io::write_atomic(
        &job.out_dir.join("site_annual.csv"),
        run.annual_csv.as_bytes(),
    )?;
    let mut report = format!("{}\n{}", run.title, run.annual_csv);
    if let Some(cmp) = compare(job, &run, &observed)? {
        report.push_str(&cmp);
    }
    Ok(report)
}

/// Daily and annual agreement with the observations (annual sums over the days with an observation).
fn compare(
    job: &SiteJob,
    run: &ModelRun,
    observed: &BTreeMap<NaiveDate, f64>,
) -> Result<Option<String>> {
    if observed.is_empty() {
        return Ok(None);
    }
    let (mut obs_d, mut mod_d) = (vec![], vec![]);
    let mut by_year: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
    for (d, m) in run.dates.iter().zip(&run.gpp) {
        if let Some(&o) = observed.get(d) {
            obs_d.push(o);
            mod_d.push(*m);
            let e = by_year.entry(chrono::Datelike::year(d)).or_default();
            e.0 += o;
            e.1 += m;
        }
    }
    if obs_d.is_empty() {
        return Ok(None);
    }
    let md = Metrics::compute(&obs_d, &mod_d);
    let (oy, my_): (Vec<f64>, Vec<f64>) = by_year.values().copied().unzip();
    let my = Metrics::compute(&oy, &my_);
    let json = serde_json::json!({
        "model": run.facts,
        "years": [job.years.0, job.years.1],
        "units": {"daily": "g C m-2 d-1", "annual": "g C m-2 yr-1"},
        "daily": md,
        "annual": my,
        "r2": "squared Pearson correlation; nse = Nash-Sutcliffe efficiency; bias = mean(model - observed)",
    });
    io::write_atomic(
        &job.out_dir.join("site_comparison.json"),
        serde_json::to_string_pretty(&json).unwrap().as_bytes(),
    )?;
    let mut out = String::new();
    let _ = writeln!(out, "\n            n      R2     NSE    RMSE    bias   slope  (g C m-2 d-1 daily, g C m-2 yr-1 annual)");
    for (name, m) in [("daily", md), ("annual", my)] {
        let _ = writeln!(
            out,
            "{name:<8} {:>5} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
            m.n, m.r2, m.nse, m.rmse, m.bias, m.slope
        );
    }
    Ok(Some(out))
}

/// The correction of the site (factor, what it multiplies, a description), or None without a table. The site
/// is one (zone, vegetation type); a table with no row for it, not even a wildcard, is refused: applying it
/// would change nothing.
pub fn site_correction(job: &SiteJob) -> Result<Option<(f64, crate::correction::Target, String)>> {
    let Some(name) = &job.corrections else {
        return Ok(None);
    };
    let table = crate::correction::CorrectionTable::resolve(name)?;
    let types = crate::landcover::vegetation_types()?;
    let class = match (&job.vegetation_type, job.pft) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(pft)) => types
            .iter()
            .find(|t| t.mod17_umd == Some(pft))
            .map(|t| t.name.clone()),
        (None, None) => None,
    };
    let names: std::collections::BTreeSet<String> = types.iter().map(|t| t.name.clone()).collect();
    if let Some(c) = &class {
        if !names.contains(c) {
            return Err(Error::Usage(format!(
                "--vegetation-type {c}: not a vegetation type (known: {})",
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let zones: Option<std::collections::BTreeSet<String>> = job
        .zone
        .as_ref()
        .map(|z| std::iter::once(z.clone()).collect());
    // Rows for other zones are not errors here: a regional table covers many zones, the site is in one.
    table.check(zones.as_ref().map(|_| None), &names)?;
    let (factor, level) = table.lookup(job.zone.as_deref(), class.as_deref());
    if level == crate::correction::Level::None {
        return Err(Error::input(
            &table.path,
            format!(
                "has no row for this site (zone {}, vegetation type {}): applying it would change nothing; give --zone and --vegetation-type (or --pft) as the table names them",
                job.zone.as_deref().unwrap_or("none"),
                class.as_deref().unwrap_or("none")
            ),
        ));
    }
    let what = format!(
        "correction {} x {factor} ({:?} row of {}; applies to {})",
        table.target.name(),
        level,
        table.path.display(),
        table.target.name()
    );
    Ok(Some((factor, table.target, what)))
}
