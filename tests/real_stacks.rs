//! Real imagery from $CARBONMAP_REAL_DATA: the Exeter Sentinel-2 L2A stack (three CRSs, SCL clouds, the
//! baseline-04.00 offset), the Exeter HLS S30 stack (Fmask bits) and the Colorado Landsat stack (105 dates,
//! monthly composites). Expected values are computed here from the raw files, independently of carbonmap.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{carbonmap, correlation, read_band};

fn s2_manifest(root: &Path, dir: &Path) -> PathBuf {
    common::exeter_s2_manifest(root, dir)
}

/// SCL classes that the Sentinel-2 profile masks by default (saturated, cloud shadow, cloud medium/high,
/// cirrus, snow) and SCL 0 (no data).
fn scl_masked(v: f64) -> bool {
    [0.0, 1.0, 3.0, 8.0, 9.0, 10.0, 11.0].contains(&v)
}

#[test]
fn exeter_s2_three_crs_onto_one_grid_with_scl_mask_and_offset() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let manifest = s2_manifest(&root, tmp.path());
    let reference = root.join("exeter-s2-hls/s2_l2a/exe_2024-08-01_12-21-19.tif");
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "indices",
            "--period",
            "date",
            "--index",
            "NDVI,NIRv",
            "--stack",
        ])
        .arg(&manifest)
        .arg("--grid-from")
        .arg(&reference)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();

    // Every date, whatever its CRS, is on the reference grid.
    let ref_ds = gdal::Dataset::open(&reference).unwrap();
    let ref_gt = ref_ds.geo_transform().unwrap();
    for date in [
        "2024-06-02",
        "2024-06-17",
        "2024-08-01",
        "2024-08-16",
        "2024-08-26",
    ] {
        let ds = gdal::Dataset::open(out.join(format!("NDVI_{date}.tif"))).unwrap();
        assert_eq!(ds.raster_size(), (354, 335), "{date}");
        assert_eq!(ds.geo_transform().unwrap(), ref_gt, "{date}");
    }

    // On a native-grid date, cloud pixels (SCL 3, 8, 9, 10) are NaN and clear ones are the hand formula with
    // the 2024 offset: reflectance = (DN - 1000) / 10000.
    let raw = root.join("exeter-s2-hls/s2_l2a/exe_2024-08-26_12-21-11.tif");
    let (red, _, _) = read_band(&raw, 3);
    let (nir, _, _) = read_band(&raw, 4);
    let (scl, _, _) = read_band(&raw, 5);
    let (ndvi, _, _) = read_band(&out.join("NDVI_2024-08-26.tif"), 1);
    let (mut n_cloud, mut n_clear) = (0, 0);
    for i in 0..ndvi.len() {
        if [3.0, 8.0, 9.0, 10.0].contains(&scl[i]) {
            assert!(
                ndvi[i].is_nan(),
                "pixel {i}: SCL {} must be masked, got {}",
                scl[i],
                ndvi[i]
            );
            n_cloud += 1;
        } else if !scl_masked(scl[i]) {
            let (r, n) = ((red[i] - 1000.0) / 10000.0, (nir[i] - 1000.0) / 10000.0);
            let want = (n - r) / (n + r);
            assert!(
                (ndvi[i] - want).abs() < 1e-6,
                "pixel {i}: NDVI {} vs hand {want}",
                ndvi[i]
            );
            n_clear += 1;
        }
    }
    assert!(
        n_cloud > 10_000 && n_clear > 10_000,
        "cloud {n_cloud}, clear {n_clear}"
    );

    // The offset, at known places: the darkest NIR pixels of 2024-08-01 are the river Exe (around LAEA
    // x = -1000, running north-south through the city). With reflectance = (DN - 1000) / 10000 their NIR is dark but not negative;
    // NIRv = NDVI x NIR recovers that NIR from carbonmap's output (without the offset it would be > 0.1).
    let raw = root.join("exeter-s2-hls/s2_l2a/exe_2024-08-01_12-21-19.tif");
    let (red, w, _) = read_band(&raw, 3);
    let (nir, _, _) = read_band(&raw, 4);
    let (ndvi, _, _) = read_band(&out.join("NDVI_2024-08-01.tif"), 1);
    let (nirv, _, _) = read_band(&out.join("NIRv_2024-08-01.tif"), 1);
    let water: Vec<usize> = (0..nir.len())
        .filter(|&i| nir[i] > 0.0 && nir[i] < 1500.0)
        .collect();
    assert!(water.len() >= 5, "dark pixels: {}", water.len());
    for &i in &water {
        let (x, y) = (
            ref_gt[0] + (i % w) as f64 * 20.0,
            ref_gt[3] - (i / w) as f64 * 20.0,
        );
        assert!(
            (-2500.0..0.0).contains(&x),
            "dark pixel at ({x}, {y}) is not on the river"
        );
        let (r, n) = ((red[i] - 1000.0) / 1e4, (nir[i] - 1000.0) / 1e4);
        let want = (n - r) / (n + r) * n;
        assert!(
            (nirv[i] - want).abs() < 1e-6,
            "NIRv {} vs hand {want}",
            nirv[i]
        );
        let nir_refl = nirv[i] / ndvi[i];
        assert!(
            (0.0..0.05).contains(&nir_refl),
            "water NIR reflectance {nir_refl} at ({x}, {y})"
        );
    }

    // The British National Grid date (2024-06-02, clear) lands on the same ground as 2024-08-01 (clear):
    // high correlation of NDVI between them, and a masked fraction matching the source's SCL mask.
    let (a, _, _) = read_band(&out.join("NDVI_2024-06-02.tif"), 1);
    let (b, _, _) = read_band(&out.join("NDVI_2024-08-01.tif"), 1);
    let (r, n) = correlation(&a, &b);
    assert!(
        n > 90_000 && r > 0.8,
        "NDVI 2024-06-02 (EPSG:27700, warped) vs 2024-08-01: r = {r} over {n} pixels"
    );
    let (src_scl, _, _) = read_band(
        &root.join("exeter-s2-hls/s2_l2a/exe_2024-06-02_12-21-19_EPSG27700.tif"),
        5,
    );
    // (SCL 0 is excluded: it fills the corners of the rotated BNG rectangle, outside the analysis grid.)
    let src_valid: Vec<f64> = src_scl.into_iter().filter(|&v| v != 0.0).collect();
    let src_masked =
        src_valid.iter().filter(|&&v| scl_masked(v)).count() as f64 / src_valid.len() as f64;
    let out_masked = a.iter().filter(|v| v.is_nan()).count() as f64 / a.len() as f64;
    assert!(
        (src_masked - out_masked).abs() < 0.01,
        "masked fraction source {src_masked} vs warped {out_masked}"
    );

    // 2024-06-17 (UTM 30N) is mostly cloud in its SCL: mostly NaN once warped.
    let (c, _, _) = read_band(&out.join("NDVI_2024-06-17.tif"), 1);
    let nan_frac = c.iter().filter(|v| v.is_nan()).count() as f64 / c.len() as f64;
    assert!(nan_frac > 0.5, "2024-06-17 NaN fraction {nan_frac}");
}

#[test]
fn exeter_hls_fmask_bits_and_monthly_counts() {
    let Some(root) = common::real_data() else {
        return;
    };
    let dir = root.join("exeter-s2-hls/hls_s30");
    let files: Vec<(String, PathBuf)> = [
        "2021-06-08_12-27-08",
        "2021-06-13_12-27-08",
        "2021-06-23_12-27-08",
        "2021-07-18_12-27-09",
    ]
    .iter()
    .map(|s| (s[..10].to_string(), dir.join(format!("hls_exe_{s}.tif"))))
    .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut m = String::from("sensor = \"hls-s30\"\n");
    for (d, f) in &files {
        m.push_str(&format!(
            "[[scene]]\ndate = \"{d}\"\nfile = {:?}\n",
            f.to_string_lossy()
        ));
    }
    std::fs::write(tmp.path().join("hls.toml"), m).unwrap();
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "indices",
            "--period",
            "month",
            "--index",
            "NDVI",
            "--stats",
            "median,max",
            "--stack",
        ])
        .arg(tmp.path().join("hls.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    // Clear = none of Fmask bits 1 (cloud), 2 (adjacent), 3 (shadow), 4 (snow) set, and not fill.
    let clear = |f: f64| f >= 0.0 && f != 255.0 && (f as i64) & 0b11110 == 0;
    let june: Vec<&(String, PathBuf)> = files
        .iter()
        .filter(|(d, _)| d.starts_with("2021-06"))
        .collect();
    let masks: Vec<Vec<f64>> = june.iter().map(|(_, f)| read_band(f, 5).0).collect();
    let reds: Vec<Vec<f64>> = june.iter().map(|(_, f)| read_band(f, 3).0).collect();
    let nirs: Vec<Vec<f64>> = june.iter().map(|(_, f)| read_band(f, 4).0).collect();
    let (count, _, _) = read_band(&out.join("clear_observations_2021-06.tif"), 1);
    let (max, _, _) = read_band(&out.join("NDVI_2021-06.tif"), 2);
    let mut checked = 0;
    for i in 0..count.len() {
        let obs: Vec<f64> = (0..june.len())
            .filter(|&k| clear(masks[k][i]) && reds[k][i] != -9999.0 && nirs[k][i] != -9999.0)
            .map(|k| (nirs[k][i] - reds[k][i]) / (nirs[k][i] + reds[k][i]))
            .collect();
        assert_eq!(count[i] as usize, obs.len(), "pixel {i}");
        if let Some(m) = obs.iter().copied().reduce(f64::max) {
            assert!(
                (max[i] - m).abs() < 1e-6,
                "pixel {i}: max {} vs hand {m}",
                max[i]
            );
            checked += 1;
        } else {
            assert!(max[i].is_nan());
        }
    }
    assert!(checked > 40_000, "{checked}");
}

/// Colorado: LEDAPS reflectance with categorical Fmask, 105 dates 2008-2013, one file per band.
/// `carbonmap indices`: monthly NDVI medians of a stack into `out`.
fn monthly_ndvi(stack: &Path, out: &Path) {
    carbonmap()
        .args([
            "indices", "--period", "month", "--index", "NDVI", "--stats", "median", "--stack",
        ])
        .arg(stack)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

#[test]
fn colorado_landsat_monthly_ndvi_with_clear_counts() {
    let Some(root) = common::real_data() else {
        return;
    };
    let lsts = root.join("colorado-landsat/lsts");
    let mut scenes: Vec<(chrono::NaiveDate, PathBuf, String)> = std::fs::read_dir(&lsts)
        .unwrap()
        .flatten()
        .map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            // Landsat scene id LXSPPPRRRYYYYDDD...: year and day of year at 9..16.
            let date = chrono::NaiveDate::from_yo_opt(
                id[9..13].parse().unwrap(),
                id[13..16].parse().unwrap(),
            )
            .unwrap();
            (date, e.path(), id)
        })
        .collect();
    scenes.sort();
    assert_eq!(scenes.len(), 105);
    let tmp = tempfile::tempdir().unwrap();
    let mut m = String::from("sensor = \"landsat-ledaps-fmask\"\n");
    for (d, p, id) in &scenes {
        m.push_str(&format!(
            "[[scene]]\ndate = \"{d}\"\nid = \"{id}\"\n[scene.files]\n"
        ));
        for b in ["b3", "b4", "b5", "fmask"] {
            m.push_str(&format!(
                "{b} = {:?}\n",
                p.join(format!("{id}_{b}.tif")).to_string_lossy()
            ));
        }
    }
    std::fs::write(tmp.path().join("co.toml"), m).unwrap();
    let out = tmp.path().join("out");
    monthly_ndvi(&tmp.path().join("co.toml"), &out);
    let mut months: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    for (d, p, _) in &scenes {
        months
            .entry(d.format("%Y-%m").to_string())
            .or_default()
            .push(p);
    }
    let outputs: Vec<String> = common::list_dir(&out)
        .into_iter()
        .filter(|f| f.starts_with("NDVI_") && f.ends_with(".tif"))
        .collect();
    assert_eq!(outputs.len(), months.len());
    let band = |p: &Path, b: &str| {
        read_band(
            &p.join(format!(
                "{}_{b}.tif",
                p.file_name().unwrap().to_string_lossy()
            )),
            1,
        )
        .0
    };
    let mut total_clear = 0usize;
    for (month, dirs) in &months {
        let f = out.join(format!("NDVI_{month}.tif"));
        let (median, w, h) = read_band(&f, 1);
        let (count, _, _) = read_band(&out.join(format!("clear_observations_{month}.tif")), 1);
        assert_eq!((w, h), (61, 61));
        let data: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = dirs
            .iter()
            .map(|p| (band(p, "b3"), band(p, "b4"), band(p, "fmask")))
            .collect();
        for i in 0..w * h {
            // Clear: Fmask 0 (land) or 1 (water); red and NIR not -9999.
            let v: Vec<f64> = data
                .iter()
                .filter(|(r, n, q)| {
                    (q[i] == 0.0 || q[i] == 1.0) && r[i] != -9999.0 && n[i] != -9999.0
                })
                .map(|(r, n, _)| (n[i] - r[i]) / (n[i] + r[i]))
                .collect();
            assert_eq!(count[i] as usize, v.len(), "{month} pixel {i}");
            total_clear += v.len();
            let want = common::median(v);
            assert!(
                common::close_or_both_nan(median[i], want, 1e-6),
                "{month} pixel {i}: {} vs {want}",
                median[i]
            );
        }
    }
    assert!(total_clear > 100_000, "{total_clear}");
    let summary = std::fs::read_to_string(out.join("indices_summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), months.len() + 1);

    // `carbonmap stack --from --to --out` (a season stage) keeps exactly the scenes dated in the range, with
    // absolute paths: the first month's scenes by their ids' dates.
    let (first_month, first_scenes) = months.iter().next().unwrap();
    let start =
        chrono::NaiveDate::parse_from_str(&format!("{first_month}-01"), "%Y-%m-%d").unwrap();
    let end = start + chrono::Months::new(1) - chrono::Days::new(1);
    let manifest = tmp.path().join("season/stack.toml");
    carbonmap()
        .arg("stack")
        .arg(&lsts)
        .args([
            "--from",
            &start.to_string(),
            "--to",
            &end.to_string(),
            "--out",
        ])
        .arg(&manifest)
        .assert()
        .success();
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(text.matches("[[scene]]").count(), first_scenes.len());
    assert!(text.contains(&lsts.canonicalize().unwrap().to_string_lossy().into_owned()));
    let out_season = tmp.path().join("out-season");
    monthly_ndvi(&manifest, &out_season);
    let f = format!("NDVI_{first_month}.tif");
    let (x, y) = (
        read_band(&out_season.join(&f), 1).0,
        read_band(&out.join(&f), 1).0,
    );
    assert_eq!(x.len(), y.len());
    assert!(x
        .iter()
        .zip(&y)
        .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
    let tifs = common::list_dir(&out_season)
        .into_iter()
        .filter(|f| f.ends_with(".tif"))
        .count();
    assert_eq!(
        tifs, 2,
        "one NDVI composite and its clear-observation count"
    );

    // The same stack recognised from the folder (LEDAPS scene-id file names) gives the same pixels.
    let out2 = tmp.path().join("out2");
    monthly_ndvi(&lsts, &out2);
    for f in &outputs {
        // The composite and its clear-observation count.
        for g in [f.clone(), f.replace("NDVI_", "clear_observations_")] {
            let (x, _, _) = read_band(&out.join(&g), 1);
            let (y, _, _) = read_band(&out2.join(&g), 1);
            assert!(
                x.iter()
                    .zip(&y)
                    .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())),
                "{g}"
            );
        }
    }
}

/// Germany Sentinel-2 L1C (2017-02-16): 13 band files at 10, 20 and 60 m recognised from their names; the
/// analysis grid is the finest (10 m); the 20 m SWIR band is warped bilinearly onto it.
#[test]
fn germany_l1c_multi_resolution_bands() {
    let Some(root) = common::real_data() else {
        return;
    };
    let dir = root.join("germany-s2-l1c");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "indices",
            "--period",
            "date",
            "--index",
            "NDVI,NDMI",
            "--stack",
        ])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let f = out.join("NDMI_2017-02-16.tif");
    let ds = gdal::Dataset::open(&f).unwrap();
    assert_eq!(ds.raster_size(), (1536, 768));
    assert_eq!(
        ds.geo_transform().unwrap(),
        [330000.0, 10.0, 0.0, 5822040.0, 0.0, -10.0]
    );
    // NDVI from the 10 m bands, no resampling: DN / 10000 (baseline 02.04, no offset).
    let (red, w, _) = read_band(&dir.join("T33UUU_20170216T102101_B04.tif"), 1);
    let (nir, _, _) = read_band(&dir.join("T33UUU_20170216T102101_B08.tif"), 1);
    let (ndvi, _, _) = read_band(&out.join("NDVI_2017-02-16.tif"), 1);
    for i in (0..ndvi.len()).step_by(97) {
        let want = (nir[i] - red[i]) / (nir[i] + red[i]);
        assert!(
            (ndvi[i] - want).abs() < 1e-6,
            "pixel {i}: {} vs {want}",
            ndvi[i]
        );
    }
    // NDMI: B11 (20 m) by bilinear interpolation at the 10 m pixel centres. In 20 m pixel coordinates the
    // centre of 10 m column c is x = (c + 0.5) / 2 - 0.5, so even columns sit 0.75 and odd ones 0.25 of the
    // way from 20 m pixel floor(x) to the next (the same for rows).
    let (swir, w20, _) = read_band(&dir.join("T33UUU_20170216T102101_B11.tif"), 1);
    let (ndmi, _, _) = read_band(&f, 1);
    let mut checked = 0;
    for r in (2..760).step_by(13) {
        for c in (2..1530).step_by(17) {
            let (x, y) = ((c as f64 + 0.5) / 2.0 - 0.5, (r as f64 + 0.5) / 2.0 - 0.5);
            let (i0, j0) = (x.floor() as usize, y.floor() as usize);
            let (fx, fy) = (x - i0 as f64, y - j0 as f64);
            let s = |i: usize, j: usize| swir[j * w20 + i];
            let b11 = (1.0 - fy) * ((1.0 - fx) * s(i0, j0) + fx * s(i0 + 1, j0))
                + fy * ((1.0 - fx) * s(i0, j0 + 1) + fx * s(i0 + 1, j0 + 1));
            let n = nir[r * w + c];
            let want = (n - b11) / (n + b11);
            assert!(
                (ndmi[r * w + c] - want).abs() < 1e-4,
                "({c}, {r}): {} vs {want}",
                ndmi[r * w + c]
            );
            checked += 1;
        }
    }
    assert!(checked > 4000);
}

/// Slovenia: a precomputed NDVI time series (68 bands, one per date) with a validity mask (IS_VALID, one band
/// per date), read through a user's sensor profile and a one-line index table; monthly medians and counts
/// equal the hand computation.
#[test]
fn slovenia_precomputed_ndvi_time_series_monthly() {
    let Some(root) = common::real_data() else {
        return;
    };
    let dir = root.join("slovenia-ndvi-landcover");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("ndvi-ts.toml"),
        r#"name = "ndvi-timeseries"
description = "precomputed NDVI, one band per date, with a validity band"
citation = "test profile"
[bands]
V = "NDVI"
[reflectance]
scale = 1.0
offset = 0.0
citation = "values are NDVI already"
[qa]
band = "valid"
kind = "classes"
fill = 0
nodata = [0]
default_mask = []
citation = "IS_VALID: 1 = data and not cloud"
[qa.categories]
valid = [1]
"#,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("identity.toml"),
        "[[index]]\nname = \"NDVI\"\nlong_name = \"NDVI (precomputed)\"\nformula = \"V\"\nbands = [\"V\"]\nunit = \"1\"\ncitation = \"Rouse et al. (1974), computed upstream\"\n",
    )
    .unwrap();
    // Band k of NDVI.tif and IS_VALID.tif is the k-th timestamp. 2015-12-08 has two acquisitions over the same
    // footprint, which a stack would mosaic (first wins); only the first is listed, to keep the hand check simple.
    let ts = std::fs::read_to_string(dir.join("timestamps.csv")).unwrap();
    let mut m = String::from("sensor = \"ndvi-ts.toml\"\n");
    let mut kept: Vec<(String, usize)> = Vec::new();
    for line in ts.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (band, date) = (f[0].parse::<usize>().unwrap(), f[1][..10].to_string());
        if kept.iter().any(|(d, _)| *d == date) {
            continue;
        }
        m.push_str(&format!(
            "[[scene]]\ndate = \"{date}\"\n[scene.files]\nNDVI = {{ path = {:?}, band = {band} }}\nvalid = {{ path = {:?}, band = {band} }}\n",
            dir.join("NDVI.tif").to_string_lossy(),
            dir.join("IS_VALID.tif").to_string_lossy()
        ));
        kept.push((date, band));
    }
    assert_eq!(kept.len(), 67);
    std::fs::write(tmp.path().join("si.toml"), m).unwrap();
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "indices",
            "--period",
            "month",
            "--stats",
            "median",
            "--index-table",
        ])
        .arg(tmp.path().join("identity.toml"))
        .arg("--stack")
        .arg(tmp.path().join("si.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let mut months: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (d, b) in &kept {
        months.entry(d[..7].to_string()).or_default().push(*b);
    }
    let mut total = 0;
    for (month, bands) in &months {
        let f = out.join(format!("NDVI_{month}.tif"));
        let (median, w, h) = read_band(&f, 1);
        let (count, _, _) = read_band(&out.join(format!("clear_observations_{month}.tif")), 1);
        let data: Vec<(Vec<f64>, Vec<f64>)> = bands
            .iter()
            .map(|&b| {
                (
                    read_band(&dir.join("NDVI.tif"), b).0,
                    read_band(&dir.join("IS_VALID.tif"), b).0,
                )
            })
            .collect();
        for i in 0..w * h {
            let v: Vec<f64> = data
                .iter()
                .filter(|(_, ok)| ok[i] == 1.0)
                .map(|(n, _)| n[i])
                .filter(|x| x.is_finite())
                .collect();
            assert_eq!(count[i] as usize, v.len(), "{month} pixel {i}");
            total += v.len();
            let want = common::median(v);
            assert!(
                common::close_or_both_nan(median[i], want, 1e-6),
                "{month} pixel {i}: {} vs {want}",
                median[i]
            );
        }
    }
    assert!(total > 200_000, "{total}");
}
