//! SIGKILLs: at random moments of `indices` and `run` (50 in all, seeded), and aimed at the commit (after
//! the journal is durable, and between every two renames). Each kill falls on a folder holding run A's
//! outputs while run B writes; afterwards every file under a final name must be complete and be A's or B's
//! version of that file (never a torn one), and rerunning B must give B's outputs byte for byte with no
//! temporary file or journal left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::fixture;
use crate::space::{all_complete, outputs};

/// A small seeded generator (SplitMix64) for kill times: the same moments on every run of the suite.
struct Seeded(u64);

impl Seeded {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("carbonmap")
}

fn cmd(args: &[String], fault: Option<&str>) -> Command {
    let mut c = Command::new(bin());
    c.arg("--quiet")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match fault {
        Some(f) => c.env("CARBONMAP_FAULT", f),
        None => c.env_remove("CARBONMAP_FAULT"),
    };
    c
}

fn run_ok(args: &[String]) -> Duration {
    let t0 = Instant::now();
    let o = cmd(args, None).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t0.elapsed()
}

/// Replace the folder `out` by a copy of `state` (modification times kept, as a user's disk would).
fn restore(state: &Path, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(state)
        .arg(out)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Every file under a final name is complete and is A's or B's version.
fn consistent(out: &Path, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, what: &str) {
    all_complete_finals(out).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (rel, hash) in outputs(out) {
        if is_hidden(&rel) {
            continue;
        }
        let from_a = a.get(&rel) == Some(&hash);
        let from_b = b.get(&rel) == Some(&hash);
        assert!(
            from_a || from_b,
            "{what}: {rel} is neither run A's nor run B's version"
        );
    }
}

/// Hidden names are carbonmap's bookkeeping and work in progress (.NAME.partial-PID, .stage.partial/,
/// the journal): never under a final name.
fn is_hidden(rel: &str) -> bool {
    Path::new(rel)
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

/// `all_complete` on final names only (a killed run may leave hidden work in progress for the next run).
fn all_complete_finals(out: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    for (rel, _) in outputs(out).into_iter().filter(|(r, _)| !is_hidden(r)) {
        let dst = tmp.path().join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(out.join(&rel), dst).unwrap();
    }
    // report.md's images are checked against the real folder.
    let report = out.join("report.md");
    if report.exists() {
        let text = std::fs::read_to_string(&report).unwrap();
        for img in text
            .lines()
            .filter_map(|l| l.strip_prefix("![").and_then(|r| r.split_once("](")))
        {
            if !out.join(img.1.trim_end_matches(')')).is_file() {
                return Err(format!("report.md shows {} which is missing", img.1));
            }
        }
        std::fs::remove_file(tmp.path().join("report.md")).unwrap();
    }
    all_complete(tmp.path())
}

/// The folder after the rerun: B's outputs, nothing hidden but markers.
fn clean_b(out: &Path, b: &BTreeMap<String, String>, what: &str) {
    assert_eq!(&outputs(out), b, "{what}: the rerun differs from B");
    for rel in crate::fixture::snapshot(out).keys() {
        assert!(
            !rel.contains(".partial") && !rel.contains("journal") && !rel.contains(".old"),
            "{what}: left behind {rel}"
        );
    }
}

struct Scenario {
    out: PathBuf,
    a_state: PathBuf,
    a: BTreeMap<String, String>,
    b: BTreeMap<String, String>,
    b_args: Vec<String>,
    b_time: Duration,
}

/// Runs A then B in `t/out` for B's reference, then A in a fresh `t/out`, kept as A's state.
fn scenario(
    t: &Path,
    a_args: &dyn Fn(&Path) -> Vec<String>,
    b_args: &dyn Fn(&Path) -> Vec<String>,
) -> Scenario {
    let out = t.join("out");
    run_ok(&a_args(&out));
    let b_time = run_ok(&b_args(&out));
    let b = outputs(&out);
    std::fs::remove_dir_all(&out).unwrap();
    run_ok(&a_args(&out));
    let a = outputs(&out);
    let a_state = t.join("a_state");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&out)
        .arg(&a_state)
        .status()
        .unwrap();
    assert!(ok.success());
    Scenario {
        b_args: b_args(&out),
        out,
        a_state,
        a,
        b,
        b_time,
    }
}

fn random_kills(s: &Scenario, n: usize, seed: u64, what: &str) -> usize {
    let mut rng = Seeded(seed);
    let mut landed = 0;
    for i in 0..n {
        restore(&s.a_state, &s.out);
        let at = s.b_time.mul_f64(1.1 * rng.next_f64());
        let mut child = cmd(&s.b_args, None).spawn().unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            landed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let label = format!("{what} kill {i} at {at:?}");
        consistent(&s.out, &s.a, &s.b, &label);
        run_ok(&s.b_args);
        clean_b(&s.out, &s.b, &label);
    }
    landed
}

fn indices_scenario(t: &Path) -> Scenario {
    let f = fixture();
    let stack = f.root.join("s/stack.toml");
    let args = |out: &Path, index: &str, stats: &str| -> Vec<String> {
        [
            "indices",
            "--stack",
            stack.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--index",
            index,
            "--stats",
            stats,
            "--period",
            "month",
        ]
        .map(String::from)
        .to_vec()
    };
    scenario(t, &|o| args(o, "NDVI", "median"), &|o| {
        args(o, "NDVI,EVI,NIRv", "median,max,std")
    })
}

#[test]
fn thirty_random_kills_of_indices_leave_complete_outputs_and_reruns_match() {
    let t = tempfile::tempdir().unwrap();
    let s = indices_scenario(t.path());
    let landed = random_kills(&s, 30, 7, "indices");
    assert!(
        landed >= 15,
        "only {landed} of 30 kills landed while indices ran"
    );
}

#[test]
fn kills_aimed_at_the_commit_are_completed_by_the_next_command() {
    let t = tempfile::tempdir().unwrap();
    let s = indices_scenario(t.path());
    let n_outputs = s.b.keys().filter(|k| !is_hidden(k)).count();
    let journal = s.out.join(carbonmap::commit::JOURNAL);
    let mut points = vec![
        "commit-unmarked:1".to_string(),
        "commit-journal:1".to_string(),
    ];
    points.extend((1..n_outputs).map(|k| format!("commit-rename:{k}")));
    for point in &points {
        restore(&s.a_state, &s.out);
        let o = cmd(&s.b_args, Some(point)).output().unwrap();
        assert!(!o.status.success(), "{point}: the fault did not fire");
        assert!(
            journal.exists(),
            "{point}: no journal after a kill inside the commit"
        );
        consistent(&s.out, &s.a, &s.b, point);
        // Any command writing into the folder first completes the killed commit: here run A, after which
        // the files B alone writes are B's (rolled forward) and the rest are A's.
        let a_args: Vec<String> = s
            .b_args
            .iter()
            .map(|w| match w.as_str() {
                "NDVI,EVI,NIRv" => "NDVI".to_string(),
                "median,max,std" => "median".to_string(),
                _ => w.clone(),
            })
            .collect();
        run_ok(&a_args);
        assert!(!journal.exists(), "{point}: the journal was not completed");
        let mut want = s.b.clone();
        want.extend(s.a.clone());
        let got: BTreeMap<String, String> = outputs(&s.out)
            .into_iter()
            .filter(|(k, _)| !is_hidden(k))
            .collect();
        let want: BTreeMap<String, String> =
            want.into_iter().filter(|(k, _)| !is_hidden(k)).collect();
        assert_eq!(
            got, want,
            "{point}: the killed commit was not rolled forward"
        );
        // The rolled-forward files are carbonmap's: B may replace them again.
        run_ok(&s.b_args);
        clean_b(&s.out, &s.b, point);
    }
    // The stage folder swap of `run` is killed between its renames in the season tests (tests/season.rs).
    assert!(points.len() >= 8, "{points:?}");
}

#[test]
fn twenty_random_kills_of_a_season_run_leave_complete_stages_and_reports() {
    let t = tempfile::tempdir().unwrap();
    let config = |stats: &str| crate::fixture::season_config(t.path(), stats);
    let (a, b) = (config("median"), config("mean,median"));
    let run = |c: PathBuf| {
        move |out: &Path| -> Vec<String> {
            vec![
                "run".into(),
                c.to_string_lossy().into_owned(),
                "--out".into(),
                out.to_string_lossy().into_owned(),
            ]
        }
    };
    let s = scenario(t.path(), &run(a), &run(b));
    let landed = random_kills(&s, 20, 11, "run");
    assert!(
        landed >= 10,
        "only {landed} of 20 kills landed while the run ran"
    );
}

/// Ten random kills each of `balance` with zones (B adds the zone tables and their GeoPackage, written in one
/// transaction a layer, and draws) and of `regrid` into a folder (B adds a proxy-free second unit). The
/// kill lands anywhere: while the sink is read, the zones dissolved, the GeoPackage written, or the commit.
#[test]
fn random_kills_of_balance_with_zones_and_of_regrid_leave_complete_outputs() {
    let f = fixture();
    let seq = crate::fixture::pick(&f.root, "npp/sequestration_tCO2_ha_2024-06_2024-08.tif");
    let lattice = f.root.join("s/emissions_lattice_1km.tif");
    let zones = f.root.join("s/zones.geojson");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let balance = |out: &Path, zoned: bool| -> Vec<String> {
        let mut a = vec![
            "balance".into(),
            "--sink".into(),
            s(&seq),
            "--sink-unit".into(),
            "t CO2 ha-1 yr-1".into(),
            "--lattice".into(),
            s(&lattice),
            "--out".into(),
            s(out),
        ];
        if zoned {
            let zones = s(&zones);
            let more = [
                "--zones",
                &zones,
                "--zone-fields",
                "town,district",
                "--draws",
                "20",
            ];
            a.extend(more.map(String::from));
            let mc = ["--seed", "3", "--uncertainty", "carbonmap-validation"];
            a.extend(mc.map(String::from));
        }
        a
    };
    let t = tempfile::tempdir().unwrap();
    let sc = scenario(t.path(), &|o| balance(o, false), &|o| balance(o, true));
    assert!(
        sc.b.keys().any(|k| k.ends_with("zones_balance.gpkg")),
        "{:?}",
        sc.b.keys()
    );
    let landed = random_kills(&sc, 10, 23, "balance --zones");
    assert!(
        landed >= 5,
        "only {landed} of 10 kills landed while balance ran"
    );

    let to = f.root.join("s/landcover_worldcover.tif");
    let regrid = |out: &Path, unit: &str| -> Vec<String> {
        [
            "regrid",
            "--lattice",
            &s(&lattice),
            "--to",
            &s(&to),
            "--unit",
            unit,
            "--out",
            &s(&out.join("emissions_fine.tif")),
        ]
        .map(String::from)
        .to_vec()
    };
    let t = tempfile::tempdir().unwrap();
    let sc = scenario(t.path(), &|o| regrid(o, "t CO2 ha-1 yr-1"), &|o| {
        regrid(o, "kg CO2 m-2 yr-1")
    });
    let landed = random_kills(&sc, 10, 29, "regrid");
    assert!(
        landed >= 5,
        "only {landed} of 10 kills landed while regrid ran"
    );
}
