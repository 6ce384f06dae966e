//! `carbonmap scenario` on a 4 x 2 scene made here: a block of cropland turned into grassland inside a
//! polygon takes the grassland's NDVI (space for time) and, in June, the grassland NPP worked by hand in
//! tests/npp.rs; unchanged pixels differ by exactly zero; the zone table adds up; bad scenarios are refused
//! before computing, every problem at once.

mod common;

use std::path::Path;

use common::{carbonmap, csv_rows, read_band, station_csv, write_raster, DRIVERS};

const W: usize = 4;
const H: usize = 2;
const GT: [f64; 6] = [500_000.0, 30.0, 0.0, 5_600_000.0, 0.0, -30.0];
/// ESA WorldCover: grassland (30) in the west half, cropland (40) in column 2, tree cover (10) at the end.
const LC: [u8; W * H] = [30, 30, 40, 40, 30, 30, 40, 10];
/// June NDVI (the greenest month; the others are 0.9 times June's).
const NDVI: [f32; W * H] = [0.4, 0.4, 0.6, 0.6, 0.4, 0.4, 0.6, 0.7];
/// The hand-worked June of tests/npp.rs: grassland, NDVI 0.4, 15 C, 60 mm, 500 MJ m-2, Pei et al. (2009)'s
/// Rh: NPP 56.228427 g C m-2.
const NPP_JUNE: f64 = 56.228427;

/// A GeoJSON polygon in UTM 30N (the legacy `crs` member GDAL reads).
fn polygon(name: &str, x0: f64, x1: f64, y0: f64, y1: f64) -> String {
    format!(
        r#"{{"type": "Feature", "properties": {{"name": "{name}"}}, "geometry": {{"type": "Polygon", "coordinates": [[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}], [{x0}, {y0}]]]}}}}"#
    )
}

fn collection(features: &[String]) -> String {
    format!(
        r#"{{"type": "FeatureCollection", "crs": {{"type": "name", "properties": {{"name": "urn:ogc:def:crs:EPSG::32630"}}}}, "features": [{}]}}"#,
        features.join(",")
    )
}

fn fixture(d: &Path) {
    common::casa_scene(d, GT, (W, H), (&NDVI, 0.9), &LC);
    std::fs::write(d.join("station.csv"), station_csv(None, |t| t, 500.0)).unwrap();
    std::fs::write(d.join("drivers.toml"), DRIVERS).unwrap();
    // Column 2 (the cropland) and the west and east halves as zones.
    std::fs::write(
        d.join("field.geojson"),
        collection(&[polygon(
            "field",
            500_055.0,
            500_095.0,
            5_599_930.0,
            5_600_010.0,
        )]),
    )
    .unwrap();
    std::fs::write(
        d.join("zones.geojson"),
        collection(&[
            polygon("west", 500_000.0, 500_060.0, 5_599_940.0, 5_600_000.0),
            polygon("east", 500_060.0, 500_120.0, 5_599_940.0, 5_600_000.0),
        ]),
    )
    .unwrap();
}

fn scenario(change: &str) -> String {
    format!(
        r#"name = "field-to-meadow"
description = "the cropland of column 2 becomes grassland"
[base]
ndvi = "ndvi"
landcover = "lc.tif"
legend = "esa-worldcover"
drivers = "drivers.toml"
year = 2021
months = "6-6"
rh = "pei2009"
[zones]
file = "zones.geojson"
fields = ["name"]
[substitution]
distance_m = 100.0
min_pixels = 2
{change}"#
    )
}

/// `carbonmap scenario FILE -o OUT`.
fn scenario_cmd(file: &Path, out: &Path) -> assert_cmd::assert::Assert {
    carbonmap()
        .arg("scenario")
        .arg(file)
        .arg("-o")
        .arg(out)
        .assert()
}

const CHANGE: &str = "[[change]]\npolygons = \"field.geojson\"\nfrom = [40]\nto = 30\n";

#[test]
fn cropland_to_grassland_takes_the_grassland_profile_and_the_zone_totals_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(d.join("scenario.toml"), scenario(CHANGE)).unwrap();
    let out = d.join("out");
    scenario_cmd(&d.join("scenario.toml"), &out).success();
    let period = "2021-06";
    let npp = |run: &str| read_band(&out.join(run).join(format!("NPP_gC_m2_{period}.tif")), 1).0;
    let (base, scen) = (npp("base"), npp("scenario"));
    let changed = [2usize, 6];
    for px in 0..W * H {
        if changed.contains(&px) {
            // The grassland donors' NDVI (0.4 in June, 0.36 otherwise) gives the hand-worked grassland June.
            assert!((scen[px] - NPP_JUNE).abs() < 1e-3, "px {px}: {}", scen[px]);
            assert!(
                base[px] > NPP_JUNE,
                "cropland at NDVI 0.6 grows more: {}",
                base[px]
            );
        } else {
            assert!(
                scen[px].to_bits() == base[px].to_bits()
                    || (scen[px].is_nan() && base[px].is_nan())
            );
        }
    }
    let diff = |name: &str| {
        read_band(
            &out.join("difference")
                .join(format!("{name}_difference_{period}.tif")),
            1,
        )
        .0
    };
    let (dnpp, drh, dseq) = (
        diff("NPP_gC_m2"),
        diff("Rh_gC_m2"),
        diff("sequestration_tCO2_ha"),
    );
    for px in 0..W * H {
        if changed.contains(&px) {
            assert!((dnpp[px] - (scen[px] - base[px])).abs() < 1e-4);
            // Rh depends on the climate only; sequestration = NEP x 44/12 / 100 (g C m-2 to t CO2 ha-1).
            assert_eq!(drh[px], 0.0);
            assert!(
                (dseq[px] - dnpp[px] * 44.0 / 12.0 / 100.0).abs() < 1e-5,
                "{} vs {}",
                dseq[px],
                dnpp[px]
            );
        } else if base[px].is_finite() {
            assert_eq!(dnpp[px], 0.0, "px {px}");
            assert_eq!(dseq[px], 0.0, "px {px}");
        }
    }
    // Zone table: the west half is untouched; the east's sequestration difference is the changed pixels'
    // over their true area: 30 m x 30 m on the map at the central meridian of UTM 30N (x = 500 km, where
    // the scale factor is k0 = 0.9996) is 900 / 0.9996^2 m2 = 0.0900720 ha on the ellipsoid; the total row is
    // the sum of the zones.
    let ha = 0.09 / (0.9996f64 * 0.9996);
    let rows = csv_rows(&out.join(format!("scenario_zones_{period}.csv")));
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    let (west, east, total) = (row("west"), row("east"), row("(total)"));
    let num = |r: &std::collections::HashMap<String, String>, k: &str| common::cell(r, k);
    assert_eq!(num(&west, "sequestration_tCO2_difference"), 0.0);
    assert_eq!(num(&west, "changed_ha"), 0.0);
    assert!(
        (num(&east, "changed_ha") - 2.0 * ha).abs() < 1e-5,
        "{east:?}"
    );
    let want: f64 = changed.iter().map(|&px| dseq[px] * ha).sum();
    let got = num(&east, "sequestration_tCO2_difference");
    assert!(
        (got - want).abs() < 1e-4 * want.abs().max(1e-3),
        "{got} vs {want}"
    );
    for k in [
        "sequestration_tCO2_base",
        "sequestration_tCO2_scenario",
        "NPP_tC_difference",
    ] {
        assert!(
            (num(&total, k) - num(&west, k) - num(&east, k)).abs() < 1e-9,
            "{k}"
        );
    }
    // The substitution: two grassland donors within 100 m, median 0.4 in June.
    let subst = csv_rows(&out.join(format!("scenario_substitution_{period}.csv")));
    let june = subst.iter().find(|r| r["month"] == "2021-06").unwrap();
    assert_eq!(june["donors"], "4");
    assert!((num(june, "ndvi_median") - 0.4).abs() < 1e-7);
    assert!(june["donor_scope"].starts_with("within 100"), "{june:?}");
    let changes = csv_rows(&out.join("scenario_changes.csv"));
    assert_eq!(changes.len(), 1);
    let html = std::fs::read_to_string(out.join("scenario_report.html")).unwrap();
    assert_eq!(
        html.matches("data:image/png;base64").count(),
        6,
        "sequestration and NPP: base, scenario, difference"
    );
    assert_eq!(
        (
            changes[0]["from_code"].as_str(),
            changes[0]["to_code"].as_str(),
            changes[0]["pixels"].as_str()
        ),
        ("40", "30", "2")
    );
    let (lc, _, _) = read_band(&out.join("scenario/landcover_scenario.tif"), 1);
    assert_eq!(lc[2], 30.0);
    assert_eq!(lc[3], 40.0);
}

#[test]
fn bad_scenarios_are_refused_before_computing_with_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("far.geojson"),
        collection(&[polygon(
            "far",
            600_000.0,
            600_100.0,
            5_000_000.0,
            5_000_100.0,
        )]),
    )
    .unwrap();
    let refused = |change: &str, want: &[&str]| {
        std::fs::write(d.join("bad.toml"), scenario(change)).unwrap();
        let out = d.join("bad-out");
        let a = scenario_cmd(&d.join("bad.toml"), &out).code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        for w in want {
            assert!(err.contains(w), "missing '{w}' in:\n{err}");
        }
        assert!(
            !out.exists() || common::list_dir(&out).is_empty(),
            "{:?}",
            common::list_dir(&out)
        );
    };
    // A class the legend does not know and a missing file, together.
    refused(
        "[[change]]\npolygons = \"field.geojson\"\nto = 99\n[[change]]\npolygons = \"nowhere.geojson\"\nto = 30\n",
        &["change 1", "class 99 is not in the legend", "nowhere.geojson", "file does not exist"],
    );
    // Polygons outside the grid, and a rule whose classes are not inside: nothing changes.
    refused(
        "[[change]]\npolygons = \"far.geojson\"\nto = 30\n[[change]]\npolygons = \"field.geojson\"\nfrom = [10]\nto = 30\n",
        &["change 1 (", "change 2 (", "changes no pixel"],
    );
}

/// Two lattice cells of 60 m x 60 m (the west and east halves), energy and transport in t CO2 per cell and
/// year.
fn lattice(d: &Path) {
    write_raster(
        &d.join("lattice.tif"),
        Some(32630),
        [500_000.0, 60.0, 0.0, 5_600_000.0, 0.0, -60.0],
        (2, 1),
        &[
            ("energy", vec![50.0f32, 80.0]),
            ("transport", vec![20.0f32, 30.0]),
        ],
        None,
    );
}

/// Run an emission scenario `file` (holding `emissions`) on the fixture with the lattice; the net balance
/// differences of the west and east zones (t CO2 yr-1).
fn east_west_net(d: &Path, file: &str, emissions: &str) -> (f64, f64) {
    fixture(d);
    lattice(d);
    std::fs::write(d.join(file), emissions_scenario(emissions)).unwrap();
    let out = d.join("out");
    scenario_cmd(&d.join(file), &out).success();
    let rows = csv_rows(&out.join("scenario_balance_zones.csv"));
    let diff = |zone: &str| {
        common::cell(
            rows.iter().find(|r| r["zone"] == zone).unwrap(),
            "net_balance_tCO2_yr_difference",
        )
    };
    (diff("west"), diff("east"))
}

fn emissions_scenario(emissions: &str) -> String {
    scenario("").replace("months = \"6-6\"\n", "")
        + "[balance]\nlattice = \"lattice.tif\"\nlattice_unit = \"t CO2 cell-1 yr-1\"\n"
        + emissions
}

/// Energy -20 % in the east: only the east's net balance changes, by exactly 20 % of its energy emissions
/// (80 t CO2 yr-1 -> -16); sequestration and every NPP output are identical (a scenario without land-cover
/// changes reads the base's own inputs), and the west is untouched.
#[test]
fn an_emission_cut_in_one_zone_changes_only_that_zones_net_balance() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    lattice(d);
    std::fs::write(
        d.join("cut.toml"),
        emissions_scenario("[[emissions]]\nsector = \"energy\"\nzone_field = \"name\"\nzone = \"east\"\nfactor = 0.8\n"),
    )
    .unwrap();
    let out = d.join("out");
    scenario_cmd(&d.join("cut.toml"), &out).success();
    let rows = csv_rows(&out.join("scenario_balance_zones.csv"));
    let row = |zone: &str| rows.iter().find(|r| r["zone"] == zone).unwrap().clone();
    let num = |r: &std::collections::HashMap<String, String>, k: &str| common::cell(r, k);
    let (west, east) = (row("west"), row("east"));
    assert_eq!(
        num(&west, "net_balance_tCO2_yr_difference"),
        0.0,
        "{west:?}"
    );
    assert_eq!(num(&east, "sequestration_tCO2_yr_difference"), 0.0);
    assert!(
        (num(&east, "emissions_total_tCO2_yr_base") - 110.0).abs() < 1e-6,
        "{east:?}"
    );
    assert!(
        (num(&east, "net_balance_tCO2_yr_difference") + 16.0).abs() < 1e-6,
        "{east:?}"
    );
    assert!((num(&east, "emissions_total_tCO2_yr_difference") + 16.0).abs() < 1e-6);
    let zones = csv_rows(&out.join("scenario_zones_2021.csv"));
    assert!(
        zones
            .iter()
            .all(|r| num(r, "sequestration_tCO2_difference") == 0.0),
        "{zones:?}"
    );
    let (dnet, _, _) = read_band(
        &out.join("difference/net_balance_tCO2_ha_yr_difference.tif"),
        1,
    );
    // East pixels: -16 t CO2 over 4 pixels of 900 m2 on the map (0.0900720 ha on the ellipsoid each).
    let ha = 0.09 / (0.9996f64 * 0.9996);
    for (px, v) in dnet.iter().enumerate() {
        let want = if px % W >= 2 { -16.0 / (4.0 * ha) } else { 0.0 };
        assert!((v - want).abs() < 1e-4, "px {px}: {v} vs {want}");
    }
    assert!(common::metadata_item(
        &out.join("scenario/balance/net_balance_tCO2_ha_yr.tif"),
        "EMISSION_CHANGES"
    )
    .unwrap()
    .contains("0.8 x energy in name = east"));
    // Per lattice cell: the east cell (r0c1, 80 of energy) loses its 16, the west cell nothing.
    let cells = csv_rows(&out.join("scenario_balance_lattice.csv"));
    let cell = |id: &str| {
        let r = cells.iter().find(|r| r["cell_id"] == id).unwrap();
        num(r, "net_balance_covered_tCO2_yr_difference")
    };
    assert!((cell("r0c1") + 16.0).abs() < 1e-6, "{cells:?}");
    assert_eq!(cell("r0c0"), 0.0, "{cells:?}");
}

/// Emission changes the lattice or the zones cannot take are refused before anything is computed.
#[test]
fn emission_changes_the_lattice_cannot_take_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    lattice(d);
    std::fs::write(
        d.join("bad.toml"),
        emissions_scenario(
            "[[emissions]]\nsector = \"aviation\"\nfactor = 0.5\n[[emissions]]\nzone_field = \"name\"\nzone = \"north\"\nfactor = 0.9\n[[emissions]]\nfactor = 1.0\n",
        ),
    )
    .unwrap();
    let out = d.join("bad-out");
    let a = scenario_cmd(&d.join("bad.toml"), &out).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    for want in [
        "the lattice has no sector aviation",
        "no zone has name = north",
        "a factor of 1 changes nothing",
    ] {
        assert!(err.contains(want), "missing '{want}' in:\n{err}");
    }
    assert!(!out.join("base").exists());
}

/// A parameter-set scenario: the same land cover and NDVI with another soil-respiration model gives exactly the
/// base's NPP and a different Rh.
#[test]
fn a_parameter_set_scenario_changes_only_what_the_parameters_drive() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("rh.toml"),
        scenario("[parameters]\nrh = \"raich2002-bl2004\"\n"),
    )
    .unwrap();
    let out = d.join("out");
    scenario_cmd(&d.join("rh.toml"), &out).success();
    let diff = |name: &str| {
        read_band(
            &out.join("difference")
                .join(format!("{name}_difference_2021-06.tif")),
            1,
        )
        .0
    };
    let (dnpp, drh) = (diff("NPP_gC_m2"), diff("Rh_gC_m2"));
    assert!(dnpp.iter().all(|v| *v == 0.0 || v.is_nan()), "{dnpp:?}");
    assert!(drh.iter().any(|v| v.abs() > 1.0), "{drh:?}");
}

/// A scenario as a stage of a season config, its composites and year passed by the season: it runs, and a
/// rerun finds it up to date.
#[test]
fn a_scenario_runs_as_a_season_stage_and_reruns_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(d.join("scenario.toml"), scenario(CHANGE)).unwrap();
    std::fs::write(
        d.join("season.toml"),
        "[season]\ndefault = \"2021\"\nout = \"season/{season}\"\n\n[stages.meadow]\ncommand = \"scenario\"\n\
         file = \"scenario.toml\"\nndvi = \"ndvi\"\nyear = \"{year}\"\n",
    )
    .unwrap();
    let run = || {
        let o = assert_cmd::Command::cargo_bin("carbonmap")
            .unwrap()
            .args(["--log-format", "json", "run"])
            .arg(d.join("season.toml"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "stage")
            .filter_map(|v| v["state"].as_str().map(str::to_string))
            .next_back()
            .unwrap_or_default()
    };
    assert_eq!(run(), "done");
    assert!(d
        .join("season/2021/meadow/scenario_zones_2021-06.csv")
        .exists());
    assert_eq!(run(), "up to date");
}

/// Transport halved inside a polygon (column 2, half of the east lattice cell): the east's net balance falls by
/// half of that half-cell's transport, 30 / 2 / 2 = 7.5 t CO2 yr-1, and the west is untouched.
#[test]
fn an_emission_change_inside_polygons_changes_the_pixels_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let (west, east) = east_west_net(
        tmp.path(),
        "street.toml",
        "[[emissions]]\nsector = \"transport\"\npolygons = \"field.geojson\"\nfactor = 0.5\n",
    );
    assert_eq!(west, 0.0);
    assert!((east + 7.5).abs() < 1e-6, "{east}");
}

/// Paired draws: grassland's NPP multiplier sd 0.1, cropland's 0.2, independent. The east zone's NEP
/// difference (Rh unchanged) is m_grass A - m_crop B with A and B the changed pixels' scenario and base NPP
/// over their area, so its sd is sqrt((0.1 A)^2 + (0.2 B)^2) (by hand from the rasters) and its mean the
/// deterministic difference; the west's difference is exactly zero in every draw.
#[test]
fn paired_draws_give_the_zone_differences_spread_worked_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("u.toml"),
        "name = \"t\"\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"grassland\"\nsd = 0.1\nsource = \"test\"\n\
         [[parameter]]\ntarget = \"npp\"\nvegetation_type = \"cropland\"\nsd = 0.2\nsource = \"test\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("draws.toml"),
        scenario(CHANGE) + "[uncertainty]\nfile = \"u.toml\"\ndraws = 20000\nseed = 5\n",
    )
    .unwrap();
    let out = d.join("out");
    scenario_cmd(&d.join("draws.toml"), &out).success();
    let npp = |run: &str| read_band(&out.join(run).join("NPP_gC_m2_2021-06.tif"), 1).0;
    let (base, scen) = (npp("base"), npp("scenario"));
    let m2 = 900.0 / (0.9996f64 * 0.9996);
    let a: f64 = [2, 6].iter().map(|&px| scen[px] * m2 / 1e6).sum();
    let b: f64 = [2, 6].iter().map(|&px| base[px] * m2 / 1e6).sum();
    let sd = ((0.1 * a).powi(2) + (0.2 * b).powi(2)).sqrt();
    let rows = csv_rows(&out.join("scenario_zones_draws_2021-06.csv"));
    let nep = |zone: &str| {
        rows.iter()
            .find(|r| r["name"] == zone && r["quantity"] == "NEP_difference")
            .unwrap()
            .clone()
    };
    let east = nep("east");
    assert!(
        (common::cell(&east, "sd") / sd - 1.0).abs() < 0.03,
        "{east:?} vs {sd}"
    );
    assert!(
        (common::cell(&east, "mean") - (a - b)).abs() < 3.0 * sd / 141.0,
        "{east:?}"
    );
    let west = nep("west");
    assert_eq!(
        (common::cell(&west, "sd"), common::cell(&west, "p95")),
        (0.0, 0.0)
    );
    // A spatially correlated parameter (length_km) is for `npp --draws`: a scenario refuses it, naming the file
    // and the parameter, and writes nothing.
    std::fs::write(
        d.join("field.toml"),
        "name = \"t\"\n[[parameter]]\ntarget = \"npp\"\nvegetation_type = \"*\"\nsd = 0.1\nlength_km = 2\n\
         source = \"test\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("field_scenario.toml"),
        scenario(CHANGE) + "[uncertainty]\nfile = \"field.toml\"\ndraws = 10\n",
    )
    .unwrap();
    let refused = d.join("refused");
    let a = scenario_cmd(&d.join("field_scenario.toml"), &refused).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("field.toml") && err.contains("the npp parameter has a length_km"),
        "{err}"
    );
    assert!(!refused.exists());
    // So is a driver's error (drawn through the sensitivities `npp --draws` writes).
    std::fs::write(
        d.join("field.toml"),
        "name = \"t\"\n[[parameter]]\ntarget = \"temperature\"\nsd = 0.5\nsource = \"test\"\n",
    )
    .unwrap();
    let a = scenario_cmd(&d.join("field_scenario.toml"), &refused).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("the temperature parameter is a driver's error"),
        "{err}"
    );
    assert!(!refused.exists());
}

/// An absolute cut, -16 t CO2 yr-1 of the east's energy (80), is the factor 0.8: the same -16 there.
#[test]
fn an_absolute_emission_change_becomes_a_factor_of_the_base() {
    let tmp = tempfile::tempdir().unwrap();
    let (west, east) = east_west_net(
        tmp.path(),
        "abs.toml",
        "[[emissions]]\nsector = \"energy\"\nzone_field = \"name\"\nzone = \"east\"\nchange_tco2_yr = -16.0\n",
    );
    assert_eq!(west, 0.0);
    assert!((east + 16.0).abs() < 1e-6, "{east}");
}

/// An absolute cut inside a polygon, -5 t CO2 yr-1 of transport where the base has 30 / 2 = 15 (half of the east
/// cell): the factor 1 - 5 / 15 there, so the east's net balance falls by exactly 5 (to the Float32 emissions
/// raster's precision) and the west is untouched.
#[test]
fn an_absolute_emission_change_inside_polygons_changes_them_by_that_amount() {
    let tmp = tempfile::tempdir().unwrap();
    let (west, east) = east_west_net(
        tmp.path(),
        "abs_polygons.toml",
        "[[emissions]]\nsector = \"transport\"\npolygons = \"field.geojson\"\nchange_tco2_yr = -5.0\n",
    );
    assert_eq!(west, 0.0);
    assert!((east + 5.0).abs() < 1e-5, "{east}");
}

/// Paired draws with a balance: the east's energy cut by a fifth (-16 t CO2 yr-1, energy's multiplier sd 0.1)
/// and its cropland turned to grassland (grassland's NPP multiplier sd 0.1). Independent parameters, so the net
/// balance difference -16 e_d - seq_d has variance (0.1 x 16)^2 + var(seq_d), its mean the deterministic
/// difference of the zone table; the west changes nothing in any draw.
#[test]
fn paired_draws_give_the_net_balance_difference_its_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    lattice(d);
    std::fs::write(
        d.join("u.toml"),
        "name = \"t\"\n[[parameter]]\ntarget = \"emissions\"\nsector = \"energy\"\nsd = 0.1\nsource = \"test\"\n\
         [[parameter]]\ntarget = \"npp\"\nvegetation_type = \"grassland\"\nsd = 0.1\nsource = \"test\"\n",
    )
    .unwrap();
    let text = scenario(CHANGE).replace("months = \"6-6\"\n", "")
        + "[balance]\nlattice = \"lattice.tif\"\nlattice_unit = \"t CO2 cell-1 yr-1\"\n"
        + "[[emissions]]\nsector = \"energy\"\nzone_field = \"name\"\nzone = \"east\"\nfactor = 0.8\n"
        + "[uncertainty]\nfile = \"u.toml\"\ndraws = 20000\nseed = 5\n";
    std::fs::write(d.join("both.toml"), text).unwrap();
    let out = d.join("out");
    scenario_cmd(&d.join("both.toml"), &out).success();
    let rows = csv_rows(&out.join("scenario_zones_draws_2021.csv"));
    let get = |zone: &str, q: &str| {
        rows.iter()
            .find(|r| r["name"] == zone && r["quantity"] == q)
            .unwrap_or_else(|| panic!("{zone} {q}: {rows:?}"))
            .clone()
    };
    let (net, seq) = (
        get("east", "net_balance_difference"),
        get("east", "sequestration_difference"),
    );
    let sd_seq = common::cell(&seq, "sd");
    assert!(sd_seq > 0.1, "{seq:?}");
    let want_sd = (1.6f64.powi(2) + sd_seq.powi(2)).sqrt();
    let sd = common::cell(&net, "sd");
    assert!((sd / want_sd - 1.0).abs() < 0.03, "{sd} vs {want_sd}");
    let table = csv_rows(&out.join("scenario_balance_zones.csv"));
    let east = table.iter().find(|r| r["zone"] == "east").unwrap();
    let det = common::cell(east, "net_balance_tCO2_yr_difference");
    assert!(
        (common::cell(&net, "mean") - det).abs() < 3.0 * want_sd / 141.0 + 1e-3,
        "{net:?} vs {det}"
    );
    let west = get("west", "net_balance_difference");
    assert_eq!(
        (common::cell(&west, "mean"), common::cell(&west, "sd")),
        (0.0, 0.0)
    );
    // A misspelt sector in the file is refused before anything runs, naming it and the lattice's sectors.
    let typo = std::fs::read_to_string(d.join("u.toml"))
        .unwrap()
        .replace("\"energy\"", "\"enrgy\"");
    std::fs::write(d.join("u.toml"), typo).unwrap();
    let o = scenario_cmd(&d.join("both.toml"), &d.join("out2")).code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("enrgy") && err.contains("its sectors: energy"),
        "{err}"
    );
    assert!(!d.join("out2").exists());
}

/// A housing estate on the cropland: built-up (50, vegetation type urban) has no pixel in the scene, so June's
/// NDVI of the changed pixels is the urban profile of models/ndvi-climatology.toml (0.5150 in June, from the
/// Ljubljana patch's built-up class), said in a warning and in the substitution table with its quartiles.
#[test]
fn a_class_absent_from_the_scene_takes_the_climatology_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(
        d.join("estate.toml"),
        scenario("[[change]]\npolygons = \"field.geojson\"\nfrom = [40]\nto = 50\n"),
    )
    .unwrap();
    let out = d.join("out");
    let done = scenario_cmd(&d.join("estate.toml"), &out).success();
    let err = String::from_utf8_lossy(&done.get_output().stderr).into_owned();
    assert!(
        err.contains("no pixel of the class has an NDVI this month anywhere in the scene")
            && err.contains("ndvi-climatology.toml"),
        "{err}"
    );
    let rows = csv_rows(&out.join("scenario_substitution_2021-06.csv"));
    let r = rows
        .iter()
        .find(|r| r["class_code"] == "50" && r["month"] == "2021-06")
        .unwrap();
    assert!(r["donor_scope"].starts_with("climatology"), "{r:?}");
    assert_eq!(r["donors"], "0");
    assert_eq!(common::cell(r, "ndvi_median"), 0.515);
    assert_eq!(
        (common::cell(r, "ndvi_p25"), common::cell(r, "ndvi_p75")),
        (0.4143, 0.5975)
    );
    let notes =
        std::fs::read_to_string(out.join("scenario_substitution_2021-06.csv.json")).unwrap();
    assert!(notes.contains("eo-learn"), "{notes}");
}

/// A land-cover change with a balance, run twice into the same folder: every file the same bytes (the maps'
/// titles and the rasters' metadata named the run's working files, whose names change from run to run), and no
/// output names a working file (`.partial-PID`, the scratch folder `.carbonmap-scenario-*`).
#[test]
fn a_rerun_gives_the_same_bytes_and_no_output_names_a_working_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    lattice(d);
    let text = scenario(CHANGE).replace("months = \"6-6\"\n", "")
        + "[balance]\nlattice = \"lattice.tif\"\nlattice_unit = \"t CO2 cell-1 yr-1\"\n";
    std::fs::write(d.join("s.toml"), text).unwrap();
    let out = d.join("out");
    let files = || {
        let mut v: Vec<(String, Vec<u8>)> = walk(&out)
            .into_iter()
            .map(|p| {
                let rel = p.strip_prefix(&out).unwrap().display().to_string();
                (rel, std::fs::read(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    scenario_cmd(&d.join("s.toml"), &out).success();
    let first = files();
    assert!(first.iter().any(|(n, _)| n.ends_with("net_balance.png")));
    scenario_cmd(&d.join("s.toml"), &out).success();
    let second = files();
    assert_eq!(
        first.iter().map(|f| &f.0).collect::<Vec<_>>(),
        second.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in first.iter().zip(&second) {
        assert!(
            a == b,
            "{name} differs between two runs of the same scenario"
        );
        let text = String::from_utf8_lossy(a);
        for working in [".partial-", ".carbonmap-scenario"] {
            assert!(
                !text.contains(working),
                "{name} names a working file ({working})"
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Scratch folders of killed runs: one left beside `out` by a killed run into `out` (and one made by hand
/// in its shape) are gone after the next run; another output folder's (`out-b`), a name that only looks alike
/// and a file are kept. A run killed at random moments leaves at most its own scratch, which the next run
/// removes.
#[test]
fn a_killed_runs_scratch_folder_is_removed_by_the_next_run_into_the_same_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    std::fs::write(d.join("s.toml"), scenario(CHANGE)).unwrap();
    let out = d.join("out");
    let scratch = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".carbonmap-scenario"))
            .collect();
        v.sort();
        v
    };
    let t0 = std::time::Instant::now();
    scenario_cmd(&d.join("s.toml"), &out).success();
    let took = t0.elapsed();
    assert!(scratch().is_empty(), "{:?}", scratch());
    let mut left = Vec::new();
    for k in 0..6 {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("carbonmap"))
            .args(["--quiet", "scenario"])
            .arg(d.join("s.toml"))
            .arg("-o")
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took.mul_f64(0.15 * (k + 1) as f64));
        let _ = child.kill();
        let _ = child.wait();
        left.extend(scratch());
    }
    assert!(!left.is_empty(), "no kill left a scratch folder: {took:?}");
    for name in [
        ".carbonmap-scenario-out.Ab12Z9",
        ".carbonmap-scenario-out-b.Ab12Z9",
        ".carbonmap-scenario-out.Ab12Z9.x",
    ] {
        std::fs::create_dir_all(d.join(name).join("ndvi")).unwrap();
    }
    std::fs::write(d.join(".carbonmap-scenario-out.File01"), "a file").unwrap();
    scenario_cmd(&d.join("s.toml"), &out).success();
    assert_eq!(
        scratch(),
        vec![
            ".carbonmap-scenario-out-b.Ab12Z9",
            ".carbonmap-scenario-out.Ab12Z9.x",
            ".carbonmap-scenario-out.File01",
        ]
    );
}
