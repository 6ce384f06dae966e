//! `carbonmap merge`: the season's run in which every tiled stage is the mosaic of its shards (refused while a
//! shard is missing, failed or stale), then the after stages and the run report as in an unsharded run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ShardPlan, ShardRecord, SHARD_FILE};
use crate::error::{Error, Result};
use crate::io::{self, Grid};
use crate::pipeline::season::run::{
    changed_since, partial_dir, read_manifest, run_with_plan, RunOptions, RunSummary, MANIFEST,
};
use crate::pipeline::season::{Commands, OptionSpec, Plan};
use crate::progress::Progress;

/// Merge the shards of the season's plan into its output folder and run the stages after them.
pub fn merge(
    config: &Path,
    opts: &RunOptions,
    cog: bool,
    cmds: &dyn Commands,
    progress: &dyn Progress,
) -> Result<RunSummary> {
    let main = opts.plan(config, cmds)?;
    let sp = ShardPlan::read(&main)?;
    check_shards(&main, &sp)?;
    let mut main = main;
    mark_merged(&mut main, &sp, cog)?;
    let wrapped = Merging {
        inner: cmds,
        tiled: sp
            .tiled
            .iter()
            .map(|t| (partial_dir(&main.out, t), t.clone()))
            .collect(),
        shards: sp
            .shards
            .iter()
            .map(|s| (s.name.clone(), sp.shard_dir(&main, s)))
            .collect(),
        relocate: sp
            .shards
            .iter()
            .map(|s| {
                let d = sp.shard_dir(&main, s);
                (
                    format!("{}/", d.display()),
                    format!("{}/", main.out.display()),
                )
            })
            .collect(),
        cog,
    };
    run_with_plan(main, config, opts, &wrapped, progress)
}

/// The tiled stages' recipes say they are merged, from which plan and how: a new plan or `--cog` merges again,
/// and the report shows where the stage's files came from.
fn mark_merged(main: &mut Plan, sp: &ShardPlan, cog: bool) -> Result<()> {
    let json = serde_json::to_vec(&sp.shards).map_err(|e| Error::Processing(e.to_string()))?;
    let how = format!(
        "{} shards of {} (plan {}){}",
        sp.shards.len(),
        super::PLAN_FILE,
        &io::sha256_hex(&json)[..12],
        if cog { ", COG" } else { "" }
    );
    for s in main
        .stages
        .iter_mut()
        .filter(|s| sp.tiled.contains(&s.name))
    {
        s.recipe.extend(["--merged-from".to_string(), how.clone()]);
    }
    Ok(())
}

/// Every shard ran this plan to the end, and no input of its tiled stages changed since: all problems at once.
fn check_shards(main: &Plan, sp: &ShardPlan) -> Result<()> {
    let season = read_manifest(&main.out.join(MANIFEST));
    let mut problems = Vec::new();
    for s in &sp.shards {
        if let Err(why) = shard_current(main, sp, s, season.as_ref()) {
            let [c, r, w, h] = s.window;
            problems.push(format!(
                "shard {} (index {}, window {c},{r},{w},{h}) in {}: {why}; run `carbonmap run {} --shard {}`",
                s.name,
                s.index,
                sp.shard_dir(main, s).display(),
                main.config.display(),
                s.index
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

fn shard_current(
    main: &Plan,
    sp: &ShardPlan,
    s: &ShardRecord,
    season: Option<&crate::pipeline::season::run::Manifest>,
) -> std::result::Result<(), String> {
    let dir = sp.shard_dir(main, s);
    let text = std::fs::read_to_string(dir.join(SHARD_FILE))
        .map_err(|_| "has not run (no shard.json)".to_string())?;
    let ran: ShardRecord =
        serde_json::from_str(&text).map_err(|e| format!("unreadable shard.json ({e})"))?;
    if ran.fingerprint != s.fingerprint {
        return Err("ran for another plan".into());
    }
    let m = read_manifest(&dir.join(MANIFEST)).ok_or("has no manifest")?;
    for t in &sp.tiled {
        match m.stages.iter().find(|r| &r.name == t) {
            Some(r) if r.status == "done" => {
                if let Some(f) = r.inputs.iter().find(|f| changed_since(f)) {
                    return Err(format!("{} changed since stage {t} ran", f.path));
                }
            }
            Some(r) => return Err(format!("stage {t} is {}", r.status)),
            None => return Err(format!("stage {t} has not run")),
        }
    }
    for b in &sp.before {
        let now = season.and_then(|m| m.stages.iter().find(|r| &r.name == b));
        let then = m.stages.iter().find(|r| &r.name == b);
        if now.map(|r| &r.fingerprint) != then.map(|r| &r.fingerprint) {
            return Err(format!("stage {b} ran again since"));
        }
    }
    Ok(())
}

/// The commands of the season, where a tiled stage's command is the mosaic of its shards' folders.
struct Merging<'a> {
    inner: &'a dyn Commands,
    /// A tiled stage's temporary output folder, and its name.
    tiled: BTreeMap<PathBuf, String>,
    /// Every shard's name and folder, in plan order.
    shards: Vec<(String, PathBuf)>,
    /// Each shard's folder and the season's, for the provenance the mosaics carry.
    relocate: Vec<(String, String)>,
    cog: bool,
}

impl Commands for Merging<'_> {
    fn options(&self, command: &[String]) -> Option<Vec<OptionSpec>> {
        self.inner.options(command)
    }
    fn parse(&self, argv: &[String]) -> Result<()> {
        self.inner.parse(argv)
    }
    fn grid(&self, argv: &[String]) -> Result<Option<Grid>> {
        self.inner.grid(argv)
    }
    fn execute(&self, argv: &[String], progress: &dyn Progress) -> Result<()> {
        let out = argv
            .windows(2)
            .rev()
            .find(|w| w[0] == "--out")
            .map(|w| PathBuf::from(&w[1]));
        match out.as_ref().and_then(|o| self.tiled.get(o).map(|n| (o, n))) {
            Some((dir, name)) => self.mosaic_stage(name, dir, progress),
            None => self.inner.execute(argv, progress),
        }
    }
}

impl Merging<'_> {
    /// The stage's rasters mosaicked from every shard; their styles from the first; other files (the
    /// shard's own tables) kept per shard under by_shard/NNNN/.
    fn mosaic_stage(&self, name: &str, out: &Path, progress: &dyn Progress) -> Result<()> {
        let folders: Vec<PathBuf> = self.shards.iter().map(|(_, d)| d.join(name)).collect();
        let files = relative_files(&folders[0])?;
        for (f, (shard, _)) in folders.iter().zip(&self.shards).skip(1) {
            let other = relative_files(f)?;
            if other != files {
                return Err(Error::Processing(format!(
                    "stage {name}: shard {shard} wrote other files than shard {} ({} against {}); run it again",
                    self.shards[0].0,
                    other.len(),
                    files.len()
                )));
            }
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, "cannot create", e))?;
        progress.start(&format!("merge {name}"), files.len() as u64);
        let mut tables = Vec::new();
        for rel in &files {
            let target = out.join(rel);
            let s = rel.to_string_lossy();
            if s.ends_with(".tif") {
                let parts: Vec<PathBuf> = folders.iter().map(|f| f.join(rel)).collect();
                super::mosaic::mosaic(&parts, &target, self.cog, &self.relocate)?;
            } else if s.ends_with(".qml") || s.ends_with(".aux.xml") {
                copy(&folders[0].join(rel), &target)?;
            } else {
                for (f, (shard, _)) in folders.iter().zip(&self.shards) {
                    copy(&f.join(rel), &out.join("by_shard").join(shard).join(rel))?;
                }
                tables.push(s.into_owned());
            }
            progress.advance(1);
        }
        progress.finish();
        if !tables.is_empty() {
            progress.warn(&format!(
                "{name}: the shards' own tables ({}) are kept per shard in by_shard/NNNN/, not merged: sums over the whole grid come from the stages after the merge (balance, landcover check ...) on the mosaics",
                tables.join(", ")
            ));
        }
        Ok(())
    }
}

/// The files a shard's stage wrote (not carbonmap's bookkeeping: markers, journals, temporary files).
fn relative_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(io::files_under(dir)?
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| crate::commit::is_bookkeeping(&n.to_string_lossy()))
        })
        .filter_map(|p| p.strip_prefix(dir).ok().map(Path::to_path_buf))
        .collect())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).map_err(|e| Error::io(p, "cannot create", e))?;
    }
    std::fs::copy(from, to).map_err(|e| Error::io(from, "cannot copy", e))?;
    Ok(())
}
