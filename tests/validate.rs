//! `carbonmap validate` and `carbonmap calibrate` on rasters and plots made here: window means and unit
//! conversion by hand, a synthetic region whose true regional bias is known (calibration must recover it
//! within its reported uncertainty, and grouped cross-validation must show the error drop), and bad input.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{carbonmap, cell as num, csv_rows as rows, write_raster};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const X0: f64 = 500_000.0;
const Y0: f64 = 5_600_000.0;
const RES: f64 = 100.0;

/// A 3 x 3 raster with values 1..9 (g C m-2 yr-1 by declaration), pixel (1, 1) no data.
fn small_raster(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("model.tif");
    write_raster(
        &p,
        Some(32630),
        [X0, RES, 0.0, Y0, 0.0, -RES],
        (3, 3),
        &[("NPP", vec![1f32, 2., 3., 4., -9999., 6., 7., 8., 9.])],
        Some(-9999.0),
    );
    p
}

fn validate(dir: &Path, plots: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    std::fs::write(dir.join("plots.csv"), plots).unwrap();
    carbonmap()
        .arg("validate")
        .arg("--plots")
        .arg(dir.join("plots.csv"))
        .arg("--raster")
        .arg(dir.join("model.tif"))
        .args([
            "--x-field",
            "x",
            "--y-field",
            "y",
            "--plots-crs",
            "EPSG:32630",
        ])
        .args(["--observed-field", "npp", "--id-field", "id"])
        .args(extra)
        .arg("-o")
        .arg(dir.join("out"))
        .assert()
}

/// Window means and units by hand. Values (row-major) 1 2 3 / 4 nd 6 / 7 8 9.
/// Plot a at pixel (0, 0): window 1 -> 1; window 3 clipped to the 2 x 2 corner -> (1 + 2 + 4) / 3 (no data
/// left out) = 2.3333333. Plot b at pixel (2, 2): 9; window 3 -> (6 + 8 + 9) / 3 = 7.6666667.
/// Plot c on the no-data pixel: window 1 -> no data (listed, not counted); window 3 -> mean of the 8 others = 5.
/// Observed 0.02 Mg C ha-1 yr-1 = 2 g C m-2 yr-1 (x 100).
#[test]
fn window_means_and_units_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    small_raster(tmp.path());
    let plots = "id,x,y,npp,class\na,500050,5599950,0.02,forest\nb,500250,5599750,0.08,forest\nc,500150,5599850,0.05,grass\n";
    let a = validate(
        tmp.path(),
        plots,
        &[
            "--observed-unit",
            "Mg C ha-1 yr-1",
            "--model-unit",
            "g C m-2 yr-1",
            "--class-field",
            "class",
        ],
    )
    .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("1 plot(s) on no data"), "{err}");
    let s = rows(&tmp.path().join("out/validation_samples.csv"));
    let model = |i: usize| num(&s[i], "model (g C m-2 yr-1)");
    assert_eq!(model(0), 1.0);
    assert_eq!(model(1), 9.0);
    assert!(model(2).is_nan());
    assert_eq!(s[2]["status"], "no-data");
    assert!((num(&s[0], "observed (g C m-2 yr-1)") - 2.0).abs() < 1e-9);
    // Metrics over a and b: observed 2, 8; model 1, 9: bias 0, RMSE 1, MAE 1.
    let m = rows(&tmp.path().join("out/validation_metrics.csv"));
    let all = m.iter().find(|r| r["scope"] == "all").unwrap();
    assert_eq!(all["n"], "2");
    assert!(num(all, "bias (g C m-2 yr-1)").abs() < 1e-9);
    assert!((num(all, "rmse (g C m-2 yr-1)") - 1.0).abs() < 1e-9);
    let forest = m
        .iter()
        .find(|r| r["scope"] == "class" && r["group"] == "forest")
        .unwrap();
    assert_eq!(forest["n"], "2");
    for f in [
        "validation_scatter.png",
        "validation_residuals.png",
        "validation_metrics.json",
    ] {
        assert!(tmp.path().join("out").join(f).exists(), "{f}");
    }

    std::fs::remove_dir_all(tmp.path().join("out")).unwrap();
    validate(
        tmp.path(),
        plots,
        &[
            "--observed-unit",
            "g C m-2 yr-1",
            "--model-unit",
            "g C m-2 yr-1",
            "--window",
            "3",
        ],
    )
    .success();
    let s = rows(&tmp.path().join("out/validation_samples.csv"));
    // (The table carries 6 decimals.)
    assert!((model_of(&s, 0) - 7.0 / 3.0).abs() < 1e-6);
    assert!((model_of(&s, 1) - 23.0 / 3.0).abs() < 1e-6);
    assert!((model_of(&s, 2) - 5.0).abs() < 1e-6);
    assert_eq!(s[0]["window_pixels"], "3");
}

fn model_of(s: &[HashMap<String, String>], i: usize) -> f64 {
    num(&s[i], "model (g C m-2 yr-1)")
}

#[test]
fn bad_plots_and_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    small_raster(tmp.path());
    let unit = [
        "--observed-unit",
        "g C m-2 yr-1",
        "--model-unit",
        "g C m-2 yr-1",
    ];
    for (plots, extra, says) in [
        (
            "id,x,y,npp\na,,5599950,2\n",
            &unit[..],
            "line 2: coordinate x is missing",
        ),
        (
            "id,x,y,npp\na,500050,north,2\n",
            &unit[..],
            "line 2: coordinate y \"north\" is not a number",
        ),
        (
            "id,x,y,npp\na,500050,5599950,lots\n",
            &unit[..],
            "line 2: npp \"lots\" is not a number",
        ),
        (
            "id,x,y,npp\na,500050,5599950,2\na,500150,5599950,3\n",
            &unit[..],
            "1 duplicate plot id(s) in column id: \"a\" (line 2 and line 3)",
        ),
        (
            "id,x,y,npp\na,500050,5599950,2\n",
            &[
                "--observed-unit",
                "Mg C acre-1 yr-1",
                "--model-unit",
                "g C m-2 yr-1",
            ][..],
            "must be cell-1, m-2, ha-1 or km-2",
        ),
        (
            "id,x,y,npp,u\na,500050,5599950,2,t C ha-1 yr-1\nb,500150,5599950,2,kg CH4 m-2 yr-1\n",
            &["--observed-unit-field", "u", "--model-unit", "g C m-2 yr-1"][..],
            "line 3: unit \"kg CH4 m-2 yr-1\": species \"CH4\" must be C or CO2",
        ),
        (
            "id,x,y,npp\na,500050,5599950,2\n",
            &["--observed-unit", "g C m-2 yr-1"][..],
            "declare it with --model-unit",
        ),
        (
            "id,x,y,npp\na,500050,5599950,2\n",
            &["--model-unit", "g C m-2 yr-1"][..],
            "units are never assumed",
        ),
        (
            "id,x,y,npp\na,900050,5599950,2\n",
            &unit[..],
            "no plot has a model value",
        ),
    ] {
        let a = validate(tmp.path(), plots, extra).code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains(says), "{plots}: want '{says}' in:\n{err}");
        assert!(!tmp.path().join("out").exists());
    }
    // Every bad row at once (not only the first), with the duplicate ids among the good ones.
    let a = validate(
        tmp.path(),
        "id,x,y,npp\na,500050,5599950,lots\nb,500150,5599950,many\nc,500050,5599950,1\nc,500150,5599950,2\n",
        &unit,
    )
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    for says in [
        "line 2: npp \"lots\" is not a number",
        "line 3: npp \"many\" is not a number",
        "1 duplicate plot id(s) in column id: \"c\" (line 4 and line 5)",
    ] {
        assert!(err.contains(says), "want '{says}' in:\n{err}");
    }
    // Zones that miss the raster.
    std::fs::write(
        tmp.path().join("far.geojson"),
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::32630"}},"features":[{"type":"Feature","properties":{"region":"Far"},"geometry":{"type":"Polygon","coordinates":[[[700000,5000000],[701000,5000000],[701000,5001000],[700000,5001000],[700000,5000000]]]}}]}"#,
    )
    .unwrap();
    let far = tmp.path().join("far.geojson");
    let a = validate(
        tmp.path(),
        "id,x,y,npp\na,500050,5599950,2\n",
        &[
            &unit[..],
            &["--zones", far.to_str().unwrap(), "--zone-fields", "region"],
        ]
        .concat(),
    )
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("no zone overlaps the analysis grid"), "{err}");
    // A plot outside the raster is a counted warning, not an error and not a zero.
    let a = validate(
        tmp.path(),
        "id,x,y,npp\na,500050,5599950,2\nfar,900050,5599950,2\n",
        &unit,
    )
    .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("1 plot(s) outside the raster"), "{err}");
    let s = rows(&tmp.path().join("out/validation_samples.csv"));
    assert_eq!(s[1]["status"], "outside-raster");
}

/// The synthetic region: a 100 x 100 model raster (model = 400 + 2 col + row g C m-2 yr-1), three zones in
/// vertical strips whose true bias (observed / model) is 0.7, 1.0 and 1.3, and 60 sites of 3 plots whose
/// observations are model x true factor x (1 + 0.08 e), e ~ N(0, 1), written in Mg C ha-1 yr-1.
const TRUTH: [(&str, f64); 3] = [("West", 0.7), ("Centre", 1.0), ("East", 1.3)];

fn zone_of(x: f64) -> usize {
    (((x - X0) / (RES * 100.0 / 3.0)) as usize).min(2)
}

fn synthetic_region(dir: &Path) {
    let (w, h) = (100usize, 100usize);
    let values: Vec<f32> = (0..w * h)
        .map(|i| (400 + 2 * (i % w) + i / w) as f32)
        .collect();
    write_raster(
        &dir.join("model.tif"),
        Some(32630),
        [X0, RES, 0.0, Y0, 0.0, -RES],
        (w, h),
        &[("NPP", values)],
        None,
    );
    let third = RES * 100.0 / 3.0;
    let features: Vec<String> = TRUTH
        .iter()
        .enumerate()
        .map(|(k, (name, _))| {
            let (a, b) = (X0 + k as f64 * third, X0 + (k + 1) as f64 * third);
            format!(
                r#"{{"type":"Feature","properties":{{"region":"{name}"}},"geometry":{{"type":"Polygon","coordinates":[[[{a},{y1}],[{b},{y1}],[{b},{Y0}],[{a},{Y0}],[{a},{y1}]]]}}}}"#,
                y1 = Y0 - 100.0 * RES
            )
        })
        .collect();
    std::fs::write(
        dir.join("zones.geojson"),
        format!(
            r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::32630"}}}},"features":[{}]}}"#,
            features.join(",")
        ),
    )
    .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let noise = Normal::new(0.0, 0.08).unwrap();
    let mut csv = String::from("plot,site,x,y,class,npp_MgC_ha_yr\n");
    for site in 0..60 {
        // Site centres away from the zone borders (a site's plots share a zone).
        let zone = site % 3;
        let x = X0 + zone as f64 * third + rng.gen_range(400.0..third - 400.0);
        let y = Y0 - rng.gen_range(400.0..100.0 * RES - 400.0);
        let class = if site % 2 == 0 {
            "grassland"
        } else {
            "cropland"
        };
        for k in 0..3 {
            let (px, py) = (
                x + rng.gen_range(-250.0..250.0),
                y + rng.gen_range(-250.0..250.0),
            );
            let col = ((px - X0) / RES).floor();
            let row = ((Y0 - py) / RES).floor();
            let model = 400.0 + 2.0 * col + row;
            assert_eq!(zone_of(px), zone);
            let observed = model * TRUTH[zone].1 * (1.0 + noise.sample(&mut rng));
            // g C m-2 yr-1 / 100 = Mg C ha-1 yr-1.
            csv.push_str(&format!(
                "s{site}p{k},s{site},{px},{py},{class},{}\n",
                observed / 100.0
            ));
        }
    }
    std::fs::write(dir.join("plots.csv"), csv).unwrap();
}

#[test]
fn calibration_recovers_a_known_regional_bias() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    synthetic_region(d);
    let out = d.join("cal");
    carbonmap()
        .arg("calibrate")
        .arg("--plots")
        .arg(d.join("plots.csv"))
        .arg("--raster")
        .arg(d.join("model.tif"))
        .args([
            "--model-unit",
            "g C m-2 yr-1",
            "--x-field",
            "x",
            "--y-field",
            "y",
        ])
        .args([
            "--plots-crs",
            "EPSG:32630",
            "--id-field",
            "plot",
            "--site-field",
            "site",
        ])
        .args([
            "--observed-field",
            "npp_MgC_ha_yr",
            "--observed-unit",
            "Mg C ha-1 yr-1",
        ])
        .args([
            "--class-field",
            "class",
            "--zone-fields",
            "region",
            "--applies-to",
            "npp",
        ])
        .arg("--zones")
        .arg(d.join("zones.geojson"))
        .args(["--folds", "5", "--seed", "3", "-o"])
        .arg(&out)
        .assert()
        .success();
    let table = rows(&out.join("corrections.csv"));
    for (name, truth) in TRUTH {
        let r = table
            .iter()
            .find(|r| r["zone"] == name && r["class"].is_empty())
            .unwrap_or_else(|| panic!("no row for zone {name}"));
        let (f, se) = (num(r, "factor"), num(r, "se"));
        assert_eq!(r["n"], "60");
        assert_eq!(r["applies_to"], "npp");
        // Within the reported uncertainty (1.96 se), and that uncertainty is informative (8 % noise on 60
        // plots: se near 0.08 x truth / sqrt(60) = 0.0103 x truth).
        assert!(
            (f - truth).abs() <= 1.96 * se,
            "{name}: {f} +- {se} vs {truth}"
        );
        assert!(se < 0.03, "{name}: se {se}");
    }
    // Cells zone x class: 30 plots each, the same truth as their zone.
    for r in table
        .iter()
        .filter(|r| !r["zone"].is_empty() && !r["class"].is_empty())
    {
        let truth = TRUTH.iter().find(|t| t.0 == r["zone"]).unwrap().1;
        assert!(
            (num(r, "factor") - truth).abs() <= 2.5 * num(r, "se"),
            "{r:?}"
        );
    }
    // Grouped cross-validation on held-out sites: before correction the error is the regional bias
    // (RMS of -30 %, 0, +30 % of ~500 = ~120 g C m-2 yr-1); after, only the 8 % noise (~40) remains.
    let cv = rows(&out.join("calibration_cv.csv"));
    let get = |stage: &str| {
        cv.iter()
            .find(|r| r["stage"] == stage && r["scope"] == "all")
            .map(|r| (num(r, "rmse (g C m-2 yr-1)"), num(r, "bias (g C m-2 yr-1)")))
            .unwrap()
    };
    let (before, after) = (get("before"), get("after"));
    assert!(before.0 > 100.0, "{before:?}");
    assert!(
        after.0 < 0.5 * before.0 && after.0 < 60.0,
        "{before:?} -> {after:?}"
    );
    assert!(after.1.abs() < 15.0, "{after:?}");
    // The table is one the NPP stage can read: same header, one target, and per-class rows.
    let text = std::fs::read_to_string(out.join("corrections.csv")).unwrap();
    let t =
        carbonmap::correction::CorrectionTable::parse(&text, &out.join("corrections.csv")).unwrap();
    assert_eq!(t.target, carbonmap::correction::Target::Npp);
    assert!(t
        .factors
        .iter()
        .any(|f| f.zone.is_none() && f.class.as_deref() == Some("grassland")));
}
