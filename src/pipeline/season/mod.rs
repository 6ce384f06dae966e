//! Seasonal reruns: one config file (season.toml) runs carbonmap's commands as stages of a chain, with
//! season templating, up-to-date skipping, a manifest and a lock (`carbonmap run`), and validates the whole
//! config and every input before anything is computed (`carbonmap check`).
//!
//! A stage is one carbonmap command with its options written as TOML keys (the same names as the command-line
//! flags); `@stage` (or `@stage/file`) names another stage's output folder and makes the stage depend on it.
//! The runner owns every stage's `--out`: stage NAME writes into OUT/NAME.

mod check;
mod html;
mod intervals;
mod report;
mod run;
mod shard;
mod stage;

pub(crate) use html::render as render_html;
pub(crate) use report::markdown_table;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use crate::error::{Error, Problems, Result};
use crate::progress::Progress;

pub use check::check;
pub use run::MANIFEST;
pub use run::{run, RunOptions, RunSummary, StageStatus};
pub use shard::{
    merge, parse_window, plan_shards, run_shard, shard_index, ShardPlan, Tiling, PLAN_FILE,
};

/// What the runner needs to know about one option of a command (supplied by the command line, which owns
/// the commands' definitions).
#[derive(Debug, Clone)]
pub struct OptionSpec {
    /// The long flag without dashes, for example "gap-fill".
    pub long: String,
    /// The value is a file or folder path.
    pub path: bool,
    /// A positional argument (given without a flag; `long` is its name).
    pub positional: bool,
    /// The option takes no value (a switch).
    pub switch: bool,
    /// A list option given once with this separator (else a list repeats the flag).
    pub delimiter: Option<char>,
}

/// The commands a stage can run: implemented by the command line over its own parser.
pub trait Commands {
    /// The options of `command` (for example ["landcover", "train"]), or `None` for an unknown command.
    fn options(&self, command: &[String]) -> Option<Vec<OptionSpec>>;
    /// Parse an argument vector (command words first) without running it.
    fn parse(&self, argv: &[String]) -> Result<()>;
    /// Run an argument vector.
    fn execute(&self, argv: &[String], progress: &dyn Progress) -> Result<()>;
    /// The analysis grid a command reading a stack would compute on (None for other commands).
    fn grid(&self, argv: &[String]) -> Result<Option<crate::io::Grid>>;
}

/// Commands that write one file rather than a folder, and the file's name inside the stage folder (a stage
/// may set `output = "name"`).
const FILE_OUTPUTS: [(&str, &str); 3] = [
    ("regrid", "regridded.tif"),
    ("landcover check", "landcover_area.csv"),
    ("stack", "stack.toml"),
];

/// Inputs a stage may name before they exist (a previous season's table on the first season): not checked for
/// existence, and recorded only when present.
pub(super) const OPTIONAL_INPUTS: [&str; 1] = ["previous"];

/// Commands a stage may run.
const STAGE_COMMANDS: [&str; 12] = [
    "stack",
    "indices",
    "landcover check",
    "landcover train",
    "landcover predict",
    "npp",
    "site",
    "calibrate",
    "balance",
    "regrid",
    "validate",
    "scenario",
];

/// Options that name a command's output file: the runner places every output in OUT/NAME.
const OUTPUT_OPTIONS: [(&str, &str); 2] = [("landcover train", "model"), ("calibrate", "table")];

/// Names in the output folder that are not stage folders.
const RESERVED: [&str; 6] = [
    report::QUICKLOOKS,
    report::REPORT,
    html::REPORT_HTML,
    run::MANIFEST,
    shard::PLAN_FILE,
    shard::SHARDS_DIR,
];

/// Keys of a stage table that are not options of its command.
const STAGE_KEYS: [&str; 3] = ["command", "output", "after"];

/// A season: a label for paths and a date range (inclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct Season {
    pub label: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// Meteorological seasons: name, first month, length in months (DJF starts in the previous December).
const SEASONS: [(&str, u32, u32); 4] =
    [("DJF", 12, 3), ("MAM", 3, 3), ("JJA", 6, 3), ("SON", 9, 3)];

fn month_start(y: i32, m: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, 1)
}

fn month_end(y: i32, m: u32) -> Option<NaiveDate> {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    month_start(ny, nm)?.pred_opt()
}

impl Season {
    /// `2024` (the year), `2024-JJA` (a meteorological season; `2024-DJF` is December 2023 to February 2024),
    /// `2024-07` (a month), `2024-06..2024-08` (months) or `2024-06-01..2024-08-31` (dates).
    pub fn parse(s: &str) -> Result<Season> {
        let s = s.trim();
        let bad = || {
            Error::Usage(format!(
                "--season {s}: expected YYYY, YYYY-DJF|MAM|JJA|SON, YYYY-MM, YYYY-MM..YYYY-MM or YYYY-MM-DD..YYYY-MM-DD"
            ))
        };
        let point = |p: &str, first: bool| -> Option<NaiveDate> {
            let f: Vec<&str> = p.split('-').collect();
            match f.as_slice() {
                [y, m] => {
                    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
                    if first {
                        month_start(y, m)
                    } else {
                        month_end(y, m)
                    }
                }
                [_, _, _] => NaiveDate::parse_from_str(p, "%Y-%m-%d").ok(),
                _ => None,
            }
        };
        let (start, end, label) = if let Some((a, b)) = s.split_once("..") {
            let (start, end) = (
                point(a, true).ok_or_else(bad)?,
                point(b, false).ok_or_else(bad)?,
            );
            (start, end, format!("{a}_{b}"))
        } else if let Ok(y) = s.parse::<i32>() {
            (
                month_start(y, 1).ok_or_else(bad)?,
                month_end(y, 12).ok_or_else(bad)?,
                s.to_string(),
            )
        } else {
            let (y, rest) = s.split_once('-').ok_or_else(bad)?;
            let y: i32 = y.parse().map_err(|_| bad())?;
            if let Some(&(name, m0, n)) = SEASONS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(rest))
            {
                let y0 = if m0 + n - 1 > 12 { y - 1 } else { y };
                let start = month_start(y0, m0).ok_or_else(bad)?;
                let last = start + chrono::Months::new(n - 1);
                let end = month_end(last.year(), last.month()).ok_or_else(bad)?;
                (start, end, format!("{y}-{name}"))
            } else {
                (
                    point(s, true).ok_or_else(bad)?,
                    point(s, false).ok_or_else(bad)?,
                    s.to_string(),
                )
            }
        };
        if end < start {
            return Err(Error::Usage(format!("--season {s}: ends before it starts")));
        }
        Ok(Season { label, start, end })
    }

    /// Template variables: season, previous_season (the same season a year earlier), year (of the last day), first_year (of the first day), start, end (YYYY-MM-DD), first_month, last_month
    /// (YYYY-MM), period (as `npp` names its outputs: YYYY-MM or FIRST_LAST) and, within one year, months
    /// (FIRST-LAST, as `npp --months` takes).
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut v = BTreeMap::new();
        v.insert("season".into(), self.label.clone());
        v.insert("year".into(), self.end.year().to_string());
        v.insert("first_year".into(), self.start.year().to_string());
        v.insert("start".into(), self.start.to_string());
        v.insert("end".into(), self.end.to_string());
        v.insert("first_month".into(), self.start.format("%Y-%m").to_string());
        v.insert("last_month".into(), self.end.format("%Y-%m").to_string());
        // The period as `carbonmap npp` names its outputs: one month, or FIRST_LAST.
        let (f, l) = (v["first_month"].clone(), v["last_month"].clone());
        let calendar_year = self.start.year() == self.end.year()
            && (self.start.month(), self.start.day()) == (1, 1)
            && (self.end.month(), self.end.day()) == (12, 31);
        let period = if calendar_year {
            self.end.year().to_string()
        } else if f == l {
            f
        } else {
            format!("{f}_{l}")
        };
        v.insert("period".into(), period);
        // The same season a year earlier (for `balance --previous`): every year in the label minus one.
        let years = regex::Regex::new(r"\d{4}").expect("valid pattern");
        let previous = years.replace_all(&self.label, |c: &regex::Captures| {
            (c[0].parse::<i32>().unwrap_or(0) - 1).to_string()
        });
        v.insert("previous_season".into(), previous.into_owned());
        // Up to 12 months, as `npp --months` takes them with --year {year} (FIRST > LAST crosses the year).
        let span = (self.end.year() - self.start.year()) * 12 + self.end.month() as i32
            - self.start.month() as i32;
        if span < 12 {
            v.insert(
                "months".into(),
                format!("{}-{}", self.start.month(), self.end.month()),
            );
        }
        v
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    season: SeasonSection,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// Monte Carlo for the whole season: every stage whose command takes `--draws` gets these (unless it sets
    /// its own).
    uncertainty: Option<SeasonUncertainty>,
    stages: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeasonUncertainty {
    /// The uncertainty file (as `npp --uncertainty`), relative to the config, or a built-in one by name.
    file: String,
    draws: usize,
    #[serde(default)]
    seed: u64,
}

impl SeasonUncertainty {
    /// The file (relative to the config, and an input of the stages) or a built-in name (models/uncertainty/).
    fn path(&self, base: &Path) -> PathBuf {
        match crate::models::is_user_file(&self.file) {
            true => clean(&base.join(&self.file)),
            false => PathBuf::from(&self.file),
        }
    }
}

/// `[uncertainty]`: `--draws N --uncertainty FILE --seed S` on every stage whose command takes them and that
/// does not set them itself; the file is one of the stage's inputs (a change reruns it).
fn add_season_draws(stages: &mut [Stage], u: &SeasonUncertainty, base: &Path, cmds: &dyn Commands) {
    let (file, is_file) = (u.path(base), crate::models::is_user_file(&u.file));
    for st in stages.iter_mut() {
        let takes = cmds
            .options(&st.command)
            .is_some_and(|o| o.iter().any(|x| x.long == "draws"));
        if !takes || st.argv.iter().any(|a| a == "--draws") {
            continue;
        }
        let flags = [
            "--draws".to_string(),
            u.draws.to_string(),
            "--uncertainty".to_string(),
            file.to_string_lossy().into_owned(),
            "--seed".to_string(),
            u.seed.to_string(),
        ];
        st.argv.extend(flags.iter().cloned());
        let at = st.recipe.len() - 2;
        st.recipe.splice(at..at, flags);
        if is_file {
            st.inputs.push(("uncertainty".to_string(), file.clone()));
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeasonSection {
    /// Season used when the command line gives none.
    default: Option<String>,
    /// Output folder (templated; relative to the config file's folder); `run --out` overrides it.
    out: String,
}

/// One stage, resolved for a season.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    /// Command words, for example ["npp"] or ["landcover", "train"].
    pub command: Vec<String>,
    /// Argument vector to run (command words first), without `--out`.
    pub argv: Vec<String>,
    /// The same with other stages' folders as `@stage`, ending in `--out @out[/FILE]`: what the manifest
    /// records and the up-to-date check compares.
    pub recipe: Vec<String>,
    /// The file a one-file command writes inside the stage folder (None: the command writes the folder).
    pub out_file: Option<String>,
    /// Stages this one reads (or is ordered after).
    pub deps: Vec<String>,
    /// Paths outside the output folder that the stage reads, with the option naming each.
    pub inputs: Vec<(String, PathBuf)>,
}

/// A config resolved for one season: the stages in the order they run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: PathBuf,
    pub season: Season,
    pub variables: BTreeMap<String, String>,
    pub out: PathBuf,
    pub stages: Vec<Stage>,
}

impl Plan {
    pub fn stage_dir(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }
}

/// `a/b/../c` as `a/c` (paths in the manifest and in messages read as they are meant; symbolic links are not
/// resolved, so a path stays where the user put it).
fn clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A file's extension in lower case ("" when none).
fn extension(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A template variable's delimiters (curly brackets), written as escapes so that tools counting brackets in
/// the source see balanced text.
const VAR_OPEN: char = '\u{7b}';
const VAR_CLOSE: char = '\u{7d}';

/// Replace `{name}` by its variable; unknown names are an error listing the known ones.
fn template(s: &str, vars: &BTreeMap<String, String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(VAR_OPEN) {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find(VAR_CLOSE) else {
            return Err(format!("'{s}': a {{ is not closed by a }}"));
        };
        let name = &rest[i + 1..i + j];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None if name == "months" && vars.contains_key("season") => {
                return Err(format!(
                    "'{s}': {{months}} is defined only for seasons of at most 12 months"
                ))
            }
            None => {
                return Err(format!(
                    "'{s}': unknown variable {{{name}}} (known: {})",
                    vars.keys()
                        .map(|k| format!("{{{k}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A TOML value as the strings of one option: scalars give one, arrays one per element.
fn value_strings(v: &toml::Value) -> std::result::Result<Vec<String>, String> {
    match v {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Integer(i) => Ok(vec![i.to_string()]),
        toml::Value::Float(f) => Ok(vec![f.to_string()]),
        toml::Value::Boolean(b) => Ok(vec![b.to_string()]),
        toml::Value::Array(a) => a
            .iter()
            .map(|e| match e {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    Err("nested lists and tables are not options".to_string())
                }
                other => value_strings(other).map(|mut v| v.remove(0)),
            })
            .collect(),
        other => Err(format!("a {} is not an option value", other.type_str())),
    }
}

/// Load a config and resolve it for `season` (else the config's default). Every problem of the config is
/// collected and reported at once.
pub fn plan(
    config: &Path,
    season: Option<&str>,
    out: Option<&Path>,
    overrides: &[(String, String)],
    cmds: &dyn Commands,
) -> Result<Plan> {
    let (plan, problems) = plan_with_problems(config, season, out, overrides, cmds)?;
    problems.finish()?;
    Ok(plan)
}

/// The season's variables: the built-in ones, then the config's `[vars]` with `--var NAME=VALUE` replacing a
/// declared one (naming one it does not declare is an error); a declared value may use the built-in variables.
fn season_variables(
    config: &Path,
    file: &ConfigFile,
    season: &Season,
    overrides: &[(String, String)],
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let mut vars = season.variables();
    let mut declared = file.vars.clone();
    for (k, v) in overrides {
        if declared.contains_key(k) {
            declared.insert(k.clone(), v.clone());
        } else {
            problems.push(Error::Usage(format!(
                "--var {k}: {} declares no such variable in [vars] (declared: {})",
                config.display(),
                file.vars.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let builtin = vars.clone();
    for (k, v) in &declared {
        if builtin.contains_key(k) {
            problems.push(Error::config(
                config,
                format!("[vars] {k}: a built-in variable cannot be redefined"),
            ));
            continue;
        }
        // A variable's value may use the built-in ones ({year} ...); any other {name} is an error.
        match template(v, &builtin) {
            Ok(t) => {
                vars.insert(k.clone(), t);
            }
            Err(e) => problems.push(Error::config(config, format!("[vars] {k}: {e}"))),
        }
    }
    vars
}

/// The plan of the stages that resolve, and the config's problems (an error only when the config cannot be
/// read or the season is invalid).
fn plan_with_problems(
    config: &Path,
    season: Option<&str>,
    out_override: Option<&Path>,
    overrides: &[(String, String)],
    cmds: &dyn Commands,
) -> Result<(Plan, Problems)> {
    let file: ConfigFile = crate::models::read_toml(config)?;
    // Absolute, so recipes and recorded inputs do not depend on the folder a scheduler starts in.
    let parent = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base =
        clean(&std::path::absolute(parent).map_err(|e| Error::io(parent, "cannot resolve", e))?);
    let season_text = season
        .map(str::to_string)
        .or(file.season.default.clone())
        .ok_or_else(|| Error::config(config, "no season: give --season or set [season] default"))?;
    let season = Season::parse(&season_text)?;
    let mut problems = Problems::new();
    let vars = season_variables(config, &file, &season, overrides, &mut problems);
    let out = match template(&file.season.out, &vars) {
        _ if out_override.is_some() => {
            let o = out_override.expect("checked");
            clean(&std::path::absolute(o).map_err(|e| Error::io(o, "cannot resolve", e))?)
        }
        Ok(o) => clean(&base.join(o)),
        Err(e) => {
            problems.push(Error::config(config, format!("[season] out: {e}")));
            base.join("out")
        }
    };
    let names: Vec<String> = file.stages.keys().cloned().collect();
    let ctx = stage::Context {
        config,
        base: &base,
        out: &out,
        vars: &vars,
        names: &names,
        cmds,
    };
    let mut stages: Vec<Stage> = file
        .stages
        .iter()
        .filter_map(|(name, value)| ctx.resolve(name, value, &mut problems))
        .collect();
    if file.stages.is_empty() {
        problems.push(Error::config(config, "[stages]: no stage"));
    }
    if let Some(u) = &file.uncertainty {
        add_season_draws(&mut stages, u, &base, cmds);
        // The file itself, checked with the config: a bad one would otherwise fail only when its first
        // drawing stage runs, after the stages before it.
        problems.take(crate::pipeline::npp::draws::UncertaintyFile::load(
            &u.path(&base),
        ));
    }
    // Stages depending on a stage that did not resolve are left out (that stage's problems are listed).
    loop {
        let present: BTreeSet<String> = stages.iter().map(|s| s.name.clone()).collect();
        let before = stages.len();
        stages.retain(|s| s.deps.iter().all(|d| present.contains(d)));
        if stages.len() == before {
            break;
        }
    }
    let stages = match order(config, stages) {
        Ok(s) => s,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    Ok((
        Plan {
            config: config.to_path_buf(),
            season,
            variables: vars,
            out,
            stages,
        },
        problems,
    ))
}

/// Stages in dependency order; among stages ready together, the config's order. A cycle is an error.
fn order(config: &Path, mut pending: Vec<Stage>) -> Result<Vec<Stage>> {
    let mut done: Vec<Stage> = Vec::new();
    while !pending.is_empty() {
        let Some(i) = pending
            .iter()
            .position(|s| s.deps.iter().all(|d| done.iter().any(|x| &x.name == d)))
        else {
            let names: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::config(
                config,
                format!(
                    "stages {} depend on each other in a cycle",
                    names.join(", ")
                ),
            ));
        };
        done.push(pending.remove(i));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasons_by_hand() {
        // DJF 2024 is 1 December 2023 to 29 February 2024 (2024 is a leap year).
        let s = Season::parse("2024-djf").unwrap();
        assert_eq!(
            (s.start, s.end),
            (
                NaiveDate::from_ymd_opt(2023, 12, 1).unwrap(),
                NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
            )
        );
        assert_eq!(s.label, "2024-DJF");
        // As `npp --year 2024 --months 12-2` takes it.
        assert_eq!(s.variables()["months"], "12-2");
        assert_eq!(s.variables()["period"], "2023-12_2024-02");
        assert_eq!(s.variables()["previous_season"], "2023-DJF");
        let s = Season::parse("2024-JJA").unwrap();
        assert_eq!(s.variables()["months"], "6-8");
        assert_eq!(s.variables()["end"], "2024-08-31");
        assert_eq!(s.variables()["first_month"], "2024-06");
        assert_eq!(s.variables()["period"], "2024-06_2024-08");
        let s = Season::parse("2023").unwrap();
        assert_eq!(
            (
                s.variables()["start"].as_str(),
                s.variables()["months"].as_str()
            ),
            ("2023-01-01", "1-12")
        );
        // A calendar year is named as `npp` names its outputs: by the year.
        assert_eq!(s.variables()["period"], "2023");
        let s = Season::parse("2023-07..2024-06").unwrap();
        assert_eq!(
            (
                s.variables()["months"].as_str(),
                s.variables()["year"].as_str()
            ),
            ("7-6", "2024")
        );
        assert_eq!(s.variables()["period"], "2023-07_2024-06");
        assert_eq!(s.variables()["previous_season"], "2022-07_2023-06");
        assert!(!Season::parse("2023-07..2024-07")
            .unwrap()
            .variables()
            .contains_key("months"));
        let s = Season::parse("2024-04..2024-09").unwrap();
        assert_eq!(
            (s.label.as_str(), s.variables()["end"].as_str()),
            ("2024-04_2024-09", "2024-09-30")
        );
        let s = Season::parse("2024-02").unwrap();
        assert_eq!(s.variables()["end"], "2024-02-29");
        assert_eq!(s.variables()["period"], "2024-02");
        assert!(Season::parse("2024-XYZ").is_err());
        assert!(Season::parse("2024-09..2024-04").is_err());
    }

    #[test]
    fn templates() {
        let v = Season::parse("2024-JJA").unwrap().variables();
        assert_eq!(
            template("out/{season}/npp_{first_month}_{last_month}.tif", &v).unwrap(),
            "out/2024-JJA/npp_2024-06_2024-08.tif"
        );
        assert!(template("{nope}", &v)
            .unwrap_err()
            .contains("unknown variable {nope}"));
        let w = Season::parse("2023-01..2024-06").unwrap().variables();
        assert!(template("{months}", &w)
            .unwrap_err()
            .contains("at most 12 months"));
    }
}
