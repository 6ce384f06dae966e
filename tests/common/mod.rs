//! Helpers shared by the integration tests: the real-data folder, running the real binary, and reading
//! rasters back with GDAL directly (independently of carbonmap's own reader).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use gdal::Dataset;

/// `$CARBONMAP_REAL_DATA` (../shared/real-data in CI). Missing in CI is a failure; elsewhere the test is
/// skipped with a printed reason.
pub fn real_data() -> Option<PathBuf> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match std::env::var_os("CARBONMAP_REAL_DATA").map(PathBuf::from) {
        Some(p) if p.is_dir() => Some(p),
        other => {
            let why = match other {
                Some(p) => format!("CARBONMAP_REAL_DATA={} is not a folder", p.display()),
                None => "CARBONMAP_REAL_DATA is not set".to_string(),
            };
            if in_ci {
                panic!("{why}: real-data tests must run in CI");
            }
            eprintln!("skipping real-data test: {why}");
            None
        }
    }
}

/// The carbonmap binary, quiet.
pub fn carbonmap() -> Command {
    let mut c = Command::cargo_bin("carbonmap").unwrap();
    c.arg("--quiet");
    c
}

/// One band of a raster as f64 (row-major), with its width and height.
pub fn read_band(path: &Path, band: usize) -> (Vec<f64>, usize, usize) {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b = ds.rasterband(band).unwrap();
    let (w, h) = b.size();
    let buf = b.read_as::<f64>((0, 0), (w, h), (w, h), None).unwrap();
    (buf.data().to_vec(), w, h)
}

/// Dataset-level metadata item.
pub fn metadata_item(path: &Path, key: &str) -> Option<String> {
    use gdal::Metadata;
    Dataset::open(path).unwrap().metadata_item(key, "")
}

/// Files in a folder, sorted (names only), without the folder's .carbonmap marker.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != carbonmap::commit::MARKER)
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

/// Pearson correlation over pairs where both are finite.
pub fn correlation(a: &[f64], b: &[f64]) -> (f64, usize) {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    let n = pairs.len() as f64;
    let (ma, mb) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = pairs.iter().map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = pairs.iter().map(|(x, _)| (x - ma).powi(2)).sum();
    let vb: f64 = pairs.iter().map(|(_, y)| (y - mb).powi(2)).sum();
    (cov / (va * vb).sqrt(), pairs.len())
}

/// Write a small GeoTIFF with GDAL directly: one band per (description, values), row-major `w` x `h`,
/// optional EPSG code (None = no CRS) and nodata.
pub fn write_raster<T: gdal::raster::GdalType + Copy>(
    path: &Path,
    epsg: Option<u32>,
    gt: [f64; 6],
    (w, h): (usize, usize),
    bands: &[(&str, Vec<T>)],
    nodata: Option<f64>,
) {
    use gdal::Metadata;
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv
        .create_with_band_type::<T, _>(path, w, h, bands.len())
        .unwrap();
    if let Some(code) = epsg {
        ds.set_projection(
            &gdal::spatial_ref::SpatialRef::from_epsg(code)
                .unwrap()
                .to_wkt()
                .unwrap(),
        )
        .unwrap();
        ds.set_geo_transform(&gt).unwrap();
    }
    for (i, (name, values)) in bands.iter().enumerate() {
        let mut b = ds.rasterband(i + 1).unwrap();
        b.set_description(name).unwrap();
        if let Some(nd) = nodata {
            b.set_no_data_value(Some(nd)).unwrap();
        }
        let mut buf = gdal::raster::Buffer::new((w, h), values.clone());
        b.write((0, 0), (w, h), &mut buf).unwrap();
    }
    ds.close().unwrap();
}

/// Median by hand: the middle value, or the mean of the two middle values; NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// `got` equals `want` within `tol`, or both are NaN.
pub fn close_or_both_nan(got: f64, want: f64, tol: f64) -> bool {
    (got.is_nan() && want.is_nan()) || (got - want).abs() < tol
}

/// Rows of a CSV table (leading `#` comment lines skipped) as column -> value maps.
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.deserialize().map(|x| x.unwrap()).collect()
}

/// A numeric cell (NaN when empty or not a number); panics naming the column when it does not exist.
pub fn cell(row: &std::collections::HashMap<String, String>, k: &str) -> f64 {
    row.get(k)
        .unwrap_or_else(|| panic!("no column {k} in {:?}", row.keys()))
        .parse()
        .unwrap_or(f64::NAN)
}

/// The example FR-Pue drivers file (examples/fr-pue/drivers.toml) written into `dir`, pointed at this
/// machine's real-data folder `root`.
#[allow(dead_code)]
pub fn fr_pue_drivers(root: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fr-pue/drivers.toml"),
    )
    .unwrap()
    .replace(
        "../../../shared/real-data/fluxtower-fr-pue",
        root.join("fluxtower-fr-pue").to_str().unwrap(),
    );
    let path = dir.join("drivers.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// WGS84 ellipsoid: semi-major axis (m) and first eccentricity squared (f = 1 / 298.257223563).
pub const WGS84_A: f64 = 6_378_137.0;
pub const WGS84_E2: f64 = 0.006_694_379_990_141_317;

/// The ellipsoid's area element integrated from the equator to `lat_deg`, by Simpson's rule (4000 steps),
/// written here independently of carbonmap's closed form: int_0^lat cos(p) / (1 - e2 sin^2 p)^2 dp. The area
/// between two latitudes over `dlon` radians is a^2 (1 - e2) dlon (I(lat2) - I(lat1)).
pub fn wgs84_area_integral(lat_deg: f64) -> f64 {
    let n = 4000;
    let b = lat_deg.to_radians();
    let h = b / n as f64;
    let f = |p: f64| p.cos() / (1.0 - WGS84_E2 * p.sin().powi(2)).powi(2);
    let mut s = f(0.0) + f(b);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

/// True area (ha) of a geographic cell of `dlon_deg` between `lat1` and `lat2` on WGS84.
pub fn wgs84_cell_ha(dlon_deg: f64, lat1: f64, lat2: f64) -> f64 {
    WGS84_A
        * WGS84_A
        * (1.0 - WGS84_E2)
        * dlon_deg.to_radians()
        * (wgs84_area_integral(lat2) - wgs84_area_integral(lat1)).abs()
        / 1e4
}

/// Headless Chromium (Debian's `chromium`), or None outside CI when it is missing (CI fails instead).
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match (found, in_ci) {
        (Some(p), _) => Some(p),
        (None, true) => panic!("chromium is needed in CI (scripts/test.sh installs it)"),
        (None, false) => {
            eprintln!("skipping the browser check: chromium is not installed");
            None
        }
    }
}

/// HTML text with its entities decoded (enough for carbonmap's reports).
pub fn html_text(h: &str) -> String {
    h.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A season run's report.html: self-contained (every picture a data URI, nothing loaded from elsewhere),
/// every warning of the manifest in it, and, in headless Chromium, every picture decoded and the page drawn
/// (a screenshot that is not blank). Returns the number of pictures.
pub fn check_html_report(out: &Path) -> usize {
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for attr in ["src=\"", "<link", "<script", "@import", "url("] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i..(i + 40).min(html.len())];
            assert!(
                attr == "src=\"" && rest.starts_with("src=\"data:image/png;base64,"),
                "report.html loads something from elsewhere: {rest}"
            );
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let text = html_text(&html);
    for s in manifest["stages"].as_array().unwrap() {
        for w in s["warnings"].as_array().cloned().unwrap_or_default() {
            let w = w.as_str().unwrap();
            assert!(text.contains(w), "warning missing from report.html: {w}");
        }
    }
    let Some(chromium) = chromium() else {
        return html.matches("src=\"data:image/png").count();
    };
    let dir = tempfile::tempdir().unwrap();
    // The page with a probe that counts pictures the browser could not decode once everything has loaded.
    let probe = "<script>window.addEventListener(\"load\",function(){var im=document.images,b=0;\
        for(var i=0;i<im.length;i++){if(!(im[i].complete&&im[i].naturalWidth>0))b++;}\
        document.body.setAttribute(\"data-images\",im.length);document.body.setAttribute(\"data-broken\",b);});</script>";
    let probed = dir.path().join("probe.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let run = |args: &[&str], page: &Path| {
        std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(args)
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap()
    };
    let dom = String::from_utf8_lossy(&run(&["--dump-dom"], &probed).stdout).into_owned();
    let attr = |k: &str| -> usize {
        let at = dom
            .find(&format!("data-{k}=\""))
            .unwrap_or_else(|| panic!("no data-{k} in the rendered page"));
        let rest = &dom[at + k.len() + 7..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let (images, broken) = (attr("images"), attr("broken"));
    assert_eq!(broken, 0, "{broken} of {images} pictures failed to load");
    let shot = dir.path().join("shot.png");
    let s = run(
        &[
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
        ],
        &out.join("report.html"),
    );
    assert!(shot.is_file(), "{}", String::from_utf8_lossy(&s.stderr));
    // Not blank: many pixels are not the white background, in many colours.
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let ink = pixels.iter().filter(|p| p[..3] != [255, 255, 255]).count();
    let colours: std::collections::BTreeSet<[u8; 3]> =
        pixels.iter().map(|p| [p[0], p[1], p[2]]).collect();
    assert!(
        ink * 20 > pixels.len(),
        "screenshot nearly blank: {ink} of {}",
        pixels.len()
    );
    assert!(colours.len() > 50, "{} colours", colours.len());
    images
}

/// A stack manifest (s2.toml in `dir`) of the five Exeter Sentinel-2 L2A scenes of June and August 2024.
pub fn exeter_s2_manifest(root: &Path, dir: &Path) -> PathBuf {
    let s2 = root.join("exeter-s2-hls/s2_l2a");
    let mut m = String::from("sensor = \"sentinel2-l2a\"\n");
    for (date, file) in [
        ("2024-06-02", "exe_2024-06-02_12-21-19_EPSG27700.tif"),
        ("2024-06-17", "exe_2024-06-17_12-21-21_UTM.tif"),
        ("2024-08-01", "exe_2024-08-01_12-21-19.tif"),
        ("2024-08-16", "exe_2024-08-16_12-21-11.tif"),
        ("2024-08-26", "exe_2024-08-26_12-21-11.tif"),
    ] {
        m.push_str(&format!(
            "[[scene]]\ndate = \"{date}\"\nfile = {:?}\n",
            s2.join(file).to_string_lossy()
        ));
    }
    let p = dir.join("s2.toml");
    std::fs::write(&p, m).unwrap();
    p
}

// The hand-worked CASA months of tests/npp.rs (and tests/scenario.rs): a station table of 2020-2021 with
// TEMPS, 60 mm a month and `srad` MJ m-2 a month, and its drivers file.

/// Monthly mean temperatures of the hand-worked water-stress case (src/npp/casa.rs tests).
pub const TEMPS: [f64; 12] = [
    4.0, 5.0, 7.0, 9.0, 12.0, 15.0, 17.0, 17.0, 14.0, 11.0, 7.0, 5.0,
];

pub fn station_csv(skip_month: Option<u32>, temp: impl Fn(f64) -> f64, srad: f64) -> String {
    let mut s = String::from("year,month,t,p,sol\n");
    for y in [2020, 2021] {
        for m in 1..=12u32 {
            if y == 2021 && Some(m) == skip_month {
                continue;
            }
            s.push_str(&format!(
                "{y},{m},{},60,{srad}\n",
                temp(TEMPS[m as usize - 1])
            ));
        }
    }
    s
}

pub const DRIVERS: &str = r#"step = "month"
[station]
file = "station.csv"
year = "year"
month = "month"
[station.columns]
tmean = { column = "t", unit = "degC" }
precip = { column = "p", unit = "mm" }
srad = { column = "sol", unit = "MJ m-2" }
"#;

/// A small CASA scene on UTM 30N in `dir`: ndvi/NDVI_2021-MM.tif (June `ndvi`, every other month `other` times
/// it) and lc.tif (`lc`, nodata 0), both `size` pixels at geotransform `gt`.
pub fn casa_scene(
    dir: &Path,
    gt: [f64; 6],
    size: (usize, usize),
    (ndvi, other): (&[f32], f32),
    lc: &[u8],
) {
    let nd = dir.join("ndvi");
    std::fs::create_dir_all(&nd).unwrap();
    for m in 1..=12 {
        let f = if m == 6 { 1.0 } else { other };
        write_raster(
            &nd.join(format!("NDVI_2021-{m:02}.tif")),
            Some(32630),
            gt,
            size,
            &[("NDVI median", ndvi.iter().map(|v| v * f).collect())],
            None,
        );
    }
    write_raster(
        &dir.join("lc.tif"),
        Some(32630),
        gt,
        size,
        &[("lc", lc.to_vec())],
        Some(0.0),
    );
}
