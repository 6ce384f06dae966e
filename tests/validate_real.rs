//! Validation on real data: carbonmap's CASA NPP over North America (CRU normals, MODIS NDVI, one run per
//! forest class) against ForC plot NPP, calibration with grouped cross-validation on the same plots, and the
//! FR-Pue daily GPP series through `validate --model-table`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{carbonmap, cell as num, csv_rows as rows, write_raster};

/// The NA grid of climate-north-america (GDALINFO.txt): 977 x 443, origin (-180, 80), 0.16666667 deg.
const NA_GT: [f64; 6] = [-180.0, 0.16666667, 0.0, 79.9999999, 0.0, -0.16666667];
const NA_SIZE: (usize, usize) = (977, 443);

#[test]
fn forc_npp_against_casa_over_north_america() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/forc-na");
    // The example files name the real data by a path relative to the repository; rewrite them for $ROOT.
    for f in ["modis-ndvi.toml", "identity.toml", "relative-sunshine.csv"] {
        std::fs::copy(examples.join(f), d.join(f)).unwrap();
    }
    let na = root.join("climate-north-america");
    for f in ["stack.toml", "cru-normals.toml"] {
        let t = std::fs::read_to_string(examples.join(f)).unwrap().replace(
            "../../../shared/real-data/climate-north-america",
            na.to_str().unwrap(),
        );
        std::fs::write(d.join(f), t).unwrap();
    }
    carbonmap()
        .args(["indices", "--period", "month", "--stats", "median"])
        .arg("--stack")
        .arg(d.join("stack.toml"))
        .arg("--index-table")
        .arg(d.join("identity.toml"))
        .arg("-o")
        .arg(d.join("ndvi"))
        .assert()
        .success();
    // Evergreen needleleaf everywhere (MCD12Q1 UMD code 1): the class's NPP at every plot.
    write_raster(
        &d.join("lc_enf.tif"),
        Some(4326),
        NA_GT,
        NA_SIZE,
        &[("UMD", vec![1u8; NA_SIZE.0 * NA_SIZE.1])],
        None,
    );
    casa_na(d, "cru-normals.toml", "casa", &[]);
    netcdf_drivers_give_the_same_npp(d, &na);
    let forc = root.join("forc-field-plots/ForC_2018_npp_gpp_nee_biomass_subset.csv");
    let raster = d.join("casa/NPP_gC_m2_2001.tif");
    let plot_args = |c: &mut assert_cmd::Command| {
        c.arg("--raster")
            .arg(&raster)
            .arg("--plots")
            .arg(&forc)
            .args(["--id-field", "measurement.ID", "--observed-field", "mean"])
            .args([
                "--observed-unit-field",
                "units",
                "--site-field",
                "sites.sitename",
            ])
            .args([
                "--where",
                "variable.name=NPP_1",
                "--where",
                "dominant.veg=2TEN",
            ]);
    };
    let mut c = carbonmap();
    c.args([
        "validate",
        "--class-field",
        "dominant.veg",
        "--group-by",
        "FAO.ecozone",
    ]);
    plot_args(&mut c);
    let a = c.arg("-o").arg(d.join("val")).assert().success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();

    // Independently of carbonmap: the ForC rows, which fall on the NA grid, and their values x 100.
    let plots: Vec<HashMap<String, String>> = rows(&forc)
        .into_iter()
        .filter(|r| r["variable.name"] == "NPP_1" && r["dominant.veg"] == "2TEN")
        .collect();
    let on_grid = |r: &HashMap<String, String>| {
        let (lon, lat) = (num(r, "lon"), num(r, "lat"));
        lon > NA_GT[0]
            && lon < NA_GT[0] + NA_GT[1] * NA_SIZE.0 as f64
            && lat < NA_GT[3]
            && lat > NA_GT[3] + NA_GT[5] * NA_SIZE.1 as f64
    };
    let outside = plots.iter().filter(|r| !on_grid(r)).count();
    assert!(
        err.contains(&format!("{outside} plot(s) outside the raster")),
        "{err}"
    );
    let samples = rows(&d.join("val/validation_samples.csv"));
    assert_eq!(samples.len(), plots.len());
    let (npp, _, _) = common::read_band(&raster, 1);
    let mut pairs = Vec::new();
    for (s, p) in samples.iter().zip(&plots) {
        assert_eq!(s["id"], p["measurement.ID"]);
        assert_eq!(p["units"], "Mg C ha-1 yr-1");
        // ForC's Mg C ha-1 yr-1 x 100 = g C m-2 yr-1.
        assert!((num(s, "observed (g C m-2 yr-1)") - 100.0 * num(p, "mean")).abs() < 1e-6);
        if s["status"] == "ok" {
            // The model value is the raster's pixel under the plot.
            let col = ((num(p, "lon") - NA_GT[0]) / NA_GT[1]).floor() as usize;
            let row = ((num(p, "lat") - NA_GT[3]) / NA_GT[5]).floor() as usize;
            let v = npp[row * NA_SIZE.0 + col];
            assert!((num(s, "model (g C m-2 yr-1)") - v).abs() < 1e-3 * v.abs().max(1.0));
            pairs.push((100.0 * num(p, "mean"), v));
        }
    }
    // Bias and RMSE from those pairs, by hand.
    let n = pairs.len() as f64;
    let bias = pairs.iter().map(|(o, m)| m - o).sum::<f64>() / n;
    let rmse = (pairs.iter().map(|(o, m)| (m - o).powi(2)).sum::<f64>() / n).sqrt();
    let m = rows(&d.join("val/validation_metrics.csv"));
    let all = m.iter().find(|r| r["scope"] == "all").unwrap();
    assert_eq!(num(all, "n") as usize, pairs.len());
    assert!((num(all, "bias (g C m-2 yr-1)") - bias).abs() < 0.01);
    assert!((num(all, "rmse (g C m-2 yr-1)") - rmse).abs() < 0.01);
    assert!(m
        .iter()
        .any(|r| r["scope"] == "FAO.ecozone" && r["group"] == "Temperate mountain system"));

    // Calibration by biome (FAO ecozone as the zone), grouped by site: correcting must not worsen the
    // held-out error, and the bias must shrink.
    let mut c = carbonmap();
    c.args([
        "calibrate",
        "--plot-zone-field",
        "FAO.ecozone",
        "--applies-to",
        "npp",
        "--folds",
        "5",
    ]);
    plot_args(&mut c);
    c.arg("-o").arg(d.join("cal")).assert().success();
    let cv = rows(&d.join("cal/calibration_cv.csv"));
    let get = |stage: &str| {
        let r = cv
            .iter()
            .find(|r| r["stage"] == stage && r["scope"] == "all")
            .unwrap();
        (num(r, "rmse (g C m-2 yr-1)"), num(r, "bias (g C m-2 yr-1)"))
    };
    let (before, after) = (get("before"), get("after"));
    assert!(
        (before.0 - rmse).abs() < 0.01,
        "CV before = the uncorrected RMSE"
    );
    assert!(
        after.0 < before.0 && after.1.abs() < before.1.abs(),
        "{before:?} -> {after:?}"
    );

    // The README's class calibration: ForC's own codes mapped to carbonmap's vegetation types, so that the
    // table applies to the raster with `npp --corrections` and changes it by its factor.
    let mut c = carbonmap();
    c.args([
        "calibrate",
        "--class-field",
        "dominant.veg",
        "--class-map",
        "forc-dominant-veg",
    ])
    .args(["--applies-to", "npp", "--folds", "0"]);
    plot_args(&mut c);
    c.arg("-o").arg(d.join("cal-class")).assert().success();
    let table = d.join("cal-class/corrections.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(",evergreen_needleleaf_forest,"))
        .unwrap_or_else(|| panic!("{text}"));
    let factor: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
    // The ratio of sums of the calibrated plots, by hand from the pairs above.
    let by_hand = pairs.iter().map(|p| p.0).sum::<f64>() / pairs.iter().map(|p| p.1).sum::<f64>();
    assert!((factor - by_hand).abs() < 1e-5, "{factor} vs {by_hand}");
    casa_na(
        d,
        "cru-normals.toml",
        "casa-corrected",
        &["--corrections", table.to_str().unwrap()],
    );
    let (corrected, _, _) = common::read_band(&d.join("casa-corrected/NPP_gC_m2_2001.tif"), 1);
    let mut checked = 0;
    for (a, b) in npp.iter().zip(&corrected) {
        if a.is_finite() && *a > 0.0 {
            assert!(
                (b - factor * a).abs() <= 1e-4 * a.abs().max(1.0),
                "{b} vs {factor} x {a}"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

/// FR-Pue daily GPP: `validate --model-table` over `site`'s daily series gives the statistics `site` itself
/// reports, and its observed column is the tower file's (g C m-2 d-1, days without a value left out).
#[test]
fn fr_pue_daily_gpp_through_validate() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tower = root.join("fluxtower-fr-pue");
    common::fr_pue_drivers(&root, d);
    carbonmap()
        .args(["site", "--pft", "2", "--years", "2007-2010"])
        .arg("--drivers")
        .arg(d.join("drivers.toml"))
        .arg("--observed")
        .arg(tower.join("FR-Pue_daily_gpp_observed.csv"))
        .args(["--observed-unit", "g C m-2 d-1", "-o"])
        .arg(d.join("site"))
        .assert()
        .success();
    carbonmap()
        .args([
            "validate",
            "--observed-field",
            "gpp",
            "--observed-unit",
            "g C m-2 d-1",
        ])
        .arg("--plots")
        .arg(tower.join("FR-Pue_daily_gpp_observed.csv"))
        .arg("--model-table")
        .arg(d.join("site/site_daily.csv"))
        .args([
            "--model-field",
            "gpp_model_gC_m2_d",
            "--model-unit",
            "g C m-2 d-1",
        ])
        .args(["--quantity", "daily GPP", "-o"])
        .arg(d.join("val"))
        .assert()
        .success();
    let site: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("site/site_comparison.json")).unwrap(),
    )
    .unwrap();
    let m = rows(&d.join("val/validation_metrics.csv"));
    let all = m.iter().find(|r| r["scope"] == "all").unwrap();
    let unit = "g C m-2 d-1";
    assert_eq!(num(all, "n"), site["daily"]["n"].as_f64().unwrap());
    for (col, key) in [("rmse", "rmse"), ("bias", "bias")] {
        let got = num(all, &format!("{col} ({unit})"));
        assert!(
            (got - site["daily"][key].as_f64().unwrap()).abs() < 1e-5,
            "{col}"
        );
    }
    assert!((num(all, "r2") - site["daily"]["r2"].as_f64().unwrap()).abs() < 1e-5);
    // Per year, from the dates.
    let years: Vec<&str> = m
        .iter()
        .filter(|r| r["scope"] == "year")
        .map(|r| r["group"].as_str())
        .collect();
    assert_eq!(years, ["2007", "2008", "2009", "2010"]);
    // Observed days: the tower file's rows with a value in 2007-2010.
    let observed = rows(&tower.join("FR-Pue_daily_gpp_observed.csv"))
        .into_iter()
        .filter(|r| {
            !r["gpp"].trim().is_empty() && r["gpp"].parse::<f64>().is_ok_and(|v| v.is_finite())
        })
        .count();
    let samples = rows(&d.join("val/validation_samples.csv"));
    assert_eq!(samples.len(), observed);
}

/// The CRU temperature normals written as one NetCDF variable with a time axis (GDAL's multidimensional API,
/// Debian's python3-gdal) and named by its GDAL subdataset name, NETCDF:"file":t2m, in the drivers file: the
/// same NPP, byte for byte, as the GeoTIFF drivers. The file holds 2000 (values 50 C off, which must not be
/// read) and 2001, mid-month times in "days since 2000-01-01"; `time = "coordinate"` picks 2001's bands.
fn netcdf_drivers_give_the_same_npp(d: &Path, na: &Path) {
    let nc = d.join("cru.nc");
    let script = format!(
        r#"
from osgeo import gdal
import numpy as np
src = gdal.Open("{tif}")
nd = src.GetRasterBand(1).GetNoDataValue()
a = src.ReadAsArray().astype("float64"); wrong = a + 50.0; a[a == nd] = -9999; wrong[a == -9999] = -9999
a = np.concatenate([wrong, a]).astype("float32")
gt = src.GetGeoTransform(); h, w = a.shape[1:]
import datetime
days = [(datetime.date(y, m, 15) - datetime.date(2000, 1, 1)).days for y in (2000, 2001) for m in range(1, 13)]
ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional("{nc}")
rg = ds.GetRootGroup()
dt = rg.CreateDimension("time", "TEMPORAL", None, 24)
dy = rg.CreateDimension("lat", "HORIZONTAL_Y", "NORTH", h)
dx = rg.CreateDimension("lon", "HORIZONTAL_X", "EAST", w)
f8 = gdal.ExtendedDataType.Create(gdal.GDT_Float64)
tv = rg.CreateMDArray("time", [dt], f8)
tv.Write(np.array(days, dtype="float64"))
tv.CreateAttribute("units", [], gdal.ExtendedDataType.CreateString()).WriteString("days since 2000-01-01")
rg.CreateMDArray("lat", [dy], f8).Write(gt[3] + gt[5] * (np.arange(h) + 0.5))
rg.CreateMDArray("lon", [dx], f8).Write(gt[0] + gt[1] * (np.arange(w) + 0.5))
v = rg.CreateMDArray("t2m", [dt, dy, dx], gdal.ExtendedDataType.Create(gdal.GDT_Float32))
v.SetNoDataValueDouble(-9999)
v.SetSpatialRef(src.GetSpatialRef())
v.Write(a)
del ds
"#,
        tif = na.join("temp_NA.tif").display(),
        nc = nc.display()
    );
    let ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .status()
        .expect("python3 with osgeo (scripts/test.sh installs python3-gdal)");
    assert!(ok.success());
    let text = std::fs::read_to_string(d.join("cru-normals.toml"))
        .unwrap()
        .replace(
            "\"${CARBONMAP_REAL_DATA}/climate-north-america/temp_NA.tif\"",
            &format!("'NETCDF:\"{}\":t2m'\ntime = \"coordinate\"", nc.display()),
        );
    assert!(text.contains("NETCDF:"), "{text}");
    std::fs::write(d.join("cru-nc.toml"), text).unwrap();
    casa_na(d, "cru-nc.toml", "casa-nc", &[]);
    let (a, _, _) = common::read_band(&d.join("casa/NPP_gC_m2_2001.tif"), 1);
    let (b, _, _) = common::read_band(&d.join("casa-nc/NPP_gC_m2_2001.tif"), 1);
    assert_eq!(a.len(), b.len());
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())));
}

/// CASA over North America for the evergreen needleleaf class everywhere, with a drivers file of `d`.
fn casa_na(d: &Path, drivers: &str, out: &str, extra: &[&str]) {
    carbonmap()
        .args([
            "npp",
            "--model",
            "casa",
            "--legend",
            "modis-mcd12q1-umd",
            "--year",
            "2001",
        ])
        .arg("--ndvi")
        .arg(d.join("ndvi"))
        .arg("--landcover")
        .arg(d.join("lc_enf.tif"))
        .arg("--drivers")
        .arg(d.join(drivers))
        .args(extra)
        .arg("-o")
        .arg(d.join(out))
        .assert()
        .success();
}
