//! A season config on real data (examples/fr-pue/season.toml): MOD17 at the FR-Pue flux tower and its
//! validation against the tower's daily GPP, run as one chain; the report carries the validation figure and
//! table; another season from the same config validates only its own year.

mod common;

use std::path::Path;

/// The example config with its data paths pointed at this machine's real-data folder.
fn config(root: &Path, dir: &Path) -> std::path::PathBuf {
    let drivers = common::fr_pue_drivers(root, dir);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fr-pue/season.toml"),
    )
    .unwrap()
    .replace(
        "../../../shared/real-data/fluxtower-fr-pue",
        root.join("fluxtower-fr-pue").to_str().unwrap(),
    )
    .replace(
        "drivers = \"drivers.toml\"",
        &format!("drivers = {:?}", drivers.to_str().unwrap()),
    );
    let path = dir.join("season.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn fr_pue_site_and_validation_as_one_season_run() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&root, tmp.path());
    let out = tmp.path().join("out");
    common::carbonmap()
        .args(["run"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("![validation/validation_scatter.png](validation/validation_scatter.png)"),
        "{report}"
    );
    assert!(report.contains("**validation/validation_metrics.csv**"));
    let observed = root.join("fluxtower-fr-pue/FR-Pue_daily_gpp_observed.csv");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let v = m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "validation")
        .unwrap();
    let rec = v["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["path"]
                .as_str()
                .unwrap()
                .ends_with("FR-Pue_daily_gpp_observed.csv")
        })
        .unwrap();
    assert_eq!(
        rec["sha256"].as_str().unwrap(),
        carbonmap::io::sha256_file(&observed).unwrap()
    );
    assert_eq!(
        rec["size"].as_u64().unwrap(),
        std::fs::metadata(&observed).unwrap().len()
    );
    let years = |dir: &Path| -> Vec<String> {
        common::csv_rows(&dir.join("validation/validation_metrics.csv"))
            .into_iter()
            .filter(|r| r["scope"] == "year")
            .map(|r| r["group"].clone())
            .collect()
    };
    assert_eq!(years(&out), ["2007", "2008", "2009", "2010"]);

    // One year of the same config: the site runs 2008-2008 and the validation has that year alone.
    let out08 = tmp.path().join("out08");
    common::carbonmap()
        .args(["run", "--season", "2008"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out08)
        .assert()
        .success();
    assert_eq!(years(&out08), ["2008"]);
}
