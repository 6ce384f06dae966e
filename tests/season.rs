//! `carbonmap run` and `check` through the binary on the synthetic samples: an up-to-date rerun rewrites
//! nothing; a changed input reruns only the stages that read it; a run killed at any moment leaves no partial
//! output under a final name and resumes to byte-identical files; the thread count does not change a byte;
//! `check` lists every problem of a broken config at once; a second run on a locked folder is refused; a
//! failing stage gives partial success without touching the stages that do not depend on it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use common::carbonmap;

/// Samples and a season config in a temporary folder; the config's output folder is OUT/2024-JJA.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
}

const CONFIG: &str = r#"
[season]
default = "2024-JJA"
out = "out/{season}"

[vars]
samples = "samples"

[stages.ndvi]
command = "indices"
stack = "{samples}/stack.toml"
index = ["NDVI"]
period = "month"
stats = "median"
gap_fill = true

[stages.npp]
command = "npp"
model = "casa"
ndvi = "@ndvi"
landcover = "{samples}/landcover_worldcover.tif"
legend = "esa-worldcover"
drivers = "{samples}/drivers.toml"
year = "{year}"
months = "{months}"

[stages.balance]
command = "balance"
sink = "@npp/sequestration_tCO2_ha_{period}.tif"
sink_unit = "t CO2 ha-1 yr-1"
lattice = "{samples}/emissions_lattice_1km.tif"
zones = "{samples}/zones.geojson"
zone_fields = ["town", "district"]

[stages.model]
command = "landcover train"
stack = "{samples}/stack.toml"
bands = ["R", "N"]
indices = ["NDVI"]
stats = "median,max"
labels = "{samples}/landcover_worldcover.tif"
legend = "esa-worldcover"
block_size = 200
trees = 5

[stages.landcover]
command = "landcover predict"
stack = "{samples}/stack.toml"
model = "@model/landcover.model.json"
"#;

fn setup(config: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    carbonmap()
        .args(["samples", "--size", "48", "--out"])
        .arg(dir.join("samples"))
        .assert()
        .success();
    let path = dir.join("season.toml");
    std::fs::write(&path, config).unwrap();
    Setup {
        _tmp: tmp,
        dir,
        config: path,
    }
}

impl Setup {
    fn out(&self) -> PathBuf {
        self.dir.join("out/2024-JJA")
    }
    /// `carbonmap run` with JSON logs (not quiet: every stage's state is logged).
    fn run(&self, extra: &[&str]) -> std::process::Output {
        assert_cmd::Command::cargo_bin("carbonmap")
            .unwrap()
            .args(["--log-format", "json", "run"])
            .arg(&self.config)
            .args(extra)
            .output()
            .unwrap()
    }
}

/// Stage name -> last state reported, from the JSON log lines on stderr.
fn states(out: &std::process::Output) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["event"] == "stage" {
            m.insert(
                v["stage"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            );
        }
    }
    m
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Relative path -> (SHA-256, modification time) of every file under `dir` (the folders' .carbonmap markers
/// included), except, unless
/// `with_manifest`, the manifest (which records timings).
fn snapshot(dir: &Path, with_manifest: bool) -> BTreeMap<String, (String, SystemTime)> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                p,
            )
        })
        .filter(|(rel, _)| with_manifest || rel != "manifest.json")
        .map(|(rel, p)| {
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            (rel, (carbonmap::io::sha256_file(&p).unwrap(), t))
        })
        .collect()
}

fn hashes(dir: &Path) -> BTreeMap<String, String> {
    snapshot(dir, false)
        .into_iter()
        .map(|(k, (h, _))| (k, h))
        .collect()
}

fn assert_ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "run failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn rerun_skips_everything_and_a_changed_input_reruns_only_its_dependants() {
    let s = setup(CONFIG);
    let first = s.run(&[]);
    assert_ok(&first);
    assert!(
        states(&first).values().all(|v| v == "done"),
        "{:?}",
        states(&first)
    );
    // The complete output folder: every stage, the manifest and the report with its maps.
    let out = s.out();
    for f in [
        "manifest.json",
        "report.md",
        "report/npp/NPP_gC_m2_2024-06_2024-08.png",
        "balance/zones_balance.csv",
        "landcover/landcover.tif",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["season"], "2024-JJA");
    // Every warning a stage gave is in its manifest record and in the report under the stage.
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    let recorded: Vec<String> = manifest["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["warnings"].as_array().cloned().unwrap_or_default())
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        !recorded.is_empty(),
        "no warning recorded; stderr: {stderr}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for w in &recorded {
        assert!(stderr.contains(w.as_str()), "recorded but not shown: {w}");
        assert!(report.contains(w.as_str()), "not in the report: {w}");
    }
    let npp = manifest["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "npp")
        .unwrap();
    // Inputs with size and hash (the drivers file and the climate table it names); outputs with hashes.
    let inputs: Vec<&str> = npp["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        inputs
            .iter()
            .any(|p| p.ends_with("climate_station_2024.csv")),
        "{inputs:?}"
    );
    let drivers = npp["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"].as_str().unwrap().ends_with("drivers.toml"))
        .unwrap();
    assert_eq!(
        drivers["sha256"].as_str().unwrap(),
        carbonmap::io::sha256_file(&s.dir.join("samples/drivers.toml")).unwrap()
    );
    assert!(npp["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(npp["depends_on"][0], "ndvi");
    // Built-in parameter files with the hash of their text (the default CASA table the stage used among them).
    let casa = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/casa/zhu2007.toml"
    ))
    .unwrap();
    let casa_rec = manifest["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "models/casa/zhu2007.toml")
        .expect("the CASA table in the manifest's parameters");
    assert_eq!(
        casa_rec["sha256"].as_str().unwrap(),
        carbonmap::io::sha256_hex(&casa)
    );

    // Nothing changed: every stage up to date, not one file rewritten (same bytes and modification times).
    let before = snapshot(&out, true);
    let again = s.run(&[]);
    assert_ok(&again);
    assert!(
        states(&again).values().all(|v| v == "up to date"),
        "{:?}",
        states(&again)
    );
    assert_eq!(snapshot(&out, true), before);

    // The zones change: only balance reads them.
    let zones = s.dir.join("samples/zones.geojson");
    let text = std::fs::read_to_string(&zones)
        .unwrap()
        .replace("\"east\"", "\"east side\"");
    std::fs::write(&zones, text).unwrap();
    let third = s.run(&[]);
    assert_ok(&third);
    let st = states(&third);
    assert_eq!(st["balance"], "done");
    for up in ["ndvi", "npp", "model", "landcover"] {
        assert_eq!(st[up], "up to date", "{up}: {st:?}");
    }
    let after = snapshot(&out, false);
    for (k, v) in &before {
        if k.starts_with("ndvi/")
            || k.starts_with("npp/")
            || k.starts_with("landcover/")
            || k.starts_with("model/")
        {
            assert_eq!(after.get(k), Some(v), "{k} was rewritten");
        }
    }
    assert!(
        std::fs::read_to_string(out.join("balance/zones_balance.csv"))
            .unwrap()
            .contains("east side")
    );

    // The drivers file changes (a comment): npp reruns; its outputs come out identical, so balance (which reads
    // only npp's outputs) stays up to date.
    let drv = s.dir.join("samples/drivers.toml");
    let mut text = std::fs::read_to_string(&drv).unwrap();
    text.push_str("\n# edited\n");
    std::fs::write(&drv, text).unwrap();
    let fourth = s.run(&[]);
    assert_ok(&fourth);
    let st = states(&fourth);
    assert_eq!(
        (
            st["npp"].as_str(),
            st["balance"].as_str(),
            st["ndvi"].as_str()
        ),
        ("done", "up to date", "up to date"),
        "{st:?}"
    );
}

#[test]
fn killed_runs_resume_to_byte_identical_outputs_and_threads_change_nothing() {
    let s = setup(CONFIG);
    let t0 = Instant::now();
    assert_ok(&s.run(&["--threads", "1"]));
    let full = t0.elapsed();
    let reference = hashes(&s.out());
    assert!(reference.len() > 20);

    for threads in ["2", "8"] {
        std::fs::remove_dir_all(s.out()).unwrap();
        assert_ok(&s.run(&["--threads", threads]));
        assert_eq!(
            hashes(&s.out()),
            reference,
            "--threads {threads} changed the outputs"
        );
    }

    // SIGKILL at several moments of a run from scratch.
    for k in 1..=4u32 {
        std::fs::remove_dir_all(s.out()).unwrap();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("carbonmap"))
            .args(["--quiet", "run"])
            .arg(&s.config)
            .spawn()
            .unwrap();
        std::thread::sleep(full * k / 5);
        let _ = child.kill();
        let _ = child.wait();
        // Every file under a final name is complete: a stage folder that exists is exactly the uninterrupted
        // run's; half-written stages only exist as hidden .STAGE.partial folders.
        if s.out().exists() {
            let now = hashes(&s.out());
            for (f, h) in &now {
                if f.starts_with('.') || f == "report.md" || f.starts_with("report/") {
                    continue;
                }
                assert_eq!(
                    reference.get(f),
                    Some(h),
                    "after a kill at {k}/5: {f} differs"
                );
                let stage = f.split('/').next().unwrap();
                let complete = reference
                    .keys()
                    .filter(|r| r.starts_with(&format!("{stage}/")))
                    .all(|r| now.contains_key(r));
                assert!(
                    complete,
                    "after a kill at {k}/5: stage folder {stage} is incomplete"
                );
            }
        }
        assert_ok(&s.run(&[]));
        assert_eq!(
            hashes(&s.out()),
            reference,
            "resumed after a kill at {k}/5 of the run"
        );
        let leftovers: Vec<String> = std::fs::read_dir(s.out())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial") || n.ends_with(".old"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn check_lists_every_problem_at_once_and_computes_nothing() {
    let broken = CONFIG
        .replace(
            "index = [\"NDVI\"]",
            "index = [\"NDVI\"]\ncolour = \"green\"",
        )
        .replace("{samples}/drivers.toml", "{samples}/no-such-drivers.toml")
        .replace(
            "model = \"@model/landcover.model.json\"",
            "model = \"@no-such-stage/landcover.model.json\"",
        )
        .replace("year = \"{year}\"", "year = \"{yaer}\"")
        .replace(
            "legend = \"esa-worldcover\"\ndrivers",
            "legend = \"corine-level1\"\ndrivers",
        )
        + r#"
[stages.far]
command = "regrid"
lattice = "far.tif"
to = "{samples}/landcover_worldcover.tif"
unit = "t CO2 ha-1 yr-1"
proxy = "nocrs.tif"

[uncertainty]
file = "u.toml"
draws = 10
"#;
    let s = setup(&broken);
    // An uncertainty file with a misspelt vegetation type: found by check, not when npp runs.
    std::fs::write(
        s.dir.join("u.toml"),
        "name = \"u\"\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"grasland\"\nsd = 0.1\nsource = \"t\"\n",
    )
    .unwrap();
    // A lattice 400 km from the samples without a unit, and a proxy without a CRS.
    let gt = [100000.0, 1000.0, 0.0, 5000000.0, 0.0, -1000.0];
    common::write_raster(
        &s.dir.join("far.tif"),
        Some(32630),
        gt,
        (2, 2),
        &[("buildings", vec![1f32; 4])],
        None,
    );
    common::write_raster(
        &s.dir.join("nocrs.tif"),
        None,
        gt,
        (2, 2),
        &[("w", vec![1f32; 4])],
        None,
    );
    let o = carbonmap().arg("check").arg(&s.config).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "[stages.ndvi] colour: `carbonmap indices` has no option --colour",
        "no-such-drivers.toml: does not exist",
        "there is no stage 'no-such-stage'",
        "unknown variable {yaer}",
        // WorldCover codes are not CORINE level-1 codes.
        "corine-level1",
        "far.tif: band 1: declares no unit; give `lattice-unit` in the stage",
        "does not overlap",
        "nocrs.tif: has no coordinate reference system",
        "u.toml: parameter 1 (npp): vegetation_type \"grasland\" is not one of carbonmap's types",
    ] {
        assert!(err.contains(want), "missing '{want}' in:\n{err}");
    }
    assert!(
        err.lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .count()
            >= 8,
        "{err}"
    );
    assert!(
        !s.dir.join("out").exists(),
        "check must not create the output folder"
    );
    // run refuses the same config before computing anything.
    let o = s.run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!s.dir.join("out").exists());

    // The good config passes.
    let good = setup(CONFIG);
    carbonmap()
        .arg("check")
        .arg(&good.config)
        .assert()
        .success();

    // A legend file that does not exist is one problem, the legend's: not a second one under the land-cover
    // map it would have checked.
    let lost = setup(&CONFIG.replace(
        "legend = \"esa-worldcover\"\ndrivers",
        "legend = \"no-such-legend.toml\"\ndrivers",
    ));
    let o = carbonmap().arg("check").arg(&lost.config).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("no-such-legend.toml").count(), 1, "{err}");
    assert!(err.contains("[stages.npp] legend:"), "{err}");
}

#[test]
fn lock_partial_success_and_season_templating() {
    // balance reads a file npp does not write: a processing failure at run time (not visible to check).
    let cfg = CONFIG.replace(
        "@npp/sequestration_tCO2_ha_{period}.tif",
        "@npp/no_such_output.tif",
    );
    let s = setup(&cfg);
    std::fs::create_dir_all(s.out()).unwrap();
    {
        let lock = std::fs::File::create(s.out().join(".carbonmap")).unwrap();
        lock.lock().unwrap();
        let o = s.run(&[]);
        assert_eq!(
            o.status.code(),
            Some(5),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("another carbonmap run"));
    }
    let o = s.run(&[]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let st = states(&o);
    assert_eq!(st["balance"], "failed");
    assert!(
        ["ndvi", "npp", "model", "landcover"]
            .iter()
            .all(|n| st[*n] == "done"),
        "{st:?}"
    );
    assert!(!s.out().join("balance").exists());
    assert!(std::fs::read_to_string(s.out().join("report.md"))
        .unwrap()
        .contains("**failed**"));

    // Another season from the (mended) config: its own folder, months and file names ({period} = 2024-07).
    std::fs::write(&s.config, CONFIG).unwrap();
    let o = carbonmap()
        .args(["run", "--season", "2024-07"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let july = s.dir.join("out/2024-07");
    assert!(july.join("balance/zones_balance.csv").is_file());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(july.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (
            m["start"].as_str(),
            m["end"].as_str(),
            m["variables"]["months"].as_str()
        ),
        (Some("2024-07-01"), Some("2024-07-31"), Some("7-7"))
    );
}

/// Portable configs: `${NAME}` is the environment variable NAME (an unset one is an error naming the line,
/// exit 2); `--var NAME=VALUE` replaces a declared variable and naming an undeclared one is an error; a
/// `[vars]` value naming an unknown `{variable}` is an error, not a literal.
#[test]
fn configs_expand_the_environment_and_take_var_overrides() {
    let s = setup(&CONFIG.replace(
        "samples = \"samples\"",
        "samples = \"${CARBONMAP_TEST_SAMPLES}\"",
    ));
    let check = |env: Option<&Path>, extra: &[&str]| {
        let mut c = carbonmap();
        c.arg("check").arg(&s.config).args(extra);
        match env {
            Some(p) => c.env("CARBONMAP_TEST_SAMPLES", p),
            None => c.env_remove("CARBONMAP_TEST_SAMPLES"),
        };
        c.assert()
    };
    // From the environment, wherever the config is.
    check(Some(&s.dir.join("samples")), &[]).success();
    // Unset: an error naming the variable and the line, nothing run.
    let a = check(None, &[]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("environment variable CARBONMAP_TEST_SAMPLES is not set")
            && err.contains("line 7"),
        "{err}"
    );
    // --var replaces the declared variable (the environment is then not needed for it)...
    let var = format!("samples={}", s.dir.join("samples").display());
    check(Some(Path::new("/nonexistent")), &["--var", &var]).success();
    // ... and a variable the config does not declare is refused.
    let a = check(Some(&s.dir.join("samples")), &["--var", "sampels=x"]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("--var sampels: ") && err.contains("declared: samples"),
        "{err}"
    );
    // A [vars] value with an unknown {variable} is an error, not a literal path.
    std::fs::write(
        &s.config,
        CONFIG.replace(
            "samples = \"samples\"",
            "samples = \"{CARBONMAP_REAL_DATA}/x\"",
        ),
    )
    .unwrap();
    let a = check(None, &[]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("[vars] samples: ") && err.contains("unknown variable {CARBONMAP_REAL_DATA}"),
        "{err}"
    );
}

/// `[uncertainty]` in the config: every stage whose command takes --draws (npp, balance) runs its Monte Carlo
/// with the season's file, draws and seed; the file is an input of those stages only (editing it reruns them,
/// not the NDVI), and a stage's own `draws` wins.
#[test]
fn a_season_wide_uncertainty_section_draws_in_every_stage_that_can() {
    let config = CONFIG.to_string() + "\n[uncertainty]\nfile = \"u.toml\"\ndraws = 50\nseed = 3\n";
    let s = setup(&config);
    let u = s.dir.join("u.toml");
    std::fs::write(
        &u,
        "name = \"season\"\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"*\"\nsd = 0.1\nsource = \"test\"\n\
         [[parameter]]\ntarget = \"emissions\"\nsd = 0.2\nsource = \"test\"\n",
    )
    .unwrap();
    assert_ok(&s.run(&[]));
    let out = s.out();
    let names = |d: &str| common::list_dir(&out.join(d));
    assert!(
        names("npp").iter().any(|n| n.contains("_draws")),
        "{:?}",
        names("npp")
    );
    assert!(names("balance").contains(&"zones_balance_draws.csv".to_string()));
    assert!(names("balance").contains(&"zones_balance_variance.csv".to_string()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let reads_u = |stage: &str| {
        manifest["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == stage)
            .unwrap()["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().is_some_and(|p| p.ends_with("u.toml")))
    };
    assert!(reads_u("npp") && reads_u("balance") && !reads_u("ndvi"));
    // The report maps the draws' spread beside the map it belongs to, titled by its band, and shows the
    // interval tables.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let sd_map = report
        .find("band 2 of 5: NEP sd of 50 draws")
        .unwrap_or_else(|| panic!("no NEP sd map in the report"));
    let nep_map = report.find("](report/npp/NEP_gC_m2_").unwrap();
    assert!(nep_map < sd_map);
    // Beside each map with draws, in one table row: the map and its draws' sd (band 2 of NAME_draws.tif).
    for q in [
        "NPP_gC_m2_",
        "NEP_gC_m2_",
        "sequestration_tCO2_ha_",
        "net_balance_tCO2_ha_yr",
    ] {
        let row = report
            .lines()
            .find(|l| l.starts_with("| ![") && l.contains(q) && l.contains("_draws.b2.png)"));
        assert!(row.is_some(), "no {q} map beside its spread in:\n{report}");
    }
    assert!(
        report.contains("| uncertainty: NEP sd of 50 draws"),
        "{report}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<table>") && html.contains("uncertainty: NEP sd of 50 draws"));
    assert!(report.contains("**balance/zones_balance_draws.csv**"));
    // The tables carry their intervals: the whole area's totals in zones_balance.csv, "value [p05, p95]".
    let all = report
        .lines()
        .find(|l| l.starts_with("| all | all |"))
        .unwrap_or_else(|| panic!("no whole-area row in:\n{report}"));
    assert!(all.matches(" [").count() >= 3, "{all}");
    assert!(report.contains(
        "In brackets: the 90 % interval (5th to 95th percentile) of the Monte Carlo draws"
    ));
    let mut text = std::fs::read_to_string(&u).unwrap();
    text = text.replace("sd = 0.2", "sd = 0.3");
    std::fs::write(&u, text).unwrap();
    let again = s.run(&[]);
    assert_ok(&again);
    let st = states(&again);
    assert_eq!(st["ndvi"], "up to date", "{st:?}");
    assert_eq!(st["npp"], "done", "{st:?}");
    assert_eq!(st["balance"], "done", "{st:?}");
}
