//! `carbonmap plan` (the shards of a season, after its before stages) and `carbonmap run --shard I`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{
    fingerprint, roles, shard_plan, GridRecord, Role, ShardPlan, ShardRecord, PLAN_FILE,
    SHARDS_DIR, SHARD_FILE,
};
use crate::error::{Error, Result};
use crate::io::{self, Grid};
use crate::pipeline::season::run::{
    read_manifest, run, run_with_plan, RunOptions, RunSummary, MANIFEST,
};
use crate::pipeline::season::{Commands, Plan};
use crate::progress::Progress;

/// Environment variables a batch scheduler sets to a task's index in an array, in the order they are read.
pub const INDEX_VARIABLES: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

/// The shard to run: `--shard I`, else the first scheduler index variable set.
pub fn shard_index(arg: Option<&str>) -> Result<usize> {
    let (text, from) = match arg {
        Some(a) if a != "env" => (a.to_string(), "--shard".to_string()),
        _ => INDEX_VARIABLES
            .iter()
            .find_map(|v| std::env::var(v).ok().map(|x| (x, v.to_string())))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--shard: no index given and none of {} is set",
                    INDEX_VARIABLES.join(", ")
                ))
            })?,
    };
    text.trim()
        .parse()
        .map_err(|_| Error::Usage(format!("{from} = '{text}': expected a shard number from 0")))
}

/// Names of the plan's stages with a role.
fn named(main: &Plan, want: impl Fn(Role) -> bool) -> Vec<String> {
    let roles = roles(main);
    main.stages
        .iter()
        .filter(|s| want(roles[&s.name]))
        .map(|s| s.name.clone())
        .collect()
}

/// Split the season's analysis grid into shards of `tile_size` pixels (a multiple of the output tile), after
/// running its before stages; the plan is written to OUT/shards.json.
/// How the grid is cut: squares of a size, or a tile layer (path and the field naming its tiles).
pub enum Tiling {
    Size(usize),
    Layer(PathBuf, Option<String>),
}

impl Tiling {
    /// The square shards' side (0 for a tile layer), checked: a multiple of the output tile; the layer exists.
    fn checked_size(&self) -> Result<usize> {
        match self {
            Tiling::Size(t) if *t == 0 || t % io::TILE != 0 => Err(Error::Usage(format!(
                "--tile-size {t}: a shard's side must be a multiple of the output tile, {} pixels",
                io::TILE
            ))),
            Tiling::Size(t) => Ok(*t),
            Tiling::Layer(p, _) if !p.exists() => {
                Err(Error::input(p, "the tile layer does not exist"))
            }
            Tiling::Layer(..) => Ok(0),
        }
    }
}

pub fn plan_shards(
    config: &Path,
    opts: &RunOptions,
    tiling: &Tiling,
    cmds: &dyn Commands,
    progress: &dyn Progress,
) -> Result<(Plan, ShardPlan)> {
    let main = opts.plan(config, cmds)?;
    crate::pipeline::season::check::check_plan(&main, cmds)?;
    let tile_size = tiling.checked_size()?;
    let (before, tiled) = (
        named(&main, |r| r == Role::Before),
        named(&main, Role::tiled),
    );
    if tiled.is_empty() {
        return Err(Error::config(config, "nothing to shard: no `indices` or `landcover predict` stage (their pixels are what shards split)"));
    }
    if !before.is_empty() {
        let only = Some(before.iter().cloned().collect::<BTreeSet<_>>());
        let o = RunOptions {
            only,
            no_report: true,
            ..opts.clone()
        };
        run(config, &o, cmds, progress)?.outcome()?;
    }
    let grid = season_grid(&main, cmds)?;
    let mut sp = ShardPlan {
        carbonmap_version: crate::VERSION.to_string(),
        config: main.config.to_string_lossy().into_owned(),
        config_sha256: io::sha256_file(&main.config)?,
        season: main.season.label.clone(),
        variables: main.variables.clone(),
        grid: GridRecord {
            crs_wkt: grid.crs_wkt.clone(),
            geotransform: grid.gt,
            width: grid.width,
            height: grid.height,
        },
        tile_size,
        tiles: match tiling {
            Tiling::Layer(p, _) => Some(p.to_string_lossy().into_owned()),
            Tiling::Size(_) => None,
        },
        after: named(&main, |r| r == Role::After),
        before,
        tiled,
        shards: Vec::new(),
    };
    let cut = match tiling {
        Tiling::Size(t) => windows(&grid, *t).into_iter().map(|w| (w, None)).collect(),
        Tiling::Layer(p, field) => super::tiles::tile_windows(&grid, p, field.as_deref())?,
    };
    sp.shards = cut
        .into_iter()
        .enumerate()
        .map(|(index, (window, tile))| ShardRecord {
            index,
            name: format!("{index:04}"),
            window,
            fingerprint: fingerprint(&sp, window),
            tile,
        })
        .collect();
    write_plan(&main, &sp)?;
    Ok((main, sp))
}

/// OUT/shards.json, and the shards' folders claimed once: shards running at the same time never lock the
/// season's folder.
fn write_plan(main: &Plan, sp: &ShardPlan) -> Result<()> {
    let json = serde_json::to_vec_pretty(sp).map_err(|e| Error::Processing(e.to_string()))?;
    crate::commit::run(&[], || {
        crate::commit::prepare_folder(&main.out)?;
        crate::commit::claim_entry(&main.out, SHARDS_DIR)?;
        let dir = main.out.join(SHARDS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "cannot create", e))?;
        for s in &sp.shards {
            crate::commit::claim_entry(&dir, &s.name)?;
        }
        io::write_atomic(&main.out.join(PLAN_FILE), &json)
    })
}

/// Shards of `tile` pixels, row by row from the north-west corner; the last column and row are narrower.
fn windows(grid: &Grid, tile: usize) -> Vec<[usize; 4]> {
    let mut out = Vec::new();
    for r in (0..grid.height).step_by(tile) {
        for c in (0..grid.width).step_by(tile) {
            out.push([c, r, tile.min(grid.width - c), tile.min(grid.height - r)]);
        }
    }
    out
}

/// The analysis grid every windowed stage computes on (they must agree: a shard is one window of all).
fn season_grid(main: &Plan, cmds: &dyn Commands) -> Result<Grid> {
    let roles = roles(main);
    let mut grids: Vec<(String, Grid)> = Vec::new();
    for s in main
        .stages
        .iter()
        .filter(|s| roles[&s.name] == Role::Windowed)
    {
        match cmds.grid(&s.argv)? {
            Some(g) => grids.push((s.name.clone(), g)),
            None => {
                return Err(Error::config(
                    &main.config,
                    format!(
                        "[stages.{}]: its analysis grid cannot be known before it runs",
                        s.name
                    ),
                ))
            }
        }
    }
    let (first, g) = grids[0].clone();
    let differ: Vec<String> = grids
        .iter()
        .filter(|(_, x)| !x.same_pixels(&g))
        .map(|(n, x)| format!("{n} ({} x {} px)", x.width, x.height))
        .collect();
    if !differ.is_empty() {
        return Err(Error::config(
            &main.config,
            format!(
                "the windowed stages must share one analysis grid to be sharded: {first} has {} x {} px, but {} (give them the same --grid-from or --crs/--res/--bounds)",
                g.width,
                g.height,
                differ.join(", ")
            ),
        ));
    }
    Ok(g)
}

/// Run shard `index` of the season's plan into OUT/shards/NNNN: the tiled stages on its window, reading the
/// before stages from the season's folder; up-to-date stages are skipped, so a killed shard resumes.
pub fn run_shard(
    config: &Path,
    opts: &RunOptions,
    index: usize,
    cmds: &dyn Commands,
    progress: &dyn Progress,
) -> Result<RunSummary> {
    let main = opts.plan(config, cmds)?;
    let sp = ShardPlan::read(&main)?;
    let shard = sp.shards.get(index).ok_or_else(|| {
        Error::Usage(format!(
            "--shard {index}: the plan ({}) has {} shards, 0 to {}",
            main.out.join(PLAN_FILE).display(),
            sp.shards.len(),
            sp.shards.len() - 1
        ))
    })?;
    let season_manifest = read_manifest(&main.out.join(MANIFEST));
    let mut seed = Vec::new();
    for b in &sp.before {
        let rec = season_manifest
            .as_ref()
            .and_then(|m| m.stages.iter().find(|r| &r.name == b && r.status == "done"));
        match rec {
            Some(r) => seed.push(r.clone()),
            None => {
                return Err(Error::input(
                    &main.out,
                    format!("stage {b} has not run here: run `carbonmap plan` again"),
                ))
            }
        }
    }
    let splan = shard_plan(&main, &sp, shard);
    let dir = splan.out.clone();
    let o = RunOptions {
        seed,
        no_report: true,
        only: None,
        ..opts.clone()
    };
    let t0 = std::time::Instant::now();
    let summary = run_with_plan(splan, config, &o, cmds, progress)?;
    if summary.first_error.is_none() {
        let ran = ShardRun {
            shard: shard.clone(),
            seconds: (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            peak_memory_mib: peak_memory_mib(),
        };
        let json = serde_json::to_vec_pretty(&ran).map_err(|e| Error::Processing(e.to_string()))?;
        crate::commit::run(&[], || {
            crate::commit::prepare_folder(&dir)?;
            io::write_atomic(&dir.join(SHARD_FILE), &json)
        })?;
    }
    Ok(summary)
}

/// What a shard's folder records of its last complete run: the plan's entry, the wall time of the run and the
/// process's peak resident memory (for the cost model of a season's shards).
#[derive(serde::Serialize)]
struct ShardRun {
    #[serde(flatten)]
    shard: ShardRecord,
    seconds: f64,
    peak_memory_mib: Option<f64>,
}

/// The process's peak resident set (VmHWM of /proc/self/status) in MiB, where the system reports it.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}
