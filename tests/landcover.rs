//! Land-cover legends: the real Slovenian LULC raster against its legend, missing codes, undeclared nodata,
//! and true areas on a geographic grid.

mod common;

use std::path::Path;

use carbonmap::landcover::Legend;
use common::{carbonmap, read_band};

fn write_codes(
    path: &Path,
    epsg: u32,
    gt: [f64; 6],
    w: usize,
    h: usize,
    codes: &[u8],
    nodata: Option<f64>,
) {
    common::write_raster(
        path,
        Some(epsg),
        gt,
        (w, h),
        &[("", codes.to_vec())],
        nodata,
    );
}

#[test]
fn builtin_legends_have_the_published_class_counts() {
    // Class counts from each product's documentation.
    let expected = [
        ("esa-worldcover", 11),
        ("modis-mcd12q1-igbp", 17),
        ("modis-mcd12q1-umd", 16),
        ("corine-level1", 5),
        ("korea-moe-level1", 7),
        ("korea-moe-level2", 22),
        ("slovenia-eolearn-lulc", 10),
    ];
    let all = Legend::builtin().unwrap();
    for (product, n) in expected {
        let l = all
            .iter()
            .find(|l| l.product == product)
            .unwrap_or_else(|| panic!("legend {product} missing"));
        assert_eq!(l.classes.len(), n, "{product}");
    }
}

#[test]
fn slovenia_lulc_area_table_by_hand() {
    let Some(root) = common::real_data() else {
        return;
    };
    let map = root.join("slovenia-ndvi-landcover/LULC.tif");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("areas.csv");
    carbonmap()
        .args([
            "landcover",
            "check",
            "--legend",
            "slovenia-eolearn-lulc",
            "--map",
        ])
        .arg(&map)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let (codes, _, _) = read_band(&map, 1);
    let gt = gdal::Dataset::open(&map).unwrap().geo_transform().unwrap();
    // True pixel area: the nominal area over k^2, k the UTM 33N scale factor at the map (34.6 km west of the
    // central meridian): k = k0 (1 + dx^2 / (2 k0^2 R^2)) to first order (Snyder 1987 eq. 8-11), with
    // R = 6,380 km the mean radius of curvature near 46 N; k = 0.9996147.
    let x_mid = gt[0] + gt[1] * 50.0;
    let (k0, r) = (0.9996, 6_380_000.0);
    let k = k0 * (1.0 + (x_mid - 500_000.0).powi(2) / (2.0 * k0 * k0 * r * r));
    let px_ha = (gt[1] * gt[5]).abs() / 1e4 / (k * k);
    let mut rd = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        rd.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "code",
            "class",
            "vegetation_type",
            "pixels",
            "area_ha",
            "area_percent"
        ]
    );
    let mut seen = 0;
    for r in rd.records() {
        let r = r.unwrap();
        let code: f64 = r[0].parse().unwrap();
        let n = codes.iter().filter(|&&c| c == code).count() as f64;
        assert_eq!(r[3].parse::<f64>().unwrap(), n, "code {code}");
        assert!(
            (r[4].parse::<f64>().unwrap() - n * px_ha).abs() < 1e-3,
            "code {code}"
        );
        seen += n as usize;
    }
    // Forest (2) is about 75% of the area (SOURCE.txt); the rest of the pixels are nodata 0.
    assert_eq!(
        seen + codes.iter().filter(|&&c| c == 0.0).count(),
        codes.len()
    );
}

#[test]
fn codes_missing_from_the_legend_are_listed_with_counts() {
    let Some(root) = common::real_data() else {
        return;
    };
    let map = root.join("slovenia-ndvi-landcover/LULC.tif");
    let o = carbonmap()
        .args(["landcover", "check", "--legend", "esa-worldcover", "--map"])
        .arg(&map)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let (codes, _, _) = read_band(&map, 1);
    let forest = codes.iter().filter(|&&c| c == 2.0).count();
    assert!(
        err.contains("LULC.tif")
            && err.contains("5 code(s)")
            && err.contains(&format!("code 2: {forest} pixels")),
        "{err}"
    );
}

#[test]
fn undeclared_nodata_gets_a_hint() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("wc.tif");
    write_codes(
        &f,
        32630,
        [500000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0],
        3,
        2,
        &[10, 30, 255, 255, 40, 10],
        None,
    );
    let o = carbonmap()
        .args(["landcover", "check", "--legend", "esa-worldcover", "--map"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("code 255: 2 pixels") && err.contains("undeclared nodata"),
        "{err}"
    );
    // Declared in the file, it is accepted: 10 m pixels = 0.01 ha each.
    write_codes(
        &f,
        32630,
        [500000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0],
        3,
        2,
        &[10, 30, 255, 255, 40, 10],
        Some(255.0),
    );
    let o = carbonmap()
        .args(["landcover", "check", "--legend", "esa-worldcover", "--map"])
        .arg(&f)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && table.contains("10,\"Tree cover\",mixed_forest,2,0.0200"),
        "{table}"
    );
}

#[test]
fn geographic_grids_get_true_areas() {
    // One 1 x 1 degree cell at the equator and one at 60-61 N, code 10, measured on the WGS84 ellipsoid.
    // (The authalic sphere would give 1236371.19 ha and 608841.48 ha: 0.45 % too much at the equator.)
    let t = tempfile::tempdir().unwrap();
    let (eq, north) = (t.path().join("eq.tif"), t.path().join("n.tif"));
    write_codes(
        &eq,
        4326,
        [10.0, 1.0, 0.0, 1.0, 0.0, -1.0],
        1,
        1,
        &[10],
        None,
    );
    write_codes(
        &north,
        4326,
        [10.0, 1.0, 0.0, 61.0, 0.0, -1.0],
        1,
        1,
        &[10],
        None,
    );
    let legend = Legend::resolve("esa-worldcover").unwrap();
    let a = carbonmap::landcover::check_map(&eq, 1, &legend).unwrap();
    let b = carbonmap::landcover::check_map(&north, 1, &legend).unwrap();
    let tree = |rows: &[carbonmap::landcover::ClassArea]| {
        rows.iter().find(|r| r.code == 10).unwrap().area_ha
    };
    // Expected: numerical integration of the ellipsoid's area element (common::wgs84_cell_ha).
    let (want_a, want_b) = (
        common::wgs84_cell_ha(1.0, 0.0, 1.0),
        common::wgs84_cell_ha(1.0, 60.0, 61.0),
    );
    assert!(
        (tree(&a) - want_a).abs() < 1e-6 * want_a,
        "{} vs {want_a}",
        tree(&a)
    );
    assert!(
        (tree(&b) - want_b).abs() < 1e-6 * want_b,
        "{} vs {want_b}",
        tree(&b)
    );
}
