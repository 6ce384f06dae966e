//! Annual accounting on real, gappy imagery (examples/colorado/season.toml): the Colorado Landsat stack has no
//! clear scene from November to April, yet a calendar-year season gives annual NPP, Rh, NEP and sequestration
//! for the vegetated pixels, with every fill counted and reported; seasons across the year boundary (DJF, a
//! hydrological year) run on the same stack.

mod common;

use std::path::{Path, PathBuf};

use common::{carbonmap, csv_rows, metadata_item, read_band};

/// The Colorado example folder copied into `dir` as it is: its configs and its land-cover VRT name the data by
/// `${CARBONMAP_REAL_DATA}`, so the copy runs from anywhere.
fn colorado(_root: &Path, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/colorado");
    for f in common::list_dir(&src) {
        std::fs::copy(src.join(&f), dir.join(&f)).unwrap();
    }
    dir.join("season.toml")
}

/// Run `season` of the config into `out`; returns stderr.
fn run(cfg: &Path, season: &str, out: &Path) -> String {
    let a = carbonmap()
        .args(["run"])
        .arg(cfg)
        .args(["--season", season, "--out"])
        .arg(out)
        .assert()
        .success();
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Share of land pixels (land cover not nodata) with a finite value.
fn valid_share(v: &[f64]) -> f64 {
    v.iter().filter(|x| x.is_finite()).count() as f64 / v.len() as f64
}

#[test]
fn colorado_2011_annual_run_fills_the_snowy_months_and_reports_every_fill() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = colorado(&root, tmp.path());
    let out = tmp.path().join("2011");
    let err = run(&cfg, "2011", &out);
    // January-March and November-December 2011 have no composite at all.
    assert!(
        err.contains("no NDVI composite for 2011-01, 2011-02, 2011-03, 2011-11, 2011-12"),
        "{err}"
    );
    let npp = out.join("npp");
    for (q, unit) in [
        ("NPP_gC_m2", "g C m-2 yr-1"),
        ("Rh_gC_m2", "g C m-2 yr-1"),
        ("NEP_gC_m2", "g C m-2 yr-1"),
        ("sequestration_tCO2_ha", "t CO2 ha-1 yr-1"),
    ] {
        let f = npp.join(format!("{q}_2011.tif"));
        let (v, w, h) = read_band(&f, 1);
        assert_eq!((w, h), (61, 61));
        assert!(valid_share(&v) >= 0.95, "{q}: {}", valid_share(&v));
        assert_eq!(metadata_item(&f, "UNITS").as_deref(), Some(unit));
    }
    let (npp_v, _, _) = read_band(&npp.join("NPP_gC_m2_2011.tif"), 1);
    let mean = npp_v.iter().sum::<f64>() / npp_v.len() as f64;
    // A plausible annual NPP for a montane savanna (hundreds of g C m-2 yr-1), not a season's.
    assert!((200.0..1200.0).contains(&mean), "{mean}");
    // Every fill counted: five months without a composite, most of them dormant (CRU normals below 5 C).
    let (filled, _, _) = read_band(&npp.join("filled_months_2011.tif"), 1);
    assert!(filled.iter().all(|&f| f >= 5.0), "{:?}", &filled[..5]);
    let rows = csv_rows(&npp.join("casa_summary_2011.csv"));
    let sav = rows.iter().find(|r| r["code"] == "9").unwrap();
    let dormant: f64 = sav["ndvi_dormant_fraction"].parse().unwrap();
    let all: f64 = sav["ndvi_filled_fraction"].parse().unwrap();
    assert!(
        dormant >= 5.0 / 12.0 - 1e-9 && all >= dormant,
        "{dormant} {all}"
    );
    // ... and reported in the run report and the manifest, with the climatology radiation.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    for want in [
        "no NDVI composite for 2011-01",
        "dormant (winter floor)",
        "monthly climatology (no year column)",
    ] {
        assert!(report.contains(want), "report.md lacks '{want}'");
        assert!(manifest.contains(want), "manifest.json lacks '{want}'");
    }
}

#[test]
fn colorado_seasons_across_the_year_boundary() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = colorado(&root, tmp.path());
    // A hydrological year is a full model year: its totals are per year.
    let hy = tmp.path().join("hy");
    run(&cfg, "2010-07..2011-06", &hy);
    let f = hy.join("npp/NPP_gC_m2_2010-07_2011-06.tif");
    assert!(valid_share(&read_band(&f, 1).0) >= 0.95);
    assert_eq!(metadata_item(&f, "UNITS").as_deref(), Some("g C m-2 yr-1"));
    assert!(metadata_item(&f, "MODEL_YEAR")
        .unwrap()
        .starts_with("2010-07..2011-06"));
    // DJF 2011 (December 2010 to February 2011): a period total, never per year; its model year ends in
    // February 2011, and the winter is dormant, so NPP is far below the year's.
    let djf = tmp.path().join("djf");
    run(&cfg, "2011-DJF", &djf);
    let f = djf.join("npp/NPP_gC_m2_2010-12_2011-02.tif");
    let (v, _, _) = read_band(&f, 1);
    assert!(valid_share(&v) >= 0.95);
    assert_eq!(
        metadata_item(&f, "UNITS").as_deref(),
        Some("g C m-2 per period 2010-12_2011-02")
    );
    assert!(metadata_item(&f, "MODEL_YEAR")
        .unwrap()
        .starts_with("2010-03..2011-02"));
    let (year, _, _) = read_band(&hy.join("npp/NPP_gC_m2_2010-07_2011-06.tif"), 1);
    let (w, y) = (
        v.iter().sum::<f64>() / v.len() as f64,
        year.iter().sum::<f64>() / year.len() as f64,
    );
    assert!(w < 0.2 * y, "DJF {w} vs year {y}");
}

/// Exeter Sentinel-2 L2A 2024 has scenes in June and August only (three CRSs); a JJA season fills July per
/// pixel and reports it, and the Yeovilton station table (which ends in 2021) stands in with its monthly
/// climatology, said in the report.
#[test]
fn exeter_s2_jja_2024_without_july() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s2 = root.join("exeter-s2-hls/s2_l2a");
    common::exeter_s2_manifest(&root, tmp.path());
    let drivers = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exeter/yeovilton-2021.toml"),
    )
    .unwrap()
    .replace("../../../shared/real-data", root.to_str().unwrap());
    std::fs::write(tmp.path().join("drivers.toml"), drivers).unwrap();
    let landcover = s2.join("exe_2024-06-02_12-21-19_EPSG27700.tif");
    let cfg = format!(
        r#"[season]
default = "2024-JJA"
out = "out/{{season}}"

[stages.ndvi]
command = "indices"
stack = "s2.toml"
index = ["NDVI"]
period = "month"
stats = "median"

[stages.npp]
command = "npp"
model = "casa"
ndvi = "@ndvi"
landcover = {landcover:?}
landcover_band = 5
legend = "sentinel2-scl"
drivers = "drivers.toml"
year = "{{year}}"
months = "{{months}}"
"#
    );
    std::fs::write(tmp.path().join("season.toml"), cfg).unwrap();
    let out = tmp.path().join("jja");
    let err = run(&tmp.path().join("season.toml"), "2024-JJA", &out);
    assert!(err.contains("no NDVI composite for 2024-07"), "{err}");
    let npp = out.join("npp");
    let (v, _, _) = read_band(&npp.join("NPP_gC_m2_2024-06_2024-08.tif"), 1);
    let (lc, _, _) = read_band(&landcover, 5);
    assert_eq!(lc.len(), v.len());
    // Vegetation (SCL 4) pixels with a result: at least 95 %.
    let veg: Vec<f64> = lc
        .iter()
        .zip(&v)
        .filter(|(c, _)| **c == 4.0)
        .map(|(_, x)| *x)
        .collect();
    assert!(veg.len() > 1000);
    assert!(valid_share(&veg) >= 0.95, "{}", valid_share(&veg));
    assert_eq!(
        metadata_item(&npp.join("NPP_gC_m2_2024-06_2024-08.tif"), "UNITS").as_deref(),
        Some("g C m-2 per period 2024-06_2024-08")
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    for want in [
        "no NDVI composite for 2024-07",
        "filled with the station's monthly climatology",
    ] {
        assert!(report.contains(want), "report.md lacks '{want}'");
        assert!(manifest.contains(want), "manifest.json lacks '{want}'");
    }
    // The HTML report of this real-data run renders in a browser with every picture and warning.
    assert!(common::check_html_report(&out) >= 4);
}

/// `carbonmap check` finds before computing what `run` would otherwise fail on: simulated months without an
/// acquisition under `strict_months` (read from the folder the stack stage will recognise), a driver the
/// model needs for any year of the model year, and a stack stage's folder without a recognised stack.
#[test]
fn check_finds_strict_months_missing_drivers_and_bad_stack_folders() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = colorado(&root, tmp.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}strict_months = true\n")).unwrap();
    // Radiation dropped from the drivers.
    let drivers = tmp.path().join("drivers.toml");
    let d = std::fs::read_to_string(&drivers).unwrap();
    std::fs::write(
        &drivers,
        d.replace(
            "srad = { column = \"ghi_MJ_m2_month\", unit = \"MJ m-2\" }",
            "tmin = { column = \"tmin_mean_C\", unit = \"degC\" }",
        ),
    )
    .unwrap();
    let a = carbonmap()
        .arg("check")
        .arg(&cfg)
        .args(["--season", "2010-07..2011-06"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    for want in [
        "has no acquisition in 2010-12, 2011-01, 2011-02, 2011-03",
        "srad (SOL, total solar radiation) is missing",
    ] {
        assert!(err.contains(want), "missing '{want}' in:\n{err}");
    }
    // A stack stage pointed at a folder without a recognisable stack.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            &format!("{}/colorado-landsat/lsts", "{data}"),
            empty.to_str().unwrap(),
        ),
    )
    .unwrap();
    std::fs::write(&drivers, d).unwrap();
    let a = carbonmap().arg("check").arg(&cfg).assert().code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("[stages.stack] dir:"), "{err}");
}
