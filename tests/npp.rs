//! `carbonmap npp` on small rasters made here: a hand-worked CASA month through the binary, driver rasters on
//! another CRS, determinism across thread counts, and bad input.

mod common;

use std::path::Path;

use common::{carbonmap, read_band, station_csv, write_raster, DRIVERS, TEMPS};

const W: usize = 4;
const H: usize = 2;
const GT: [f64; 6] = [500_000.0, 30.0, 0.0, 5_600_000.0, 0.0, -30.0];
/// ESA WorldCover codes per pixel: grassland x4 (one with no NDVI), tree cover, built-up, no data, water.
const LC: [u8; W * H] = [30, 30, 10, 50, 30, 0, 30, 80];
const NDVI: [f32; W * H] = [0.4, 0.4, 0.7, 0.3, f32::NAN, 0.4, 0.4, 0.4];

fn fixture(dir: &Path) {
    // June is the year's greenest month (CASA's optimum temperature is June's, 15 C); the other months'
    // NDVI is 0.9 times June's.
    common::casa_scene(dir, GT, (W, H), (&NDVI, 0.9), &LC);
    std::fs::write(dir.join("station.csv"), station_csv(None, |t| t, 500.0)).unwrap();
    std::fs::write(dir.join("drivers.toml"), DRIVERS).unwrap();
}

fn npp_cmd(dir: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = carbonmap();
    c.args(["npp", "--legend", "esa-worldcover", "--year", "2021"])
        .arg("--ndvi")
        .arg(dir.join("ndvi"))
        .arg("--landcover")
        .arg(dir.join("lc.tif"))
        .arg("--drivers")
        .arg(dir.join("drivers.toml"))
        .args(extra);
    c
}

/// Run `npp` for June into `dir/out` and return the June NPP raster's band.
fn june_npp(dir: &Path, extra: &[&str]) -> Vec<f64> {
    let out = dir.join("out");
    // The hand calculation below is worked with Pei et al. (2009)'s Rh, not the default.
    npp_cmd(dir, &["--months", "6-6", "--rh", "pei2009"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    read_band(&out.join("NPP_gC_m2_2021-06.tif"), 1).0
}

/// Run `npp` for `months` into `out`, expect exit code 2 (bad input) and every `want` in stderr, and no
/// output folder.
fn refused(dir: &Path, out: &Path, months: &str, want: &[&str]) {
    refused_with(dir, out, months, &[], want)
}

fn refused_with(dir: &Path, out: &Path, months: &str, extra: &[&str], want: &[&str]) {
    let a = npp_cmd(dir, &["--months", months, "-o"])
        .arg(out)
        .args(extra)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    for w in want {
        assert!(err.contains(w), "missing '{w}' in:\n{err}");
    }
    assert!(!out.exists());
}

/// The hand-worked month of src/npp/casa.rs, June with T 15 C, 60 mm, SOL 500 MJ m-2 (Topt = 15 C, June
/// being the year's greenest month):
///   FPAR(NDVI 0.4, grassland) = 0.4726048; APAR = 500 x 0.4726048 x 0.5 = 118.15120;
///   Te1 = 0.8 + 0.02 x 15 - 0.0005 x 225 = 0.9875; Te2(T = Topt) = 1.1814 / (1 + e^-2) / (1 + e^-3)
///   = 0.9912236; We (June of TEMPS, 60 mm) = 0.8970358;
///   NPP = 118.15120 x 0.542 x 0.9875 x 0.9912236 x 0.8970358 = 56.228427 g C m-2.
///   Rh = 0.22 x (e^(0.0912 x 15) + ln(0.3145 x 60 + 1)) x 30 x 0.465 = 0.22 x (3.9274879 + 2.9892111)
///   x 13.95 = 21.227349; NEP = 35.001078; sequestration = 35.001078 x 44/12 / 100 = 1.2833729 t CO2 ha-1.
const NPP_JUNE: f64 = 56.228427;
const RH_JUNE: f64 = 21.227349;

#[test]
fn casa_june_through_the_binary_matches_the_hand_calculation() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let out = tmp.path().join("out");
    let npp = june_npp(tmp.path(), &[]);
    let (rh, _, _) = read_band(&out.join("Rh_gC_m2_2021-06.tif"), 1);
    let (nep, _, _) = read_band(&out.join("NEP_gC_m2_2021-06.tif"), 1);
    let (seq, _, _) = read_band(&out.join("sequestration_tCO2_ha_2021-06.tif"), 1);
    for px in [0, 1, 6] {
        assert!((npp[px] - NPP_JUNE).abs() < 1e-3, "px {px}: {}", npp[px]);
        assert!((rh[px] - RH_JUNE).abs() < 1e-3, "{}", rh[px]);
        assert!((nep[px] - (NPP_JUNE - RH_JUNE)).abs() < 1e-3);
        assert!((seq[px] - 1.2833729).abs() < 1e-5);
    }
    // Built-up and water: no uptake by definition; land-cover nodata and missing NDVI: no value.
    assert_eq!((npp[3], npp[7], rh[3]), (0.0, 0.0, 0.0));
    assert!(npp[5].is_nan() && npp[4].is_nan() && nep[4].is_nan());
    // Units and sign convention travel with the rasters.
    assert_eq!(
        common::metadata_item(&out.join("NEP_gC_m2_2021-06.tif"), "UNITS").unwrap(),
        "g C m-2 per period 2021-06"
    );
    assert!(
        common::metadata_item(&out.join("NEP_gC_m2_2021-06.tif"), "SIGN_CONVENTION")
            .unwrap()
            .contains("positive = net uptake")
    );
    // Per-class table: grassland has 4 pixels (0.36 ha), one without a result; the mean is over the other
    // three and the total is 56.228427 g m-2 x 3 x 900 m2 = 0.151817 t C.
    let table = std::fs::read_to_string(out.join("casa_summary_2021-06.csv")).unwrap();
    let mut r = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(table.as_bytes());
    let rows: Vec<std::collections::BTreeMap<String, String>> =
        r.deserialize().map(|x| x.unwrap()).collect();
    let g = rows.iter().find(|r| r["code"] == "30").unwrap();
    assert_eq!(
        (g["pixels"].as_str(), g["pixels_without_result"].as_str()),
        ("4", "1")
    );
    // Four 30 m pixels on UTM 30N beside its central meridian, where map distances are k0 = 0.9996 times the
    // true ones: 0.36 ha nominal = 0.36 / 0.9996^2 = 0.3602881 ha true (and the total NPP likewise).
    let k2 = 0.9996f64 * 0.9996;
    let area = g["area_ha"].parse::<f64>().unwrap();
    assert!(
        (area - 0.36 / k2).abs() < 5e-5,
        "{area} (written with 4 decimals)"
    );
    assert!((g["NPP_mean_gC_m2"].parse::<f64>().unwrap() - NPP_JUNE).abs() < 1e-3);
    let total = g["NPP_total_tC"].parse::<f64>().unwrap();
    assert!((total - 0.151817 / k2).abs() < 1e-5, "{total}");
}

#[test]
fn driver_rasters_on_another_crs_give_the_station_result() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    // Temperature as a 12-band raster in geographic degrees covering the UTM grid (about 3 W, 50.5 N), each
    // band constant, so bilinear warping must return the station's values exactly.
    let bands: Vec<(String, Vec<f32>)> = TEMPS
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("month {}", i + 1), vec![*t as f32; 100]))
        .collect();
    let refs: Vec<(&str, Vec<f32>)> = bands.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    write_raster(
        &tmp.path().join("t.tif"),
        Some(4326),
        [-4.0, 0.2, 0.0, 51.5, 0.0, -0.2],
        (10, 10),
        &refs,
        Some(-9999.0),
    );
    std::fs::write(
        tmp.path().join("drivers.toml"),
        DRIVERS.replace("tmean = { column = \"t\", unit = \"degC\" }\n", "")
            + "[raster.tmean]\nfile = \"t.tif\"\nunit = \"degC\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let npp = june_npp(tmp.path(), &[]);
    assert!((npp[0] - NPP_JUNE).abs() < 1e-3, "{}", npp[0]);
    assert!(
        common::metadata_item(&out.join("NPP_gC_m2_2021-06.tif"), "DRIVER_TMEAN")
            .unwrap()
            .contains("t.tif")
    );

    // The same raster moved away from the grid: refused before computing.
    write_raster(
        &tmp.path().join("t.tif"),
        Some(4326),
        [10.0, 0.2, 0.0, 40.0, 0.0, -0.2],
        (10, 10),
        &refs,
        Some(-9999.0),
    );
    let a = npp_cmd(tmp.path(), &["--months", "6-6", "-o"])
        .arg(tmp.path().join("out2"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("does not cover the analysis grid"), "{err}");
    assert!(!tmp.path().join("out2").exists());
}

#[test]
fn npp_outputs_are_identical_across_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let mut outs = vec![];
    for t in ["1", "3"] {
        let out = tmp.path().join(format!("out{t}"));
        npp_cmd(tmp.path(), &["--monthly", "--threads", t, "-o"])
            .arg(&out)
            .assert()
            .success();
        outs.push(out);
    }
    let files = common::list_dir(&outs[0]);
    assert!(
        files.contains(&"NPP_gC_m2_monthly_2021.tif".to_string()),
        "{files:?}"
    );
    for f in files {
        assert_eq!(
            std::fs::read(outs[0].join(&f)).unwrap(),
            std::fs::read(outs[1].join(&f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn bad_inputs_are_reported_together_before_computing() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    // Temperatures in Kelvin declared as degC, March missing, a wetland pixel (no CASA parameters), and no
    // NDVI composite for July.
    std::fs::write(
        tmp.path().join("station.csv"),
        station_csv(Some(3), |t| t + 273.15, 500.0),
    )
    .unwrap();
    let mut lc = LC;
    lc[1] = 90;
    write_raster(
        &tmp.path().join("lc.tif"),
        Some(32630),
        GT,
        (W, H),
        &[("lc", lc.to_vec())],
        Some(0.0),
    );
    std::fs::remove_file(tmp.path().join("ndvi/NDVI_2021-07.tif")).unwrap();
    let out = tmp.path().join("out");
    // A month without a composite is refused in strict mode (and filled otherwise: see below).
    refused_with(
        tmp.path(),
        &out,
        "1-12",
        &["--strict-months"],
        &[
            "1 month(s) of 2021 missing: 2021-03",
            "no NDVI composite for 2021-07",
            "maps to vegetation type wetland, which has no CASA parameters",
        ],
    );

    // With March back, the Kelvin values are caught by their magnitude.
    std::fs::write(
        tmp.path().join("station.csv"),
        station_csv(None, |t| t + 273.15, 500.0),
    )
    .unwrap();
    refused(tmp.path(), &out, "6-6", &["look like Kelvin"]);

    // Radiation as a daily mean in W m-2 declared as MJ m-2 d-1.
    std::fs::write(
        tmp.path().join("station.csv"),
        station_csv(None, |t| t, 180.0),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("drivers.toml"),
        DRIVERS.replace("unit = \"MJ m-2\"", "unit = \"MJ m-2 d-1\""),
    )
    .unwrap();
    refused(tmp.path(), &out, "6-6", &["look like W m-2"]);

    // A unit that is not a unit of the variable.
    std::fs::write(
        tmp.path().join("drivers.toml"),
        DRIVERS.replace("unit = \"mm\"", "unit = \"inch\""),
    )
    .unwrap();
    let a = npp_cmd(tmp.path(), &["--months", "6-6", "-o"])
        .arg(&out)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("unit \"inch\" is not accepted for precip"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_user_casa_table_with_the_vpd_water_scalar() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    // The built-in table with the alternative water scalar: We = MOD17 VPD ramp of the type's MOD17 class.
    let table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/casa/zhu2007.toml"
    ))
    .unwrap()
    .replace("method = \"zhou-zhang\"", "method = \"vpd\"");
    std::fs::write(tmp.path().join("casa-vpd.toml"), table).unwrap();
    std::fs::write(
        tmp.path().join("station.csv"),
        station_csv(None, |t| t, 500.0)
            .replace(",500\n", ",500,1.0\n")
            .replace("sol\n", "sol,vpd\n"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("drivers.toml"),
        DRIVERS.to_string() + "vpd = { column = \"vpd\", unit = \"kPa\" }\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let table = tmp.path().join("casa-vpd.toml");
    let npp = june_npp(tmp.path(), &["--casa-params", table.to_str().unwrap()]);
    // Grassland uses MOD17 class 10 (VPD ramp 650..4200 Pa): VPD 1.0 kPa = 1000 Pa, We = 1 - 350 / 3550
    // = 0.9014085; NPP = 118.15120 x 0.542 x 0.9875 x 0.9912236 x 0.9014085 = 56.502513 g C m-2.
    assert!((npp[0] - 56.502513).abs() < 1e-3, "{}", npp[0]);
    assert!(
        common::metadata_item(&out.join("NPP_gC_m2_2021-06.tif"), "CASA_PARAMETERS")
            .unwrap()
            .contains("casa-vpd.toml")
    );
}

/// Corrections by zone x class, zone and class on NPP, through the binary. Zones (a raster of codes):
/// top row 1 1 2 2, bottom row 3 3 3 3. Table: zone 1 x grassland 1.5, zone 2 0.8, grassland 1.25.
/// Expected factors: px 0, 1 (zone 1, grassland) 1.5 (zone x class); px 2 (zone 2, tree cover) 0.8 (zone);
/// px 6 (zone 3, grassland) 1.25 (class). CASA NPP is proportional to emax, so NPP = factor x uncorrected
/// and NEP = NPP - Rh with Rh unchanged.
#[test]
fn corrections_apply_in_the_fallback_order() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let plain = june_npp(tmp.path(), &[]);
    write_raster(
        &tmp.path().join("zones.tif"),
        Some(32630),
        GT,
        (W, H),
        &[("zone", vec![1i32, 1, 2, 2, 3, 3, 3, 3])],
        None,
    );
    let table = tmp.path().join("corr.csv");
    std::fs::write(
        &table,
        "# hand-made for the test\nzone,class,factor,applies_to,se,n,source\n1,grassland,1.5,npp,,,test\n2,,0.8,npp,,,test\n,grassland,1.25,npp,,,test\n",
    )
    .unwrap();
    std::fs::remove_dir_all(tmp.path().join("out")).unwrap();
    let zones = tmp.path().join("zones.tif");
    let corrected = june_npp(
        tmp.path(),
        &[
            "--corrections",
            table.to_str().unwrap(),
            "--zones",
            zones.to_str().unwrap(),
        ],
    );
    let out = tmp.path().join("out");
    let (nep, _, _) = read_band(&out.join("NEP_gC_m2_2021-06.tif"), 1);
    let (factor, _, _) = read_band(&out.join("correction_factor_2021-06.tif"), 1);
    for (px, f) in [(0, 1.5), (1, 1.5), (2, 0.8), (6, 1.25)] {
        assert!(
            (factor[px] - f).abs() < 1e-6,
            "px {px}: factor {}",
            factor[px]
        );
        assert!(
            (corrected[px] - f * plain[px]).abs() < 1e-3,
            "px {px}: {} vs {f} x {}",
            corrected[px],
            plain[px]
        );
    }
    assert!((corrected[0] - 1.5 * NPP_JUNE).abs() < 1e-3);
    assert!((nep[0] - (1.5 * NPP_JUNE - RH_JUNE)).abs() < 1e-3);
    assert!(
        common::metadata_item(&out.join("NPP_gC_m2_2021-06.tif"), "CORRECTIONS")
            .unwrap()
            .contains("applies to npp")
    );

    // A table naming a zone the layer lacks, or a class that is not a vegetation type, is refused.
    let zones_vec = tmp.path().join("zones.geojson");
    std::fs::write(
        &zones_vec,
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::32630"}},"features":[{"type":"Feature","properties":{"region":"North"},"geometry":{"type":"Polygon","coordinates":[[[500000,5599940],[500120,5599940],[500120,5600000],[500000,5600000],[500000,5599940]]]}}]}"#,
    )
    .unwrap();
    std::fs::write(
        &table,
        "zone,class,factor,applies_to,se,n,source\nSouth,grassland,1.5,npp,,,test\n,meadow,1.1,npp,,,test\n",
    )
    .unwrap();
    let a = npp_cmd(tmp.path(), &["--months", "6-6", "--corrections"])
        .arg(&table)
        .arg("--zones")
        .arg(&zones_vec)
        .args(["--zone-fields", "region", "-o"])
        .arg(tmp.path().join("out2"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("zones not in the zone layer: South"), "{err}");
    assert!(err.contains("unknown classes: meadow"), "{err}");
    assert!(!tmp.path().join("out2").exists());
}

/// A summer run without a July composite fills July per pixel by linear interpolation between June and August
/// (mid-month days 166 and 227.5 of 2021, July 196.5) and counts it: the NPP equals a run given that July
/// composite written out here by hand, filled_months is 1 where a pixel has data (0 for the pixel without any
/// NDVI), the class table says a third of the pixel-months were filled, and a warning names 2021-07.
#[test]
fn a_month_without_a_composite_is_filled_by_interpolation_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let nd = tmp.path().join("ndvi");
    let june: Vec<f32> = NDVI.iter().map(|v| v * 0.5).collect();
    let write = |m: u32, v: &[f32]| {
        write_raster(
            &nd.join(format!("NDVI_2021-{m:02}.tif")),
            Some(32630),
            GT,
            (W, H),
            &[("NDVI median", v.to_vec())],
            None,
        )
    };
    write(6, &june);
    std::fs::remove_file(nd.join("NDVI_2021-07.tif")).unwrap();
    let out_a = tmp.path().join("filled");
    let a = npp_cmd(tmp.path(), &["--months", "6-8", "-o"])
        .arg(&out_a)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("no NDVI composite for 2021-07"), "{err}");
    // July by hand: June + (196.5 - 166) / (227.5 - 166) x (August - June); August is 0.9 x NDVI (fixture).
    let july: Vec<f32> = june
        .iter()
        .zip(NDVI.iter())
        .map(|(j, a)| {
            let aug = (*a * 0.9) as f64;
            (*j as f64 + 30.5 / 61.5 * (aug - *j as f64)) as f32
        })
        .collect();
    write(7, &july);
    let out_b = tmp.path().join("given");
    npp_cmd(tmp.path(), &["--months", "6-8", "-o"])
        .arg(&out_b)
        .assert()
        .success();
    let period = "2021-06_2021-08";
    let (na, _, _) = read_band(&out_a.join(format!("NPP_gC_m2_{period}.tif")), 1);
    let (nb, _, _) = read_band(&out_b.join(format!("NPP_gC_m2_{period}.tif")), 1);
    for i in 0..na.len() {
        assert!(
            common::close_or_both_nan(na[i], nb[i], 1e-9),
            "pixel {i}: {} vs {}",
            na[i],
            nb[i]
        );
    }
    let (filled, _, _) = read_band(&out_a.join(format!("filled_months_{period}.tif")), 1);
    let want: Vec<f64> = NDVI
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { 1.0 })
        .collect();
    assert_eq!(filled, want);
    let (given, _, _) = read_band(&out_b.join(format!("filled_months_{period}.tif")), 1);
    assert!(given.iter().all(|v| *v == 0.0));
    let rows = common::csv_rows(&out_a.join(format!("casa_summary_{period}.csv")));
    let grass = rows.iter().find(|r| r["code"] == "30").unwrap();
    let px: f64 = grass["pixels"].parse().unwrap();
    let nan_px = grass["pixels_without_result"].parse::<f64>().unwrap();
    let frac: f64 = grass["ndvi_filled_fraction"].parse().unwrap();
    assert!((frac - (px - nan_px) / px / 3.0).abs() < 1e-12, "{frac}");
}

/// The fixture's station with what MOD17 needs: Tmin and Tmax 5 C either side of the mean, VPD from Tmin as
/// dew point.
fn mod17_drivers(d: &Path) {
    let mut csv = String::from("year,month,t,tmin,tmax,p,sol\n");
    for m in 1..=12usize {
        let t = TEMPS[m - 1];
        csv.push_str(&format!("2021,{m},{t},{},{},60,500\n", t - 5.0, t + 5.0));
    }
    std::fs::write(d.join("station.csv"), csv).unwrap();
    std::fs::write(
        d.join("drivers.toml"),
        DRIVERS.replace(
            "precip = {",
            "tmin = { column = \"tmin\", unit = \"degC\" }\ntmax = { column = \"tmax\", unit = \"degC\" }\nprecip = {",
        ) + "[derive]\nvpd = \"tmin-as-dewpoint\"\n",
    )
    .unwrap();
}

/// MOD17 over a shorter period: the live-wood mass comes from the largest LAI of the whole model year, so a
/// greener May (outside a JJA run) raises live-wood respiration and lowers the JJA NPP while the JJA GPP is
/// unchanged; the period's NPP is said to cover its own respiration only.
#[test]
fn mod17_live_wood_mass_comes_from_the_model_year() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    mod17_drivers(tmp.path());
    let run = |out: &str| {
        let o = tmp.path().join(out);
        let a = npp_cmd(tmp.path(), &["--model", "mod17", "--months", "6-8", "-o"])
            .arg(&o)
            .assert()
            .success();
        (
            o,
            String::from_utf8_lossy(&a.get_output().stderr).into_owned(),
        )
    };
    let (a, err) = run("a");
    assert!(err.contains("MOD17 defines NPP per year"), "{err}");
    // May greener than June: the year's largest LAI rises.
    write_raster(
        &tmp.path().join("ndvi/NDVI_2021-05.tif"),
        Some(32630),
        GT,
        (W, H),
        &[(
            "NDVI median",
            NDVI.iter().map(|v| (v * 1.3).min(0.95)).collect(),
        )],
        None,
    );
    let (b, _) = run("b");
    let p = "2021-06_2021-08";
    let band = |d: &Path, q: &str| read_band(&d.join(format!("{q}_gC_m2_{p}.tif")), 1).0;
    // Pixel 2 is tree cover (ESA WorldCover 10, mixed forest: live wood).
    assert_eq!(band(&a, "GPP")[2], band(&b, "GPP")[2]);
    assert!(
        band(&b, "NPP")[2] < band(&a, "NPP")[2],
        "{} vs {}",
        band(&b, "NPP")[2],
        band(&a, "NPP")[2]
    );
    let md = common::metadata_item(&a.join(format!("NPP_gC_m2_{p}.tif")), "MODEL_YEAR").unwrap();
    assert!(md.starts_with("2021-01..2021-12"), "{md}");
}

/// The P-model's June GPP through the binary for a grassland pixel (NDVI 0.4), against pyrealm 2.0.0:
/// SOL 500 MJ m-2 over June's 30 days = 16.6667 MJ m-2 d-1, PAR = 0.45 x that = 7.5 MJ m-2 d-1 (mod17's PAR
/// share), PPFD = 7.5e6 J x 4.57 umol J-1 / 86400 s = 396.70139 umol m-2 s-1; FPAR = 1.1638 x 0.4 - 0.1426 =
/// 0.32292 (Myneni & Williams). pyrealm PModel(tc 15, vpd 800 Pa, co2 400 ppm, patm 101325 Pa, method_kphio
/// "temperature", reference_kphio 0.081785) gives 33.46875009 ug C m-2 s-1, x 86400 s x 1e-6 x 30 days =
/// 86.751000 g C m-2 for June. NPP follows MOD17's respiration; constants carry their sources.
#[test]
fn pmodel_june_gpp_through_the_binary_matches_pyrealm() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let drivers = format!(
        "{DRIVERS}[constant]\nvpd = {{ value = 800.0, unit = \"Pa\", source = \"test\" }}\nco2 = {{ value = 400.0, unit = \"ppm\", source = \"test\" }}\npatm = {{ value = 101325.0, unit = \"Pa\", source = \"test\" }}\n"
    );
    std::fs::write(tmp.path().join("drivers.toml"), drivers).unwrap();
    let out = tmp.path().join("out");
    npp_cmd(tmp.path(), &["--model", "pmodel", "--months", "6-6", "-o"])
        .arg(&out)
        .assert()
        .success();
    let (gpp, _, _) = read_band(&out.join("GPP_gC_m2_2021-06.tif"), 1);
    for px in [0, 1, 6] {
        assert!((gpp[px] - 86.751000).abs() < 1e-3, "px {px}: {}", gpp[px]);
    }
    assert!(gpp[4].is_nan(), "no NDVI, no result");
    assert_eq!(
        common::metadata_item(&out.join("GPP_gC_m2_2021-06.tif"), "DRIVER_CO2").unwrap(),
        "constant 400 ppm (test)"
    );
    assert!(out.join("pmodel_summary_2021-06.csv").exists());
    // A constant without its source is refused, naming it.
    std::fs::write(
        tmp.path().join("drivers.toml"),
        format!("{DRIVERS}[constant]\nco2 = {{ value = 400.0, unit = \"ppm\", source = \"\" }}\n"),
    )
    .unwrap();
    let a = npp_cmd(tmp.path(), &["--model", "pmodel", "--months", "6-6", "-o"])
        .arg(tmp.path().join("out2"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("constant.co2: source is empty"), "{err}");
}

/// Monte Carlo through the binary on the hand-worked June (grassland NPP 56.228427, Rh 21.227349 g C m-2):
/// grassland's NPP multiplier with sd 0.1 and Rh's with sd 0.2, independent. A grassland pixel's NEP draws
/// have mean NPP - Rh = 35.001078 and sd sqrt((0.1 x 56.228427)^2 + (0.2 x 21.227349)^2) = 7.045487 (by hand);
/// 20,000 draws estimate the sd within 2 %. The same seed gives the same bytes with 1 and 3 threads.
#[test]
fn draws_give_the_hand_worked_spread_of_nep_and_the_same_bytes_on_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("u.toml"),
        "name = \"test\"\ncorrelation = 0.0\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"grassland\"\n\
         sd = 0.1\nsource = \"test\"\n[[parameter]]\ntarget = \"rh\"\nsd = 0.2\nsource = \"test\"\n",
    )
    .unwrap();
    let run = |threads: &str, out: &str| draws_run(d, threads, ("20000", "3"), out);
    let (a, b) = (run("1", "a"), run("3", "b"));
    let nep = |band| read_band(&a.join("NEP_gC_m2_2021-06_draws.tif"), band).0;
    let (mean, sd, p05, p95) = (nep(1), nep(2), nep(3), nep(5));
    // Pixel 0 is grassland with NDVI 0.4 (the hand-worked pixel).
    assert!((mean[0] - 35.001078).abs() < 0.15, "{}", mean[0]);
    assert!((sd[0] / 7.045487 - 1.0).abs() < 0.02, "{}", sd[0]);
    // Normal: the 90 % interval is mean +- 1.645 sd.
    assert!(
        (p95[0] - p05[0] - 2.0 * 1.645 * 7.045487).abs() < 0.5,
        "{} {}",
        p05[0],
        p95[0]
    );
    let totals = common::csv_rows(&a.join("draws_2021-06.csv"));
    let all = totals
        .iter()
        .find(|r| r["code"] == "all" && r["quantity"] == "NEP")
        .unwrap();
    assert!(common::cell(all, "sd") > 0.0);
    // One at a time, grassland's pixels: NPP's term alone (0.1 x 56.228427)^2 = 31.616 of the NEP's 49.640,
    // a share of 0.6369; Rh's (0.2 x 21.227349)^2 = 18.024, 0.3631; NPP dominates.
    let shares = common::csv_rows(&a.join("draws_variance_2021-06.csv"));
    let share = |src: &str| {
        let r = shares
            .iter()
            .find(|r| r["code"] == "30" && r["source"] == src)
            .unwrap_or_else(|| panic!("{src}: {shares:?}"));
        (
            common::cell(r, "share_of_NEP_variance"),
            r["dominant"].clone(),
        )
    };
    let (npp, rh) = (share("npp:grassland"), share("rh"));
    assert!((npp.0 / 0.6369 - 1.0).abs() < 0.04, "{npp:?}");
    assert!((rh.0 / 0.3631 - 1.0).abs() < 0.04, "{rh:?}");
    assert_eq!((npp.1.as_str(), rh.1.as_str()), ("true", "false"));
    same_files(&a, &b);
}

/// Drivers' errors on the hand-worked June: a radiation error of sd 0.1 and a temperature error of sd 1 K.
/// - Radiation: CASA's NPP is proportional to SOL and Pei et al.'s Rh does not read it, so NPP's sensitivity is
///   NPP itself, 56.228427 g C m-2 per unit relative change, and Rh's is 0.
/// - Temperature: Rh's slope through 14..16 C is 0.22 x (e^(0.0912 x 16) - e^(0.0912 x 14)) / 2 x 13.95
///   = 1.100800 g C m-2 K-1 and its curvature 0.22 x (e^(0.0912 x 16) - 2 e^(0.0912 x 15) + e^(0.0912 x 14))
///   x 13.95 = 0.100323 g C m-2 K-2 (by hand); NPP's are (NPP(T + 1) - NPP(T - 1)) / 2 and NPP(T + 1) - 2 NPP
///   + NPP(T - 1) from two deterministic runs on the station's temperatures moved by +1 K and -1 K in every month
///   (independent of the sensitivity run).
/// - A pixel's NEP draws, NEP + (S e + C e^2 / 2) with S and C NPP's minus Rh's and e ~ N(0, 1) for
///   temperature: mean NEP + C / 2, variance (0.1 x 56.228427)^2 + S^2 + C^2 / 2 (var e^2 = 2), within 2 % with
///   20,000 draws, and each driver's share of the variance one at a time; the same bytes with 1 and 3 threads.
#[test]
fn drivers_errors_move_npp_and_rh_together_through_the_hand_worked_sensitivities() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    // Deterministic June NPP with every month's temperature moved by +-1 K.
    let moved = |dt: f64, out: &str| {
        std::fs::write(d.join("station.csv"), station_csv(None, |t| t + dt, 500.0)).unwrap();
        npp_cmd(d, &["--months", "6-6", "--rh", "pei2009", "-o"])
            .arg(d.join(out))
            .assert()
            .success();
        read_band(&d.join(out).join("NPP_gC_m2_2021-06.tif"), 1).0[0]
    };
    let (plus, minus) = (moved(1.0, "plus"), moved(-1.0, "minus"));
    std::fs::write(d.join("station.csv"), station_csv(None, |t| t, 500.0)).unwrap();
    std::fs::write(
        d.join("u.toml"),
        "name = \"test\"\ncorrelation = 0.0\n[[parameter]]\ntarget = \"radiation\"\nsd = 0.1\nsource = \"test\"\n\
         [[parameter]]\ntarget = \"temperature\"\nsd = 1.0\nsource = \"test\"\n",
    )
    .unwrap();
    let run = |threads: &str, out: &str| draws_run(d, threads, ("20000", "3"), out);
    let (a, b) = (run("1", "a"), run("3", "b"));
    let npp = read_band(&a.join("NPP_gC_m2_2021-06.tif"), 1).0[0];
    let (s_npp_t, c_npp_t) = ((plus - minus) / 2.0, plus - 2.0 * npp + minus);
    // Bands: temperature's NPP and Rh slopes, then their curvatures, then radiation's (the drivers' order, not
    // the file's).
    let sens = |band| read_band(&a.join("driver_sensitivity_2021-06.tif"), band).0[0];
    assert!((sens(1) - s_npp_t).abs() < 1e-3, "{} {s_npp_t}", sens(1));
    assert!((sens(2) - 1.100800).abs() < 1e-4, "{}", sens(2));
    assert!((sens(3) - c_npp_t).abs() < 1e-3, "{} {c_npp_t}", sens(3));
    assert!((sens(4) - 0.100323).abs() < 1e-4, "{}", sens(4));
    assert!((sens(5) - NPP_JUNE).abs() < 1e-3, "{}", sens(5));
    assert!(sens(7).abs() < 1e-6, "linear: {}", sens(7));
    assert_eq!((sens(6), sens(8)), (0.0, 0.0));
    let (s, c) = (s_npp_t - 1.100800, c_npp_t - 0.100323);
    let (var_r, var_t) = ((0.1 * NPP_JUNE).powi(2), s * s + c * c / 2.0);
    let nep = |b| read_band(&a.join("NEP_gC_m2_2021-06_draws.tif"), b).0[0];
    let (mean, sd) = (nep(1), nep(2));
    assert!(
        (sd / (var_r + var_t).sqrt() - 1.0).abs() < 0.02,
        "{sd} {}",
        (var_r + var_t).sqrt()
    );
    let want = NPP_JUNE - RH_JUNE + c / 2.0;
    assert!(
        (mean - want).abs() < 3.0 * sd / 20000f64.sqrt(),
        "{mean} {want}"
    );
    let shares = common::csv_rows(&a.join("draws_variance_2021-06.csv"));
    let share = |src: &str| {
        let r = shares
            .iter()
            .find(|r| r["code"] == "30" && r["source"] == src)
            .unwrap_or_else(|| panic!("{src}: {shares:?}"));
        common::cell(r, "share_of_NEP_variance")
    };
    let total = var_r + var_t;
    assert!((share("driver:radiation") / (var_r / total) - 1.0).abs() < 0.04);
    assert!((share("driver:temperature") / (var_t / total) - 1.0).abs() < 0.04);
    let notes = std::fs::read_to_string(a.join("draws_2021-06.csv.json")).unwrap();
    assert!(
        notes.contains("temperature (K), radiation (relative)"),
        "{notes}"
    );
    same_files(&a, &b);
    // A driver's error applies to every pixel: refused with a type, a bad length or a second entry.
    bad_uncertainty(
        d,
        "name = \"bad\"\n[[parameter]]\ntarget = \"temperature\"\nsd = 1\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"temperature\"\nvegetation_type = \"grassland\"\nsd = 1\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"radiation\"\nsd = 0.1\nlength_km = -5\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"humidity\"\nsd = 0.1\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"precipitation\"\nsd = 1.2\nsource = \"t\"\n",
        &[
        "parameter 2 (temperature): a driver's error applies to every pixel: no vegetation_type or sector",
        "parameter 3 (radiation): length_km -5 must be a number > 0",
        "parameter 4 (humidity): target must be npp, rh, emissions, sequestration, or a driver's or model coefficient's error: temperature, precipitation, radiation, rh.b, rh.c, mod17.lue_max, mod17.tmin_min, mod17.tmin_max, mod17.vpd_min, mod17.vpd_max",
        "at most one temperature parameter",
            "parameter 5 (precipitation): a relative driver error's sd must be below 1",
        ],
    );
}

/// The Rh model's coefficients drawn like drivers' errors (`target = "rh.b"` and `"rh.c"`, relative changes) on
/// the hand-worked June (T = 15 deg C, R = 60 mm, Pei et al. 2009: Rh = 0.22 (e^(b T) + ln(c R + 1)) x 30 x 0.465
/// = 3.069 (e^(0.0912 x 15) + ln(0.3145 x 60 + 1)) = 21.227349 g C m-2). With b moved by +-0.1 of itself, Rh's
/// slope per unit relative change is 3.069 (e^(0.10032 x 15) - e^(0.08208 x 15)) / 0.2 = 16.540612 and its
/// curvature 3.069 (e^(0.10032 x 15) - 2 e^(0.0912 x 15) + e^(0.08208 x 15)) / 0.01 = 22.592335; with c moved by
/// +-0.2, 3.069 (ln(0.3774 x 60 + 1) - ln(0.2516 x 60 + 1)) / 0.4 = 2.950372 and 3.069 (ln(0.3774 x 60 + 1) -
/// 2 ln(0.3145 x 60 + 1) + ln(0.2516 x 60 + 1)) / 0.04 = -2.819025 (hand calculations). NPP does not read
/// them: its responses are 0. A draw's errors e are normal with sd s (0.1 and 0.2), and S e + C e^2 / 2 has
/// variance S^2 s^2 + C^2 s^4 / 2 and mean C s^2 / 2: the NEP's sd over 20,000 draws is sqrt(16.540612^2 0.01 +
/// 22.592335^2 0.0001 / 2 + 2.950372^2 0.04 + 2.819025^2 0.0016 / 2) = 1.765215 within 2 %, its mean NPP - Rh -
/// (22.592335 x 0.01 - 2.819025 x 0.04) / 2, and the attribution names `model:rh.b` with its share.
#[test]
fn the_rh_models_coefficients_move_rh_through_their_hand_worked_parabolas() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("u.toml"),
        "name = \"test\"\n[[parameter]]\ntarget = \"rh.c\"\nsd = 0.2\nsource = \"test\"\n\
         [[parameter]]\ntarget = \"rh.b\"\nsd = 0.1\nsource = \"test\"\n",
    )
    .unwrap();
    let a = draws_run(d, "2", ("20000", "3"), "a");
    let sens = |band| read_band(&a.join("driver_sensitivity_2021-06.tif"), band).0[0];
    let want = [
        0.0, 16.540612, 0.0, 22.592335, 0.0, 2.950372, 0.0, -2.819025,
    ];
    for (b, w) in want.iter().enumerate() {
        assert!(
            (sens(b + 1) - w).abs() < 1e-3,
            "band {}: {} {w}",
            b + 1,
            sens(b + 1)
        );
    }
    let nep = |b| read_band(&a.join("NEP_gC_m2_2021-06_draws.tif"), b).0[0];
    let (mean, sd) = (nep(1), nep(2));
    assert!((sd / 1.765215 - 1.0).abs() < 0.02, "{sd}");
    let want_mean = NPP_JUNE - RH_JUNE - (22.592335 * 0.01 - 2.819025 * 0.04) / 2.0;
    assert!(
        (mean - want_mean).abs() < 3.0 * sd / 20000f64.sqrt(),
        "{mean} {want_mean}"
    );
    let (vb, vc) = (
        16.540612f64.powi(2) * 0.01 + 22.592335f64.powi(2) * 1e-4 / 2.0,
        2.950372f64.powi(2) * 0.04 + 2.819025f64.powi(2) * 0.0016 / 2.0,
    );
    let share = grassland(
        &a,
        "draws_variance",
        ("source", "model:rh.b"),
        "share_of_NEP_variance",
    );
    assert!((share / (vb / (vb + vc)) - 1.0).abs() < 0.04, "{share}");
    // One value for the run: refused as a field, per type or twice.
    bad_uncertainty(
        d,
        "name = \"bad\"\n[[parameter]]\ntarget = \"rh.b\"\nsd = 0.1\nlength_km = 5\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"rh.c\"\nvegetation_type = \"grassland\"\nsd = 0.1\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"rh.b\"\nsd = 0.1\nsource = \"t\"\n",
        &[
            "parameter 1 (rh.b): a model coefficient is one value for the run (or per type): no length_km",
            "parameter 2 (rh.c): an Rh coefficient's error applies to every pixel: no vegetation_type or sector",
            "at most one rh.b parameter",
        ],
    );
}

/// MOD17's LUEmax drawn per vegetation type (`target = "mod17.lue_max"`). GPP is proportional to LUEmax and the
/// maintenance respiration does not read it, so NPP = 0.8 (GPP - Rm) (models/mod17/algorithm.toml) has slope
/// 0.8 GPP per unit relative change and no curvature while NPP > 0 (hand derivation), and Rh does not move.
/// Grassland with sd 0.1 and every other type ("*": the tree-cover pixel) with sd 0.3, independent: a grassland
/// pixel's NPP sd is 0.1 x 0.8 GPP and the tree pixel's 0.3 x 0.8 GPP, and the NPP total of all classes has sd
/// sqrt((0.1 x 0.8 G_grass)^2 + (0.3 x 0.8 G_tree)^2), G a class's GPP total (t C: 900 m2 pixels), within 2 %
/// over 20,000 draws; the attribution gives the parameter the whole NEP variance. CASA and a missing type are
/// refused.
#[test]
fn mod17_lue_max_drawn_per_type_moves_npp_by_its_share_of_gpp() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    mod17_drivers(d);
    let lue = |t: &str, sd: f64| {
        format!("[[parameter]]\ntarget = \"mod17.lue_max\"\nvegetation_type = \"{t}\"\nsd = {sd}\nsource = \"t\"\n")
    };
    let u = format!(
        "name = \"test\"\n{}{}",
        lue("grassland", 0.1),
        lue("*", 0.3)
    );
    std::fs::write(d.join("u.toml"), &u).unwrap();
    let out = d.join("a");
    let draws = ["--draws", "20000", "--seed", "3", "--uncertainty"];
    npp_cmd(d, &["--model", "mod17", "--months", "6-8"])
        .args(draws)
        .arg(d.join("u.toml"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let p = "2021-06_2021-08";
    let band = |f: &str, b| read_band(&out.join(format!("{f}_{p}.tif")), b).0;
    let (gpp, npp) = (band("GPP_gC_m2", 1), band("NPP_gC_m2", 1));
    let sd = read_band(&out.join(format!("NPP_gC_m2_{p}_draws.tif")), 2).0;
    let sens = |b| band("driver_sensitivity", b);
    for (px, s) in [(0, 0.1), (1, 0.1), (6, 0.1), (2, 0.3)] {
        let slope = 0.8 * gpp[px];
        assert!(
            npp[px] > 2.0 * s * slope,
            "px {px}: NPP {} stays > 0",
            npp[px]
        );
        assert!(
            (sens(1)[px] / slope - 1.0).abs() < 1e-5,
            "px {px}: {} {slope}",
            sens(1)[px]
        );
        assert_eq!(
            (sens(2)[px], sens(4)[px]),
            (0.0, 0.0),
            "Rh does not read LUEmax"
        );
        assert!(sens(3)[px].abs() < 1e-3 * slope, "linear: {}", sens(3)[px]);
        assert!(
            (sd[px] / (s * slope) - 1.0).abs() < 0.02,
            "px {px}: {} {}",
            sd[px],
            s * slope
        );
    }
    let t_c = |g: f64| g * 900.0 / 1e6;
    let (g_grass, g_tree) = (t_c(gpp[0] + gpp[1] + gpp[6]), t_c(gpp[2]));
    let want = ((0.1 * 0.8 * g_grass).powi(2) + (0.3 * 0.8 * g_tree).powi(2)).sqrt();
    let rows = common::csv_rows(&out.join(format!("draws_{p}.csv")));
    let all = rows
        .iter()
        .find(|r| r["code"] == "all" && r["quantity"] == "NPP")
        .unwrap();
    assert!(
        (common::cell(all, "sd") / want - 1.0).abs() < 0.02,
        "{all:?} {want}"
    );
    let shares = common::csv_rows(&out.join(format!("draws_variance_{p}.csv")));
    let share = shares
        .iter()
        .find(|r| r["code"] == "all" && r["source"] == "model:mod17.lue_max")
        .unwrap_or_else(|| panic!("{shares:?}"));
    assert!((common::cell(share, "share_of_NEP_variance") - 1.0).abs() < 1e-9);
    // CASA does not read MOD17's LUEmax; a class's parameter names its type.
    let u_path = d.join("u.toml");
    let args = ["--draws", "10", "--uncertainty", u_path.to_str().unwrap()];
    refused_with(
        d,
        &d.join("x"),
        "6-6",
        &args,
        &["mod17.lue_max is a parameter of MOD17's BPLUT: the run's model is CASA"],
    );
    bad_uncertainty(
        d,
        "name = \"bad\"\n[[parameter]]\ntarget = \"mod17.lue_max\"\nsd = 0.1\nsource = \"t\"\n",
        &["parameter 1 (mod17.lue_max): a class's model parameter is drawn per type: name the vegetation_type (or \"*\")"],
    );
}

/// MOD17's ramp parameters per type (`mod17.tmin_max` in K, `mod17.vpd_min` relative): a pixel's response is
/// the parabola through the model run with its type's parameter at -sd, 0 and +sd, which deterministic runs on
/// BPLUT files with that value edited give independently. Grassland's tmin_max 12.02 C +- 1.5 K (the summer's
/// Tmin of 10-12 C sits on the ramp); every other type's vpd_min x (1 +- 0.5) (the tree pixel, MF 650 Pa: its
/// VPD of 477-535 Pa enters the ramp on the minus side only).
#[test]
fn mod17_ramp_parameters_respond_as_runs_on_edited_bpluts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    mod17_drivers(d);
    std::fs::write(
        d.join("u.toml"),
        "name = \"test\"\n[[parameter]]\ntarget = \"mod17.tmin_max\"\nvegetation_type = \"grassland\"\n\
         sd = 1.5\nsource = \"t\"\n[[parameter]]\ntarget = \"mod17.vpd_min\"\nvegetation_type = \"*\"\n\
         sd = 0.5\nsource = \"t\"\n",
    )
    .unwrap();
    let p = "2021-06_2021-08";
    let npp_of = |out: &str, extra: &[&str]| {
        npp_cmd(d, &["--model", "mod17", "--months", "6-8"])
            .args(extra)
            .arg("-o")
            .arg(d.join(out))
            .assert()
            .success();
        read_band(&d.join(out).join(format!("NPP_gC_m2_{p}.tif")), 1).0
    };
    let u = d.join("u.toml");
    let draws = ["--draws", "50", "--uncertainty", u.to_str().unwrap()];
    let base = npp_of("a", &draws);
    let sens = |b| read_band(&d.join("a").join(format!("driver_sensitivity_{p}.tif")), b).0;
    // The built-in BPLUT with one class's value edited (the line `key = ...` of the class `umd = N`).
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mod17/bplut-c5.1.toml"),
    )
    .unwrap();
    let edited = |umd: &str, key: &str, value: f64, out: &str| {
        let at = text.find(&format!("umd = {umd}\n")).unwrap();
        let line = at + text[at..].find(&format!("{key} = ")).unwrap();
        let end = line + text[line..].find('\n').unwrap();
        let new = format!("{}{key} = {value}{}", &text[..line], &text[end..]);
        std::fs::write(d.join("b.toml"), new).unwrap();
        npp_of(out, &["--bplut", d.join("b.toml").to_str().unwrap()])
    };
    let (t_plus, t_minus) = (
        edited("10", "tmin_max_degc", 12.02 + 1.5, "t+"),
        edited("10", "tmin_max_degc", 12.02 - 1.5, "t-"),
    );
    let (v_plus, v_minus) = (
        edited("5", "vpd_min_pa", 650.0 * 1.5, "v+"),
        edited("5", "vpd_min_pa", 650.0 * 0.5, "v-"),
    );
    let close = |a: f64, b: f64| (a - b).abs() < 1e-3 * (1.0 + b.abs());
    for px in [0, 1, 6] {
        let (s, c) = (
            (t_plus[px] - t_minus[px]) / 3.0,
            (t_plus[px] - 2.0 * base[px] + t_minus[px]) / 2.25,
        );
        assert!(
            close(sens(1)[px], s) && s < 0.0,
            "px {px}: {} {s}",
            sens(1)[px]
        );
        assert!(close(sens(3)[px], c), "px {px}: {} {c}", sens(3)[px]);
    }
    let (s, c) = (
        (v_plus[2] - v_minus[2]) / 1.0,
        (v_plus[2] - 2.0 * base[2] + v_minus[2]) / 0.25,
    );
    assert!(close(sens(5)[2], s) && s > 0.0, "{} {s}", sens(5)[2]);
    assert!(close(sens(7)[2], c) && c < 0.0, "{} {c}", sens(7)[2]);
    assert_eq!(
        sens(1)[2],
        0.0,
        "the tree pixel's type has no tmin_max entry"
    );
}

/// A number of grassland's (code 30) row of table `draws_2021-06.csv` or `draws_variance_2021-06.csv` in `dir`
/// whose column `key.0` is `key.1`.
fn grassland(dir: &Path, table: &str, key: (&str, &str), column: &str) -> f64 {
    let rows = common::csv_rows(&dir.join(format!("{table}_2021-06.csv")));
    let row = rows
        .iter()
        .find(|r| r["code"] == "30" && r[key.0] == key.1)
        .unwrap_or_else(|| panic!("{key:?}: {rows:?}"));
    common::cell(row, column)
}

/// Every grassland pixel of the June fixture (0, 1, 6) has an NEP sd within 4 % of `want` in `dir`'s draws.
fn grassland_nep_sd_is(dir: &Path, want: f64) {
    let sd = read_band(&dir.join("NEP_gC_m2_2021-06_draws.tif"), 2).0;
    for px in [0, 1, 6] {
        assert!(
            (sd[px] / want - 1.0).abs() < 0.04,
            "px {px}: {} {want}",
            sd[px]
        );
    }
}

/// Calibration of the drivers' errors against the model itself: 1,000 truths, each the June pixel run on drivers
/// moved by errors drawn from the declared distributions (temperature sd 1 K in every month, precipitation sd 0.2
/// relative: both enter CASA and Rh non-linearly), one pixel each of a 40 x 25 raster of driver rasters. The 90 %
/// interval of 4,000 draws through the responses of the unmoved run covers the truth's NEP in 90 % +- 3 % of
/// them: 904 (the truths are skewed, mean 34.67 against the unmoved 35.00 g C m-2, 5th percentile 31.51: the
/// curvature term puts the interval at 31.58..37.39; slopes alone gave 32.23..37.93 and 881).
#[test]
fn ninety_percent_intervals_of_drivers_errors_cover_the_models_own_truths() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (w, h) = (40, 25);
    let n = w * h;
    common::casa_scene(d, GT, (w, h), (&vec![0.4; n], 0.9), &vec![30; n]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (et, ep) = (
        Normal::new(0.0, 1.0).unwrap(),
        Normal::new(0.0, 0.2).unwrap(),
    );
    let errs: Vec<(f64, f64)> = (0..n)
        .map(|_| (et.sample(&mut rng), ep.sample(&mut rng)))
        .collect();
    // Monthly rasters (12 bands, the normals of any year): the base, and each pixel's truth.
    let rasters = |name: &str, moved: bool| {
        let bands = |m: usize| -> Vec<f32> {
            errs.iter()
                .map(|&(t, p)| {
                    let (t, p) = if moved { (t, p) } else { (0.0, 0.0) };
                    (if name == "t" {
                        TEMPS[m] + t
                    } else {
                        60.0 * (1.0 + p)
                    }) as f32
                })
                .collect()
        };
        let named: Vec<(String, Vec<f32>)> =
            (0..12).map(|m| (format!("m{}", m + 1), bands(m))).collect();
        let refs: Vec<(&str, Vec<f32>)> =
            named.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let file = format!("{name}_{}.tif", if moved { "truth" } else { "base" });
        write_raster(&d.join(&file), Some(32630), GT, (w, h), &refs, None);
        file
    };
    std::fs::write(d.join("station.csv"), station_csv(None, |t| t, 500.0)).unwrap();
    for moved in [false, true] {
        let (t, p) = (rasters("t", moved), rasters("p", moved));
        let toml = format!(
            "step = \"month\"\n[raster.tmean]\nfile = \"{t}\"\nunit = \"degC\"\n\
             [raster.precip]\nfile = \"{p}\"\nunit = \"mm\"\n[station]\nfile = \"station.csv\"\n\
             year = \"year\"\nmonth = \"month\"\n[station.columns]\nsrad = {{ column = \"sol\", unit = \"MJ m-2\" }}\n"
        );
        std::fs::write(
            d.join(if moved { "truth.toml" } else { "drivers.toml" }),
            toml,
        )
        .unwrap();
    }
    std::fs::write(
        d.join("u.toml"),
        "name = \"test\"\n[[parameter]]\ntarget = \"temperature\"\nsd = 1.0\nsource = \"test\"\n\
         [[parameter]]\ntarget = \"precipitation\"\nsd = 0.2\nsource = \"test\"\n",
    )
    .unwrap();
    let base = draws_run(d, "2", ("4000", "9"), "base");
    let band = |b| read_band(&base.join("NEP_gC_m2_2021-06_draws.tif"), b).0[0];
    let (p05, p95) = (band(3), band(5));
    std::fs::copy(d.join("truth.toml"), d.join("drivers.toml")).unwrap();
    npp_cmd(d, &["--months", "6-6", "--rh", "pei2009", "-o"])
        .arg(d.join("truth"))
        .assert()
        .success();
    let truth = read_band(&d.join("truth").join("NEP_gC_m2_2021-06.tif"), 1).0;
    let hits = truth.iter().filter(|&&v| p05 <= v && v <= p95).count();
    assert!(
        (870..=930).contains(&hits),
        "{hits} of {n} in [{p05}, {p95}]"
    );
}

/// 4,000 draws (seed 5) of the uncertainty file `file(km)` into `d`: with knots 1 m apart on 1 and 3 threads,
/// and 1,000 km apart.
fn field_runs(
    d: &Path,
    file: impl Fn(&str) -> String,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |km: &str, threads: &str, out: &str| {
        std::fs::write(d.join("u.toml"), file(km)).unwrap();
        draws_run(d, threads, ("4000", "5"), out)
    };
    (
        run("0.001", "1", "a"),
        run("0.001", "3", "b"),
        run("1000", "2", "c"),
    )
}

/// `npp --draws 10` for June with an uncertainty file of `text` is refused with exit 2, every `want` in its
/// message, and writes nothing.
fn bad_uncertainty(d: &Path, text: &str, want: &[&str]) {
    std::fs::write(d.join("bad.toml"), text).unwrap();
    let bad = d.join("bad.toml");
    let args = ["--draws", "10", "--uncertainty", bad.to_str().unwrap()];
    refused_with(d, &d.join("x"), "6-6", &args, want);
}

/// A driver's error as a spatial field (`length_km` on a driver) on the hand-worked June: radiation's field with
/// sd 0.1 beside a run-wide temperature error of sd 1 K, whose term in a pixel's NEP is S e + C e^2 / 2 (S and C
/// the response raster's temperature slopes and curvatures, NPP's minus Rh's; variance S^2 + C^2 / 2). A
/// grassland pixel's NEP spread is what run-wide errors give, sqrt((0.1 x 56.228427)^2 + S^2 + C^2 / 2) (a field's
/// value at a pixel is standard normal). Grassland's three pixels (equal areas A) with knots 1 m apart
/// (independent) have an NPP total variance of A^2 (3 (0.1 x 56.228427)^2 + 9 (S_npp^2 + C_npp^2 / 2)), and
/// with knots 1,000 km apart A^2 (9 (0.1 x 56.228427)^2 + 9 (S_npp^2 + C_npp^2 / 2)); the NEP's variance splits
/// one at a time as radiation 3 (5.6228427)^2 against temperature 9 (S^2 + C^2 / 2) (knots 1 m apart). 4,000
/// draws.
#[test]
fn a_drivers_field_averages_over_a_class_by_its_length() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    let (near, near3, far) = field_runs(d, |km| {
        format!(
            "name = \"test\"\n[[parameter]]\ntarget = \"radiation\"\nsd = 0.1\nlength_km = {km}\n\
             source = \"test\"\n[[parameter]]\ntarget = \"temperature\"\nsd = 1.0\nsource = \"test\"\n"
        )
    });
    let sens = |band| read_band(&near.join("driver_sensitivity_2021-06.tif"), band).0[0];
    let r = 0.1 * NPP_JUNE;
    // Temperature's term in a pixel's NPP and NEP: variance S^2 + C^2 / 2.
    let var_npp = sens(1).powi(2) + sens(3).powi(2) / 2.0;
    let var_nep = (sens(1) - sens(2)).powi(2) + (sens(3) - sens(4)).powi(2) / 2.0;
    grassland_nep_sd_is(&near, (r * r + var_nep).sqrt());
    // t C over 900 m2 pixels: back to g C m-2 x A.
    let npp_sd = |dir: &Path| grassland(dir, "draws", ("quantity", "NPP"), "sd") * 1e6 / 900.0;
    let near_want = (3.0 * r * r + 9.0 * var_npp).sqrt();
    let far_want = (9.0 * r * r + 9.0 * var_npp).sqrt();
    assert!(
        (npp_sd(&near) / near_want - 1.0).abs() < 0.04,
        "{} {near_want}",
        npp_sd(&near)
    );
    assert!(
        (npp_sd(&far) / far_want - 1.0).abs() < 0.04,
        "{} {far_want}",
        npp_sd(&far)
    );
    let share = |src| {
        grassland(
            &near,
            "draws_variance",
            ("source", src),
            "share_of_NEP_variance",
        )
    };
    let (vr, vt) = (3.0 * r * r, 9.0 * var_nep);
    let rad = share("driver:radiation (field 0.001 km)");
    assert!(
        (rad / (vr / (vr + vt)) - 1.0).abs() < 0.06,
        "{rad} {}",
        vr / (vr + vt)
    );
    let temp = share("driver:temperature");
    assert!(
        (temp / (vt / (vr + vt)) - 1.0).abs() < 0.06,
        "{temp} {}",
        vt / (vr + vt)
    );
    same_files(&near, &near3);
}

/// `npp` for the hand-worked June (Pei et al.'s Rh) with `threads`, (draws, seed) over `d/u.toml`, into `d/out`.
fn draws_run(
    d: &Path,
    threads: &str,
    (draws, seed): (&str, &str),
    out: &str,
) -> std::path::PathBuf {
    npp_cmd(
        d,
        &["--months", "6-6", "--rh", "pei2009", "--threads", threads],
    )
    .args(["--draws", draws, "--seed", seed, "--uncertainty"])
    .arg(d.join("u.toml"))
    .arg("-o")
    .arg(d.join(out))
    .assert()
    .success();
    d.join(out)
}

/// Every file of folder `a` has the bytes of its namesake in `b` (runs with other thread counts).
fn same_files(a: &Path, b: &Path) {
    for f in common::list_dir(a) {
        let same = std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap();
        assert!(
            same,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A spatially correlated NPP error (`length_km`) on the hand-worked June: NPP's field with sd 0.1 and Rh's
/// run-wide multiplier with sd 0.2 give each grassland pixel the same NEP spread as a run-wide NPP multiplier,
/// sqrt((0.1 x 56.228427)^2 + (0.2 x 21.227349)^2) = 7.045487 g C m-2 (a field's value at a pixel is standard
/// normal). The class total differs: grassland's three pixels (equal areas A, 30 m apart) with knots 1 m
/// apart (each pixel centre on a knot of its own: independent) have an NPP sd of 0.1 / sqrt(3) = 0.05774 of
/// the total, and the NEP's variance splits by hand as NPP 0.01 x 3 x 56.228427^2 = 94.848 A^2 against Rh
/// 0.04 x (3 x 21.227349)^2 = 162.22 A^2: shares 0.3690 and 0.6310, Rh dominant. With a length of 1,000 km
/// the three pixels move together: sd 0.1 of the total. 4,000 draws estimate an sd within about 1.1 %.
#[test]
fn a_spatial_field_spreads_pixels_alike_and_class_totals_by_its_length() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    let (near, near3, far) = field_runs(d, |km| {
        format!(
            "name = \"test\"\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"*\"\nsd = 0.1\n\
             length_km = {km}\nsource = \"test\"\n[[parameter]]\ntarget = \"rh\"\nsd = 0.2\nsource = \"test\"\n"
        )
    });
    grassland_nep_sd_is(&near, 7.045487);
    let npp_spread = |dir: &Path| {
        let npp = ("quantity", "NPP");
        grassland(dir, "draws", npp, "sd") / grassland(dir, "draws", npp, "mean")
    };
    assert!(
        (npp_spread(&near) / 0.057735 - 1.0).abs() < 0.04,
        "{}",
        npp_spread(&near)
    );
    assert!(
        (npp_spread(&far) / 0.1 - 1.0).abs() < 0.04,
        "{}",
        npp_spread(&far)
    );
    let shares = common::csv_rows(&near.join("draws_variance_2021-06.csv"));
    let share = |src: &str| {
        let r = shares
            .iter()
            .find(|r| r["code"] == "30" && r["source"] == src);
        let r = r.unwrap_or_else(|| panic!("{src}: {shares:?}"));
        (
            common::cell(r, "share_of_NEP_variance"),
            r["dominant"].clone(),
        )
    };
    let (npp, rh) = (share("npp:field 0.001 km"), share("rh"));
    assert!((npp.0 / 0.3690 - 1.0).abs() < 0.06, "{npp:?}");
    assert!((rh.0 / 0.6310 - 1.0).abs() < 0.06, "{rh:?}");
    assert_eq!((npp.1.as_str(), rh.1.as_str()), ("false", "true"));
    same_files(&near, &near3);
    // A length on a target it cannot apply to is refused, naming the parameter. Every problem at once, before
    // the model runs (a misspelt vegetation type would silently take no spread).
    bad_uncertainty(
        d,
        "name = \"bad\"\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"grassland\"\nsd = 0.1\n\
         length_km = 5\nsource = \"t\"\n[[parameter]]\ntarget = \"emissions\"\nsd = 0.1\nlength_km = -1\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"npp\"\nvegetation_type = \"grasland\"\nsd = 0.1\nsource = \"t\"\n\
         [[parameter]]\ntarget = \"rh\"\nsd = -1\nsource = \"t\"\n",
        &[
        "before computing",
        "parameter 1 (npp): a length_km applies to every pixel",
        "parameter 2 (emissions): length_km (a spatially correlated error) is for npp, rh, a driver's error and an emissions allocation error only",
        "parameter 3 (npp): vegetation_type \"grasland\" is not one of carbonmap's types",
            "parameter 4 (rh): sd must be a number >= 0",
        ],
    );
}

/// The built-in uncertainty file by name: on the hand-worked June (grassland NPP 56.228427, Rh 21.227349 g C
/// m-2), NPP's sd 0.29 and Rh's 0.18 (models/uncertainty/carbonmap-validation.toml, independent) give a NEP sd
/// of sqrt((0.29 x 56.228427)^2 + (0.18 x 21.227349)^2) = sqrt(265.8936 + 14.5994) = 16.74793 g C m-2.
#[test]
fn the_built_in_uncertainty_file_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    npp_cmd(d, &["--months", "6-6", "--rh", "pei2009"])
        .args([
            "--draws",
            "4000",
            "--uncertainty",
            "carbonmap-validation",
            "-o",
        ])
        .arg(d.join("out"))
        .assert()
        .success();
    let f = d.join("out/NEP_gC_m2_2021-06_draws.tif");
    let sd = read_band(&f, 2).0;
    // 4000 draws estimate an sd within about 1.1 % (1 / sqrt(2n)); 4 % is over three of those.
    assert!((sd[0] / 16.74793 - 1.0).abs() < 0.04, "{}", sd[0]);
    assert_eq!(
        common::metadata_item(&f, "UNCERTAINTY").as_deref(),
        Some("carbonmap-validation")
    );
}

/// Land-cover confusion in the draws' totals (`--confusion`): the classifier's matrix says the area mapped as
/// grassland is truly 30 of 40 samples grassland and 10 built-up (no NPP, no Rh); tree cover and built-up are
/// what they are mapped as. With no parameter spread, the grassland row's NEP is its plain NEP times the
/// grassland share: mean 0.75 x, sd x sqrt(0.75 x 0.25 / 41) = 0.0676 x (Dirichlet(30, 10), by hand); the whole
/// area loses a quarter of the grassland's NEP; land cover is the only and dominant source. Per pixel the same
/// matrix draws each grassland pixel's class.
#[test]
fn land_cover_confusion_moves_area_between_classes_in_the_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("u.toml"),
        "name = \"none\"\n[[parameter]]\ntarget = \"rh\"\nsd = 0.0\nsource = \"test: no spread\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("confusion_matrix.csv"),
        "predicted\\reference,\"10 Tree cover\",\"30 Grassland\",\"50 Built-up\"\n\
         \"10 Tree cover\",12,0,0\n\"30 Grassland\",0,30,10\n\"50 Built-up\",0,0,7\n",
    )
    .unwrap();
    let run = |out: &str, extra: &[&str]| {
        npp_cmd(d, &["--months", "6-6", "--rh", "pei2009"])
            .args(["--draws", "4000", "--uncertainty"])
            .arg(d.join("u.toml"))
            .args(extra)
            .arg("-o")
            .arg(d.join(out))
            .assert()
            .success();
        common::csv_rows(&d.join(out).join("draws_2021-06.csv"))
    };
    let plain = run("plain", &[]);
    let conf_arg = d.join("confusion_matrix.csv");
    let conf = run("conf", &["--confusion", conf_arg.to_str().unwrap()]);
    let nep = |rows: &[std::collections::HashMap<String, String>], code: &str, col: &str| {
        let r = rows
            .iter()
            .find(|r| r["code"] == code && r["quantity"] == "NEP")
            .unwrap();
        common::cell(r, col)
    };
    let grass = nep(&plain, "30", "mean");
    assert!(grass > 0.0 && nep(&plain, "30", "sd") == 0.0);
    assert!((nep(&conf, "30", "mean") / (0.75 * grass) - 1.0).abs() < 0.01);
    let sd = (0.75f64 * 0.25 / 41.0).sqrt() * grass;
    assert!(
        (nep(&conf, "30", "sd") / sd - 1.0).abs() < 0.04,
        "{}",
        nep(&conf, "30", "sd")
    );
    let all = nep(&plain, "all", "mean");
    assert!((nep(&conf, "all", "mean") - (all - 0.25 * grass)).abs() < 0.01 * grass);
    // Tree cover is all tree cover.
    assert_eq!(nep(&conf, "10", "mean"), nep(&plain, "10", "mean"));
    // Per pixel: in each draw a grassland pixel is grassland with the drawn share p ~ Beta(30, 10) (its own
    // NEP, 35.001078 g C m-2 by hand) and built-up otherwise (built-up's mean, 0): a Bernoulli(0.75) of 35.001078,
    // mean 26.250809, sd 35.001078 sqrt(0.75 x 0.25) = 15.155220, 5th percentile 0, median and 95th 35.001078.
    // 4000 draws: the mean within 4 x 15.16 / sqrt(4000) = 0.96, the sd within 2 %. Tree cover's pixel (its row
    // all tree cover) does not move.
    let band = |b| read_band(&d.join("conf/NEP_gC_m2_2021-06_draws.tif"), b).0;
    let (mean, sd, p05, p50, p95) = (band(1), band(2), band(3), band(4), band(5));
    assert!((mean[0] - 26.250809).abs() < 0.96, "{}", mean[0]);
    assert!((sd[0] / 15.155220 - 1.0).abs() < 0.02, "{}", sd[0]);
    assert_eq!(p05[0], 0.0);
    for q in [p50[0], p95[0]] {
        assert!((q - 35.001078).abs() < 1e-4, "{q}");
    }
    assert_eq!(sd[2], 0.0);
    let shares = common::csv_rows(&d.join("conf/draws_variance_2021-06.csv"));
    let lc = shares
        .iter()
        .find(|r| r["code"] == "30" && r["source"] == "landcover")
        .unwrap();
    assert!((common::cell(lc, "share_of_NEP_variance") - 1.0).abs() < 1e-9);
    assert_eq!(lc["dominant"], "true");
    // A matrix of another map is refused before computing, naming the codes.
    std::fs::write(
        d.join("other.csv"),
        "predicted\\reference,\"1 a\",\"2 b\"\n\"1 a\",1,0\n\"2 b\",0,1\n",
    )
    .unwrap();
    let other = d.join("other.csv");
    refused_with(
        d,
        &d.join("refused"),
        "6-6",
        &[
            "--draws",
            "10",
            "--uncertainty",
            d.join("u.toml").to_str().unwrap(),
            "--confusion",
            other.to_str().unwrap(),
        ],
        &["class code(s) 1, 2 are not in the legend"],
    );
}
