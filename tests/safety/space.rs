//! Full disks on a real small tmpfs: a first run A succeeds; then, with the free space cut to each of several
//! levels, a different run B either fails (non-zero exit naming the problem) leaving A's outputs byte for byte
//! and no temporary file, or succeeds with B's exact outputs, every raster readable to its last pixel.
//! Mounting needs root: CI runs as root and must run these; elsewhere they are skipped with a printed reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::carbonmap;
use crate::fixture::{fixture, pick, snapshot};

/// A tmpfs mounted on a temporary folder for the life of the value.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_kb: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kb}k"), "tmpfs"])
            .arg(dir.path())
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(
                    !in_ci,
                    "cannot mount a tmpfs ({why}): the disk-full tests must run in CI (as root)"
                );
                eprintln!("skipping disk-full test: cannot mount a tmpfs ({why}); run as root");
                None
            }
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn avail(&self) -> u64 {
        let o = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
    /// Leave about `free` bytes free (a filler file takes the rest).
    fn leave(&self, free: u64) {
        let filler = self.path().join("filler");
        let _ = std::fs::remove_file(&filler);
        let take = self.avail().saturating_sub(free);
        let f = std::fs::File::create(&filler).unwrap();
        use std::io::Write;
        let mut w = std::io::BufWriter::new(f);
        let chunk = vec![0u8; 4096];
        let mut left = take;
        while left > 0 {
            let n = left.min(4096) as usize;
            if w.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = w.flush();
    }
    fn unfill(&self) {
        let _ = std::fs::remove_file(self.path().join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open in this process (a panicking test) must not leave the mount behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Output files without bookkeeping (markers) and, when asked, without the manifest (it records timings).
pub fn outputs(dir: &Path) -> BTreeMap<String, String> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, _)| {
            let name = Path::new(k)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            name != carbonmap::commit::MARKER && name != "manifest.json"
        })
        .collect()
}

/// Every raster under `dir` opens and every band reads to its last pixel; no temporary file is left.
pub fn all_complete(dir: &Path) -> Result<(), String> {
    for (rel, _) in snapshot(dir) {
        if rel.contains(".partial") || rel.contains("journal") {
            return Err(format!("left behind: {rel}"));
        }
        if rel.ends_with("report.md") {
            let text = std::fs::read_to_string(dir.join(&rel)).unwrap();
            for img in text
                .lines()
                .filter_map(|l| l.strip_prefix("![").and_then(|r| r.split_once("](")))
            {
                let target = dir.join(img.1.trim_end_matches(')'));
                if !target.is_file() {
                    return Err(format!(
                        "report.md shows {} which is missing",
                        target.display()
                    ));
                }
            }
        }
        if rel.ends_with(".tif") {
            let p = dir.join(&rel);
            let ds = gdal::Dataset::open(&p).map_err(|e| format!("{rel}: {e}"))?;
            for b in 1..=ds.raster_count() {
                let band = ds.rasterband(b).unwrap();
                let (w, h) = band.size();
                band.read_as::<f64>((0, 0), (w, h), (w, h), None)
                    .map_err(|e| format!("{rel} band {b}: {e}"))?;
            }
        }
    }
    Ok(())
}

fn run(args: &[String], out: &Path) -> std::process::Output {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{OUT}", &out.to_string_lossy()))
        .collect();
    carbonmap().args(&args).output().unwrap()
}

/// Run A into the tmpfs, then B at `levels` free-space levels spread over B's size; check each outcome.
fn attack(name: &str, a: &[String], b: &[String], levels: usize) {
    let Some(fs) = Tmpfs::mount(16 * 1024) else {
        return;
    };
    // B's reference outputs, made in the same folder (outputs record their inputs' paths), then A again.
    let out = fs.path().join("out");
    let ok = |args: &[String], what: &str| {
        let o = run(args, &out);
        assert!(
            o.status.success(),
            "{name} {what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ok(a, "A");
    ok(b, "B");
    let want_b = outputs(&out);
    let size_b: u64 = want_b
        .keys()
        .map(|k| std::fs::metadata(out.join(k)).unwrap().len())
        .sum();
    ok(a, "A again");
    let mut state = outputs(&out);
    let mut failures = 0;
    for k in 0..=levels {
        // From nothing free to a little more than B needs.
        let free = size_b * k as u64 / levels as u64 + 4096;
        fs.leave(free);
        let o = run(b, &out);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        all_complete(&out).unwrap_or_else(|e| panic!("{name} at {free} bytes free: {e}\n{err}"));
        let now = outputs(&out);
        if o.status.success() {
            assert_eq!(
                now, want_b,
                "{name} at {free} bytes free: success with other outputs than B's"
            );
            state = now;
        } else {
            failures += 1;
            assert!(
                [3, 4].contains(&o.status.code().unwrap_or(0)),
                "{name} at {free} bytes free: exit {:?}: {err}",
                o.status.code()
            );
            assert!(
                ["disk full", "disk is full", "No space", "space left"]
                    .iter()
                    .any(|w| err.contains(w)),
                "{name} at {free} bytes free: the message does not say the disk is full: {err}"
            );
            if name != "run" {
                // A standalone command commits all or nothing: the earlier outputs are untouched.
                assert_eq!(
                    now, state,
                    "{name} at {free} bytes free: a failed run changed outputs"
                );
            }
        }
    }
    assert!(
        failures >= 2,
        "{name}: only {failures} level(s) ran out of space; the attack did not bite"
    );
    fs.unfill();
    let o = run(b, &out);
    assert!(
        o.status.success(),
        "{name} B with space again: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(outputs(&out), want_b, "{name}: B with space again");
    all_complete(&out).unwrap();
}

fn words(s: &str) -> Vec<String> {
    let f = fixture();
    let seq = pick(&f.root, "npp/sequestration_tCO2_ha_2024-06_2024-08.tif");
    f.fill(s)
        .replace("{SEQ}", &seq.to_string_lossy())
        .split_whitespace()
        .map(|w| w.replace('~', " "))
        .collect()
}

#[test]
fn indices_on_a_full_disk_commit_all_or_nothing() {
    attack(
        "indices",
        &words("indices --stack {F}/s/stack.toml --out {OUT} --index NDVI --stats median"),
        &words("indices --stack {F}/s/stack.toml --out {OUT} --index NDVI,EVI,NIRv --stats median,mean,max,min,std"),
        12,
    );
}

#[test]
fn npp_on_a_full_disk_commits_all_or_nothing() {
    let base = "npp --ndvi {F}/ndvi --landcover {F}/s/landcover_worldcover.tif --legend esa-worldcover --drivers {F}/s/drivers.toml --year 2024 --months 6-8 --out {OUT}";
    attack("npp", &words(base), &words(&format!("{base} --monthly")), 8);
}

#[test]
fn balance_on_a_full_disk_commits_all_or_nothing() {
    // The summer's total taken as a yearly rate: only the bytes matter here.
    let base = "balance --sink {SEQ} --sink-unit t~CO2~ha-1~yr-1 --lattice {F}/s/emissions_lattice_1km.tif --out {OUT}";
    attack(
        "balance",
        &words(base),
        &words(&format!(
            "{base} --zones {{F}}/s/zones.geojson --zone-fields town,district"
        )),
        8,
    );
}

#[test]
fn landcover_predict_on_a_full_disk_commits_all_or_nothing() {
    // Runs on the strip executor (`engine::run`): a write failing in the middle of a run.
    let base = "landcover predict --stack {F}/s/stack.toml --model {F}/model/landcover.model.json --out {OUT}";
    attack(
        "predict",
        &words(base),
        &words(&format!("{base} --cog --maps")),
        8,
    );
}

#[test]
fn a_season_run_on_a_full_disk_keeps_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let config = |stats: &str| crate::fixture::season_config(dir.path(), stats);
    let a = config("median");
    let b = config("mean,median");
    let cmd = |c: &Path| {
        vec![
            "run".to_string(),
            c.to_string_lossy().into_owned(),
            "--out".into(),
            "{OUT}".into(),
        ]
    };
    attack("run", &cmd(&a), &cmd(&b), 8);
}
