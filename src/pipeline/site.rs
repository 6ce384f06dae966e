//! `carbonmap site`: MOD17 at one site from a daily station table that carries FPAR (a flux-tower site), with
//! an optional comparison against observed daily GPP (daily and annual agreement statistics).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::drivers::{Drivers, Step, Var};
use crate::error::{Error, Result};
use crate::io;
use crate::npp::fpar::FparConstants;
use crate::npp::mod17::{Bplut, Mod17Constants, Mod17Year};
use crate::plots;
use crate::units::{self, CarbonUnit};
use crate::validate::Metrics;

/// What `carbonmap site` does.
#[derive(Debug, Clone)]
pub struct SiteJob {
    pub drivers: PathBuf,
    pub pft: u8,
    pub years: (i32, i32),
    pub bplut: String,
    pub observed: Option<PathBuf>,
    pub observed_column: String,
    pub observed_unit: Option<String>,
    pub out_dir: PathBuf,
}

/// Observed daily GPP in g C m-2 d-1 by date. Units: any carbon flux density carbonmap parses ("g C m-2
/// d-1", "kg C m-2 d-1" ...), or the tower convention "umol m-2 s-1" (of CO2, one mole of C per mole)
/// converted with the molar mass of carbon (models/units.toml).
fn read_observed(job: &SiteJob) -> Result<BTreeMap<NaiveDate, f64>> {
    let Some(path) = &job.observed else {
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

/// Run MOD17 at the site; returns a printable report (also written as site_comparison.json).
pub fn run_site(job: &SiteJob) -> Result<String> {
    let bplut = Bplut::resolve(&job.bplut)?;
    let c = bplut.class(job.pft).ok_or_else(|| {
        Error::Usage(format!(
            "--pft {}: BPLUT {} has parameters for PFTs {}",
            job.pft,
            bplut.name,
            bplut
                .classes
                .iter()
                .map(|c| c.umd.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let k = Mod17Constants::builtin()?;
    let fp = FparConstants::builtin()?;
    let observed = read_observed(job)?;
    let (y0, y1) = job.years;
    let mut daily = String::from(
        "date,fpar,lai,tmin_degC,tmean_degC,vpd_Pa,par_MJ_m2_d,gpp_model_gC_m2_d,gpp_observed_gC_m2_d\n",
    );
    let mut annual = String::from(
        "year,days,gpp_model_gC_m2_yr,npp_model_gC_m2_yr,days_with_observation,gpp_model_on_observed_days_gC_m2,gpp_observed_gC_m2\n",
    );
    let (mut obs_d, mut mod_d, mut obs_y, mut mod_y) = (vec![], vec![], vec![], vec![]);
    for year in y0..=y1 {
        let d = Drivers::load(&job.drivers, year)?;
        if d.step != Step::Day {
            return Err(Error::config(
                &d.source,
                "the site model is daily: step = \"day\"",
            ));
        }
        let mut missing = vec![];
        for v in [Var::Fpar, Var::Tmin, Var::Tmean, Var::Vpd] {
            if !d.available(v) {
                missing.push(v.name());
            }
        }
        if !d.available(Var::Par) && !d.available(Var::Srad) {
            missing.push("par (or srad)");
        }
        if !missing.is_empty() {
            return Err(Error::config(
                &d.source,
                format!(
                    "the site model needs station columns for: {}",
                    missing.join(", ")
                ),
            ));
        }
        let par_from_srad = !d.available(Var::Par);
        let mut acc = Mod17Year::default();
        let (mut so, mut sm, mut nobs) = (0.0, 0.0, 0usize);
        for (i, s) in d.steps.iter().enumerate() {
            let get = |v: Var| {
                d.read(v, i, &crate::io::Window::rows(0, 1, 1))
                    .map(|p| p.at(0))
            };
            let fpar = get(Var::Fpar)?;
            let lai = fp.lai(fpar);
            let (tmin, tmean, vpd) = (get(Var::Tmin)?, get(Var::Tmean)?, get(Var::Vpd)?);
            let par = if par_from_srad {
                get(Var::Srad)? * k.par_fraction_of_shortwave
            } else {
                get(Var::Par)?
            };
            let gpp = c.daily_gpp(fpar, tmin, vpd, par);
            acc.add_days(c, &k, fpar, tmin, vpd, par, lai, tmean, 1);
            let date = NaiveDate::from_yo_opt(year, s.doy).expect("valid day");
            let o = observed.get(&date).copied();
            if let Some(o) = o {
                obs_d.push(o);
                mod_d.push(gpp);
                so += o;
                sm += gpp;
                nobs += 1;
            }
            // Full precision (shortest text that reads back to the same float64).
            let _ = writeln!(
                daily,
                "{date},{fpar},{lai},{tmin},{tmean},{vpd},{par},{gpp},{}",
                o.map(|v| format!("{v}")).unwrap_or_default()
            );
        }
        let a = acc.finish(c, &k);
        let _ = writeln!(
            annual,
            "{year},{},{},{},{nobs},{},{}",
            d.steps.len(),
            a.gpp,
            a.npp,
            sm,
            if nobs > 0 {
                format!("{so}")
            } else {
                String::new()
            }
        );
        // Annual sums compared over the days that have an observation (model summed on the same days).
        if nobs > 0 {
            obs_y.push(so);
            mod_y.push(sm);
        }
    }
    io::write_atomic(&job.out_dir.join("site_daily.csv"), daily.as_bytes())?;
    io::write_atomic(&job.out_dir.join("site_annual.csv"), annual.as_bytes())?;
    let mut report = format!(
        "MOD17 at one site: PFT {} ({}), BPLUT {}, {y0}-{y1}\n{annual}",
        c.umd, c.label, bplut.name
    );
    if !obs_d.is_empty() {
        let md = Metrics::compute(&obs_d, &mod_d);
        let my = Metrics::compute(&obs_y, &mod_y);
        let json = serde_json::json!({
            "model": "MOD17",
            "pft": c.umd,
            "bplut": bplut.name,
            "years": [y0, y1],
            "units": {"daily": "g C m-2 d-1", "annual": "g C m-2 yr-1"},
            "daily": md,
            "annual": my,
            "r2": "squared Pearson correlation; nse = Nash-Sutcliffe efficiency; bias = mean(model - observed)",
        });
        io::write_atomic(
            &job.out_dir.join("site_comparison.json"),
            serde_json::to_string_pretty(&json).unwrap().as_bytes(),
        )?;
        let _ = writeln!(report, "\n            n      R2     NSE    RMSE    bias   slope  (g C m-2 d-1 daily, g C m-2 yr-1 annual)");
        for (name, m) in [("daily", md), ("annual", my)] {
            let _ = writeln!(
                report,
                "{name:<8} {:>5} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
                m.n, m.r2, m.nse, m.rmse, m.bias, m.slope
            );
        }
    }
    Ok(report)
}
