//! Output properties through the real binary on the SYNTHETIC samples: identical bytes for any thread count,
//! gap filling checked by hand, COG layout, units and provenance in the metadata.

mod common;

use common::{carbonmap, list_dir, read_band};

fn run(stack: &std::path::Path, out: &std::path::Path, args: &[&str]) {
    carbonmap()
        .args(["indices", "--stack"])
        .arg(stack)
        .arg("--out")
        .arg(out)
        .args(args)
        .assert()
        .success();
}

#[test]
fn outputs_are_byte_identical_across_thread_counts_and_reruns() {
    let t = tempfile::tempdir().unwrap();
    let m = carbonmap::synth::generate_samples(&t.path().join("s"), 48).unwrap();
    let args = [
        "--index",
        "NDVI,EVI,kNDVI",
        "--period",
        "season",
        "--stats",
        "median,mean,max,min",
        "--gap-fill",
    ];
    let mut runs = Vec::new();
    for (k, threads) in ["1", "2", "8", "2"].iter().enumerate() {
        let out = t.path().join(format!("out{k}"));
        let mut a = vec!["--threads", threads];
        a.extend_from_slice(&args);
        run(&m, &out, &a);
        let files: Vec<(String, Vec<u8>)> = list_dir(&out)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
            .collect();
        assert!(files.len() >= 4);
        runs.push(files);
    }
    for r in &runs[1..] {
        assert!(
            r == &runs[0],
            "outputs differ between thread counts or reruns"
        );
    }
}

#[test]
fn gap_fill_is_linear_in_time_by_hand() {
    let t = tempfile::tempdir().unwrap();
    let m = carbonmap::synth::generate_samples(&t.path().join("s"), 48).unwrap();
    let (plain, filled) = (t.path().join("plain"), t.path().join("filled"));
    run(&m, &plain, &["--period", "date"]);
    run(&m, &filled, &["--period", "date", "--gap-fill"]);
    let (jun, _, _) = read_band(&plain.join("NDVI_2024-06-02.tif"), 1);
    let (jul, _, _) = read_band(&plain.join("NDVI_2024-07-20.tif"), 1);
    let (aug, _, _) = read_band(&plain.join("NDVI_2024-08-16.tif"), 1);
    let (jul_filled, _, _) = read_band(&filled.join("NDVI_2024-07-20.tif"), 1);
    // 2024-06-02 -> 2024-07-20 is 48 days, 2024-06-02 -> 2024-08-16 is 75 days:
    // filled = jun + 48 / 75 * (aug - jun) where July is cloudy.
    let mut n = 0;
    for i in 0..jul.len() {
        if jul[i].is_nan() && jun[i].is_finite() && aug[i].is_finite() {
            let want = jun[i] + 48.0 / 75.0 * (aug[i] - jun[i]);
            assert!(
                (jul_filled[i] - want).abs() < 1e-6,
                "pixel {i}: {} vs {want}",
                jul_filled[i]
            );
            n += 1;
        } else if jul[i].is_finite() {
            assert_eq!(jul_filled[i], jul[i]);
        }
    }
    assert!(n > 100, "cloudy pixels checked: {n}");
}

#[test]
fn cog_layout_units_and_provenance() {
    let t = tempfile::tempdir().unwrap();
    let m = carbonmap::synth::generate_samples(&t.path().join("s"), 48).unwrap();
    let out = t.path().join("out");
    run(
        &m,
        &out,
        &[
            "--cog",
            "--index",
            "SAVI",
            "--const",
            "SAVI.L=0.25",
            "--period",
            "year",
        ],
    );
    let f = out.join("SAVI_2024.tif");
    use gdal::Metadata;
    let ds = gdal::Dataset::open(&f).unwrap();
    assert_eq!(
        ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
        Some("COG")
    );
    assert_eq!(
        ds.metadata_item("CARBONMAP_VERSION", "").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        ds.metadata_item("INDEX_CONSTANTS", "").as_deref(),
        Some("L=0.25")
    );
    assert_eq!(
        ds.metadata_item("PERIOD_START", "").as_deref(),
        Some("2024-01-01")
    );
    assert_eq!(
        ds.rasterband(1).unwrap().description().unwrap(),
        "SAVI median"
    );
    // The clear-observation count is written once per period, as an integer raster beside the indices.
    assert_eq!(ds.raster_count(), 3);
    let count = gdal::Dataset::open(out.join("clear_observations_2024.tif")).unwrap();
    let band = count.rasterband(1).unwrap();
    assert_eq!(band.description().unwrap(), "clear observations");
    assert_eq!(band.unit(), "count");
    assert_eq!(band.band_type(), gdal::raster::GdalDataType::UInt16);
    assert!(ds.rasterband(1).unwrap().no_data_value().unwrap().is_nan());
    assert!(list_dir(&out).iter().all(|f| !f.contains("partial")));
}

#[test]
fn tiles_of_one_date_are_mosaicked_first_tile_wins() {
    use carbonmap::io::Grid;
    use carbonmap::synth::{write_s2_date, SynthDate};
    let t = tempfile::tempdir().unwrap();
    let full = Grid::from_spec(
        "EPSG:32630",
        20.0,
        [464000.0, 5620040.0, 464960.0, 5621000.0],
    )
    .unwrap(); // 48 x 48
    let extent = full.bounds();
    let clear = SynthDate {
        date: "2024-06-02".into(),
        vigour: 1.0,
        cloud: None,
        other_crs: None,
    };
    let cloudy = SynthDate {
        cloud: Some((0.6, 0.5, 0.15)),
        ..clear.clone()
    };
    // West tile: columns 0..28; east tile: columns 20..48 with a cloud. Overlap 20..28 comes from the west.
    let tile = |c0: usize, c1: usize| Grid {
        gt: [
            full.gt[0] + 20.0 * c0 as f64,
            20.0,
            0.0,
            full.gt[3],
            0.0,
            -20.0,
        ],
        width: c1 - c0,
        ..full.clone()
    };
    write_s2_date(
        &t.path().join("full.tif"),
        &full,
        extent,
        &full.crs_wkt,
        &clear,
    )
    .unwrap();
    write_s2_date(
        &t.path().join("west.tif"),
        &tile(0, 28),
        extent,
        &full.crs_wkt,
        &clear,
    )
    .unwrap();
    write_s2_date(
        &t.path().join("east.tif"),
        &tile(20, 48),
        extent,
        &full.crs_wkt,
        &cloudy,
    )
    .unwrap();
    std::fs::write(
        t.path().join("full.toml"),
        "sensor = \"sentinel2-l2a\"\n[[scene]]\ndate = \"2024-06-02\"\nfile = \"full.tif\"\n",
    )
    .unwrap();
    std::fs::write(
        t.path().join("tiles.toml"),
        "sensor = \"sentinel2-l2a\"\n[[scene]]\ndate = \"2024-06-02\"\nfile = \"west.tif\"\n[[scene]]\ndate = \"2024-06-02\"\nfile = \"east.tif\"\n",
    )
    .unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    run(&t.path().join("full.toml"), &a, &["--period", "date"]);
    let full_tif = t.path().join("full.tif");
    run(
        &t.path().join("tiles.toml"),
        &b,
        &[
            "--period",
            "date",
            "--grid-from",
            full_tif.to_str().unwrap(),
        ],
    );
    let (want, w, _) = read_band(&a.join("NDVI_2024-06-02.tif"), 1);
    let (got, _, _) = read_band(&b.join("NDVI_2024-06-02.tif"), 1);
    let (east_scl, ew, _) = read_band(&t.path().join("east.tif"), 5);
    let (mut from_east_cloud, mut compared) = (0, 0);
    for i in 0..want.len() {
        let (c, r) = (i % w, i / w);
        // Columns < 28 come from the (clear) west tile; the others from the east tile, masked where its SCL
        // says cloud (9) or cloud shadow (3).
        let east_masked = c >= 28 && [3.0, 9.0].contains(&east_scl[r * ew + (c - 20)]);
        if east_masked {
            assert!(got[i].is_nan(), "({c}, {r}) should be masked");
            from_east_cloud += 1;
        } else {
            assert_eq!(got[i], want[i], "({c}, {r})");
            compared += 1;
        }
    }
    assert!(
        from_east_cloud > 20 && compared > 2000,
        "{from_east_cloud} {compared}"
    );
    // The cloud also covers part of the overlap, where the west tile wins: those pixels are clear.
    let overlap_cloud = (0..want.len())
        .filter(|&i| {
            (20..28).contains(&(i % w))
                && [3.0, 9.0].contains(&east_scl[(i / w) * ew + (i % w - 20)])
        })
        .count();
    assert!(
        overlap_cloud > 0,
        "the test cloud must reach into the overlap"
    );
}

/// COG overviews: continuous bands are averaged over valid pixels (NaN never mixed in), the clear-observation
/// count is never averaged (NEAREST keeps whole counts). (Class rasters take MODE.)
#[test]
fn cog_overviews_average_quantities_and_keep_counts_whole() {
    let t = tempfile::tempdir().unwrap();
    let m = carbonmap::synth::generate_samples(&t.path().join("s"), 600).unwrap();
    let out = t.path().join("out");
    run(
        &m,
        &out,
        &[
            "--cog", "--index", "NDVI", "--period", "year", "--stats", "median",
        ],
    );
    let ds = gdal::Dataset::open(out.join("NDVI_2024.tif")).unwrap();
    let full = ds.rasterband(1).unwrap();
    let ovr = full.overview(0).unwrap();
    assert_eq!(ovr.size(), (300, 300));
    let (w, _) = full.size();
    let v = full.read_as::<f64>((0, 0), (w, 40), (w, 40), None).unwrap();
    let o = ovr
        .read_as::<f64>((0, 0), (300, 20), (300, 20), None)
        .unwrap();
    let mut checked = 0;
    for oy in 0..20 {
        for ox in 0..300 {
            let quad: Vec<f64> = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|(dx, dy)| v.data()[(2 * oy + dy) * w + 2 * ox + dx])
                .filter(|x| !x.is_nan())
                .collect();
            let got = o.data()[oy * 300 + ox];
            if quad.is_empty() {
                assert!(
                    got.is_nan(),
                    "overview ({ox}, {oy}): {got} from no valid pixel"
                );
            } else {
                // AVERAGE over the valid pixels of the 2 x 2 block (float32 rounding).
                let want = quad.iter().sum::<f64>() / quad.len() as f64;
                assert!(
                    (got - want).abs() < 1e-6,
                    "overview ({ox}, {oy}): {got} vs mean {want}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 5000, "{checked}");
    let counts = gdal::Dataset::open(out.join("clear_observations_2024.tif")).unwrap();
    let count = counts.rasterband(1).unwrap().overview(0).unwrap();
    let c = count
        .read_as::<f64>((0, 0), (300, 300), (300, 300), None)
        .unwrap();
    assert!(
        c.data().iter().all(|x| x.is_nan() || x.fract() == 0.0),
        "counts must stay whole"
    );
}

/// Every CSV table the demo chain writes (indices, land cover, CASA and MOD17 NPP, balance, the run's own)
/// has its header on the first line: Python's csv module, pandas, QGIS and GDAL's CSV driver all read the
/// same columns. Notes that used to be a leading `#` line are in a `NAME.csv.json` sidecar.
#[test]
fn every_csv_opens_with_its_header_first_in_a_csv_reader_and_in_gdal() {
    use gdal::vector::LayerAccess;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("demo");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/season.toml");
    carbonmap()
        .arg("run")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let mut csvs = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                csvs.push(p);
            }
        }
    }
    assert!(csvs.len() >= 8, "{csvs:?}");
    // The same run's report.html opens offline in a browser with every picture and warning.
    assert!(common::check_html_report(&out) >= 20);
    check_styles(&out);
    // The land-cover map's class names reach its quick-look's legend (read from the raster's categories).
    let names = carbonmap::io::category_names(&out.join("landcover/landcover.tif"), 1);
    assert_eq!(
        names.get(&10).map(String::as_str),
        Some("Tree cover"),
        "{names:?}"
    );
    // Multi-band rasters get a quick-look per band: the emissions' total and its two sectors.
    for f in [
        "emissions_tCO2_ha_yr.png",
        "emissions_tCO2_ha_yr.b2.png",
        "emissions_tCO2_ha_yr.b3.png",
    ] {
        assert!(out.join("report/balance").join(f).is_file(), "{f}");
    }
    for p in &csvs {
        let mut r = csv::Reader::from_path(p).unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert!(
            !header[0].starts_with('#'),
            "{}: first line {:?}",
            p.display(),
            header
        );
        assert!(
            r.records().all(|x| x.is_ok()),
            "{}: a row does not parse",
            p.display()
        );
        let ds = gdal::Dataset::open(p).unwrap_or_else(|e| panic!("{}: GDAL: {e}", p.display()));
        let layer = ds.layer(0).unwrap();
        let fields: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
        assert_eq!(fields, header, "{}: GDAL's columns", p.display());
    }
    let casa = csvs
        .iter()
        .find(|p| p.to_string_lossy().contains("casa_summary"))
        .unwrap();
    let mut sidecar = casa.as_os_str().to_owned();
    sidecar.push(".json");
    let notes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sidecar).unwrap()).unwrap();
    assert!(notes["notes"][0]
        .as_str()
        .unwrap()
        .contains("positive = net uptake"));
}

/// Every raster and GeoPackage a run wrote has a QGIS style beside it (NAME.qml) that parses as XML with the
/// renderer its data needs: a palette with the class names for class rasters, a pseudocolour ramp for
/// quantities, a graduated fill for zone layers (also stored in the GeoPackage as each layer's default).
fn check_styles(out: &std::path::Path) {
    use gdal::vector::LayerAccess;
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tif" || x == "gpkg") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        let qml = f.with_extension("qml");
        let text = std::fs::read_to_string(&qml)
            .unwrap_or_else(|e| panic!("{}: no style: {e}", qml.display()));
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&text, opts)
            .unwrap_or_else(|e| panic!("{}: not XML: {e}", qml.display()));
        let renderer = |tag: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name(tag))
                .and_then(|n| n.attribute("type"))
                .map(str::to_string)
        };
        if f.extension().is_some_and(|x| x == "gpkg") {
            assert_eq!(renderer("renderer-v2").as_deref(), Some("graduatedSymbol"));
            let ds = gdal::Dataset::open(f).unwrap();
            let mut styles = ds.layer_by_name("layer_styles").unwrap();
            let spatial = ds.layer_count() - 1;
            assert_eq!(styles.features().count(), spatial, "{}", f.display());
            continue;
        }
        let ds = gdal::Dataset::open(f).unwrap();
        let classes = ds.rasterband(1).unwrap().color_table().is_some();
        let want = if classes {
            "paletted"
        } else {
            "singlebandpseudocolor"
        };
        assert_eq!(
            renderer("rasterrenderer").as_deref(),
            Some(want),
            "{}",
            qml.display()
        );
        if classes {
            let names = doc
                .descendants()
                .filter(|n| n.has_tag_name("paletteEntry"))
                .filter(|n| n.attribute("label").is_some_and(|l| !l.is_empty()))
                .count();
            assert!(names > 0, "{}: classes without names", qml.display());
            continue;
        }
        // The ramp styles the band MAP_BAND names (a lattice balance: its net balance), else band 1.
        use gdal::Metadata;
        let shown = ds
            .metadata_item(carbonmap::io::MAP_BAND, "")
            .map_or(1, |b| b.parse::<usize>().unwrap());
        let band = doc
            .descendants()
            .find(|n| n.has_tag_name("rasterrenderer"))
            .and_then(|n| n.attribute("band"));
        assert_eq!(band, Some(shown.to_string().as_str()), "{}", qml.display());
        let description = ds.rasterband(shown).unwrap().description().unwrap();
        if f.ends_with("lattice_balance.tif") {
            assert!(description.starts_with("net balance"), "{description}");
        }
    }
}

/// `--maps`: a quick-look map beside every raster a command writes, committed with it.
#[test]
fn maps_beside_every_raster_with_the_maps_flag() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("ndvi");
    let stack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/stack.toml");
    carbonmap()
        .args([
            "--maps", "indices", "--index", "NDVI", "--period", "month", "--stats", "median",
            "--stack",
        ])
        .arg(&stack)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let files = common::list_dir(&out);
    let tifs: Vec<&String> = files.iter().filter(|f| f.ends_with(".tif")).collect();
    assert!(tifs.len() >= 8, "{files:?}");
    for f in tifs {
        let png = out.join(f.replace(".tif", ".png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(&bytes[1..4], b"PNG", "{}", png.display());
    }
    // Without the flag, no maps.
    let plain = t.path().join("plain");
    carbonmap()
        .args([
            "indices", "--index", "NDVI", "--period", "month", "--stats", "median", "--stack",
        ])
        .arg(&stack)
        .arg("-o")
        .arg(&plain)
        .assert()
        .success();
    assert!(!common::list_dir(&plain).iter().any(|f| f.ends_with(".png")));
}

/// A folder of dated multi-band GeoTIFFs of one sensor, named any way: `stack --sensor` dates them by their
/// DATETIME tag or by `--date-pattern`, names bands by their descriptions, and the manifest it writes gives the
/// same indices as the samples' hand-written manifest; undated files are listed in one error.
#[test]
fn stack_recognises_dated_rasters_by_tag_or_pattern() {
    let tmp = tempfile::tempdir().unwrap();
    let s = carbonmap::synth::generate_samples(&tmp.path().join("s"), 48).unwrap();
    let dir = tmp.path().join("scenes");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(s.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        if n.starts_with("s2_synthetic_") && n.ends_with(".tif") {
            // Renamed: no product naming convention to recognise.
            std::fs::copy(&p, dir.join(n.replace("s2_synthetic_", "acq-"))).unwrap();
        }
    }
    let by_tag = tmp.path().join("by-tag.toml");
    carbonmap()
        .args(["stack", "--sensor", "sentinel2-l2a", "-o"])
        .arg(&by_tag)
        .arg(&dir)
        .assert()
        .success();
    let by_name = tmp.path().join("by-name.toml");
    carbonmap()
        .args([
            "stack",
            "--sensor",
            "sentinel2-l2a",
            "--date-pattern",
            r"acq-(?P<date>\d{4}-\d{2}-\d{2})",
            "-o",
        ])
        .arg(&by_name)
        .arg(&dir)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&by_tag)
            .unwrap()
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        std::fs::read_to_string(&by_name)
            .unwrap()
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
    );
    run(&s, &tmp.path().join("a"), &["--index", "NDVI"]);
    run(&by_tag, &tmp.path().join("b"), &["--index", "NDVI"]);
    for e in std::fs::read_dir(tmp.path().join("a")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tif") {
            let q = tmp.path().join("b").join(p.file_name().unwrap());
            let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
            assert_eq!(
                bits(read_band(&p, 1).0),
                bits(read_band(&q, 1).0),
                "{}",
                p.display()
            );
        }
    }
    // An undated raster among them (no tag, no pattern): named.
    std::fs::copy(
        s.parent().unwrap().join("landcover_worldcover.tif"),
        dir.join("lc.tif"),
    )
    .unwrap();
    let a = carbonmap()
        .args(["stack", "--sensor", "sentinel2-l2a"])
        .arg(&dir)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("lc.tif: no date"), "{err}");
}
