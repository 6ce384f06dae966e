//! True areas whatever the grid's CRS: one land-cover map and one sink, defined on a geographic grid around
//! Exeter (50.5-50.9 N), warped by GDAL onto UTM 30N, Web Mercator, LAEA Europe and kept on EPSG:4326, give
//! class areas and sink totals within 0.1 % of each other and of the ellipsoidal area computed here
//! independently (numerical integration of the WGS84 area element over the class's latitude band). Web
//! Mercator's nominal pixel areas are 2.5 times the true ones at this latitude.

mod common;

use std::path::Path;
use std::process::Command;

use common::{carbonmap, csv_rows, wgs84_cell_ha};

/// The map: 0.002-degree pixels over 3.8-3.2 W, 50.5-50.9 N; tree cover (10) north of 50.75 N, grassland
/// (30) south of it. The sink: 2 t CO2 ha-1 yr-1 on trees, 1 on grass.
const WEST: f64 = -3.8;
const NORTH: f64 = 50.9;
const STEP: f64 = 0.002;
const W: usize = 300;
const H: usize = 200;
const SPLIT: f64 = 50.75;

fn make_geographic(dir: &Path) {
    let gt = [WEST, STEP, 0.0, NORTH, 0.0, -STEP];
    let class = |row: usize| {
        if NORTH - (row as f64 + 0.5) * STEP > SPLIT {
            10u8
        } else {
            30
        }
    };
    let codes: Vec<u8> = (0..H)
        .flat_map(|r| std::iter::repeat_n(class(r), W))
        .collect();
    let sink: Vec<f32> = codes
        .iter()
        .map(|&c| if c == 10 { 2.0 } else { 1.0 })
        .collect();
    common::write_raster(
        &dir.join("lc_4326.tif"),
        Some(4326),
        gt,
        (W, H),
        &[("class", codes)],
        Some(0.0),
    );
    common::write_raster(
        &dir.join("sink_4326.tif"),
        Some(4326),
        gt,
        (W, H),
        &[("sequestration", sink)],
        Some(f64::NAN),
    );
    // One lattice cell over everything, with no emissions (the balance then reports the sink's total).
    common::write_raster(
        &dir.join("lattice.tif"),
        Some(4326),
        [-4.0, 1.0, 0.0, 51.0, 0.0, -1.0],
        (1, 1),
        &[("none", vec![0f32])],
        None,
    );
}

/// The map's footprint in `epsg` (its edges densified), widened to whole multiples of `res`, so that the
/// warped raster holds the whole map (gdalwarp's own output extent may cut a partial pixel off each edge).
fn extent(epsg: u32, res: f64) -> [f64; 4] {
    use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
    let mut src = SpatialRef::from_epsg(4326).unwrap();
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut dst = SpatialRef::from_epsg(epsg).unwrap();
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&src, &dst).unwrap();
    let (east, south) = (WEST + W as f64 * STEP, NORTH - H as f64 * STEP);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..=100 {
        let f = i as f64 / 100.0;
        let (lon, lat) = (WEST + f * (east - WEST), south + f * (NORTH - south));
        xs.extend([lon, lon, WEST, east]);
        ys.extend([south, NORTH, lat, lat]);
    }
    let mut zs = vec![0.0; xs.len()];
    ct.transform_coords(&mut xs, &mut ys, &mut zs).unwrap();
    let min = |v: &[f64]| (v.iter().cloned().fold(f64::INFINITY, f64::min) / res).floor() * res;
    let max = |v: &[f64]| (v.iter().cloned().fold(f64::NEG_INFINITY, f64::max) / res).ceil() * res;
    [min(&xs), min(&ys), max(&xs), max(&ys)]
}

/// Warp a raster with GDAL (nearest neighbour) onto `epsg` at `res` CRS units.
fn warp(dir: &Path, name: &str, epsg: u32, res: f64) {
    let te = extent(epsg, res).map(|v| v.to_string());
    let ok = Command::new("gdalwarp")
        .args([
            "-q",
            "-overwrite",
            "-r",
            "near",
            "-t_srs",
            &format!("EPSG:{epsg}"),
            "-te",
        ])
        .args(te)
        .arg("-tr")
        .args([res.to_string(), res.to_string()])
        .arg(dir.join(format!("{name}_4326.tif")))
        .arg(dir.join(format!("{name}_{epsg}.tif")))
        .status()
        .expect("gdalwarp (gdal-bin) is installed by scripts/ensure-deps.sh");
    assert!(ok.success());
}

fn class_areas(dir: &Path, epsg: u32) -> (f64, f64) {
    let out = dir.join(format!("areas_{epsg}.csv"));
    carbonmap()
        .args(["landcover", "check", "--legend", "esa-worldcover", "--map"])
        .arg(dir.join(format!("lc_{epsg}.tif")))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = csv_rows(&out);
    let ha = |code: &str| common::cell(rows.iter().find(|r| r["code"] == code).unwrap(), "area_ha");
    (ha("10"), ha("30"))
}

fn sink_total(dir: &Path, epsg: u32) -> f64 {
    let o = Command::new(assert_cmd::cargo::cargo_bin("carbonmap"))
        .args([
            "balance",
            "--sink-unit",
            "t CO2 ha-1 yr-1",
            "--lattice-unit",
            "t CO2 cell-1 yr-1",
            "--sink",
        ])
        .arg(dir.join(format!("sink_{epsg}.tif")))
        .arg("--lattice")
        .arg(dir.join("lattice.tif"))
        .arg("--out")
        .arg(dir.join(format!("balance_{epsg}")))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = text.lines().find(|l| l.contains("sequestration")).unwrap();
    let after = line.split("sequestration ").nth(1).unwrap();
    after
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

#[test]
fn one_map_on_four_crss_gives_the_ellipsoidal_areas() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_geographic(d);
    // Resolutions about a tenth of the map's pixel so that nearest-neighbour warping moves the class border
    // by little: 15 m on UTM and LAEA, 25 m in Web Mercator units (16 m on the ground here).
    for (epsg, res) in [(32630, 15.0), (3035, 15.0), (3857, 25.0)] {
        warp(d, "lc", epsg, res);
        warp(d, "sink", epsg, res);
    }
    let east = WEST + W as f64 * STEP;
    let south = NORTH - H as f64 * STEP;
    let dlon = east - WEST;
    let (want10, want30) = (
        wgs84_cell_ha(dlon, SPLIT, NORTH),
        wgs84_cell_ha(dlon, south, SPLIT),
    );
    let want_sink = 2.0 * want10 + want30;
    let mut seen = Vec::new();
    for epsg in [4326, 32630, 3035, 3857] {
        let (a10, a30) = class_areas(d, epsg);
        let s = sink_total(d, epsg);
        seen.push([a10, a30, s]);
        eprintln!(
            "EPSG:{epsg}: trees {a10} ({want10}), grass {a30} ({want30}), sink {s} ({want_sink})"
        );
        for (what, got, want) in [
            ("trees", a10, want10),
            ("grass", a30, want30),
            ("sink t CO2 yr-1", s, want_sink),
        ] {
            let rel = (got - want).abs() / want;
            assert!(
                rel < 1e-3,
                "EPSG:{epsg} {what}: {got} vs ellipsoidal {want} ({:.3} %)",
                rel * 100.0
            );
        }
    }
    // And within 0.1 % of each other.
    for k in 0..3 {
        let v: Vec<f64> = seen.iter().map(|x| x[k]).collect();
        let (lo, hi) = (
            v.iter().cloned().fold(f64::INFINITY, f64::min),
            v.iter().cloned().fold(0.0, f64::max),
        );
        assert!((hi - lo) / lo < 1e-3, "quantity {k}: {v:?}");
    }
    // On the geographic grid itself the areas are exact (no warping).
    let (a10, _) = class_areas(d, 4326);
    assert!((a10 - want10).abs() / want10 < 1e-6, "{a10} vs {want10}");
}
