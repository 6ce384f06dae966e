//! The inputs every safety test reads: SYNTHETIC samples, the outputs of a first chain on them (monthly NDVI,
//! CASA sequestration, a land-cover model), plots, and hostile files (binary junk, Latin-1 text, a truncated
//! GeoTIFF, a GeoTIFF where text is expected, an all-NaN sink). Made once per test binary; read-only after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::carbonmap;

pub struct Fixture {
    pub root: PathBuf,
}

impl Fixture {
    /// Replace `{NAME}` placeholders by fixture paths (`{F}` = the fixture folder).
    pub fn fill(&self, s: &str) -> String {
        s.replace("{F}", &self.root.to_string_lossy())
    }
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(make)
}

fn run_ok(args: &[&str]) {
    let o = carbonmap().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "fixture command {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn make() -> Fixture {
    // Under cargo's target folder (a static is never dropped, so a temporary folder would outlive the run).
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("safety-fixture");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let s = root.join("s");
    carbonmap::synth::generate_samples(&s, 32).unwrap();
    let r = |p: &str| root.join(p).to_string_lossy().into_owned();
    run_ok(&[
        "indices",
        "--stack",
        &r("s/stack.toml"),
        "--out",
        &r("ndvi"),
        "--index",
        "NDVI",
        "--period",
        "month",
        "--stats",
        "median",
        "--gap-fill",
    ]);
    run_ok(&[
        "npp",
        "--ndvi",
        &r("ndvi"),
        "--landcover",
        &r("s/landcover_worldcover.tif"),
        "--legend",
        "esa-worldcover",
        "--drivers",
        &r("s/drivers.toml"),
        "--year",
        "2024",
        "--months",
        "6-8",
        "--out",
        &r("npp"),
    ]);
    run_ok(&[
        "landcover",
        "train",
        "--stack",
        &r("s/stack.toml"),
        "--bands",
        "R,N",
        "--indices",
        "NDVI",
        "--stats",
        "median",
        "--labels",
        &r("s/landcover_worldcover.tif"),
        "--legend",
        "esa-worldcover",
        "--classifier",
        "decision-tree",
        "--block-size",
        "200",
        "--out",
        &r("model"),
    ]);
    write_plots(&root.join("plots.csv"));
    hostile(&root);
    Fixture { root }
}

/// Plots inside the samples' grid (EPSG:32630), with an observed NPP.
fn write_plots(path: &Path) {
    let mut csv = String::from("id,x,y,npp,site,vegtype\n");
    for i in 0..12 {
        let x = 464_050.0 + 45.0 * i as f64;
        let y = 5_620_420.0 + 40.0 * (i % 5) as f64;
        csv.push_str(&format!(
            "p{i},{x},{y},{},s{},tree\n",
            0.5 + 0.05 * i as f64,
            i % 3
        ));
    }
    std::fs::write(path, csv).unwrap();
}

fn hostile(root: &Path) {
    let h = root.join("hostile");
    std::fs::create_dir_all(&h).unwrap();
    // Bytes that are neither UTF-8 nor any format.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(h.join("junk.bin"), &junk).unwrap();
    std::fs::write(h.join("junk.toml"), &junk).unwrap();
    std::fs::write(h.join("junk.csv"), &junk).unwrap();
    std::fs::write(h.join("junk.json"), &junk).unwrap();
    std::fs::write(h.join("junk.geojson"), &junk).unwrap();
    std::fs::write(h.join("empty.toml"), b"").unwrap();
    // A correction table with its header and no rows.
    std::fs::write(
        h.join("norows.csv"),
        b"zone,class,factor,applies_to,se,n,source\n",
    )
    .unwrap();
    // Latin-1 text: valid TOML/CSV except for its encoding.
    std::fs::write(
        h.join("latin1.toml"),
        b"sensor = \"sentinel2-l2a\" # caf\xe9\n",
    )
    .unwrap();
    std::fs::write(
        h.join("latin1.csv"),
        b"id,x,y,npp\nb\xe9,464100,5620500,1\n",
    )
    .unwrap();
    // A GeoTIFF given where a text file is expected.
    std::fs::copy(
        root.join("s/landcover_worldcover.tif"),
        h.join("raster.toml"),
    )
    .unwrap();
    // Truncated rasters: the first half of a valid file.
    for (src, dst) in [
        ("s/landcover_worldcover.tif", "trunc_landcover.tif"),
        (
            "npp/sequestration_tCO2_ha_2024-06_2024-08.tif",
            "trunc_seq.tif",
        ),
        ("s/emissions_lattice_1km.tif", "trunc_lattice.tif"),
    ] {
        let src = pick(root, src);
        let bytes = std::fs::read(&src).unwrap();
        std::fs::write(h.join(dst), &bytes[..bytes.len() / 2]).unwrap();
    }
    // A stack whose last scene is truncated.
    let stack = root.join("truncstack");
    std::fs::create_dir_all(&stack).unwrap();
    let manifest = std::fs::read_to_string(root.join("s/stack.toml")).unwrap();
    for line in manifest.lines().filter(|l| l.starts_with("file = ")) {
        let name = line.trim_start_matches("file = ").trim_matches('"');
        std::fs::copy(root.join("s").join(name), stack.join(name)).unwrap();
    }
    std::fs::write(stack.join("stack.toml"), &manifest).unwrap();
    let last = manifest
        .lines()
        .rfind(|l| l.starts_with("file = "))
        .unwrap()
        .trim_start_matches("file = ")
        .trim_matches('"')
        .to_string();
    let bytes = std::fs::read(stack.join(&last)).unwrap();
    std::fs::write(stack.join(&last), &bytes[..bytes.len() * 2 / 3]).unwrap();
    // A season config whose land-cover map is truncated (`check` must find it without reading pixels).
    std::fs::write(
        h.join("trunc-season.toml"),
        format!(
            "[season]\ndefault = \"2024-JJA\"\nout = \"out\"\n[stages.lc]\ncommand = \"landcover check\"\nmap = \"{}\"\nlegend = \"esa-worldcover\"\n",
            h.join("trunc_landcover.tif").display()
        ),
    )
    .unwrap();
    // A stack with an impossible date.
    std::fs::write(
        root.join("s/baddate.toml"),
        manifest.replacen("2024-04-15", "2024-13-45", 1),
    )
    .unwrap();
    // An all-NaN sink with its unit declared.
    let seq = pick(root, "npp/sequestration_tCO2_ha_2024-06_2024-08.tif");
    let ds = gdal::Dataset::open(&seq).unwrap();
    let (w, hgt) = ds.raster_size();
    let gt = ds.geo_transform().unwrap();
    crate::common::write_raster::<f32>(
        &h.join("nan_sink.tif"),
        Some(32630),
        gt,
        (w, hgt),
        &[("sequestration", vec![f32::NAN; w * hgt])],
        Some(f64::NAN),
    );
}

/// A fixture file by its expected name, or the one file of its folder with the same prefix.
pub fn pick(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    if p.exists() {
        return p;
    }
    let dir = p.parent().unwrap();
    let stem = p.file_name().unwrap().to_string_lossy();
    let prefix = stem.split('_').take(3).collect::<Vec<_>>().join("_");
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    assert_eq!(found.len(), 1, "{rel}: {found:?}");
    found[0].clone()
}

/// SHA-256 of every file under `dir` (relative path -> hash).
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir(dir) {
        let rel = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.insert(rel, carbonmap::io::sha256_file(&e).unwrap());
    }
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walkdir(&p));
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// A season config (indices -> npp -> balance on the samples) in `dir` whose NDVI stage uses `stats`.
pub fn season_config(dir: &Path, stats: &str) -> PathBuf {
    let p = dir.join(format!("season-{}.toml", stats.replace(',', "-")));
    std::fs::write(
        &p,
        fixture().fill(&format!(
            "[season]\ndefault = \"2024-JJA\"\nout = \"out\"\n\
             [stages.ndvi]\ncommand = \"indices\"\nstack = \"{{F}}/s/stack.toml\"\nperiod = \"month\"\nstats = \"{stats}\"\ngap_fill = true\n\
             [stages.npp]\ncommand = \"npp\"\nndvi = \"@ndvi\"\nlandcover = \"{{F}}/s/landcover_worldcover.tif\"\nlegend = \"esa-worldcover\"\ndrivers = \"{{F}}/s/drivers.toml\"\nyear = \"{{year}}\"\nmonths = \"{{months}}\"\n\
             [stages.balance]\ncommand = \"balance\"\nsink = \"@npp/sequestration_tCO2_ha_{{period}}.tif\"\nsink_unit = \"t CO2 ha-1 yr-1\"\nlattice = \"{{F}}/s/emissions_lattice_1km.tif\"\n"
        )),
    )
    .unwrap();
    p
}
