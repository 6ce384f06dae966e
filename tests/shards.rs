//! Scale-out through the binary: the demo season (without its scenario) on synthetic samples, run whole and in
//! shards (`plan`, `run --shard`, `merge`), gives the same pixels (NaN where NaN) and byte-identical zone and
//! lattice tables for any shard count and submission order, a killed shard included; the merge refuses
//! missing and stale shards naming them; the Kubernetes and Slurm recipes under examples/ run as written.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{carbonmap, read_band};
use gdal::Metadata;

/// Samples of `size` px and the demo season config (its output folder under the temporary folder).
fn setup(size: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    carbonmap()
        .args(["samples", "--size", &size.to_string(), "--out"])
        .arg(dir.join("samples"))
        .assert()
        .success();
    let demo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/season.toml"),
    )
    .unwrap();
    // The scenario stage reads files beside the demo config; the rest is the demo season as it is.
    let cut = demo
        .find("# A scenario against")
        .expect("demo scenario stage");
    let config = demo[..cut]
        .replace("samples = \"../../data-samples\"", "samples = \"samples\"")
        .replace(
            "out = \"../../out/demo-season/{season}\"",
            "out = \"out/{season}\"",
        );
    std::fs::write(dir.join("season.toml"), config).unwrap();
    (tmp, dir)
}

fn cm(dir: &Path, args: &[&str]) -> std::process::Output {
    carbonmap().current_dir(dir).args(args).output().unwrap()
}

fn ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every raster of every stage folder (not the shards' own tables).
fn rasters(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = carbonmap::io::files_under(out)
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .filter_map(|p| p.strip_prefix(out).ok().map(Path::to_path_buf))
        .filter(|p| !p.starts_with("shards") && !p.starts_with("report"))
        .collect();
    v.sort();
    v
}

/// The merged season equals the whole run: the same rasters with the same grid, bands, units and pixels, and
/// byte-identical zone and lattice tables.
fn assert_same_season(whole: &Path, merged: &Path) {
    let files = rasters(whole);
    assert!(files.len() > 20, "{files:?}");
    assert_eq!(files, rasters(merged));
    for f in &files {
        let (a, b) = (whole.join(f), merged.join(f));
        let (da, db) = (
            gdal::Dataset::open(&a).unwrap(),
            gdal::Dataset::open(&b).unwrap(),
        );
        assert_eq!(
            da.geo_transform().unwrap(),
            db.geo_transform().unwrap(),
            "{f:?}"
        );
        assert_eq!(da.raster_count(), db.raster_count(), "{f:?}");
        for i in 1..=da.raster_count() {
            let (ba, bb) = (da.rasterband(i).unwrap(), db.rasterband(i).unwrap());
            assert_eq!(ba.unit(), bb.unit(), "{f:?} band {i}");
            assert_eq!(
                ba.description().ok(),
                bb.description().ok(),
                "{f:?} band {i}"
            );
            assert_eq!(ba.band_type(), bb.band_type(), "{f:?} band {i}");
            let ((va, ..), (vb, ..)) = (read_band(&a, i), read_band(&b, i));
            let differ = va
                .iter()
                .zip(&vb)
                .filter(|(x, y)| !(x == y || (x.is_nan() && y.is_nan())))
                .count();
            assert_eq!(differ, 0, "{f:?} band {i}: {differ} pixels differ");
        }
    }
    for t in ["balance/zones_balance.csv", "balance/lattice_balance.csv"] {
        assert_eq!(
            std::fs::read(whole.join(t)).unwrap(),
            std::fs::read(merged.join(t)).unwrap(),
            "{t}"
        );
    }
}

fn shard_count(dir: &Path, out: &str) -> usize {
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(out).join("2024/shards.json")).unwrap())
            .unwrap();
    plan["shards"].as_array().unwrap().len()
}

#[test]
fn shards_merge_to_the_whole_run_for_any_count_and_order_a_killed_shard_included() {
    // 640 px: shards of 256 px leave a 128-px column and row at the east and south edges; one scene is on
    // EPSG:27700 and is warped, so a window's pixels must not depend on the window.
    let (_tmp, dir) = setup(640);
    ok(
        &cm(&dir, &["run", "season.toml", "-o", "whole/2024"]),
        "whole run",
    );
    let whole = dir.join("whole/2024");
    for (tile, order) in [
        (256, vec![8, 3, 0, 5, 1, 7, 2, 6, 4]),
        (512, vec![3, 1, 2, 0]),
        (1024, vec![0]),
    ] {
        let out = format!("s{tile}");
        let o = format!("{out}/2024");
        ok(
            &cm(
                &dir,
                &[
                    "plan",
                    "season.toml",
                    "--tile-size",
                    &tile.to_string(),
                    "-o",
                    &o,
                ],
            ),
            "plan",
        );
        assert_eq!(shard_count(&dir, &out), order.len());
        for i in order {
            if tile == 256 && i == 5 {
                // Killed at its third commit rename (inside a stage), then run again: it resumes.
                let killed = carbonmap()
                    .current_dir(&dir)
                    .env("CARBONMAP_FAULT", "commit-rename:3")
                    .args(["run", "season.toml", "-o", &o, "--shard", "5"])
                    .output()
                    .unwrap();
                assert!(!killed.status.success());
            }
            // Submitted as a scheduler would: the index in SLURM_ARRAY_TASK_ID, for the 512-px plan.
            let run = if tile == 512 {
                carbonmap()
                    .current_dir(&dir)
                    .env("SLURM_ARRAY_TASK_ID", i.to_string())
                    .args(["run", "season.toml", "-o", &o, "--shard", "env"])
                    .output()
                    .unwrap()
            } else {
                cm(
                    &dir,
                    &["run", "season.toml", "-o", &o, "--shard", &i.to_string()],
                )
            };
            ok(&run, &format!("shard {i} of {tile}"));
        }
        ok(&cm(&dir, &["merge", "season.toml", "-o", &o]), "merge");
        assert_same_season(&whole, &dir.join(&o));
        // The shards' own tables stay per shard, never under a merged name.
        let by_shard = dir.join(&o).join("ndvi/by_shard/0000/indices_summary.csv");
        assert!(by_shard.is_file(), "{by_shard:?}");
        assert!(!dir.join(&o).join("ndvi/indices_summary.csv").exists());
        // carbonmap's own bookkeeping (the folder marker) is not a shard's table.
        assert!(!dir.join(&o).join("ndvi/by_shard/0000/.carbonmap").exists());
    }
}

#[test]
fn merge_refuses_missing_failed_and_stale_shards_naming_them() {
    // 300 px in shards of 256: four shards.
    let (_tmp, dir) = setup(300);
    let o = "s/2024";
    let no_plan = cm(&dir, &["run", "season.toml", "-o", o, "--shard", "0"]);
    assert_eq!(no_plan.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_plan.stderr).contains("carbonmap plan"));
    let bad_tile = cm(
        &dir,
        &["plan", "season.toml", "--tile-size", "300", "-o", o],
    );
    assert_eq!(bad_tile.status.code(), Some(2));
    ok(
        &cm(
            &dir,
            &["plan", "season.toml", "--tile-size", "256", "-o", o],
        ),
        "plan",
    );
    assert_eq!(shard_count(&dir, "s"), 4);
    let beyond = cm(&dir, &["run", "season.toml", "-o", o, "--shard", "4"]);
    assert_eq!(beyond.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&beyond.stderr).contains("has 4 shards"));
    let no_index = carbonmap()
        .current_dir(&dir)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .args(["run", "season.toml", "-o", o, "--shard", "env"])
        .output()
        .unwrap();
    assert_eq!(no_index.status.code(), Some(2));
    for i in 0..3 {
        ok(
            &cm(
                &dir,
                &["run", "season.toml", "-o", o, "--shard", &i.to_string()],
            ),
            "shard",
        );
    }
    let missing = cm(&dir, &["merge", "season.toml", "-o", o]);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("shard 0003") && err.contains("has not run"),
        "{err}"
    );
    assert!(!err.contains("shard 0000"), "{err}");
    // Refused before anything was merged.
    assert!(!dir.join(o).join("ndvi").exists());
    ok(
        &cm(&dir, &["run", "season.toml", "-o", o, "--shard", "3"]),
        "shard 3",
    );
    // A driver file read by the NPP stages changes: every shard is stale, all named at once.
    let drivers = dir.join("samples/drivers.toml");
    let mut text = std::fs::read_to_string(&drivers).unwrap();
    text.push_str("\n# edited\n");
    std::fs::write(&drivers, text).unwrap();
    let stale = cm(&dir, &["merge", "season.toml", "-o", o]);
    assert_eq!(stale.status.code(), Some(2));
    let err = String::from_utf8_lossy(&stale.stderr);
    for s in ["0000", "0001", "0002", "0003"] {
        assert!(err.contains(&format!("shard {s}")), "{err}");
    }
    assert!(
        err.contains("drivers.toml changed since stage npp"),
        "{err}"
    );
    for i in 0..4 {
        ok(
            &cm(
                &dir,
                &["run", "season.toml", "-o", o, "--shard", &i.to_string()],
            ),
            "rerun",
        );
    }
    ok(&cm(&dir, &["merge", "season.toml", "-o", o]), "merge");
    // A merge again finds everything up to date; a changed config makes the plan stale.
    ok(&cm(&dir, &["merge", "season.toml", "-o", o]), "merge again");
    let config = dir.join("season.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n# edited\n");
    std::fs::write(&config, text).unwrap();
    let replan = cm(&dir, &["merge", "season.toml", "-o", o]);
    assert_eq!(replan.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&replan.stderr).contains("shard plan is stale"));
}

/// A folder of stand-ins on PATH: `carbonmap` (this build) and a `kubectl` whose `apply` runs the Indexed
/// Job's container command once per index with JOB_COMPLETION_INDEX set, /data being `data`.
fn kubernetes_stand_ins(dir: &Path, data: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_carbonmap"), bin.join("carbonmap")).unwrap();
    let kubectl = format!(
        r#"#!/usr/bin/env bash
set -euo pipefail
case $1 in
apply)
    manifest=$(cat)
    grep -q 'completionMode: Indexed' <<<"$manifest"
    n=$(awk '/completions:/ {{print $2}}' <<<"$manifest")
    cmd=$(sed -n 's/^ *command: //p' <<<"$manifest" | sed 's/[][",]//g; s#/data#{data}#g')
    for i in $(seq 0 $((n - 1))); do JOB_COMPLETION_INDEX=$i $cmd; done
    echo "job applied and run ($n indices)" ;;
wait) ;;
*) exit 1 ;;
esac
"#,
        data = data.display()
    );
    std::fs::write(bin.join("kubectl"), kubectl).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(bin.join("kubectl"))
        .status()
        .unwrap();
    bin
}

#[test]
fn kubernetes_driver_and_indexed_job_run_every_index_locally() {
    let (_tmp, dir) = setup(300);
    let bin = kubernetes_stand_ins(&dir, &dir);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/season.sh");
    let o = Command::new("bash")
        .arg(&script)
        .current_dir(&dir)
        .env("PATH", path)
        .env("CARBONMAP_CONFIG", dir.join("season.toml"))
        .env("CARBONMAP_TILE_SIZE", "256")
        .output()
        .unwrap();
    ok(&o, "season.sh");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("job applied and run (4 indices)"), "{said}");
    let out = dir.join("out/2024");
    for s in ["0000", "0001", "0002", "0003"] {
        assert!(out.join("shards").join(s).join("shard.json").is_file());
    }
    assert!(out.join("balance/zones_balance.csv").is_file());
    assert!(out.join("report.html").is_file());
    // The CronJob runs this same script with the same Job template.
    let cron = std::fs::read_to_string(script.with_file_name("cronjob.yaml")).unwrap();
    assert!(cron.contains("kind: CronJob") && cron.contains("/scripts/season.sh"));
}

/// Stops the test's Slurm daemons however the test ends.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(cluster_script())
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh")
}

#[test]
fn slurm_array_runs_the_shards_and_the_merge() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("skipped: starting Slurm's daemons needs root (CI runs as root)");
        return;
    }
    let (_tmp, dir) = setup(300);
    let state = dir.join("slurm");
    let started = Command::new("bash")
        .arg(cluster_script())
        .arg("start")
        .arg(&state)
        .output()
        .unwrap();
    let _cluster = Cluster(state.clone());
    ok(&started, "Slurm cluster");
    let conf = String::from_utf8_lossy(&started.stdout).trim().to_string();
    let t0 = Instant::now();
    let submit = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/submit.sh"))
        .args(["season.toml", "--tile-size", "256"])
        .current_dir(&dir)
        .env("SLURM_CONF", &conf)
        .env("CARBONMAP", env!("CARGO_BIN_EXE_carbonmap"))
        .output()
        .unwrap();
    ok(&submit, "submit.sh");
    let said = String::from_utf8_lossy(&submit.stdout).into_owned();
    let jobs: Vec<String> = said
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("jobs "))
        .unwrap_or_else(|| panic!("{said}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let list = jobs.join(",");
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", &list, "-o", "%i %T"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "Slurm jobs still queued: {}",
            String::from_utf8_lossy(&q.stdout)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = t0.elapsed().as_secs_f64();
    let out = dir.join("out/2024");
    let merge_log = dir.join(format!("carbonmap-merge-{}.log", jobs[1]));
    assert!(
        out.join("balance/zones_balance.csv").is_file(),
        "no merged balance; merge log: {}",
        std::fs::read_to_string(&merge_log).unwrap_or_default()
    );
    let mut peaks = Vec::new();
    for s in ["0000", "0001", "0002", "0003"] {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("shards").join(s).join("shard.json")).unwrap(),
        )
        .unwrap();
        peaks.push(format!(
            "{s}: {} s, {} MiB",
            rec["seconds"], rec["peak_memory_mib"]
        ));
    }
    // Written to the process's stderr itself (the harness captures only the print macros), so CI's log shows it.
    let _ = writeln!(
        std::io::stderr(),
        "Slurm: 4 shards and the merge in {wall:.1} s wall; per shard {}",
        peaks.join("; ")
    );
    // The same season run whole gives the same zone table.
    ok(
        &cm(&dir, &["run", "season.toml", "-o", "whole/2024"]),
        "whole run",
    );
    assert_eq!(
        std::fs::read(dir.join("whole/2024/balance/zones_balance.csv")).unwrap(),
        std::fs::read(out.join("balance/zones_balance.csv")).unwrap()
    );
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn a_tile_layer_cuts_the_grid_at_snapped_tile_edges() {
    // The samples' grid: EPSG:32630, x 464000..476800, y 5608200..5621000 at 20 m (640 px). Four tiles of 7 km
    // overlapping by 600 m like MGRS tiles, and one far away. Their west and north edges, 295 and 320 px from
    // the grid's corner, snap to the 256-px tile edge: cuts at columns 0, 256, 640 and rows 0, 256, 640.
    let (_tmp, dir) = setup(640);
    let square = |name: &str, x: f64, y: f64| {
        format!(
            r#"{{"type":"Feature","properties":{{"tile":"{name}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x},{y}],[{x1},{y}],[{x1},{y0}],[{x},{y0}],[{x},{y}]]]}}}}"#,
            x1 = x + 7000.0,
            y0 = y - 7000.0
        )
    };
    let tiles = [
        square("30UVB", 463_500.0, 5_621_500.0),
        square("30UVC", 469_900.0, 5_621_500.0),
        square("30UWB", 463_500.0, 5_614_600.0),
        square("30UWC", 469_900.0, 5_614_600.0),
        square("far", 600_000.0, 5_700_000.0),
    ];
    let layer = format!(
        r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::32630"}}}},"features":[{}]}}"#,
        tiles.join(",")
    );
    std::fs::write(dir.join("tiles.geojson"), layer).unwrap();
    ok(
        &cm(
            &dir,
            &[
                "plan",
                "season.toml",
                "--tiles",
                "tiles.geojson",
                "--tile-field",
                "tile",
                "-o",
                "t/2024",
            ],
        ),
        "plan --tiles",
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("t/2024/shards.json")).unwrap()).unwrap();
    let got: Vec<(Vec<u64>, String)> = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let w = s["window"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            (w, s["tile"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let want = [
        (vec![0, 0, 256, 256], "30UVB"),
        (vec![256, 0, 384, 256], "30UVC"),
        (vec![0, 256, 256, 384], "30UWB"),
        (vec![256, 256, 384, 384], "30UWC"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(w, n)| (w.clone(), n.to_string()))
            .collect::<Vec<_>>()
    );
}

/// A real place: the Exeter HLS scenes (30 m, on their own transverse Mercator) reprojected to UTM 30N and
/// upsampled to 10 m, 600 x 560 px, in 9 shards: every NDVI and EVI composite and count equals the whole run's
/// (bilinear warps whose scale GDAL would otherwise estimate per chunk).
#[test]
fn real_scenes_warped_finer_merge_to_the_whole_run() {
    let Some(_root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exeter/hls-2021.toml");
    std::fs::write(
        dir.join("season.toml"),
        format!(
            r#"[season]
default = "2021-06..2021-07"
out = "out/{{season}}"

[stages.ndvi]
command = "indices"
stack = "{}"
index = ["NDVI", "EVI"]
period = "month"
stats = "median,max"
crs = "EPSG:32630"
res = 10.0
bounds = "461200,5616000,467200,5621600"
"#,
            stack.display()
        ),
    )
    .unwrap();
    ok(
        &cm(dir, &["run", "season.toml", "-o", "whole"]),
        "whole run",
    );
    ok(
        &cm(
            dir,
            &["plan", "season.toml", "--tile-size", "256", "-o", "sh"],
        ),
        "plan",
    );
    for i in (0..9).rev() {
        ok(
            &cm(
                dir,
                &["run", "season.toml", "-o", "sh", "--shard", &i.to_string()],
            ),
            "shard",
        );
    }
    ok(&cm(dir, &["merge", "season.toml", "-o", "sh"]), "merge");
    let files = rasters(&dir.join("whole"));
    assert_eq!(files.len(), 6, "{files:?}");
    for f in &files {
        let ds = gdal::Dataset::open(dir.join("whole").join(f)).unwrap();
        for i in 1..=ds.raster_count() {
            let ((a, ..), (b, ..)) = (
                read_band(&dir.join("whole").join(f), i),
                read_band(&dir.join("sh").join(f), i),
            );
            assert!(a.iter().any(|v| v.is_finite() && *v != 0.0), "{f:?}");
            let differ = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| !(x == y || (x.is_nan() && y.is_nan())))
                .count();
            assert_eq!(differ, 0, "{f:?} band {i}");
        }
    }
}
