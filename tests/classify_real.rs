//! The classifier on real data, with the README's commands: the Slovenia NDVI series against its land-cover
//! raster, and the Germany Sentinel-2 scene against OSM land-use polygons. The reported overall accuracy and
//! kappa are recomputed here from the confusion matrix (Congalton 1991's formulas, written out), the held-out
//! samples are checked to share no block with training samples, the Slovenian sample labels are read back
//! from the land-cover raster with GDAL directly, and the classifier must beat always answering the
//! held-out set's largest class by a wide margin.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use common::{carbonmap, csv_rows, read_band};

/// OA and kappa from `confusion_matrix.csv` (rows predicted, columns reference), and the share of the
/// largest reference class.
fn recompute(path: &Path) -> (f64, f64, f64, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let m: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    let k = m.len();
    let n: f64 = m.iter().flatten().sum();
    let diag: f64 = (0..k).map(|i| m[i][i]).sum();
    let rows: Vec<f64> = m.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k).map(|j| (0..k).map(|i| m[i][j]).sum()).collect();
    let po = diag / n;
    // Chance agreement: sum over classes of (predicted share x reference share).
    let pe: f64 = (0..k).map(|i| rows[i] * cols[i]).sum::<f64>() / (n * n);
    let largest = cols.iter().cloned().fold(0.0, f64::max) / n;
    (po, (po - pe) / (1.0 - pe), largest, n as u64)
}

/// Apply `model` to the Slovenia stack into `out`: every one of its 100 x 101 pixels has a clear NDVI
/// observation, so every pixel gets one of the five LULC classes.
fn predict_slovenia(model: &Path, out: &Path) {
    carbonmap()
        .args([
            "landcover",
            "predict",
            "--stack",
            "examples/slovenia/stack.toml",
            "--index-table",
            "examples/slovenia/ndvi-index.toml",
            "--model",
        ])
        .arg(model)
        .arg("-o")
        .arg(out)
        .assert()
        .success();
    let (map, w, h) = read_band(&out.join("landcover.tif"), 1);
    assert_eq!((w, h), (100, 101));
    assert!(map.iter().all(|c| [1.0, 2.0, 3.0, 4.0, 8.0].contains(c)));
}

fn check_report(out: &Path, min_kappa: f64) -> (f64, f64) {
    let acc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("accuracy.json")).unwrap()).unwrap();
    let a = &acc["assessment"];
    let (oa, kappa, largest, n) = recompute(&out.join("confusion_matrix.csv"));
    assert_eq!(a["n"].as_u64().unwrap(), n);
    assert!((a["overall_accuracy"].as_f64().unwrap() - oa).abs() < 1e-12);
    assert!((a["kappa"].as_f64().unwrap() - kappa).abs() < 1e-12);
    assert!(
        oa > largest + 0.2,
        "OA {oa} vs largest class share {largest}"
    );
    assert!(kappa > min_kappa, "kappa {kappa}");
    // No block holds both training and held-out samples.
    let mut sets: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for r in csv_rows(&out.join("training_samples.csv")) {
        sets.entry((r["block_col"].clone(), r["block_row"].clone()))
            .or_default()
            .insert(r["set"].clone());
    }
    assert!(sets.values().all(|s| s.len() == 1));
    (oa, kappa)
}

#[test]
fn slovenia_ndvi_series_against_its_land_cover_raster() {
    let Some(root) = common::real_data() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("slovenia");
    let lulc = root.join("slovenia-ndvi-landcover/LULC.tif");
    carbonmap()
        .args([
            "landcover",
            "train",
            "--stack",
            "examples/slovenia/stack.toml",
            "--index-table",
            "examples/slovenia/ndvi-index.toml",
            "--indices",
            "NDVI",
            "--stats",
            "min,max,mean,median,amplitude,std,doy_max",
            "--labels",
        ])
        .arg(&lulc)
        .args([
            "--legend",
            "slovenia-eolearn-lulc",
            "--block-size",
            "100",
            "-o",
        ])
        .arg(&out)
        .assert()
        .success();
    let (oa, kappa) = check_report(&out, 0.5);
    eprintln!("Slovenia: OA {oa:.4} kappa {kappa:.4}");
    // Sample labels are the raster's codes at their pixels (same 100 x 101 grid as the NDVI series).
    let (codes, w, _) = read_band(&lulc, 1);
    for r in csv_rows(&out.join("training_samples.csv")) {
        let (c, row): (usize, usize) = (r["col"].parse().unwrap(), r["row"].parse().unwrap());
        assert_eq!(codes[row * w + c], r["class_code"].parse::<f64>().unwrap());
    }

    let pred = t.path().join("map");
    predict_slovenia(&out.join("landcover.model.json"), &pred);
    let areas = csv_rows(&pred.join("landcover_area.csv"));
    let px: u64 = areas
        .iter()
        .map(|r| r["pixels"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(px, 100 * 101);
}

#[test]
fn germany_sentinel2_scene_against_osm_polygons() {
    let Some(root) = common::real_data() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("germany");
    carbonmap()
        .args([
            "landcover",
            "train",
            "--stack",
            "examples/germany/stack.toml",
            "--bands",
            "B,G,R,RE1,RE2,RE3,N,N2,S1,S2",
            "--indices",
            "NDVI,NDWI",
            "--stats",
            "mean",
            "--labels",
        ])
        .arg(root.join("germany-s2-l1c/gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"))
        .args([
            "--label-field",
            "fclass",
            "--block-size",
            "500",
            "--max-samples-per-class",
            "1000",
            "-o",
        ])
        .arg(&out)
        .assert()
        .success();
    let (oa, kappa) = check_report(&out, 0.4);
    eprintln!("Germany: OA {oa:.4} kappa {kappa:.4}");
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("landcover.model.json.sidecar.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = side["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "farm",
            "forest",
            "grass",
            "meadow",
            "residential",
            "scrub",
            "water",
            "wetland"
        ]
    );
    // 20 m and 60 m bands are read on the 10 m grid of the scene's finest band.
    assert_eq!(side["grid_pixel_size"][0], 10.0);
}

#[test]
fn the_shipped_example_model_applies_to_its_stack() {
    let Some(_root) = common::real_data() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let model = Path::new("models/classifiers/slovenia-ndvi-decision-tree.model.json");
    predict_slovenia(model, t.path());
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read("models/classifiers/slovenia-ndvi-decision-tree.model.json.sidecar.json")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(side["kind"], "decision_tree");
}
