//! Bad input: a clear message naming the file (and band) and the problem, a non-zero exit, no output.

mod common;

use std::path::{Path, PathBuf};

use common::{carbonmap, list_dir};

fn samples(dir: &Path) -> PathBuf {
    carbonmap::synth::generate_samples(dir, 32).unwrap()
}

/// Replace text in a manifest.
fn edit(manifest: &Path, replacements: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(manifest).unwrap();
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    std::fs::write(manifest, text).unwrap();
}

/// Run `indices` and return (exit code, stderr); asserts that the output folder has no raster.
fn fails(stack: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let o = carbonmap()
        .args(["indices", "--stack"])
        .arg(stack)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    let files = list_dir(out);
    assert!(
        files
            .iter()
            .all(|f| !f.ends_with(".tif") && !f.contains("partial")),
        "outputs left behind: {files:?}"
    );
    (o.status.code().unwrap(), stderr)
}

#[test]
fn missing_file_is_named() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    edit(&m, &[("s2_synthetic_2024-08-16.tif", "nowhere.tif")]);
    let (code, err) = fails(&m, &t.path().join("out"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("nowhere.tif") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    edit(
        &m,
        &[
            ("s2_synthetic_2024-08-16.tif", "gone1.tif"),
            ("s2_synthetic_2024-04-15.tif", "gone2.tif"),
        ],
    );
    let (_, err) = fails(&m, &t.path().join("out"), &[]);
    assert!(
        err.contains("gone1.tif") && err.contains("gone2.tif") && err.contains("2 problem(s)"),
        "{err}"
    );
    // In the manifest's order (the scenes are opened in parallel): April's scene before August's.
    assert!(err.find("gone2.tif") < err.find("gone1.tif"), "{err}");
}

#[test]
fn truncated_file_is_named() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    let f = t.path().join("s2_synthetic_2024-07-20.tif");
    let len = std::fs::metadata(&f).unwrap().len();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..(len as usize * 2 / 5)]).unwrap();
    let (code, err) = fails(&m, &t.path().join("out"), &[]);
    assert!(code == 2 || code == 3);
    assert!(err.contains("s2_synthetic_2024-07-20.tif"), "{err}");
}

#[test]
fn band_needed_by_an_index_is_absent() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    // NDMI needs SWIR 1 (B11); the samples carry B02 B03 B04 B08 SCL only.
    let (code, err) = fails(&m, &t.path().join("out"), &["--index", "NDVI,NDMI"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("B11") && err.contains("NDMI") && err.contains("s2_synthetic_"),
        "{err}"
    );
}

#[test]
fn raster_without_crs_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("nocrs.tif");
    common::write_raster::<u16>(
        &f,
        None,
        [0.0; 6],
        (8, 8),
        &[("red", vec![0; 64]), ("nir", vec![0; 64])],
        None,
    );
    let m = t.path().join("s.toml");
    std::fs::write(
        &m,
        "sensor = \"generic\"\n[[scene]]\ndate = \"2024-01-01\"\nfile = \"nocrs.tif\"\n",
    )
    .unwrap();
    let (code, err) = fails(&m, &t.path().join("out"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("nocrs.tif") && err.contains("no coordinate reference system"),
        "{err}"
    );
}

#[test]
fn stack_that_does_not_overlap_the_grid() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    let (code, err) = fails(
        &m,
        &t.path().join("out"),
        &[
            "--crs",
            "EPSG:32630",
            "--res",
            "20",
            "--bounds",
            "100000,100000,101000,101000",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("does not overlap"), "{err}");
}

#[test]
fn unknown_index_and_unknown_sensor() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    let (code, err) = fails(&m, &t.path().join("out"), &["--index", "NDXI"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown index 'NDXI'") && err.contains("NDVI"),
        "{err}"
    );
    edit(&m, &[("sentinel2-l2a", "sentinel9")]);
    let (code, err) = fails(&m, &t.path().join("out"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown sensor 'sentinel9'") && err.contains("stack.toml"),
        "{err}"
    );
}

#[test]
fn manifest_error_names_the_line() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("s.toml");
    std::fs::write(
        &m,
        "sensor = \"generic\"\n\n[[scene]]\ndate = \"2024-13-01\"\nfile = \"x.tif\"\n",
    )
    .unwrap();
    let (code, err) = fails(&m, &t.path().join("out"), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("s.toml") && err.contains("line 4"), "{err}");
}

#[test]
fn all_cloud_period_is_a_warning_and_a_nan_composite() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    // Overwrite the July date with a scene that is cloud everywhere (SCL 9).
    let g =
        carbonmap::io::Grid::from_raster(&t.path().join("s2_synthetic_2024-07-20.tif")).unwrap();
    let d = carbonmap::synth::SynthDate {
        date: "2024-07-20".into(),
        vigour: 1.0,
        cloud: Some((0.5, 0.5, 5.0)),
        other_crs: None,
    };
    let b = g.bounds();
    carbonmap::synth::write_s2_date(
        &t.path().join("s2_synthetic_2024-07-20.tif"),
        &g,
        b,
        &g.crs_wkt,
        &d,
    )
    .unwrap();
    let out = t.path().join("out");
    let o = carbonmap()
        .args(["indices", "--stack"])
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("2024-07") && err.contains("no clear observation"),
        "{err}"
    );
    let (median, _, _) = common::read_band(&out.join("NDVI_2024-07.tif"), 1);
    let (count, _, _) = common::read_band(&out.join("clear_observations_2024-07.tif"), 1);
    assert!(median.iter().all(|v| v.is_nan()) && count.iter().all(|&c| c == 0.0));
}

#[test]
fn a_failed_run_leaves_earlier_outputs_untouched() {
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    let out = t.path().join("out");
    carbonmap()
        .args(["indices", "--stack"])
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let before: Vec<(String, Vec<u8>)> = list_dir(&out)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
        .collect();
    // Same outputs again, but one input is now truncated: the run fails while writing.
    let f = t.path().join("s2_synthetic_2024-08-16.tif");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let o = carbonmap()
        .args(["indices", "--stack"])
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let after: Vec<(String, Vec<u8>)> = list_dir(&out)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
        .collect();
    assert_eq!(
        before, after,
        "earlier outputs changed or partial files left"
    );
}

/// A pixel-interleaved scene keeps one list of tiles for all its bands (carbonmap checks the first band's):
/// cut inside its last tile, it is refused before any computing, named, as truncated.
#[test]
fn truncated_pixel_interleaved_file_is_named() {
    use gdal::{Dataset, DriverManager, Metadata};
    let t = tempfile::tempdir().unwrap();
    let m = samples(t.path());
    let f = t.path().join("s2_synthetic_2024-07-20.tif");
    let p = t.path().join("pixel.tif");
    let opts: gdal::raster::RasterCreationOptions = [
        "TILED=YES",
        "BLOCKXSIZE=16",
        "BLOCKYSIZE=16",
        "INTERLEAVE=PIXEL",
        "COMPRESS=DEFLATE",
    ]
    .into_iter()
    .collect();
    let gtiff = DriverManager::get_driver_by_name("GTiff").unwrap();
    Dataset::open(&f)
        .unwrap()
        .create_copy(&gtiff, &p, &opts)
        .unwrap()
        .close()
        .unwrap();
    // Where the tiles start and end (the directory before them, so cutting a tile leaves it readable).
    let (first, end) = {
        let d = Dataset::open(&p).unwrap();
        let b = d.rasterband(d.raster_count()).unwrap();
        let (w, h) = d.raster_size();
        let item = |k: &str, x: usize, y: usize| -> u64 {
            b.metadata_item(&format!("BLOCK_{k}_{x}_{y}"), "TIFF")
                .unwrap()
                .parse()
                .unwrap()
        };
        let tiles: Vec<(u64, u64)> = (0..h.div_ceil(16))
            .flat_map(|y| (0..w.div_ceil(16)).map(move |x| (x, y)))
            .map(|(x, y)| (item("OFFSET", x, y), item("SIZE", x, y)))
            .collect();
        let first = tiles.iter().map(|t| t.0).min().unwrap();
        let end = tiles.iter().map(|t| t.0 + t.1).max().unwrap();
        (first, end)
    };
    let bytes = std::fs::read(&p).unwrap();
    assert!(first > 8 && end as usize <= bytes.len(), "{first} {end}");
    std::fs::write(&f, &bytes[..end as usize - 8]).unwrap();
    let (code, err) = fails(&m, &t.path().join("out"), &[]);
    assert_eq!(code, 2, "{err}");
    // Found by the check on opening (not by a failed read while computing).
    assert!(
        err.contains("s2_synthetic_2024-07-20.tif")
            && err.contains("truncated or damaged GeoTIFF: band 1 block"),
        "{err}"
    );
}
