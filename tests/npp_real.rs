//! NPP stages on real data (CARBONMAP_REAL_DATA): MOD17 at the FR-Pue flux tower, and CRU climate rasters in
//! geographic degrees warped onto a Landsat UTM grid.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use carbonmap::drivers::{Drivers, Var};
use carbonmap::io::Grid;
use common::carbonmap;

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.deserialize().map(|x| x.unwrap()).collect()
}

#[test]
fn fr_pue_site_gpp_against_the_tower() {
    let Some(root) = common::real_data() else {
        return;
    };
    let site = root.join("fluxtower-fr-pue");
    let tmp = tempfile::tempdir().unwrap();
    // The example drivers file of the README, pointed at this machine's real-data folder.
    common::fr_pue_drivers(&root, tmp.path());
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "site",
            "--pft",
            "2",
            "--years",
            "2007-2010",
            "--observed-unit",
            "g C m-2 d-1",
            "--drivers",
        ])
        .arg(tmp.path().join("drivers.toml"))
        .arg("--observed")
        .arg(site.join("FR-Pue_daily_gpp_observed.csv"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();

    // Observed annual sums as published with the data (SOURCE.txt): 1261, 991, 1061, 980 g C m-2 yr-1.
    let annual = csv_rows(&out.join("site_annual.csv"));
    for (row, want) in annual.iter().zip([1261.0, 991.0, 1061.0, 980.0]) {
        let got: f64 = row["gpp_observed_gC_m2"].parse().unwrap();
        assert!((got - want).abs() < 1.0, "{}: {got} vs {want}", row["year"]);
    }

    // 2007-07-01 by hand from that day's forcing row, with the EBF column of Zhao's C5.1 BPLUT (LUEmax
    // 0.001405 kg C MJ-1, Tmin ramp -8..9.09 C, VPD ramp 1000..4000 Pa): PAR = PPFD (mol m-2 s-1) x 1e6 / 4.57
    // umol J-1 x 86400 s / 1e6 = MJ m-2 d-1; GPP = 1000 x LUEmax x f(Tmin) x f(VPD) x FPAR x PAR.
    let forcing = csv_rows(&site.join("FR-Pue_daily_forcing.csv"));
    let day = forcing.iter().find(|r| r["date"] == "2007-07-01").unwrap();
    let f = |k: &str| day[k].parse::<f64>().unwrap();
    let ft = ((f("tmin") + 8.0) / (9.09 + 8.0)).clamp(0.0, 1.0);
    let fv = (1.0 - (f("vpd") - 1000.0) / 3000.0).clamp(0.0, 1.0);
    let par = f("ppfd") * 1e6 / 4.57 * 86_400.0 / 1e6;
    let want = 1000.0 * 0.001405 * ft * fv * f("fapar") * par;
    let daily = csv_rows(&out.join("site_daily.csv"));
    let got: f64 = daily.iter().find(|r| r["date"] == "2007-07-01").unwrap()["gpp_model_gC_m2_d"]
        .parse()
        .unwrap();
    assert!((got - want).abs() < 1e-5 * want.max(1.0), "{got} vs {want}");

    // The comparison pairs every observed day of 2007-2010 (counted here from the observation file).
    let n_obs = csv_rows(&site.join("FR-Pue_daily_gpp_observed.csv"))
        .iter()
        .filter(|r| r["date"].as_str() < "2011" && !r["gpp"].trim().is_empty() && r["gpp"] != "NA")
        .count();
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("site_comparison.json")).unwrap())
            .unwrap();
    assert_eq!(cmp["daily"]["n"].as_u64().unwrap() as usize, n_obs);
    assert_eq!(cmp["annual"]["n"].as_u64().unwrap(), 4);
}

#[test]
fn cru_climate_rasters_warped_onto_the_colorado_landsat_grid() {
    let Some(root) = common::real_data() else {
        return;
    };
    let na = root.join("climate-north-america");
    let tmp = tempfile::tempdir().unwrap();
    let drivers = format!(
        "step = \"month\"\n[raster.tmean]\nfile = {:?}\nunit = \"degC\"\n[raster.precip]\nfile = {:?}\nunit = \"mm\"\n",
        na.join("temp_NA.tif").to_string_lossy(),
        na.join("prec_NA.tif").to_string_lossy()
    );
    let path = tmp.path().join("drivers.toml");
    std::fs::write(&path, drivers).unwrap();
    // The Landsat scene grid: 61 x 61 px, UTM 13N, centred at 40.288 N, 106.915 W.
    let scene =
        root.join("colorado-landsat/lsts/LE70350322008118EDC00/LE70350322008118EDC00_b3.tif");
    let grid = Grid::from_raster(&scene).unwrap();
    // CRU CL 2.0 is a 1961-1990 climatology: any year reads the same 12 bands.
    let mut d = Drivers::load(&path, 2008).unwrap();
    d.check(&grid, &[(Var::Tmean, "test"), (Var::Precip, "test")])
        .unwrap();
    d.open(&grid).unwrap();
    let centre = 30 * 61 + 30;
    let t_jan = d
        .read(Var::Tmean, 0, &carbonmap::io::Window::rows(0, 61, 61))
        .unwrap()
        .at(centre);
    let t_jul = d
        .read(Var::Tmean, 6, &carbonmap::io::Window::rows(0, 61, 61))
        .unwrap()
        .at(centre);
    let p: Vec<f64> = (0..12)
        .map(|m| {
            d.read(Var::Precip, m, &carbonmap::io::Window::rows(0, 61, 61))
                .unwrap()
                .at(centre)
        })
        .collect();
    // SOURCE.txt, checked at this site: T January -10 C, July 15 C; precipitation 34-55 mm per month
    // (bilinear weights of the 10' cells around the scene allow a degree or a few mm either way).
    assert!((t_jan + 10.0).abs() <= 1.5, "{t_jan}");
    assert!((t_jul - 15.0).abs() <= 1.5, "{t_jul}");
    assert!(p.iter().all(|&x| (30.0..=60.0).contains(&x)), "{p:?}");

    // The same North-American rasters cannot drive the Exeter grid.
    let exeter =
        Grid::from_raster(&root.join("exeter-s2-hls/s2_l2a/exe_2024-08-01_12-21-19.tif")).unwrap();
    let err = d
        .check(&exeter, &[(Var::Tmean, "test")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not cover the analysis grid (covers 0.0 %"),
        "{err}"
    );
}

#[test]
fn exeter_demo_npp_is_plausible_for_both_models_and_fuses_with_the_uk_lattice() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The README's Exeter example files, pointed at this machine's real-data folder.
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/exeter");
    let rd = root.to_string_lossy().to_string();
    for f in ["hls-2021.toml", "yeovilton-2021.toml"] {
        let text = std::fs::read_to_string(format!("{ex}/{f}")).unwrap();
        std::fs::write(
            tmp.path().join(f),
            text.replace("../../../shared/real-data", &rd),
        )
        .unwrap();
    }
    let ndvi = tmp.path().join("ndvi");
    carbonmap()
        .args([
            "indices", "--period", "month", "--index", "NDVI", "--stats", "median", "--stack",
        ])
        .arg(tmp.path().join("hls-2021.toml"))
        .arg("-o")
        .arg(&ndvi)
        .assert()
        .success();
    let mut grass = BTreeMap::new();
    for model in ["casa", "mod17"] {
        let out = tmp.path().join(model);
        carbonmap()
            .args([
                "npp",
                "--model",
                model,
                "--legend",
                "sentinel2-scl",
                "--landcover-band",
                "5",
            ])
            .args(["--year", "2021", "--months", "6-7", "--ndvi"])
            .arg(&ndvi)
            .arg("--landcover")
            .arg(root.join("exeter-s2-hls/s2_l2a/exe_2024-06-02_12-21-19_EPSG27700.tif"))
            .arg("--drivers")
            .arg(tmp.path().join("yeovilton-2021.toml"))
            .arg("-o")
            .arg(&out)
            .assert()
            .success();
        let table =
            std::fs::read_to_string(out.join(format!("{model}_summary_2021-06_2021-07.csv")))
                .unwrap();
        let mut r = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(table.as_bytes());
        let rows: Vec<BTreeMap<String, String>> = r.deserialize().map(|x| x.unwrap()).collect();
        let v = |code: &str, k: &str| -> f64 {
            rows.iter().find(|r| r["code"] == code).unwrap()[k]
                .parse()
                .unwrap()
        };
        // Not vegetated (5) and water (6): no uptake by definition.
        assert_eq!(
            (v("5", "NPP_mean_gC_m2"), v("6", "NEP_mean_gC_m2")),
            (0.0, 0.0)
        );
        // Grassland: positive, and two summer months below MOD17's global mean annual cropland NPP
        // (486 g C m-2 yr-1, Zhao's C5.1 table); Rh positive and smaller than NPP in midsummer.
        let npp = v("4", "NPP_mean_gC_m2");
        let rh = v("4", "Rh_mean_gC_m2");
        assert!(npp > 50.0 && npp < 486.0, "{model}: {npp}");
        assert!(rh > 0.0 && rh < npp, "{model}: {rh}");
        grass.insert(model, npp);
    }
    // The two engines, with independent parameterisations, agree within 25 %.
    let (c, m) = (grass["casa"], grass["mod17"]);
    assert!((c - m).abs() / c.max(m) < 0.25, "{c} {m}");

    // Net balance against the UK 20 km sector lattice (Tg CO2 km-2 yr-1, documented in its SOURCE.txt), with
    // two made-up zones (west and east halves of the AOI) under one city. The sink covers June-July only,
    // declared explicitly as the year's figure (an underestimate of the annual sink).
    let sink = tmp
        .path()
        .join("casa/sequestration_tCO2_ha_2021-06_2021-07.tif");
    let (x0, y0, x1, y1) = {
        let ds = gdal::Dataset::open(&sink).unwrap();
        let gt = ds.geo_transform().unwrap();
        let (w, h) = ds.raster_size();
        (
            gt[0],
            gt[3] + gt[5] * h as f64,
            gt[0] + gt[1] * w as f64,
            gt[3],
        )
    };
    // The HLS grid is a local Lambert azimuthal equal-area projection: write the zones in longitude/latitude
    // (GeoJSON's default CRS), edges densified.
    let to_lonlat = |pts: Vec<(f64, f64)>| -> String {
        use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
        let ds = gdal::Dataset::open(&sink).unwrap();
        let mut from = ds.spatial_ref().unwrap();
        from.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut to = SpatialRef::from_epsg(4326).unwrap();
        to.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = CoordTransform::new(&from, &to).unwrap();
        let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
        let mut zs = vec![0.0; xs.len()];
        ct.transform_coords(&mut xs, &mut ys, &mut zs).unwrap();
        let ring: Vec<String> = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| format!("[{x},{y}]"))
            .collect();
        format!("[[{}]]", ring.join(","))
    };
    let xm = 0.5 * (x0 + x1);
    let poly = |a: f64, b: f64| {
        let n = 10;
        let mut pts = Vec::new();
        for i in 0..n {
            pts.push((a + (b - a) * i as f64 / n as f64, y0));
        }
        for i in 0..n {
            pts.push((b, y0 + (y1 - y0) * i as f64 / n as f64));
        }
        for i in 0..n {
            pts.push((b - (b - a) * i as f64 / n as f64, y1));
        }
        for i in 0..n {
            pts.push((a, y1 - (y1 - y0) * i as f64 / n as f64));
        }
        pts.push((a, y0));
        to_lonlat(pts)
    };
    std::fs::write(
        tmp.path().join("zones.geojson"),
        format!(
            r#"{{"type": "FeatureCollection", "features": [
  {{"type": "Feature", "properties": {{"city": "Exeter", "part": "west"}}, "geometry": {{"type": "Polygon", "coordinates": {}}}}},
  {{"type": "Feature", "properties": {{"city": "Exeter", "part": "east"}}, "geometry": {{"type": "Polygon", "coordinates": {}}}}}]}}"#,
            poly(x0, xm),
            poly(xm, x1)
        ),
    )
    .unwrap();
    let bal = tmp.path().join("balance");
    carbonmap()
        .args([
            "balance",
            "--sink-unit",
            "t CO2 ha-1 yr-1",
            "--lattice-unit",
            "Tg CO2 km-2 yr-1",
        ])
        .arg("--sink")
        .arg(&sink)
        .arg("--lattice")
        .arg(root.join("uk-emissions-20km/co2BySector_OSGB_20km.tif"))
        .arg("--zones")
        .arg(tmp.path().join("zones.geojson"))
        .args(["--zone-fields", "city,part", "-o"])
        .arg(&bal)
        .assert()
        .success();
    for f in [
        "net_balance_tCO2_ha_yr.tif",
        "emissions_tCO2_ha_yr.tif",
        "lattice_balance.tif",
        "lattice_balance.csv",
        "zones_balance.csv",
        "zones_balance.gpkg",
        "net_balance.png",
    ] {
        assert!(bal.join(f).is_file(), "{f}");
    }
    let rows = |f: &str| -> Vec<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(bal.join(f)).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        r.deserialize().map(|x| x.unwrap()).collect()
    };
    let num = |r: &BTreeMap<String, String>, k: &str| -> f64 { r[k].parse().unwrap() };
    let cells = rows("lattice_balance.csv");
    // SOURCE.txt: Exeter is in 20 km cell row 61 col 17, 0.00149 Tg CO2 km-2 yr-1 in all sectors
    // = 0.00149 x 1e6 t x 400 km2 = 596 000 t CO2 yr-1 (three significant digits given).
    let ex = cells
        .iter()
        .find(|r| r["cell_id"] == "r61c17")
        .expect("Exeter's cell");
    let total = num(ex, "emissions_total_tCO2_yr");
    assert!((total - 596_000.0).abs() < 0.005 * 596_000.0, "{total}");
    // Mass conservation: the emissions given to the fine pixels are the cells' covered shares, and the
    // zones add up to the whole.
    let zones = rows("zones_balance.csv");
    let get = |lvl: &str, z: &str| {
        zones
            .iter()
            .find(|r| r["level"] == lvl && r["zone"] == z)
            .unwrap()
    };
    let covered: f64 = cells
        .iter()
        .map(|r| num(r, "emissions_covered_tCO2_yr"))
        .sum();
    let all = num(get("all", "all"), "emissions_total_tCO2_yr");
    assert!((all - covered).abs() < 1e-6 * covered, "{all} {covered}");
    let halves = num(get("part", "west"), "emissions_total_tCO2_yr")
        + num(get("part", "east"), "emissions_total_tCO2_yr");
    assert!((halves - num(get("city", "Exeter"), "emissions_total_tCO2_yr")).abs() < 1e-6 * all);
    // A city centre: a net source, the sink a fraction of the emissions.
    let exeter = get("city", "Exeter");
    assert!(num(exeter, "net_balance_tCO2_yr") > 0.0);
    let ratio = num(exeter, "neutrality_ratio");
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
}
