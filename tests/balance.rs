//! `carbonmap balance` and `carbonmap regrid` on small hand-made lattices, with every expected number worked
//! out by hand in the comments.

mod common;

use std::path::Path;

use common::{carbonmap, csv_rows as table, read_band, write_raster};

fn val(row: &std::collections::HashMap<String, String>, k: &str) -> f64 {
    row.get(k)
        .unwrap_or_else(|| panic!("no column {k}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} = {:?}", row[k]))
}

/// The zone table's row of zone `z` at level `lvl`.
fn zone_row<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    lvl: &str,
    z: &str,
) -> &'a std::collections::HashMap<String, String> {
    rows.iter()
        .find(|r| r["level"] == lvl && r["zone"] == z)
        .unwrap_or_else(|| panic!("no row {lvl} {z}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what}: got {a}, expected {b}"
    );
}

/// The hand-made case. Lattice (EPSG:3035, an equal-area projection, so the nominal areas below are the true
/// ones): two 30 m cells, A = [0,30] x [0,30] with 9 t CO2 and
/// B = [30,60] x [0,30] with 18 t CO2 per year. Sink: one row of three 20 m pixels whose borders do not
/// follow the cells': p1 = [5,25], p2 = [25,45], p3 = [45,65] (x), [10,30] (y); 400 m2 = 0.04 ha each;
/// sink densities 10, 20, 30 t CO2 ha-1 yr-1 (masses 0.4, 0.8, 1.2 t CO2 yr-1).
/// A raster on the hand case's sink grid (20 m pixels from x 5, y 30 down, EPSG:3035), one row of `values`.
fn on_sink_grid<T: gdal::raster::GdalType + Copy>(path: &Path, band: &str, values: Vec<T>) {
    write_raster(
        path,
        Some(3035),
        [5.0, 20.0, 0.0, 30.0, 0.0, -20.0],
        (values.len(), 1),
        &[(band, values)],
        None,
    );
}

fn hand_case(dir: &Path) {
    write_raster(
        &dir.join("lattice.tif"),
        Some(3035),
        [0.0, 30.0, 0.0, 30.0, 0.0, -30.0],
        (2, 1),
        &[("fossil", vec![9.0f64, 18.0])],
        None,
    );
    on_sink_grid(
        &dir.join("sink.tif"),
        "sequestration",
        vec![10.0f32, 20.0, 30.0],
    );
}

fn balance(dir: &Path, out: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    balance_with(dir, out, "lattice.tif", "t CO2 cell-1 yr-1", extra)
}

fn balance_with(
    dir: &Path,
    out: &str,
    lattice: &str,
    unit: &str,
    extra: &[&str],
) -> assert_cmd::assert::Assert {
    let mut c = carbonmap();
    c.current_dir(dir).args([
        "balance",
        "--sink",
        "sink.tif",
        "--sink-unit",
        "t CO2 ha-1 yr-1",
        "--lattice",
        lattice,
        "--lattice-unit",
        unit,
        "-o",
        out,
    ]);
    c.args(extra);
    c.assert()
}

#[test]
fn pixels_straddling_cell_borders_are_split_by_area() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    let out = balance(d, "out", &[]).success();
    // p3 sticks 5 m out of the lattice: 100 of the sink's 1200 m2 = 8.33 % is uncovered.
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("8.33% (100.00 m2) of the sink raster's area lies outside"),
        "{err}"
    );

    // Downscaled emissions, uniform by area within each cell:
    //   p1 = A x 400/900 = 4 t;  p2 = A x 100/900 + B x 300/900 = 1 + 6 = 7 t;  p3 = B x 300/900 = 6 t
    //   densities / 0.04 ha = 100, 175, 150 t CO2 ha-1 yr-1; net = minus sink 10, 20, 30 = 90, 155, 120.
    let (em, _, _) = read_band(&d.join("out/emissions_tCO2_ha_yr.tif"), 1);
    let (net, _, _) = read_band(&d.join("out/net_balance_tCO2_ha_yr.tif"), 1);
    for (i, (e, n)) in [(100.0, 90.0), (175.0, 155.0), (150.0, 120.0)]
        .iter()
        .enumerate()
    {
        close(em[i], *e, "emissions");
        close(net[i], *n, "net");
    }
    // Per cell: A is covered 500/900 (emissions there 9 x 5/9 = 5), B 600/900 (18 x 2/3 = 12).
    // Sequestration: A = 0.4 + 0.8 x 100/400 = 0.6; B = 0.8 x 300/400 + 1.2 x 300/400 = 1.5.
    // Net: 5 - 0.6 = 4.4 and 12 - 1.5 = 10.5; ratio 0.6/5 = 0.12 and 1.5/12 = 0.125.
    let cells = table(&d.join("out/lattice_balance.csv"));
    assert_eq!(cells.len(), 2);
    for (row, cov, ecov, seq, net, ratio) in [
        (&cells[0], 5.0 / 9.0, 5.0, 0.6, 4.4, 0.12),
        (&cells[1], 2.0 / 3.0, 12.0, 1.5, 10.5, 0.125),
    ] {
        close(val(row, "coverage_fraction"), cov, "coverage");
        close(
            val(row, "emissions_covered_tCO2_yr"),
            ecov,
            "emissions covered",
        );
        close(
            val(row, "sequestration_covered_tCO2_yr"),
            seq,
            "sequestration",
        );
        close(val(row, "net_balance_covered_tCO2_yr"), net, "net");
        close(val(row, "neutrality_ratio"), ratio, "ratio");
    }
    // The whole sink: emissions 4 + 7 + 6 = 17 (= 5 + 12), sequestration 0.4 + 0.8 + 1.2 = 2.4.
    let all = &table(&d.join("out/zones_balance.csv"))[0];
    close(val(all, "emissions_total_tCO2_yr"), 17.0, "zone emissions");
    close(val(all, "sequestration_tCO2_yr"), 2.4, "zone sequestration");
    close(val(all, "net_balance_tCO2_yr"), 14.6, "zone net");
    // Units and sign travel with the rasters.
    let md = common::metadata_item(&d.join("out/net_balance_tCO2_ha_yr.tif"), "UNITS").unwrap();
    assert_eq!(md, "t CO2 ha-1 yr-1");
    let sign = common::metadata_item(&d.join("out/net_balance_tCO2_ha_yr.tif"), "SIGN_CONVENTION")
        .unwrap();
    assert!(sign.contains("positive = net source"));
    let png = std::fs::read(d.join("out/net_balance.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn a_proxy_moves_emissions_onto_its_classes_and_keeps_the_mass() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    // Land cover: p1 and p3 built-up (50), p2 grassland (30). With 50=1 only built-up receives emissions:
    //   A's covered share (5 t) all to p1, B's (12 t) all to p3: densities 125, 0, 300 t CO2 ha-1 yr-1.
    on_sink_grid(&d.join("lc.tif"), "lc", vec![50u8, 30, 50]);
    balance(d, "out", &["--proxy", "lc.tif", "--proxy-classes", "50=1"]).success();
    let (em, _, _) = read_band(&d.join("out/emissions_tCO2_ha_yr.tif"), 1);
    for (i, e) in [125.0, 0.0, 300.0].iter().enumerate() {
        close(em[i], *e, "proxy emissions");
    }
    let all = &table(&d.join("out/zones_balance.csv"))[0];
    close(val(all, "emissions_total_tCO2_yr"), 17.0, "mass kept");
}

#[test]
fn zones_with_a_hierarchy_and_a_vector_lattice() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    // Districts d1 (x 0..25, holds p1's centre at 15) and d2 (x 25..70: p2, p3) of region R.
    // A GeoJSON FeatureCollection on EPSG:3035 (equal-area) from (properties, polygon coordinates).
    let collection = |features: &[(&str, String)]| {
        let f: Vec<String> = features
            .iter()
            .map(|(props, coords)| {
                format!(r#"{{"type": "Feature", "properties": {{{props}}}, "geometry": {{"type": "Polygon", "coordinates": {coords}}}}}"#)
            })
            .collect();
        format!(
            r#"{{"type": "FeatureCollection", "crs": {{"type": "name", "properties": {{"name": "EPSG:3035"}}}}, "features": [{}]}}"#,
            f.join(",\n")
        )
    };
    let poly = |x0: f64, x1: f64| format!("[[[{x0},0],[{x1},0],[{x1},40],[{x0},40],[{x0},0]]]");
    std::fs::write(
        d.join("zones.geojson"),
        collection(&[
            (r#""region": "R", "district": "d1""#, poly(0.0, 25.0)),
            (r#""region": "R", "district": "d2""#, poly(25.0, 70.0)),
        ]),
    )
    .unwrap();
    // The same lattice as polygons with an id and a sector field.
    let cell = |x0: f64| {
        format!(
            "[[[{x0},0],[{},0],[{},30],[{x0},30],[{x0},0]]]",
            x0 + 30.0,
            x0 + 30.0
        )
    };
    std::fs::write(
        d.join("cells.geojson"),
        collection(&[
            (r#""id": "A", "fossil": 9"#, cell(0.0)),
            (r#""id": "B", "fossil": 18"#, cell(30.0)),
        ]),
    )
    .unwrap();
    balance_with(
        d,
        "out",
        "cells.geojson",
        "t CO2 cell-1 yr-1",
        &[
            "--zones",
            "zones.geojson",
            "--zone-fields",
            "region,district",
            "--lattice-fields",
            "fossil",
            "--cell-id-field",
            "id",
        ],
    )
    .success();
    let rows = table(&d.join("out/zones_balance.csv"));
    let find = |lvl: &str, z: &str| zone_row(&rows, lvl, z);
    // d1 = p1: emissions 4, sequestration 0.4; d2 = p2 + p3: 7 + 6 = 13 and 0.8 + 1.2 = 2.0; R = both.
    for (lvl, zone, column, want) in [
        ("district", "d1", "emissions_total_tCO2_yr", 4.0),
        ("district", "d1", "sequestration_tCO2_yr", 0.4),
        ("district", "d2", "emissions_total_tCO2_yr", 13.0),
        ("district", "d2", "net_balance_tCO2_yr", 11.0),
        ("region", "R", "emissions_total_tCO2_yr", 17.0),
        ("region", "R", "neutrality_ratio", 2.4 / 17.0),
    ] {
        close(val(find(lvl, zone), column), want, zone);
    }
    assert_eq!(find("district", "d2")["parent"], "R");
    // Measured only in part: the sink raster (x 5..65, y 10..30) holds 20 x 20 = 400 of d1's 25 x 40 = 1000 m2,
    // 40 x 20 = 800 of d2's 45 x 40 = 1800 m2, and 1200 of R's 2800 m2.
    for (lvl, zone, want) in [
        ("district", "d1", 0.4),
        ("district", "d2", 800.0 / 1800.0),
        ("region", "R", 1200.0 / 2800.0),
    ] {
        close(val(find(lvl, zone), "zone_share_measured"), want, zone);
    }
    assert_eq!(find("all", "all")["zone_share_measured"], "");
    // The vector lattice keeps its ids.
    let cells = table(&d.join("out/lattice_balance.csv"));
    assert_eq!(cells[0]["cell_id"], "A");
    close(val(&cells[1], "net_balance_covered_tCO2_yr"), 10.5, "B");
    // GeoPackage: one layer per level, with geometry.
    let ds = gdal::Dataset::open(d.join("out/zones_balance.gpkg")).unwrap();
    let names: Vec<String> = ds
        .layers()
        .map(|l| {
            use gdal::vector::LayerAccess;
            l.name()
        })
        .collect();
    // One layer per level, and QGIS's layer_styles table with each layer's default style.
    assert_eq!(
        names,
        ["balance_region", "balance_district", "layer_styles"]
    );
    // Every column of the CSV, and the zones drawn as the part that was measured: district d2 is
    // x 25..70 x y 0..40, the sink raster x 5..65 x y 10..30, so its shape is 40 x 20 = 800 m2.
    use gdal::vector::LayerAccess;
    let mut layer = ds.layer_by_name("balance_district").unwrap();
    let fields: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
    for c in [
        "pixels",
        "area_ha",
        "sink_valid_area_ha",
        "net_balance_tCO2_yr",
    ] {
        assert!(fields.iter().any(|f| f == c), "{c} missing from {fields:?}");
    }
    let d2 = layer
        .features()
        .find(|f| {
            f.field_as_string(f.field_index("zone").unwrap())
                .unwrap()
                .as_deref()
                == Some("d2")
        })
        .unwrap();
    close(
        d2.geometry().unwrap().area(),
        800.0,
        "d2 clipped to the sink's extent",
    );
    // The region, dissolved from its districts' shapes: d1's 400 m2 and d2's 800 m2 inside the sink, in one
    // polygon (the districts share the edge x = 25).
    let mut regions = ds.layer_by_name("balance_region").unwrap();
    let r = regions.features().next().unwrap();
    let g = r.geometry().unwrap();
    close(g.area(), 1200.0, "R clipped to the sink's extent");
    let parts = match g.geometry_name().as_str() {
        "MULTIPOLYGON" => g.geometry_count(),
        _ => 1,
    };
    assert_eq!(parts, 1, "R is one polygon: {}", g.wkt().unwrap());
}

#[test]
fn a_geographic_lattice_is_split_by_true_area_not_degree_squares() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Lattice: lon 0..10, two cells 60..70 N and 50..60 N, 100 t C each per year.
    write_raster(
        &d.join("lattice.tif"),
        Some(4326),
        [0.0, 10.0, 0.0, 70.0, 0.0, -10.0],
        (1, 2),
        &[("all", vec![100.0f64, 100.0])],
        None,
    );
    // Fine grid: two 5-degree columns, rows 75..65, 65..55 (straddles 60 N), 55..45.
    write_raster(
        &d.join("fine.tif"),
        Some(4326),
        [0.0, 5.0, 0.0, 75.0, 0.0, -10.0],
        (2, 3),
        &[("x", vec![0u8; 6])],
        None,
    );
    carbonmap()
        .current_dir(d)
        .args([
            "regrid",
            "--lattice",
            "lattice.tif",
            "--lattice-unit",
            "t C cell-1 yr-1",
            "--to",
            "fine.tif",
            "--unit",
            "t C cell-1 yr-1",
            "-o",
            "out.tif",
        ])
        .assert()
        .success();
    // Fine rows: 75..65, 65..55, 55..45. On the ellipsoid the area between latitudes is proportional to the
    // difference of I(lat), the integral of the area element from the equator (common::wgs84_area_integral;
    // on a sphere it would be the sine):
    //   row 0 gets the upper cell's share (I70 - I65) / (I70 - I60) of 100 t C;
    //   row 1 gets (I65 - I60)/(I70 - I60) of the upper and (I60 - I55)/(I60 - I50) of the lower;
    //   row 2 gets (I55 - I50)/(I60 - I50) of the lower.
    // Degree-squares would give 50, 100, 50.
    let s = common::wgs84_area_integral;
    let up = s(70.0) - s(60.0);
    let lo = s(60.0) - s(50.0);
    let want = [
        100.0 * (s(70.0) - s(65.0)) / up,
        100.0 * (s(65.0) - s(60.0)) / up + 100.0 * (s(60.0) - s(55.0)) / lo,
        100.0 * (s(55.0) - s(50.0)) / lo,
    ];
    // = 45.34, 101.55, 53.11 t C: the middle pixel takes more of the northern cell than of the southern.
    // Each row's share is split equally between its two columns.
    let (v, _, _) = read_band(&d.join("out.tif"), 1);
    for i in 0..3 {
        close(v[2 * i] + v[2 * i + 1], want[i], "true-area share");
        close(v[2 * i], v[2 * i + 1], "columns");
    }
    close(v.iter().sum(), 200.0, "mass kept");
}

#[test]
fn bad_inputs_are_named() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    // Undeclared lattice unit.
    let mut c = carbonmap();
    c.current_dir(d).args([
        "balance",
        "--sink",
        "sink.tif",
        "--sink-unit",
        "t CO2 ha-1 yr-1",
        "--lattice",
        "lattice.tif",
        "-o",
        "o1",
    ]);
    let o = c.assert().code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("lattice.tif") && err.contains("unit is not declared"),
        "{err}"
    );
    // A lattice far away.
    write_raster(
        &d.join("far.tif"),
        Some(3035),
        [500000.0, 30.0, 0.0, 30.0, 0.0, -30.0],
        (2, 1),
        &[("fossil", vec![9.0f64, 18.0])],
        None,
    );
    let o = balance_with(d, "o2", "far.tif", "t CO2 cell-1 yr-1", &[]).code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("far.tif") && err.contains("do not overlap"),
        "{err}"
    );
    assert!(!d.join("o2/net_balance_tCO2_ha_yr.tif").exists());
    // Negative emissions in a sector that cannot be negative: a warning naming the sector; allowed when signed.
    write_raster(
        &d.join("neg.tif"),
        Some(3035),
        [0.0, 30.0, 0.0, 30.0, 0.0, -30.0],
        (2, 1),
        &[
            ("fossil", vec![9.0f64, 18.0]),
            ("lulucf", vec![-3.0f64, 1.0]),
        ],
        None,
    );
    let o = balance_with(d, "o3", "neg.tif", "t CO2 cell-1 yr-1", &[]).success();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("sector \"lulucf\" has 1 negative cell"),
        "{err}"
    );
    let o = balance_with(
        d,
        "o4",
        "neg.tif",
        "t CO2 cell-1 yr-1",
        &["--signed-sectors", "lulucf"],
    )
    .success();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(!err.contains("negative"), "{err}");
    // A sink without a unit: refused, naming --sink-unit.
    let mut c = carbonmap();
    c.current_dir(d).args([
        "balance",
        "--sink",
        "sink.tif",
        "--lattice",
        "lattice.tif",
        "--lattice-unit",
        "t CO2 cell-1 yr-1",
        "-o",
        "o5",
    ]);
    let o = c.assert().code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("sink.tif") && err.contains("--sink-unit"),
        "{err}"
    );
    // A sink that is a period's total (as `carbonmap npp --months 6-8` writes it), not a rate per year:
    // refused against annual emissions unless the user declares it.
    let grid = carbonmap::io::Grid::from_raster(&d.join("sink.tif")).unwrap();
    let mut w = carbonmap::io::RasterWriter::create::<f32>(
        &d.join("summer.tif"),
        &grid,
        &[carbonmap::io::OutBand {
            description: "sequestration 2024-06_2024-08".into(),
            unit: "t CO2 ha-1 per period 2024-06_2024-08".into(),
        }],
        None,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    w.write_rows(0, 0, vec![1.0f32; 3]).unwrap();
    w.finish().unwrap().commit().unwrap();
    let mut c = carbonmap();
    c.current_dir(d).args([
        "balance",
        "--sink",
        "summer.tif",
        "--lattice",
        "lattice.tif",
        "--lattice-unit",
        "t CO2 cell-1 yr-1",
        "-o",
        "o7",
    ]);
    let o = c.assert().code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("summer.tif") && err.contains("not a rate per year"),
        "{err}"
    );
    let mut c = carbonmap();
    c.current_dir(d).args([
        "balance",
        "--sink",
        "summer.tif",
        "--sink-unit",
        "t CO2 ha-1 yr-1",
        "--lattice",
        "lattice.tif",
        "--lattice-unit",
        "t CO2 cell-1 yr-1",
        "-o",
        "o8",
    ]);
    c.assert().success();
    // A unit that is not a unit.
    let o = balance_with(d, "o6", "lattice.tif", "Tg C per cell", &[]).code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("lattice.tif") && err.contains("Tg C per cell"),
        "{err}"
    );
}

#[test]
fn outputs_are_identical_across_thread_counts_with_a_geographic_lattice() {
    // A 600 x 300 px UTM sink (three strips of rows) against a lattice in degrees (0.01 deg cells) given as a
    // CSV with WKT cells: pixel corners are transformed, and many pixels straddle cell borders.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (w, h) = (600usize, 300usize);
    let sink: Vec<f32> = (0..w * h).map(|i| ((i % 97) as f32) * 0.1).collect();
    write_raster(
        &d.join("sink.tif"),
        Some(32631),
        [500000.0, 10.0, 0.0, 5000.0, 0.0, -10.0],
        (w, h),
        &[("sequestration", sink)],
        None,
    );
    // Cells over lon 2.99..3.06, lat 0.01..0.06 (the sink spans about 3.0-3.054 E, 0.018-0.045 N).
    let mut csv = String::from("WKT,id,energy,transport\n");
    for r in 0..5 {
        for c in 0..7 {
            let (x0, y0) = (2.99 + c as f64 * 0.01, 0.01 + r as f64 * 0.01);
            let (x1, y1) = (x0 + 0.01, y0 + 0.01);
            csv.push_str(&format!(
                "\"POLYGON (({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))\",c{r}{c},{},{}\n",
                100 + 10 * r + c,
                50 + r
            ));
        }
    }
    std::fs::write(d.join("cells.csv"), csv).unwrap();
    let mut outs = vec![];
    for th in ["1", "3"] {
        let out = format!("out{th}");
        balance_with(
            d,
            &out,
            "cells.csv",
            "Gg C cell-1 yr-1",
            &[
                "--lattice-fields",
                "energy,transport",
                "--cell-id-field",
                "id",
                "--lattice-crs",
                "EPSG:4326",
                "--threads",
                th,
            ],
        )
        .success();
        outs.push(d.join(out));
    }
    let files = common::list_dir(&outs[0]);
    // 3 rasters and their 3 QGIS styles, 1 map, 2 tables and their 2 note sidecars.
    assert_eq!(files.len(), 11, "{files:?}");
    for f in files {
        assert_eq!(
            std::fs::read(outs[0].join(&f)).unwrap(),
            std::fs::read(outs[1].join(&f)).unwrap(),
            "{f}"
        );
    }
    // Every cell lies wholly inside or partly inside the sink; the emissions given to the fine grid are the
    // cells' covered shares (mass conservation through the transform).
    let cells = table(&outs[0].join("lattice_balance.csv"));
    let covered: f64 = cells
        .iter()
        .map(|r| val(r, "emissions_covered_tCO2_yr"))
        .sum();
    let all = &table(&outs[0].join("zones_balance.csv"))[0];
    close(
        val(all, "emissions_total_tCO2_yr"),
        covered,
        "fine = covered shares",
    );
    // A cell wholly inside the sink keeps all its emissions: (energy + transport) Gg C x 1000 x 44/12.
    let inner = cells
        .iter()
        .find(|r| val(r, "coverage_fraction") == 1.0)
        .expect("a whole cell");
    close(
        val(inner, "emissions_covered_tCO2_yr"),
        val(inner, "emissions_energy_tCO2_yr") + val(inner, "emissions_transport_tCO2_yr"),
        "whole cell",
    );
    let id = &inner["cell_id"];
    let (r, c): (u32, u32) = (id[1..2].parse().unwrap(), id[2..3].parse().unwrap());
    close(
        val(inner, "emissions_total_tCO2_yr"),
        ((100 + 10 * r + c) + (50 + r)) as f64 * 1000.0 * 44.0 / 12.0,
        "unit conversion",
    );
}

/// A proxy that covers the whole lattice cells, beyond the sink: each cell's emissions are spread by the
/// proxy over the whole cell, and the sink's area keeps the proxy's share of them. Cell A = [0,30] x [0,30]
/// holds 9 t CO2 yr-1; the sink is one 20 m pixel p1 = [5,25] x [10,30] (44.4 % of A). The proxy (5 m
/// pixels over [0,60] x [0,30]) weighs 1 in y >= 10 and 3 in y < 10 (farmland outside the city, where the
/// cell's emissions are). Whole cell A: W = 30 x 20 x 1 + 30 x 10 x 3 = 1500; inside p1: 400 x 1 = 400.
/// p1 receives 9 x 400 / 1500 = 2.4 t CO2 yr-1 = 60 t CO2 ha-1 yr-1 (by area share alone it would have been
/// 9 x 400 / 900 = 4 t, 100 t ha-1). The sink covers under half of the cell it draws from: a warning says so.
#[test]
fn a_proxy_covering_whole_cells_gives_the_city_its_proxy_share() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    on_sink_grid(&d.join("sink.tif"), "sequestration", vec![10.0f32]);
    let weights: Vec<f32> = (0..6)
        .flat_map(|r| std::iter::repeat_n(if r < 4 { 1.0 } else { 3.0 }, 12))
        .collect();
    write_raster(
        &d.join("proxy.tif"),
        Some(3035),
        [0.0, 5.0, 0.0, 30.0, 0.0, -5.0],
        (12, 6),
        &[("w", weights)],
        None,
    );
    let a = balance(d, "out", &["--proxy", "proxy.tif"]).success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let (em, _, _) = read_band(&d.join("out/emissions_tCO2_ha_yr.tif"), 1);
    close(em[0], 60.0, "city's share by the proxy over the whole cell");
    // The cell table: the part of A's emissions inside the sink, 2.4 of 9 t (mass kept: 2.4 + 6.6 outside).
    let cells = table(&d.join("out/lattice_balance.csv"));
    let a_row = cells
        .iter()
        .find(|r| r.values().any(|v| v == "r0c0"))
        .expect("cell A");
    let inside = a_row
        .iter()
        .find(|(k, _)| k.starts_with("emissions") && k.contains("covered"))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .expect("a covered-emissions column");
    assert!((inside - 2.4).abs() <= 1e-9 * 2.4, "{inside}");
    assert!(
        err.contains("covers on average 44.4% of the 1 lattice cell(s)"),
        "{err}"
    );
    use gdal::Metadata;
    let ds = gdal::Dataset::open(d.join("out/emissions_tCO2_ha_yr.tif")).unwrap();
    assert!(ds
        .metadata_item("DOWNSCALING", "")
        .unwrap()
        .contains("over the whole cell"));
}

/// Indicators per planning unit on a three-level hierarchy (province P > city C > counties c1, c2, c3, one
/// sink pixel each) with a population density raster and targets, worked by hand from the hand case:
/// pixels of 20 x 20 m = 0.04 ha; county c1 = p1: emissions 4, sequestration 0.4 t CO2 yr-1, net 3.6; c2 = p2:
/// 7, 0.8, 6.2; c3 = p3: 6, 1.2, 4.8; C = P = all: 17, 2.4, 14.6 over 0.12 ha. Population 2500, 5000 and
/// 7500 persons ha-1 = 100, 200 and 300 persons.
#[test]
fn planning_unit_indicators_with_population_and_targets() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    on_sink_grid(
        &d.join("population.tif"),
        "population density",
        vec![2500.0f32, 5000.0, 7500.0],
    );
    let county = |name: &str, x0: f64, x1: f64| {
        format!(
            r#"{{"type": "Feature", "properties": {{"province": "P", "city": "C", "county": "{name}"}}, "geometry": {{"type": "Polygon", "coordinates": [[[{x0},0],[{x1},0],[{x1},40],[{x0},40],[{x0},0]]]}}}}"#
        )
    };
    std::fs::write(
        d.join("zones.geojson"),
        format!(
            r#"{{"type": "FeatureCollection", "crs": {{"type": "name", "properties": {{"name": "EPSG:3035"}}}}, "features": [{}, {}, {}]}}"#,
            county("c1", 0.0, 25.0),
            county("c2", 25.0, 45.0),
            county("c3", 45.0, 70.0)
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("targets.csv"),
        "level,zone,target_net_balance_tCO2_yr,target_neutrality_ratio\ncounty,c2,5.0,\ncity,C,,0.2\nprovince,P,10,0.5\n",
    )
    .unwrap();
    let args = [
        "--zones",
        "zones.geojson",
        "--zone-fields",
        "province,city,county",
        "--population",
        "population.tif",
        "--population-unit",
        "persons ha-1",
        "--targets",
        "targets.csv",
    ];
    balance(d, "out", &args).success();
    let rows = table(&d.join("out/zones_balance.csv"));
    let find = |lvl: &str, z: &str| zone_row(&rows, lvl, z);
    for (lvl, zone, column, want) in [
        // Net per hectare: 3.6 / 0.04 = 90; 6.2 / 0.04 = 155; 14.6 / 0.12 = 121.666667.
        ("county", "c1", "net_balance_tCO2_ha_yr", 90.0),
        ("county", "c2", "net_balance_tCO2_ha_yr", 155.0),
        ("city", "C", "net_balance_tCO2_ha_yr", 14.6 / 0.12),
        // Per person: c1 4 / 100 = 0.04 and 3.6 / 100; c3 6 / 300 = 0.02; C 17 / 600 and 14.6 / 600.
        ("county", "c1", "population_persons", 100.0),
        ("county", "c1", "emissions_tCO2_per_person_yr", 0.04),
        ("county", "c1", "net_balance_tCO2_per_person_yr", 0.036),
        ("county", "c3", "emissions_tCO2_per_person_yr", 0.02),
        ("city", "C", "population_persons", 600.0),
        ("city", "C", "emissions_tCO2_per_person_yr", 17.0 / 600.0),
        (
            "province",
            "P",
            "net_balance_tCO2_per_person_yr",
            14.6 / 600.0,
        ),
        // Targets: c2 net 6.2 against 5: 1.2 still to cut; C's ratio 2.4 / 17 = 0.141176 against 0.2:
        // 0.058824 short; P: net 14.6 against 10 (4.6), ratio against 0.5 (0.358824).
        ("county", "c2", "gap_to_target_tCO2_yr", 1.2),
        ("city", "C", "neutrality_ratio_gap", 0.2 - 2.4 / 17.0),
        ("province", "P", "gap_to_target_tCO2_yr", 4.6),
        ("province", "P", "neutrality_ratio_gap", 0.5 - 2.4 / 17.0),
    ] {
        close(
            val(find(lvl, zone), column),
            want,
            &format!("{zone} {column}"),
        );
    }
    // A zone without a target has empty target cells.
    assert_eq!(find("county", "c1")["gap_to_target_tCO2_yr"], "");
    assert_eq!(find("county", "c2")["neutrality_ratio_gap"], "");
    // Levels add up: the counties' sums are the city's, the city's the province's.
    for column in [
        "emissions_total_tCO2_yr",
        "sequestration_tCO2_yr",
        "net_balance_tCO2_yr",
        "population_persons",
        "area_ha",
    ] {
        let counties: f64 = ["c1", "c2", "c3"]
            .iter()
            .map(|z| val(find("county", z), column))
            .sum();
        close(counties, val(find("city", "C"), column), column);
        assert_eq!(
            val(find("city", "C"), column),
            val(find("province", "P"), column)
        );
    }
    // The GeoPackage's county layer carries the same indicators.
    {
        use gdal::vector::LayerAccess;
        let ds = gdal::Dataset::open(d.join("out/zones_balance.gpkg")).unwrap();
        let mut l = ds.layer_by_name("balance_county").unwrap();
        let f = l
            .features()
            .find(|f| {
                f.field_as_string(f.field_index("zone").unwrap())
                    .unwrap()
                    .as_deref()
                    == Some("c2")
            })
            .unwrap();
        let g = |k: &str| {
            f.field_as_double(f.field_index(k).unwrap())
                .unwrap()
                .unwrap()
        };
        close(g("gap_to_target_tCO2_yr"), 1.2, "gpkg gap");
        close(g("population_persons"), 200.0, "gpkg population");
    }
    // A target naming a zone that does not exist is refused before computing, with its line.
    std::fs::write(
        d.join("targets.csv"),
        "level,zone,target_net_balance_tCO2_yr\ncounty,c9,1\ncity,c1,2\n",
    )
    .unwrap();
    let a = balance(d, "out2", &args).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("line 2: no zone \"c9\" at level \"county\""),
        "{err}"
    );
    assert!(
        err.contains("line 3: no zone \"c1\" at level \"city\""),
        "{err}"
    );
    assert!(!d.join("out2").exists());
}

/// The change since the previous season's run: a second run with the sink doubled (sequestration 0.4, 0.8,
/// 1.2 -> 0.8, 1.6, 2.4 t CO2 yr-1) reads the first run's zone table: every zone's sequestration rises by its
/// first value (d1 +0.4, d2 +2.0), emissions are unchanged (0), net balance falls by as much. Without the file
/// (the first season) the run warns and has no change columns.
#[test]
fn change_since_the_previous_season() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    hand_case(d);
    std::fs::write(
        d.join("zones.geojson"),
        r#"{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3035"}}, "features": [
        {"type": "Feature", "properties": {"district": "d1"}, "geometry": {"type": "Polygon", "coordinates": [[[0,0],[25,0],[25,40],[0,40],[0,0]]]}},
        {"type": "Feature", "properties": {"district": "d2"}, "geometry": {"type": "Polygon", "coordinates": [[[25,0],[70,0],[70,40],[25,40],[25,0]]]}}]}"#,
    )
    .unwrap();
    let zones = ["--zones", "zones.geojson", "--zone-fields", "district"];
    let first = [&zones[..], &["--previous", "none/zones_balance.csv"]].concat();
    let a = balance(d, "first", &first).success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("no previous zone table"), "{err}");
    let rows = table(&d.join("first/zones_balance.csv"));
    assert!(!rows[0].contains_key("net_balance_change_tCO2_yr"));
    on_sink_grid(
        &d.join("sink.tif"),
        "sequestration",
        vec![20.0f32, 40.0, 60.0],
    );
    let second = [&zones[..], &["--previous", "first/zones_balance.csv"]].concat();
    balance(d, "second", &second).success();
    let rows = table(&d.join("second/zones_balance.csv"));
    let find = |z: &str| rows.iter().find(|r| r["zone"] == z).unwrap();
    for (zone, seq) in [("d1", 0.4), ("d2", 2.0), ("all", 2.4)] {
        close(val(find(zone), "sequestration_change_tCO2_yr"), seq, zone);
        close(val(find(zone), "emissions_change_tCO2_yr"), 0.0, zone);
        close(val(find(zone), "net_balance_change_tCO2_yr"), -seq, zone);
    }
    // d2's net balance was 13 - 2.0 = 11.
    close(
        val(find("d2"), "net_balance_previous_tCO2_yr"),
        11.0,
        "d2 previous",
    );
}

/// Writes `file` as u.toml, runs `balance --draws 40000 --seed SEED` on the hand case in `d` into out/, and
/// returns the whole area's net balance row of zones_balance_draws.csv and zones_balance_variance.csv's rows.
fn draw_all(
    d: &Path,
    file: &str,
    seed: &str,
) -> (
    std::collections::HashMap<String, String>,
    Vec<std::collections::HashMap<String, String>>,
) {
    std::fs::write(d.join("u.toml"), file).unwrap();
    let args = [
        "--draws",
        "40000",
        "--seed",
        seed,
        "--uncertainty",
        "u.toml",
    ];
    balance(d, "out", &args).success();
    let net = table(&d.join("out/zones_balance_draws.csv"))
        .into_iter()
        .find(|r| r["zone"] == "all" && r["quantity"] == "net_balance")
        .unwrap();
    (net, table(&d.join("out/zones_balance_variance.csv")))
}

/// Monte Carlo on the hand case: the grid receives E = 5 + 12 = 17 t CO2 yr-1 of fossil emissions (500 of A's
/// 900 m2, 600 of B's) against S = 0.4 + 0.8 + 1.2 = 2.4 of sequestration. Fossil's multiplier sd 0.1, the
/// sink's 0.3, correlation 0.5 (covariance 0.5 x 0.1 x 0.3 = 0.015): Var(net) = 17^2 0.01 + 2.4^2 0.09
/// - 2 x 17 x 2.4 x 0.015 = 2.89 + 0.5184 - 1.224 = 2.1844, sd 1.477972; mean 14.6.
#[test]
fn balance_draws_give_the_net_balance_spread_worked_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    hand_case(d);
    let (net, shares) = draw_all(
        d,
        "name = \"t\"\ncorrelation = 0.5\n[[parameter]]\ntarget = \"emissions\"\nsector = \"fossil\"\nsd = 0.1\n\
         source = \"test\"\n[[parameter]]\ntarget = \"sequestration\"\nsd = 0.3\nsource = \"test\"\n",
        "9",
    );
    let net = &net;
    assert!((val(net, "sd") / 1.477972 - 1.0).abs() < 0.02, "{net:?}");
    assert!(
        (val(net, "mean") - 14.6).abs() < 4.0 * 1.477972 / 200.0,
        "{net:?}"
    );
    // Per pixel: p1 lies in A, 100 t CO2 ha-1 yr-1 of emissions (9 t over 900 m2) against a sink of 10; its
    // net balance's sd is sqrt((0.1 x 100)^2 + (0.3 x 10)^2 - 2 x 100 x 10 x 0.015) = sqrt(79) = 8.888194.
    let sd = read_band(&d.join("out/net_balance_tCO2_ha_yr_draws.tif"), 2).0;
    let mean = read_band(&d.join("out/net_balance_tCO2_ha_yr_draws.tif"), 1).0;
    assert!((sd[0] / 8.888194 - 1.0).abs() < 0.02, "{sd:?}");
    assert!((mean[0] - 90.0).abs() < 4.0 * 8.888194 / 200.0, "{mean:?}");
    // One at a time: fossil's term alone has sd 0.1 x 17 = 1.7 (variance 2.89, 1.323 of the net's 2.1844: the
    // positive correlation with the sink, which enters with a minus, makes the net vary less than its parts),
    // the sink's 0.3 x 2.4 = 0.72 (0.5184, 0.2373); fossil dominates.
    let src = |s: &str| {
        shares
            .iter()
            .find(|r| r["zone"] == "all" && r["source"] == s)
            .unwrap()
    };
    let (fossil, sink) = (src("emissions:fossil"), src("sequestration"));
    assert!(
        (val(fossil, "sd_tCO2_yr") / 1.7 - 1.0).abs() < 0.02,
        "{fossil:?}"
    );
    assert!(
        (val(fossil, "share_of_net_variance") / 1.323 - 1.0).abs() < 0.04,
        "{fossil:?}"
    );
    assert!(
        (val(sink, "share_of_net_variance") / 0.2373 - 1.0).abs() < 0.04,
        "{sink:?}"
    );
    assert_eq!(
        (fossil["dominant"].as_str(), sink["dominant"].as_str()),
        ("true", "false")
    );
    // Per lattice cell: the same formula on each cell's covered emissions E and sequestration S.
    let cells = table(&d.join("out/lattice_balance.csv"));
    let draws = table(&d.join("out/lattice_balance_draws.csv"));
    assert_eq!(draws.len(), 3 * cells.len());
    for c in &cells {
        let (e, q) = (
            val(c, "emissions_covered_tCO2_yr"),
            val(c, "sequestration_covered_tCO2_yr"),
        );
        let want = ((0.1 * e).powi(2) + (0.3 * q).powi(2) - 2.0 * e * q * 0.015).sqrt();
        let net = draws
            .iter()
            .find(|r| r["cell_id"] == c["cell_id"] && r["quantity"] == "net_balance_covered")
            .unwrap();
        assert!(
            (val(net, "sd") / want - 1.0).abs() < 0.02,
            "{net:?} vs {want}"
        );
        assert!(
            (val(net, "mean") - val(c, "net_balance_covered_tCO2_yr")).abs()
                < 4.0 * want / 200.0 + 1e-6,
            "{net:?}"
        );
    }
}

/// A sector's inventory and allocation errors multiply: on the hand case, fossil's inventory multiplier X
/// (sd 0.1) and allocation multiplier Y (sd 0.2), independent, the sink fixed. For independent normal X = 1 + a
/// and Y = 1 + b, Var(XY) = (1 + 0.01)(1 + 0.04) - 1 = 0.0504, so Var(net) = 17^2 x 0.0504 = 14.5656 (sd
/// 3.816497). One at a time: the inventory's term 17^2 x 0.01 = 2.89 (a share of 0.19841), the allocation's
/// 17^2 x 0.04 = 11.56 (0.79365), dominant. A user's file naming a sector the lattice lacks is refused before
/// anything is computed.
#[test]
fn inventory_and_allocation_errors_of_a_sector_multiply() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    hand_case(d);
    let entry = |sector: &str, error: &str, sd: f64| {
        format!(
            "[[parameter]]\ntarget = \"emissions\"\nsector = \"{sector}\"\nerror = \"{error}\"\nsd = {sd}\nsource = \"test\"\n"
        )
    };
    let head = "name = \"t\"\n";
    let file = format!(
        "{head}{}{}",
        entry("fossil", "inventory", 0.1),
        entry("*", "allocation", 0.2)
    );
    let (net, shares) = draw_all(d, &file, "3");
    assert!((val(&net, "sd") / 3.816497 - 1.0).abs() < 0.02, "{net:?}");
    let src = |s: &str| {
        shares
            .iter()
            .find(|r| r["zone"] == "all" && r["source"] == s)
            .unwrap_or_else(|| panic!("{s}: {shares:?}"))
    };
    let (inv, alloc) = (src("emissions:fossil"), src("emissions:* (allocation)"));
    assert!(
        (val(inv, "share_of_net_variance") / 0.19841 - 1.0).abs() < 0.04,
        "{inv:?}"
    );
    assert!(
        (val(alloc, "share_of_net_variance") / 0.79365 - 1.0).abs() < 0.04,
        "{alloc:?}"
    );
    assert_eq!(alloc["dominant"].as_str(), "true");
    // Per pixel: p1's 100 t CO2 ha-1 yr-1 of emissions against a fixed sink: sd 100 x sqrt(0.0504) = 22.4499.
    let sd = read_band(&d.join("out/net_balance_tCO2_ha_yr_draws.tif"), 2).0;
    assert!((sd[0] / 22.4499 - 1.0).abs() < 0.02, "{sd:?}");
    // A misspelt sector: exit 2 naming it and the lattice's sectors, and no output.
    let file = format!("{head}{}", entry("fosil", "inventory", 0.1));
    std::fs::write(d.join("typo.toml"), file).unwrap();
    let o = balance(d, "out2", &["--draws", "10", "--uncertainty", "typo.toml"]).code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("typo.toml") && err.contains("fosil") && err.contains("its sectors: fossil"),
        "{err}"
    );
    assert!(!d.join("out2").exists());
}

/// An allocation error that varies between cells (`length_km` on it): the hand case's area covers 5 t CO2
/// yr-1 of cell A and 12 of cell B, allocation sd 0.2, the sink fixed. Knots 1 m apart (closer than the 30 m
/// cells): each cell its own normal, Var = 0.04 (5^2 + 12^2) = 6.76 (sd 2.6), where a run-wide multiplier
/// gives 0.04 x 17^2 = 11.56 (sd 3.4); knots 10,000 km apart: the cells move together, sd 3.4 again. Each
/// cell's own sd is 0.2 of its covered emissions either way, and pixel p1 (100 t CO2 ha-1 yr-1 in A) has sd 20.
#[test]
fn an_allocation_field_lets_cells_err_apart_in_a_zones_total() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    hand_case(d);
    let file = |km: f64| {
        format!(
            "name = \"t\"\n[[parameter]]\ntarget = \"emissions\"\nsector = \"*\"\nerror = \"allocation\"\n\
             sd = 0.2\nlength_km = {km}\nsource = \"test\"\n"
        )
    };
    for (km, want) in [(0.001, 2.6), (10_000.0, 3.4)] {
        let (net, shares) = draw_all(d, &file(km), "4");
        assert!(
            (val(&net, "sd") / want - 1.0).abs() < 0.02,
            "{km} km: {net:?}"
        );
        let src = shares.iter().find(|r| r["zone"] == "all").unwrap();
        assert_eq!(
            src["source"],
            format!("emissions:* (allocation, field {km} km)")
        );
        let cells = table(&d.join("out/lattice_balance.csv"));
        let draws = table(&d.join("out/lattice_balance_draws.csv"));
        for c in &cells {
            let want = 0.2 * val(c, "emissions_covered_tCO2_yr");
            let row = draws
                .iter()
                .find(|r| r["cell_id"] == c["cell_id"] && r["quantity"] == "emissions_covered")
                .unwrap();
            assert!(
                (val(row, "sd") / want - 1.0).abs() < 0.02,
                "{row:?} vs {want}"
            );
        }
        let sd = read_band(&d.join("out/net_balance_tCO2_ha_yr_draws.tif"), 2).0;
        assert!((sd[0] / 20.0 - 1.0).abs() < 0.02, "{sd:?}");
    }
}

/// A raster wider than 2048 px is walked in strips of fewer than 256 rows (64 here: 4200 px x 64 rows x 128
/// bytes fit `balance`'s 64 MiB), its writers flushing whole tile rows only. By hand, on EPSG:3035 (equal
/// area): one 42 km x 3 km cell with 1000 t CO2 yr-1 spreads 1000 / 12,600 ha = 0.0793651 t CO2 ha-1 yr-1 onto
/// every 10 m pixel; row r of the sink holds 1 + r t CO2 ha-1 yr-1, so every pixel's net balance is
/// 0.0793651 - (1 + r), across strip and tile borders alike; the area's sequestration is
/// 0.01 ha x 4200 x (1 + 2 + ... + 300) = 42 x 45,150 = 1,896,300 t CO2 yr-1.
#[test]
fn a_wide_raster_in_strips_of_part_of_a_tile_keeps_every_row_in_place() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (w, h) = (4200usize, 300usize);
    write_raster(
        &d.join("lattice.tif"),
        Some(3035),
        [0.0, 42_000.0, 0.0, 3000.0, 0.0, -3000.0],
        (1, 1),
        &[("fossil", vec![1000.0f64])],
        None,
    );
    let sink: Vec<f32> = (0..w * h).map(|i| (1 + i / w) as f32).collect();
    write_raster(
        &d.join("sink.tif"),
        Some(3035),
        [0.0, 10.0, 0.0, 3000.0, 0.0, -10.0],
        (w, h),
        &[("sequestration", sink)],
        None,
    );
    balance(d, "out", &[]).success();
    let (net, _, _) = read_band(&d.join("out/net_balance_tCO2_ha_yr.tif"), 1);
    for r in [0, 63, 64, 127, 128, 255, 256, 299] {
        for c in [0, 2047, 4199] {
            let want = 1000.0 / 12_600.0 - (1 + r) as f64;
            let got = net[r * w + c];
            assert!(
                (got - want).abs() < 1e-5 * want.abs(),
                "row {r} col {c}: {got} vs {want}"
            );
        }
    }
    let rows = table(&d.join("out/zones_balance.csv"));
    let all = zone_row(&rows, "all", "all");
    close(
        val(all, "sequestration_tCO2_yr"),
        1_896_300.0,
        "sequestration",
    );
    close(val(all, "emissions_total_tCO2_yr"), 1000.0, "emissions");
}
