//! Scale-out: a season split into shards of the analysis grid that a batch scheduler runs independently
//! (`carbonmap plan`, `carbonmap run --shard I`, `carbonmap merge`).
//!
//! Stages have one of three roles. *Before* stages read no pixel stage's output (a stack, a classifier's
//! training): `plan` runs them once in the season's folder. *Tiled* stages are pixel-local: `indices` and
//! `landcover predict` compute the shard's window of the analysis grid (`--window`), and an `npp` stage whose
//! NDVI comes from a tiled stage follows that stage's grid. Each shard runs them into OUT/shards/NNNN with the
//! runner (its own manifest, lock and up-to-date skipping, so a killed shard resumes). *After* stages (balance,
//! validation, scenarios, anything reading a whole-grid table) run once in `merge`, on the mosaics.
//!
//! Every tiled pixel is computed from the same source pixels whatever the window: rasters on the grid (or on
//! a whole-pixel window of it) are read directly, others are warped with GDAL's exact transformer per pixel,
//! and the kernels use no neighbours, so no halo is needed and the mosaics equal an unsharded run's pixels;
//! the after stages read those same pixels, so their zone and lattice tables are the unsharded run's bytes.

mod merge;
mod mosaic;
mod plan;
mod tiles;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Plan, Stage};
use crate::error::{Error, Result};
use crate::io::Window;

pub use merge::merge;
pub use plan::{plan_shards, run_shard, shard_index, Tiling};

/// The shard plan in the season's output folder.
pub const PLAN_FILE: &str = "shards.json";
/// The folder of the shards' own output folders.
pub const SHARDS_DIR: &str = "shards";
/// A shard's record of the plan it ran, in its folder.
const SHARD_FILE: &str = "shard.json";

/// Commands computed on a window of their analysis grid.
const WINDOWED: [&str; 2] = ["indices", "landcover predict"];
/// Commands that follow the grid of the stage named by one of these options.
const FOLLOWERS: [(&str, &[&str]); 1] = [("npp", &["--ndvi", "--fpar"])];

/// What a stage does in a sharded season.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Before,
    Windowed,
    Follower,
    After,
}

impl Role {
    pub fn tiled(self) -> bool {
        matches!(self, Role::Windowed | Role::Follower)
    }
}

/// The role of every stage of a plan (stages in dependency order).
pub fn roles(plan: &Plan) -> BTreeMap<String, Role> {
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for s in &plan.stages {
        let deps: Vec<Role> = s.deps.iter().map(|d| roles[d]).collect();
        let command = s.command.join(" ");
        let role = if deps.contains(&Role::After) {
            Role::After
        } else if WINDOWED.contains(&command.as_str()) {
            Role::Windowed
        } else if follows_tiled(s, &command, &roles) {
            Role::Follower
        } else if deps.iter().all(|r| *r == Role::Before) {
            Role::Before
        } else {
            Role::After
        };
        roles.insert(s.name.clone(), role);
    }
    roles
}

/// The stage's grid option names a tiled stage's output.
fn follows_tiled(s: &Stage, command: &str, roles: &BTreeMap<String, Role>) -> bool {
    let Some((_, options)) = FOLLOWERS.iter().find(|(c, _)| *c == command) else {
        return false;
    };
    s.recipe.windows(2).any(|w| {
        options.contains(&w[0].as_str())
            && w[1].strip_prefix('@').is_some_and(|r| {
                let stage = r.split_once('/').map_or(r, |(st, _)| st);
                roles.get(stage).is_some_and(|r| r.tiled())
            })
    })
}

/// `COL0,ROW0,NCOLS,NROWS`.
pub fn parse_window(s: &str) -> Result<Window> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::Usage(format!(
                "--window {s}: expected COL0,ROW0,NCOLS,NROWS (whole numbers)"
            ))
        })?;
    match v[..] {
        [col0, row0, ncols, nrows] if ncols > 0 && nrows > 0 => Ok(Window {
            col0,
            row0,
            ncols,
            nrows,
        }),
        _ => Err(Error::Usage(format!(
            "--window {s}: expected COL0,ROW0,NCOLS,NROWS with NCOLS and NROWS above 0"
        ))),
    }
}

/// The analysis grid as the plan records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GridRecord {
    pub crs_wkt: String,
    pub geotransform: [f64; 6],
    pub width: usize,
    pub height: usize,
}

/// One shard: its window of the analysis grid and the fingerprint of the plan it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardRecord {
    pub index: usize,
    pub name: String,
    /// COL0, ROW0, NCOLS, NROWS.
    pub window: [usize; 4],
    /// SHA-256 over the config, season, variables, grid and window: a shard folder with another fingerprint
    /// belongs to another plan.
    pub fingerprint: String,
    /// The tile of `plan --tiles` whose north-west corner starts the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<String>,
}

/// The shard plan (`OUT/shards.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPlan {
    pub carbonmap_version: String,
    pub config: String,
    pub config_sha256: String,
    pub season: String,
    pub variables: BTreeMap<String, String>,
    pub grid: GridRecord,
    /// Side of the square shards in pixels (0 when the shards come from a tile layer).
    pub tile_size: usize,
    /// The tile layer the shards were cut from (`plan --tiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<String>,
    pub before: Vec<String>,
    pub tiled: Vec<String>,
    pub after: Vec<String>,
    pub shards: Vec<ShardRecord>,
}

impl ShardPlan {
    /// The plan of `main` in its output folder, checked against the config as it is now.
    pub fn read(main: &Plan) -> Result<ShardPlan> {
        let path = main.out.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            Error::input(
                &path,
                format!(
                    "no shard plan: run `carbonmap plan {}` first",
                    main.config.display()
                ),
            )
        })?;
        let sp: ShardPlan = serde_json::from_str(&text)
            .map_err(|e| Error::input(&path, format!("not a shard plan: {e}")))?;
        let now = crate::io::sha256_file(&main.config)?;
        let mut stale = Vec::new();
        if sp.config_sha256 != now {
            stale.push(format!("{} changed", main.config.display()));
        }
        if sp.season != main.season.label {
            stale.push(format!(
                "it is for season {}, not {}",
                sp.season, main.season.label
            ));
        }
        if sp.variables != main.variables {
            stale.push("its variables differ".to_string());
        }
        if !stale.is_empty() {
            return Err(Error::input(
                &path,
                format!(
                    "the shard plan is stale ({}): run `carbonmap plan` again",
                    stale.join("; ")
                ),
            ));
        }
        Ok(sp)
    }

    pub fn shard_dir(&self, main: &Plan, s: &ShardRecord) -> PathBuf {
        main.out.join(SHARDS_DIR).join(&s.name)
    }
}

/// The shard's plan: the tiled stages into the shard's folder, windowed stages with `--window`, reading the
/// before stages from the season's folder.
fn shard_plan(main: &Plan, sp: &ShardPlan, shard: &ShardRecord) -> Plan {
    let out = sp.shard_dir(main, shard);
    let tiled: BTreeSet<&String> = sp.tiled.iter().collect();
    let relocate = |a: &String| -> String {
        for t in &tiled {
            let from = main.out.join(t);
            if let Ok(rest) = Path::new(a).strip_prefix(&from) {
                return out.join(t).join(rest).to_string_lossy().into_owned();
            }
        }
        a.clone()
    };
    let roles = roles(main);
    let [c, r, w, h] = shard.window;
    let stages = main
        .stages
        .iter()
        .filter(|s| tiled.contains(&s.name))
        .map(|s| {
            let mut s = s.clone();
            s.argv = s.argv.iter().map(relocate).collect();
            if roles[&s.name] == Role::Windowed {
                let win = format!("{c},{r},{w},{h}");
                s.argv.extend(["--window".to_string(), win.clone()]);
                let at = s.recipe.len() - 2;
                s.recipe.splice(at..at, ["--window".to_string(), win]);
            }
            s
        })
        .collect();
    Plan {
        out,
        stages,
        ..main.clone()
    }
}

fn fingerprint(sp: &ShardPlan, window: [usize; 4]) -> String {
    let doc = serde_json::json!({
        "config_sha256": sp.config_sha256,
        "season": sp.season,
        "variables": sp.variables,
        "grid": sp.grid,
        "window": window,
        "tiled": sp.tiled,
    });
    crate::io::sha256_hex(doc.to_string().as_bytes())
}
