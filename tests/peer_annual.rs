//! Annual NPP on the peer's SYNTHETIC Korean stack (../shared/peer/make_stack.py, 12 monthly Sentinel-2 scenes
//! with monsoon clouds): with every month completed per pixel (models/gapfill.toml), at most 0.5 % of the land
//! pixels lack an annual NPP. Needs Debian's python3-gdal and python3-numpy (scripts/test.sh installs them);
//! missing in CI is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{carbonmap, read_band};

/// The peer folder and a Python that can run it (None outside CI when either is missing).
fn peer() -> Option<(PathBuf, &'static str)> {
    let dir = std::env::var_os("CARBONMAP_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peer"));
    let py = "/usr/bin/python3";
    let ok = dir.join("make_stack.py").is_file()
        && Command::new(py)
            .args(["-c", "import numpy; from osgeo import gdal"])
            .status()
            .is_ok_and(|s| s.success());
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match (ok, in_ci) {
        (true, _) => Some((dir, py)),
        (false, true) => panic!(
            "{}/make_stack.py with {py} (numpy, GDAL) is needed in CI",
            dir.display()
        ),
        (false, false) => {
            eprintln!("skipping: the peer or Debian's python3-gdal/python3-numpy is missing");
            None
        }
    }
}

#[test]
fn peer_stack_512_annual_npp_for_all_but_half_a_percent_of_land_pixels() {
    let Some((dir, py)) = peer() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    let made = Command::new(py)
        .arg(dir.join("make_stack.py"))
        .args(["--size", "512", "--seed", "7", "--out"])
        .arg(&stack)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let view = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peer-view.sh"))
        .arg(&stack)
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(view.success());
    let ndvi = tmp.path().join("ndvi");
    carbonmap()
        .args([
            "indices", "--index", "NDVI", "--period", "month", "--stats", "median",
        ])
        .arg("--stack")
        .arg(tmp.path().join("stack.toml"))
        .arg("--out")
        .arg(&ndvi)
        .assert()
        .success();
    let out = tmp.path().join("npp");
    carbonmap()
        .args(["npp", "--year", "2023", "--ndvi"])
        .arg(&ndvi)
        .arg("--landcover")
        .arg(stack.join("landcover.tif"))
        .arg("--legend")
        .arg(tmp.path().join("legend.toml"))
        .arg("--drivers")
        .arg(tmp.path().join("drivers.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let (lc, _, _) = read_band(&stack.join("landcover.tif"), 1);
    let (npp, _, _) = read_band(&out.join("NPP_gC_m2_2023.tif"), 1);
    let (filled, _, _) = read_band(&out.join("filled_months_2023.tif"), 1);
    // Land: forest, cropland, grassland, urban (1-4); water is 5.
    let land: Vec<usize> = (0..lc.len())
        .filter(|&i| (1.0..=4.0).contains(&lc[i]))
        .collect();
    let missing = land.iter().filter(|&&i| npp[i].is_nan()).count();
    assert!(
        (missing as f64) <= 0.005 * land.len() as f64,
        "{missing} of {} land pixels without annual NPP",
        land.len()
    );
    // Monsoon clouds leave gaps: many pixels had months filled, and every fill is counted.
    let with_fills = land.iter().filter(|&&i| filled[i] > 0.0).count();
    assert!(with_fills as f64 > 0.5 * land.len() as f64, "{with_fills}");
}
