//! `carbonmap check`: the whole config and every input, before any computation, with every problem listed
//! at once: options each command accepts, files that exist and open, CRS and georeferencing, overlap of a
//! stage's rasters, stack manifests and their bands, driver files for the season's year, land-cover codes
//! against their legend, and declared units where a command needs them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{plan_with_problems, Commands, Plan, Stage};
use crate::error::{Error, Problems, Result};
use crate::io;

/// Options of a raster input whose unit the file must declare unless the paired option gives it.
const UNIT_OPTIONS: [(&str, &str, &str); 5] = [
    ("balance", "lattice", "lattice-unit"),
    ("balance", "sink", "sink-unit"),
    ("regrid", "lattice", "lattice-unit"),
    ("validate", "raster", "model-unit"),
    ("calibrate", "raster", "model-unit"),
];

/// The value after `--long` in an argument vector.
fn option_value<'a>(argv: &'a [String], long: &str) -> Option<&'a str> {
    let flag = format!("--{long}");
    argv.iter()
        .position(|a| *a == flag)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

/// Check a config for a season; all problems in one `Error::Invalid`. Returns the plan.
pub fn check(
    config: &Path,
    season: Option<&str>,
    out: Option<&Path>,
    overrides: &[(String, String)],
    cmds: &dyn Commands,
) -> Result<Plan> {
    let (plan, mut problems) = plan_with_problems(config, season, out, overrides, cmds)?;
    check_stages(&plan, cmds, &mut problems);
    problems.finish()?;
    Ok(plan)
}

/// Check a resolved plan's stages and inputs (`carbonmap run` does this before computing anything).
pub(super) fn check_plan(plan: &Plan, cmds: &dyn Commands) -> Result<()> {
    let mut problems = Problems::new();
    check_stages(plan, cmds, &mut problems);
    problems.finish()
}

fn check_stages(plan: &Plan, cmds: &dyn Commands, problems: &mut Problems) {
    check_out_folder(plan, problems);
    for stage in &plan.stages {
        let at = |what: String| format!("[stages.{}] {what}", stage.name);
        let mut argv = stage.argv.clone();
        argv.extend([
            "--out".to_string(),
            plan.stage_dir(&stage.name).to_string_lossy().into_owned(),
        ]);
        if let Err(e) = cmds.parse(&argv) {
            // clap's message without its usage lines, on one line.
            let text = e.to_string();
            let first = text
                .split("Usage:")
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .trim_start_matches("error: ")
                .to_string();
            problems.push(Error::Usage(at(format!(
                "`carbonmap {}`: {first}",
                stage.command.join(" ")
            ))));
        }
        for p in strict_months_problems(plan, stage) {
            problems.push(Error::Usage(at(p)));
        }
        let (mut extents, mut drivers) = (Vec::new(), Vec::new());
        for (opt, path) in &stage.inputs {
            for e in check_input(stage, opt, path, (&mut extents, &mut drivers)) {
                problems.push(Error::Usage(at(format!("{opt}: {e}"))));
            }
        }
        for p in drivers_overlap(&extents, &drivers) {
            problems.push(Error::Usage(at(p)));
        }
        if let Some((p0, g0)) = extents.first() {
            for (p, g) in &extents[1..] {
                let b = g.bounds();
                match io::transform_bounds(&g.crs_wkt, &g0.crs_wkt, b) {
                    Ok(t) => {
                        let r = g0.bounds();
                        if io::disjoint(t, r) {
                            problems.push(Error::Usage(at(format!(
                                "{} does not overlap {} (no common area)",
                                p.display(),
                                p0.display()
                            ))));
                        }
                    }
                    Err(e) => problems.push(Error::Usage(at(format!(
                        "{}: bounds cannot be compared with {}: {e}",
                        p.display(),
                        p0.display()
                    )))),
                }
            }
        }
    }
}

/// Driver rasters that share no area with the stage's first raster input (a climate file of another region),
/// compared in the driver's CRS (a global latitude-longitude file need not project into the input's; one with
/// longitudes 0..360 is compared by its 180..360 for western inputs). A comparison that cannot be made is left
/// to the stage, which checks the drivers' coverage of its grid.
fn drivers_overlap(
    extents: &[(PathBuf, io::Grid)],
    drivers: &[(PathBuf, io::Grid)],
) -> Vec<String> {
    let Some((p0, g0)) = extents.first() else {
        return Vec::new();
    };
    let apart = |g: &io::Grid| {
        let Ok(t) = io::transform_bounds(&g0.crs_wkt, &g.crs_wkt, g0.bounds()) else {
            return false;
        };
        io::disjoint(io::in_raster_longitudes(g, t), g.bounds())
    };
    (drivers.iter().filter(|(_, g)| apart(g)))
        .map(|(p, _)| {
            format!(
                "climate driver {} does not overlap {} (no common area)",
                p.display(),
                p0.display()
            )
        })
        .collect()
}

/// Months (year, month) with at least one acquisition in the stack an `indices` stage reads: the manifest or
/// folder when it exists, else the folder the plan's `stack` stage will recognise (None when unknown).
fn stack_months(plan: &Plan, stack: &Path) -> Option<BTreeSet<(i32, u32)>> {
    use chrono::Datelike;
    if stack.exists() {
        let s = crate::scene::Stack::open(stack).ok()?;
        return Some(
            s.scenes
                .iter()
                .map(|sc| (sc.date.year(), sc.date.month()))
                .collect(),
        );
    }
    let producer = plan.stages.iter().find(|st| {
        st.command == ["stack"]
            && st
                .out_file
                .as_ref()
                .is_some_and(|f| plan.stage_dir(&st.name).join(f) == stack)
    })?;
    let dir = producer.inputs.iter().find(|(o, _)| o == "dir")?.1.clone();
    let (_, text) =
        crate::scene::Stack::recognise_dir(&dir, stack_dates(&producer.argv), false).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    let months = v
        .get("scene")?
        .as_array()?
        .iter()
        .filter_map(|sc| sc.get("date")?.as_str())
        .filter_map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| (d.year(), d.month()))
        .collect();
    Some(months)
}

/// An `npp` stage with `strict_months`: the simulated months in which the monthly composites it reads will have
/// no acquisition (npp would refuse them).
fn strict_months_problems(plan: &Plan, stage: &Stage) -> Vec<String> {
    use crate::pipeline::npp::period::{parse_months, NppPeriod};
    let argv = &stage.argv;
    if stage.command != ["npp"] || !argv.iter().any(|a| a == "--strict-months") {
        return Vec::new();
    }
    let Some(ndvi) = option_value(argv, "ndvi").map(PathBuf::from) else {
        return Vec::new();
    };
    let Some(indices) = plan.stages.iter().find(|st| {
        st.command == ["indices"]
            && plan.stage_dir(&st.name) == ndvi
            && option_value(&st.argv, "period") == Some("month")
    }) else {
        return Vec::new();
    };
    let (Some(stack), Some(year)) = (
        option_value(&indices.argv, "stack").map(PathBuf::from),
        option_value(argv, "year").and_then(|y| y.parse::<i32>().ok()),
    ) else {
        return Vec::new();
    };
    let months = option_value(argv, "months").unwrap_or("1-12");
    let (Some(have), Ok(period)) = (
        stack_months(plan, &stack),
        parse_months(months).and_then(|m| NppPeriod::new(year, m)),
    ) else {
        return Vec::new();
    };
    let missing: Vec<String> = period
        .sim
        .iter()
        .filter(|ym| !have.contains(ym))
        .map(|(y, m)| format!("{y}-{m:02}"))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "strict_months: the stack {} has no acquisition in {} (the composites of stage {} will not exist, and npp --strict-months refuses a month without one; drop strict_months to fill them)",
        stack.display(),
        missing.join(", "),
        indices.name
    )]
}

/// The `from`/`to` dates of a stack stage (unparsable dates are left to the command line's own check).
fn stack_dates(argv: &[String]) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
    let date = |k: &str| {
        option_value(argv, k).and_then(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
    };
    match (date("from"), date("to")) {
        (None, None) => None,
        (a, b) => Some((
            a.unwrap_or(chrono::NaiveDate::MIN),
            b.unwrap_or(chrono::NaiveDate::MAX),
        )),
    }
}

/// Problems of one input (none when it is fine). Rasters' grids go into `extents` for the overlap check, and
/// the driver rasters a drivers file names into `drivers`.
fn check_input(
    stage: &Stage,
    opt: &str,
    path: &Path,
    (extents, drivers): (&mut Vec<(PathBuf, io::Grid)>, &mut Vec<(PathBuf, io::Grid)>),
) -> Vec<String> {
    let mut out = Vec::new();
    let mut take = |r: Result<()>| {
        if let Err(e) = r {
            out.extend(e.into_problems());
        }
    };
    if !path.exists() && !crate::stac::is_remote(&path.to_string_lossy()) {
        if super::OPTIONAL_INPUTS.contains(&opt) {
            return Vec::new();
        }
        return vec![format!("{}: does not exist", path.display())];
    }
    let ext = super::extension(path);
    let command = stage.command.join(" ");
    match (opt, ext.as_str()) {
        ("stack", _) => take(crate::scene::Stack::open(path).and_then(|s| {
            let first = s
                .scenes
                .first()
                .and_then(|sc| sc.files().next())
                .map(|f| f.grid());
            if let Some(g) = first {
                extents.push((path.to_path_buf(), g?));
            }
            Ok(())
        })),
        // The driver rasters' grids join the overlap check (a climate file of another region is found here,
        // not when the stage runs).
        ("drivers", _) => take(
            match option_value(&stage.argv, "year").and_then(|y| y.parse().ok()) {
                Some(year) if command == "npp" => crate::pipeline::npp::check_drivers(
                    path,
                    year,
                    option_value(&stage.argv, "months").unwrap_or("1-12"),
                    option_value(&stage.argv, "model").unwrap_or("casa"),
                    option_value(&stage.argv, "casa-params")
                        .unwrap_or(crate::npp::casa::DEFAULT_CASA),
                ),
                Some(year) => {
                    crate::drivers::Drivers::inspect(path, year).map(|d| d.raster_grids())
                }
                None => crate::models::read_toml::<toml::Value>(path).map(|_| Vec::new()),
            }
            .map(|grids| drivers.extend(grids)),
        ),
        ("dir", _) if command == "stack" => take(
            crate::scene::Stack::recognise_dir(path, stack_dates(&stage.argv), false).map(|_| ()),
        ),
        ("legend", _) => {
            take(crate::landcover::Legend::resolve(&path.to_string_lossy()).map(|_| ()))
        }
        (_, "toml") => take(crate::models::read_toml::<toml::Value>(path).map(|_| ())),
        (_, "csv") => take(io::read_text(path, "a CSV table").and_then(|t| {
            csv::Reader::from_reader(t.as_bytes())
                .headers()
                .map(|_| ())
                .map_err(|e| Error::input(path, format!("not a readable CSV table: {e}")))
        })),
        (_, "json") => take(io::read_text(path, "a JSON file").and_then(|t| {
            serde_json::from_str::<serde_json::Value>(&t)
                .map(|_| ())
                .map_err(|e| Error::input(path, format!("not valid JSON: {e}")))
        })),
        _ if path.is_dir() => {}
        _ if io::is_raster(path) => take((|| {
            let info = io::RasterInfo::read(path)?;
            extents.push((path.to_path_buf(), info.grid()?));
            for (c, o, unit_opt) in UNIT_OPTIONS {
                if c == command && o == opt && option_value(&stage.argv, unit_opt).is_none() {
                    if let Some(b) = info.bands.iter().find(|b| b.unit.trim().is_empty()) {
                        return Err(Error::band(
                            path,
                            b.index.to_string(),
                            format!("declares no unit; give `{unit_opt}` in the stage"),
                        ));
                    }
                }
            }
            if opt == "landcover"
                || (opt == "labels" && option_value(&stage.argv, "legend").is_some())
            {
                if let Some(legend) = option_value(&stage.argv, "legend") {
                    let band_opt = if opt == "landcover" {
                        "landcover-band"
                    } else {
                        "labels-band"
                    };
                    let band = option_value(&stage.argv, band_opt)
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(1);
                    // A legend that cannot be read is the `legend` option's problem, reported once, there.
                    if let Ok(legend) = crate::landcover::Legend::resolve(legend) {
                        crate::landcover::check_map(path, band, &legend)?;
                    }
                }
            }
            Ok(())
        })()),
        _ if io::is_vector(path) => {}
        _ => out.push(format!(
            "{}: neither a raster nor a vector file GDAL can read",
            path.display()
        )),
    }
    out
}

/// The output folder must be new, empty or carbonmap's; in a carbonmap folder, every name the run writes
/// (stage folders, manifest, report) must be new or carbonmap's.
fn check_out_folder(plan: &Plan, problems: &mut Problems) {
    let foreign = crate::commit::check_outputs(&[(plan.out.clone(), true)], &[]);
    if !foreign.is_empty() {
        foreign.into_iter().for_each(|e| problems.push(e));
        return;
    }
    let names = plan
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .chain(super::RESERVED);
    for name in names {
        let p = plan.out.join(name);
        if p.exists() && !crate::commit::written_by_carbonmap(&p) {
            problems.push(Error::input(
                &p,
                "exists and was not written by carbonmap; the run would replace it: move it away or \
                 choose another output folder",
            ));
        }
    }
}
