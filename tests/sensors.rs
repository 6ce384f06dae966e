//! Sensor profiles on small hand-made files named by each product's convention: recognition from the folder,
//! DN scaling and QA bits, with expected values computed by hand in the comments.

mod common;

use std::path::Path;

use common::{carbonmap, read_band};

/// Write a single-band GeoTIFF, 4 x 1 px, UTM 13N.
fn write_band<T: gdal::raster::GdalType + Copy>(path: &Path, values: &[T], nodata: Option<f64>) {
    common::write_raster(
        path,
        Some(32613),
        [336375.0, 30.0, 0.0, 4462425.0, 0.0, -30.0],
        (values.len(), 1),
        &[("", values.to_vec())],
        nodata,
    );
}

#[test]
fn landsat_c2_l2_scaling_and_qa_pixel_bits() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("LC09_L2SP_035032_20230615_20230617_02_T1");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = "LC09_L2SP_035032_20230615_20230617_02_T1";
    // Pixel 0 clear (QA 21824: bit 6 "clear"), 1 cloud (22280: bit 3), 2 snow (21824 | 1 << 5), 3 fill (1).
    write_band::<u16>(
        &dir.join(format!("{stem}_SR_B4.TIF")),
        &[9000, 9000, 9000, 0],
        Some(0.0),
    );
    write_band::<u16>(
        &dir.join(format!("{stem}_SR_B5.TIF")),
        &[20000, 20000, 20000, 0],
        Some(0.0),
    );
    write_band::<u16>(
        &dir.join(format!("{stem}_QA_PIXEL.TIF")),
        &[21824, 22280, 21824 | 32, 1],
        Some(1.0),
    );
    // A file that follows no convention is ignored.
    std::fs::write(dir.join("README.txt"), "x").unwrap();
    let out = t.path().join("out");
    carbonmap()
        .args([
            "indices",
            "--period",
            "date",
            "--index",
            "NDVI,NIRv",
            "--stack",
        ])
        .arg(t.path())
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    // red = 9000 x 0.0000275 - 0.2 = 0.0475; NIR = 20000 x 0.0000275 - 0.2 = 0.35
    // NDVI = (0.35 - 0.0475) / (0.35 + 0.0475) = 0.3025 / 0.3975 = 0.761006...; NIRv = 0.761006 x 0.35 = 0.266352
    let (ndvi, _, _) = read_band(&out.join("NDVI_2023-06-15.tif"), 1);
    let (nirv, _, _) = read_band(&out.join("NIRv_2023-06-15.tif"), 1);
    assert!((ndvi[0] - 0.3025 / 0.3975).abs() < 1e-6, "{}", ndvi[0]);
    assert!(
        (nirv[0] - 0.3025 / 0.3975 * 0.35).abs() < 1e-6,
        "{}",
        nirv[0]
    );
    assert!(
        ndvi[1].is_nan() && ndvi[2].is_nan() && ndvi[3].is_nan(),
        "{ndvi:?}"
    );
}

#[test]
fn hls_names_scaling_and_fmask_bits() {
    let t = tempfile::tempdir().unwrap();
    // 2021 day 164 = 2021-06-13.
    let stem = "HLS.S30.T30UVB.2021164T112121.v2.0";
    // Pixel 0 clear (Fmask 64: aerosol low), 1 cloud (bit 1: 66), 2 water (bit 5: 96, not masked),
    // 3 cloud shadow (bit 3: 72).
    write_band::<i16>(
        &t.path().join(format!("{stem}.B04.tif")),
        &[500, 500, 300, 500],
        Some(-9999.0),
    );
    write_band::<i16>(
        &t.path().join(format!("{stem}.B08.tif")),
        &[3500, 3500, 100, 3500],
        Some(-9999.0),
    );
    write_band::<i16>(
        &t.path().join(format!("{stem}.Fmask.tif")),
        &[64, 66, 96, 72],
        Some(255.0),
    );
    let o = carbonmap().args(["stack"]).arg(t.path()).output().unwrap();
    let manifest = String::from_utf8_lossy(&o.stdout);
    assert!(
        manifest.contains("sensor = \"hls-s30\"") && manifest.contains("date = \"2021-06-13\""),
        "{manifest}"
    );
    let out = t.path().join("out");
    carbonmap()
        .args(["indices", "--period", "date", "--index", "NDVI", "--stack"])
        .arg(t.path())
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    // NDVI pixel 0: (0.35 - 0.05) / (0.35 + 0.05) = 0.75; pixel 2 (water): (0.01 - 0.03) / 0.04 = -0.5
    let (ndvi, _, _) = read_band(&out.join("NDVI_2021-06-13.tif"), 1);
    assert!(
        (ndvi[0] - 0.75).abs() < 1e-6 && (ndvi[2] + 0.5).abs() < 1e-6,
        "{ndvi:?}"
    );
    assert!(ndvi[1].is_nan() && ndvi[3].is_nan(), "{ndvi:?}");
}
