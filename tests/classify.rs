//! `carbonmap landcover train` and `predict` through the binary on small synthetic stacks whose classes are
//! separable by construction: the held-out accuracy and the predicted map are known without the classifier;
//! reproducibility across processes and thread counts; and every bad input named in the issue.

mod common;

use std::path::{Path, PathBuf};

use common::{carbonmap, csv_rows, read_band};

const W: usize = 40;
const H: usize = 40;
/// 10 m pixels on UTM 33N.
const GT: [f64; 6] = [500000.0, 10.0, 0.0, 5100000.0, 0.0, -10.0];

/// Class (1..=4) of a pixel: constant over 5 x 5 pixel (50 m) squares, so every 50 m block holds one class.
fn truth(col: usize, row: usize) -> u8 {
    ((col / 5 + row / 5) % 4) as u8 + 1
}

/// Red and NIR of class k on one date: NIR rises with k (0.1 per class) on both dates, by 0.05 less on the
/// second; red is flat; a small per-pixel wobble (0 .. 0.018, below half the 0.1 gap between classes) keeps
/// the pixels distinct. So NIR and NDVI (mean or max) each separate the classes with wide margins.
fn reflectance(k: u8, date: usize, col: usize, row: usize) -> (f32, f32) {
    let wobble = ((col * 7 + row * 13) % 10) as f32 * 0.002;
    let nir = if date == 0 {
        0.1 + 0.1 * k as f32
    } else {
        0.05 + 0.1 * k as f32
    };
    (0.05 + wobble, nir + wobble)
}

/// A two-date generic stack (bands named red and nir, or red and swir1 when `no_nir`) and the truth raster.
fn make_stack(dir: &Path, no_nir: bool) -> PathBuf {
    for date in 0..2 {
        let mut red = Vec::new();
        let mut nir = Vec::new();
        for row in 0..H {
            for col in 0..W {
                let (r, n) = reflectance(truth(col, row), date, col, row);
                red.push(r);
                nir.push(n);
            }
        }
        let second = if no_nir { "swir1" } else { "nir" };
        common::write_raster(
            &dir.join(format!("d{date}.tif")),
            Some(32633),
            GT,
            (W, H),
            &[("red", red), (second, nir)],
            None,
        );
    }
    let truth_codes: Vec<u8> = (0..H)
        .flat_map(|r| (0..W).map(move |c| truth(c, r)))
        .collect();
    common::write_raster(
        &dir.join("truth.tif"),
        Some(32633),
        GT,
        (W, H),
        &[("class", truth_codes)],
        Some(0.0),
    );
    let m = dir.join("stack.toml");
    std::fs::write(
        &m,
        "sensor = \"generic\"\n[[scene]]\ndate = \"2024-04-10\"\nfile = \"d0.tif\"\n[[scene]]\ndate = \"2024-08-20\"\nfile = \"d1.tif\"\n",
    )
    .unwrap();
    m
}

fn train_args(stack: &Path, labels: &Path, out: &Path) -> Vec<String> {
    [
        "landcover",
        "train",
        "--stack",
        stack.to_str().unwrap(),
        "--indices",
        "NDVI",
        "--bands",
        "R,N",
        "--stats",
        "mean,max,doy_max",
        "--labels",
        labels.to_str().unwrap(),
        "--block-size",
        "50",
        "--folds",
        "4",
        "--trees",
        "15",
        "-o",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn separable_classes_give_perfect_held_out_accuracy_and_the_true_map() {
    let t = tempfile::tempdir().unwrap();
    let stack = make_stack(t.path(), false);
    let out = t.path().join("train");
    carbonmap()
        .args(train_args(&stack, &t.path().join("truth.tif"), &out))
        .assert()
        .success();
    // Every pixel is labelled (1600, at most 2000 per class): the held-out and training sets split them.
    let acc = json(&out.join("accuracy.json"));
    let a = &acc["assessment"];
    assert_eq!(a["overall_accuracy"].as_f64().unwrap(), 1.0);
    assert_eq!(a["kappa"].as_f64().unwrap(), 1.0);
    let side = json(&out.join("landcover.model.json.sidecar.json"));
    let tr = &side["training"];
    assert_eq!(
        tr["train_samples"].as_u64().unwrap() + tr["test_samples"].as_u64().unwrap(),
        (W * H) as u64
    );
    // Features in order: R, N, then NDVI, each with mean, max, doy_max.
    let names: Vec<&str> = side["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "R_mean",
            "R_max",
            "R_doy_max",
            "N_mean",
            "N_max",
            "N_doy_max",
            "NDVI_mean",
            "NDVI_max",
            "NDVI_doy_max"
        ]
    );
    assert_eq!(side["features"][4]["bands"]["N"], "nir");

    // The spatial holdout: no 50 m block (5 pixels) holds both training and held-out samples.
    let rows = csv_rows(&out.join("training_samples.csv"));
    let mut sets = std::collections::HashMap::new();
    for r in &rows {
        let col: usize = r["col"].parse().unwrap();
        let row: usize = r["row"].parse().unwrap();
        assert_eq!(r["class_code"].parse::<u8>().unwrap(), truth(col, row));
        sets.entry((col / 5, row / 5))
            .or_insert_with(std::collections::HashSet::new)
            .insert(r["set"].clone());
    }
    assert!(sets.values().all(|s| s.len() == 1));
    assert!(sets.values().any(|s| s.contains("test")));

    // Prediction reproduces the truth everywhere; the area table counts 400 pixels of 100 m2 per class.
    let pred = t.path().join("pred");
    carbonmap()
        .args(["landcover", "predict", "--stack"])
        .arg(&stack)
        .arg("--model")
        .arg(out.join("landcover.model.json"))
        .arg("-o")
        .arg(&pred)
        .assert()
        .success();
    let (classes, w, h) = read_band(&pred.join("landcover.tif"), 1);
    let (want, _, _) = read_band(&t.path().join("truth.tif"), 1);
    assert_eq!((w, h), (W, H));
    assert_eq!(classes, want);
    let ds = gdal::Dataset::open(pred.join("landcover.tif")).unwrap();
    let band = ds.rasterband(1).unwrap();
    assert_eq!(band.band_type(), gdal::raster::GdalDataType::UInt8);
    let ct = band.color_table().expect("a colour table");
    assert!(ct.entry_count() >= 5);
    // Category names, read by GDAL from the landcover.tif.aux.xml committed beside the raster (QGIS shows them).
    assert!(pred.join("landcover.tif.aux.xml").is_file());
    let names: Vec<String> = unsafe {
        let list = gdal_sys::GDALGetRasterCategoryNames(band.c_rasterband());
        assert!(!list.is_null(), "no category names");
        (0..)
            .map_while(|i| {
                let p = *list.add(i);
                (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            })
            .collect()
    };
    let named: Vec<(usize, &String)> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .collect();
    assert_eq!(named.len(), 4, "{names:?}");
    let (conf, _, _) = read_band(&pred.join("landcover_confidence.tif"), 1);
    assert!(conf.iter().all(|c| (0.0..=1.0).contains(c)));
    let areas = csv_rows(&pred.join("landcover_area.csv"));
    assert_eq!(areas.len(), 4);
    for r in &areas {
        assert_eq!(r["pixels"], "400");
        // 400 px x 100 m2 = 40000 m2 = 4 ha on the map; the grid lies on UTM 33N's central meridian, where map
        // distances are k0 = 0.9996 times the true ones: 4 / 0.9996^2 = 4.0032 ha true.
        let got = common::cell(r, "area_ha");
        assert!(
            (got - 4.0 / (0.9996f64 * 0.9996)).abs() < 5e-5,
            "{got} (written with 4 decimals)"
        );
    }
}

#[test]
fn same_seed_same_model_and_any_thread_count_same_map() {
    let t = tempfile::tempdir().unwrap();
    let stack = make_stack(t.path(), false);
    let labels = t.path().join("truth.tif");
    let mut models = Vec::new();
    for (i, threads) in ["1", "3"].iter().enumerate() {
        let out = t.path().join(format!("m{i}"));
        carbonmap()
            .args(["--threads", threads])
            .args(train_args(&stack, &labels, &out))
            .assert()
            .success();
        models.push(std::fs::read(out.join("landcover.model.json")).unwrap());
    }
    assert_eq!(models[0], models[1], "same seed, separate processes");
    let mut maps = Vec::new();
    for threads in ["1", "4"] {
        let pred = t.path().join(format!("p{threads}"));
        carbonmap()
            .args(["--threads", threads, "landcover", "predict", "--stack"])
            .arg(&stack)
            .arg("--model")
            .arg(t.path().join("m0/landcover.model.json"))
            .arg("-o")
            .arg(&pred)
            .assert()
            .success();
        maps.push((
            std::fs::read(pred.join("landcover.tif")).unwrap(),
            std::fs::read(pred.join("landcover_confidence.tif")).unwrap(),
        ));
    }
    assert_eq!(maps[0], maps[1]);
    // Another seed gives another forest (other bootstrap samples).
    let out = t.path().join("seed2");
    let mut args = train_args(&stack, &labels, &out);
    args.extend(["--seed".into(), "2".into()]);
    carbonmap().args(args).assert().success();
    assert_ne!(
        std::fs::read(out.join("landcover.model.json")).unwrap(),
        models[0]
    );
}

#[test]
fn polygon_and_csv_point_labels() {
    let t = tempfile::tempdir().unwrap();
    let stack = make_stack(t.path(), false);
    // Polygons: class "wet" over the 50 m squares of class 1 in the first 20 rows, "dry" over class 3 ones
    // (GeoJSON in UTM 33N). Squares (c, r) with (c + r) % 4 == 0 are class 1, == 2 class 3.
    let mut feats = Vec::new();
    for sr in 0..4 {
        for sc in 0..8 {
            let name = match (sc + sr) % 4 {
                0 => "wet",
                2 => "dry",
                _ => continue,
            };
            let (x0, y0) = (500000.0 + sc as f64 * 50.0, 5100000.0 - sr as f64 * 50.0);
            feats.push(format!(
                r#"{{"type":"Feature","properties":{{"kind":"{name}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#,
                x1 = x0 + 50.0,
                y1 = y0 - 50.0
            ));
        }
    }
    let gj = t.path().join("labels.geojson");
    std::fs::write(
        &gj,
        format!(
            r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::32633"}}}},"features":[{}]}}"#,
            feats.join(",")
        ),
    )
    .unwrap();
    let out = t.path().join("poly");
    let mut args = train_args(&stack, &gj, &out);
    args.extend(["--label-field".into(), "kind".into()]);
    carbonmap().args(args).assert().success();
    let side = json(&out.join("landcover.model.json.sidecar.json"));
    // Text labels get codes 1, 2 in sorted order: dry = 1, wet = 2.
    assert_eq!(side["classes"][0]["name"], "dry");
    assert_eq!(side["classes"][1]["name"], "wet");
    let rows = csv_rows(&out.join("training_samples.csv"));
    // 32 squares in the top 20 rows, 8 of class 1 and 8 of class 3: 16 x 25 pixels.
    assert_eq!(rows.len(), 16 * 25);
    for r in &rows {
        let k = truth(r["col"].parse().unwrap(), r["row"].parse().unwrap());
        assert_eq!(r["class_name"], if k == 1 { "wet" } else { "dry" });
    }

    // Points from a CSV in UTM coordinates: one per pixel centre of every class-2 and class-4 square's corner.
    let mut csv = String::from("easting,northing,lc\n");
    for row in (0..H).step_by(5) {
        for col in (0..W).step_by(5) {
            let k = truth(col, row);
            if k % 2 == 0 {
                let (x, y) = (500005.0 + col as f64 * 10.0, 5099995.0 - row as f64 * 10.0);
                csv.push_str(&format!("{x},{y},{}\n", k * 10));
            }
        }
    }
    let pts = t.path().join("points.csv");
    std::fs::write(&pts, csv).unwrap();
    let out = t.path().join("pts");
    let mut args = train_args(&stack, &pts, &out);
    args.extend(
        [
            "--label-field",
            "lc",
            "--x-field",
            "easting",
            "--y-field",
            "northing",
            "--labels-crs",
            "EPSG:32633",
        ]
        .map(String::from),
    );
    carbonmap().args(args).assert().success();
    let side = json(&out.join("landcover.model.json.sidecar.json"));
    // Integer labels are the codes.
    assert_eq!(side["classes"][0]["code"], 20);
    assert_eq!(side["classes"][1]["code"], 40);
    let rows = csv_rows(&out.join("training_samples.csv"));
    assert_eq!(rows.len(), 32);

    // The same points, plus one more point of the same class in the first point's pixel (3 m away) and a point
    // of the other class in the second point's pixel: one sample merged, one pixel left out, both reported.
    let mut text = std::fs::read_to_string(&pts).unwrap();
    let lines: Vec<String> = text.lines().skip(1).take(2).map(str::to_string).collect();
    let field = |l: &str, i: usize| l.split(',').nth(i).unwrap().to_string();
    let x0: f64 = field(&lines[0], 0).parse().unwrap();
    text.push_str(&format!(
        "{},{},{}\n",
        x0 + 3.0,
        field(&lines[0], 1),
        field(&lines[0], 2)
    ));
    let other = if field(&lines[1], 2) == "20" {
        "40"
    } else {
        "20"
    };
    text.push_str(&format!(
        "{},{},{other}\n",
        field(&lines[1], 0),
        field(&lines[1], 1)
    ));
    std::fs::write(&pts, text).unwrap();
    let out = t.path().join("dups");
    let mut args = train_args(&stack, &pts, &out);
    args.extend(
        [
            "--label-field",
            "lc",
            "--x-field",
            "easting",
            "--y-field",
            "northing",
            "--labels-crs",
            "EPSG:32633",
        ]
        .map(String::from),
    );
    let o = carbonmap().args(args).assert().success();
    let err = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        err.contains("1 label point(s) fall in a pixel that another point of the same class"),
        "{err}"
    );
    assert!(
        err.contains("1 pixel(s) hold label points of different classes"),
        "{err}"
    );
    assert_eq!(csv_rows(&out.join("training_samples.csv")).len(), 31);
}

fn stderr_of(args: &[String]) -> String {
    let o = carbonmap().args(args).assert().code(2);
    String::from_utf8_lossy(&o.get_output().stderr).into_owned()
}

#[test]
fn bad_inputs_are_named() {
    let t = tempfile::tempdir().unwrap();
    let stack = make_stack(t.path(), false);
    let labels = t.path().join("truth.tif");

    // Features from a band the stack lacks.
    let mut args = train_args(&stack, &labels, &t.path().join("x"));
    args.extend(["--bands".into(), "S1".into()]);
    let e = stderr_of(&args);
    assert!(
        e.contains("band swir1: absent") && e.contains("letter S1"),
        "{e}"
    );

    // Labels outside the stack.
    let far = t.path().join("far.csv");
    std::fs::write(&far, "x,y,c\n600000,5000000,1\n500100,5099900,2\n").unwrap();
    let mut args = train_args(&stack, &far, &t.path().join("x"));
    args.extend(["--label-field", "c", "--labels-crs", "EPSG:32633"].map(String::from));
    let e = stderr_of(&args);
    assert!(
        e.contains("far.csv") && e.contains("outside") && e.contains("line 2"),
        "{e}"
    );

    // A class with no training samples: its only label lies in a held-out block (fold 0 of 4, seed 1).
    let (col, row) = (0..8)
        .flat_map(|by| (0..8).map(move |bx| (bx * 5, by * 5)))
        .find(|&(c, r)| carbonmap::landcover::accuracy::block_fold(c, r, 5, 4, 1) == 0)
        .unwrap();
    let (hc, hr) = (0..8)
        .flat_map(|by| (0..8).map(move |bx| (bx * 5, by * 5)))
        .find(|&(c, r)| carbonmap::landcover::accuracy::block_fold(c, r, 5, 4, 1) != 0)
        .unwrap();
    let centre = |c: usize, r: usize| (500005.0 + c as f64 * 10.0, 5099995.0 - r as f64 * 10.0);
    let (x, y) = centre(col, row);
    let (x2, y2) = centre(hc, hr);
    let lonely = t.path().join("lonely.csv");
    std::fs::write(&lonely, format!("x,y,c\n{x},{y},7\n{x2},{y2},1\n")).unwrap();
    let mut args = train_args(&stack, &lonely, &t.path().join("x"));
    args.extend(["--label-field", "c", "--labels-crs", "EPSG:32633"].map(String::from));
    let e = stderr_of(&args);
    assert!(
        e.contains("class 7") && e.contains("no training samples"),
        "{e}"
    );

    // A model applied to a stack with other bands (swir1 where the model reads nir).
    let out = t.path().join("m");
    carbonmap()
        .args(train_args(&stack, &labels, &out))
        .assert()
        .success();
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_stack = make_stack(&other, true);
    let model = out.join("landcover.model.json");
    let predict = |stack: &Path| -> Vec<String> {
        vec![
            "landcover".into(),
            "predict".into(),
            "--stack".into(),
            stack.to_str().unwrap().into(),
            "--model".into(),
            model.to_str().unwrap().into(),
            "-o".into(),
            t.path().join("p").to_str().unwrap().into(),
        ]
    };
    let e = stderr_of(&predict(&other_stack));
    assert!(
        e.contains("does not give the features model") && e.contains("band nir: absent"),
        "{e}"
    );

    // A corrupt model file (one byte changed), then a missing sidecar.
    let mut bytes = std::fs::read(&model).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
    std::fs::write(&model, &bytes).unwrap();
    let e = stderr_of(&predict(&stack));
    assert!(e.contains("corrupt"), "{e}");
    std::fs::remove_file(out.join("landcover.model.json.sidecar.json")).unwrap();
    let e = stderr_of(&predict(&stack));
    assert!(e.contains("sidecar is missing"), "{e}");
    assert!(!t.path().join("p/landcover.tif").exists());
}
