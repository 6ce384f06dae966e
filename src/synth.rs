//! SYNTHETIC rasters for carbonmap's own samples, tests and benchmarks. Nothing here is real imagery: the
//! scenes are painted from a fixed map of land-cover patches (water, urban, bare soil, forest, grassland)
//! with textbook surface-reflectance spectra, a seasonal vegetation cycle, a cloud with its shadow, and
//! Sentinel-2 L2A encoding (DN = reflectance x 10000 + 1000 after processing baseline 04.00, DN 0 no data,
//! SCL classes). Everything is deterministic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::{self, Grid, OutBand, RasterWriter, WriteOptions};

/// Land-cover patches of the synthetic landscape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    Water,
    Urban,
    Bare,
    Forest,
    Grass,
}

impl Cover {
    /// Surface reflectance (blue, green, red, NIR) at the peak of the season. SYNTHETIC: textbook-typical
    /// shapes (dark water falling into the NIR, a red edge for vegetation, flat bright soil), chosen to be
    /// plausible for tests and demos, not measured values and not a parameter of any model.
    pub fn spectrum(self) -> [f64; 4] {
        match self {
            Cover::Water => [0.060, 0.050, 0.030, 0.015],
            Cover::Urban => [0.100, 0.110, 0.120, 0.170],
            Cover::Bare => [0.110, 0.150, 0.200, 0.270],
            Cover::Forest => [0.030, 0.050, 0.030, 0.320],
            Cover::Grass => [0.040, 0.070, 0.050, 0.380],
        }
    }

    /// Sentinel-2 SCL class of a clear pixel of this cover (4 vegetation, 5 not vegetated, 6 water).
    /// ESA WorldCover code of this cover, for the samples' land-cover map.
    pub fn worldcover(self) -> u8 {
        match self {
            Cover::Water => 80,
            Cover::Urban => 50,
            Cover::Bare => 60,
            Cover::Forest => 10,
            Cover::Grass => 30,
        }
    }

    pub fn scl(self) -> u16 {
        match self {
            Cover::Water => 6,
            Cover::Urban | Cover::Bare => 5,
            Cover::Forest | Cover::Grass => 4,
        }
    }
}

/// Land cover at normalised coordinates (u east, v north, both 0..1 over the scene).
pub fn cover_at(u: f64, v: f64) -> Cover {
    if (v - 0.3 - 0.08 * (6.0 * u).sin()).abs() < 0.05 {
        Cover::Water
    } else if u > 0.62 && v > 0.6 {
        Cover::Urban
    } else if u < 0.3 && v > 0.72 {
        Cover::Bare
    } else if u < 0.5 {
        Cover::Forest
    } else {
        Cover::Grass
    }
}

/// Deterministic texture in [-1, 1] from integer coordinates (a small integer hash).
fn noise(ix: i64, iy: i64, salt: u64) -> f64 {
    let mut h = (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ salt;
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    (h % 20001) as f64 / 10000.0 - 1.0
}

/// One synthetic acquisition.
#[derive(Debug, Clone)]
pub struct SynthDate {
    pub date: String,
    /// Vegetation vigour relative to the peak (scales the red-NIR contrast of forest and grass).
    pub vigour: f64,
    /// A cloud (centre u, v and radius, normalised) with its shadow displaced south-west.
    pub cloud: Option<(f64, f64, f64)>,
    /// Write this date on another grid (EPSG code, resolution) to exercise warping.
    pub other_crs: Option<(u32, f64)>,
}

/// Pixel values of one acquisition at map point (x, y) of the reference extent: DN for B02, B03, B04, B08
/// and the SCL class.
fn pixel(d: &SynthDate, u: f64, v: f64, ix: i64, iy: i64) -> ([u16; 4], u16) {
    if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
        return ([0; 4], 0);
    }
    let c = cover_at(u, v);
    let mut r = c.spectrum();
    if matches!(c, Cover::Forest | Cover::Grass) {
        // Less vigour: red rises towards bare soil, NIR falls.
        r[2] += (1.0 - d.vigour) * 0.08;
        r[3] *= 0.55 + 0.45 * d.vigour;
    }
    let t = 1.0 + 0.03 * noise(ix, iy, 7);
    let mut scl = c.scl();
    if let Some((cu, cv, cr)) = d.cloud {
        let in_cloud = (u - cu).hypot(v - cv) < cr;
        let in_shadow = (u - (cu - 0.08)).hypot(v - (cv - 0.08)) < cr;
        if in_cloud {
            r = [0.45, 0.46, 0.47, 0.50];
            scl = 9;
        } else if in_shadow {
            r = r.map(|x| x * 0.35);
            scl = 3;
        }
    }
    let dn = r.map(|x| ((x * t * 10000.0) + 1000.0).round().clamp(1.0, 65535.0) as u16);
    (dn, scl)
}

/// Write one synthetic Sentinel-2 L2A acquisition (bands B02 B03 B04 B08 SCL, UInt16, nodata 0) on `grid`.
/// The landscape is defined over `extent` (xmin, ymin, xmax, ymax) in `extent_crs`.
pub fn write_s2_date(
    path: &Path,
    grid: &Grid,
    extent: [f64; 4],
    extent_crs: &str,
    d: &SynthDate,
) -> Result<()> {
    let names = ["B02", "B03", "B04", "B08", "SCL"];
    let bands: Vec<OutBand> = names
        .iter()
        .map(|n| OutBand {
            description: n.to_string(),
            unit: if *n == "SCL" {
                "class".into()
            } else {
                "DN".into()
            },
        })
        .collect();
    let mut md = BTreeMap::new();
    md.insert(
        "SYNTHETIC".to_string(),
        "yes: generated by carbonmap synth, not real imagery".to_string(),
    );
    md.insert("DATETIME".to_string(), format!("{}T11:00:00Z", d.date));
    md.insert("BOA_ADD_OFFSET".to_string(), "-1000".to_string());
    let mut w =
        RasterWriter::create::<u16>(path, grid, &bands, Some(0.0), &md, &WriteOptions::default())?;
    let rows = 256.min(grid.height);
    let same_crs = io::same_crs(&grid.crs_wkt, extent_crs);
    let mut row0 = 0;
    while row0 < grid.height {
        let nrows = rows.min(grid.height - row0);
        let n = nrows * grid.width;
        let (mut xs, mut ys) = grid.pixel_centres(row0, nrows);
        if !same_crs {
            io::transform_points(&grid.crs_wkt, extent_crs, &mut xs, &mut ys)?;
        }
        let mut planes: Vec<Vec<u16>> = vec![Vec::with_capacity(n); 5];
        for (x, y) in xs.iter().zip(&ys) {
            let u = (x - extent[0]) / (extent[2] - extent[0]);
            let v = (y - extent[1]) / (extent[3] - extent[1]);
            // Texture keyed to 20 m cells of the landscape, so it is the same ground whatever the grid.
            let (dn, scl) = pixel(
                d,
                u,
                v,
                (x / 20.0).floor() as i64,
                (y / 20.0).floor() as i64,
            );
            for b in 0..4 {
                planes[b].push(dn[b]);
            }
            planes[4].push(scl);
        }
        for (b, p) in planes.into_iter().enumerate() {
            w.write_rows(b, row0, p)?;
        }
        row0 += nrows;
    }
    w.finish()?.commit()?;
    Ok(())
}

/// The sample dates: a spring, an early-summer (on British National Grid, as real archives mix CRSs), a
/// cloudy midsummer and a late-summer acquisition.
pub fn sample_dates() -> Vec<SynthDate> {
    vec![
        SynthDate {
            date: "2024-04-15".into(),
            vigour: 0.6,
            cloud: None,
            other_crs: None,
        },
        SynthDate {
            date: "2024-06-02".into(),
            vigour: 1.0,
            cloud: None,
            other_crs: Some((27700, 20.0)),
        },
        SynthDate {
            date: "2024-07-20".into(),
            vigour: 0.95,
            cloud: Some((0.5, 0.55, 0.18)),
            other_crs: None,
        },
        SynthDate {
            date: "2024-08-16".into(),
            vigour: 0.8,
            cloud: None,
            other_crs: None,
        },
    ]
}

/// Where the samples live on the ground: UTM zone 30N (EPSG:32630), near Exeter, 20 m pixels.
pub const SAMPLE_EPSG: u32 = 32630;
pub const SAMPLE_ORIGIN: (f64, f64) = (464_000.0, 5_621_000.0);
pub const SAMPLE_RES: f64 = 20.0;

/// Generate the sample stack in `dir`: one GeoTIFF per date and `stack.toml`. Returns the manifest path.
pub fn generate_samples(dir: &Path, size: usize) -> Result<PathBuf> {
    io::init();
    crate::commit::prepare_folder(dir)?;
    let (x0, y0) = SAMPLE_ORIGIN;
    let extent = [
        x0,
        y0 - SAMPLE_RES * size as f64,
        x0 + SAMPLE_RES * size as f64,
        y0,
    ];
    let utm = Grid::from_spec(&format!("EPSG:{SAMPLE_EPSG}"), SAMPLE_RES, extent)?;
    let mut manifest = String::from(
        "# SYNTHETIC sample stack generated by scripts/make-samples.sh (carbonmap::synth); not real imagery.\n\
         # Sentinel-2 L2A encoding: DN = reflectance x 10000 + 1000 (baseline 04.00), SCL classes.\n\
         sensor = \"sentinel2-l2a\"\n",
    );
    for d in sample_dates() {
        let (grid, name) = match d.other_crs {
            None => (utm.clone(), format!("s2_synthetic_{}.tif", d.date)),
            Some((epsg, res)) => {
                let wkt = utm.crs_wkt.clone();
                let b = io::transform_bounds(
                    &wkt,
                    &Grid::from_spec(&format!("EPSG:{epsg}"), res, [0.0, 0.0, 1.0, 1.0])?.crs_wkt,
                    extent,
                )?;
                (
                    Grid::from_spec(&format!("EPSG:{epsg}"), res, b)?,
                    format!("s2_synthetic_{}_EPSG{epsg}.tif", d.date),
                )
            }
        };
        write_s2_date(&dir.join(&name), &grid, extent, &utm.crs_wkt, &d)?;
        manifest.push_str(&format!(
            "\n[[scene]]\ndate = \"{}\"\nfile = \"{name}\"\n",
            d.date
        ));
    }
    let path = dir.join("stack.toml");
    io::write_atomic(&path, manifest.as_bytes())?;
    write_landcover(&dir.join("landcover_worldcover.tif"), &utm, extent)?;
    io::write_atomic(
        &dir.join("climate_station_2024.csv"),
        synthetic_climate_csv().as_bytes(),
    )?;
    io::write_atomic(&dir.join("drivers.toml"), SAMPLE_DRIVERS.as_bytes())?;
    write_emission_lattice(&dir.join("emissions_lattice_1km.tif"), extent)?;
    io::write_atomic(&dir.join("zones.geojson"), sample_zones(extent).as_bytes())?;
    Ok(path)
}

/// SYNTHETIC emission lattice: 1 km cells on UTM 30N whose borders cut through the sample area (origin 500 m
/// west and north of it), two sectors, flux densities declared as the bands' unit. Made-up values that fall
/// from the north-west corner (a "town centre") outwards.
fn write_emission_lattice(path: &Path, extent: [f64; 4]) -> Result<()> {
    let cell = 1000.0;
    let (x0, y1) = (extent[0] - 500.0, extent[3] + 500.0);
    let n =
        (((extent[2] - x0) / cell).ceil() as usize).max(((y1 - extent[1]) / cell).ceil() as usize);
    let grid = Grid {
        crs_wkt: Grid::from_spec(&format!("EPSG:{SAMPLE_EPSG}"), cell, [0.0, 0.0, 1.0, 1.0])?
            .crs_wkt,
        gt: [x0, cell, 0.0, y1, 0.0, -cell],
        width: n,
        height: n,
    };
    let mut md = BTreeMap::new();
    md.insert(
        "SYNTHETIC".to_string(),
        "yes: made-up emissions for carbonmap's samples, not an inventory".to_string(),
    );
    let unit = "t CO2 km-2 yr-1";
    let bands = ["buildings", "transport"].map(|s| OutBand {
        description: s.into(),
        unit: unit.into(),
    });
    let mut w =
        RasterWriter::create::<f32>(path, &grid, &bands, None, &md, &WriteOptions::default())?;
    for (k, base) in [4000.0f32, 2500.0].into_iter().enumerate() {
        let v: Vec<f32> = (0..n * n)
            .map(|i| base / (1.0 + (i / n + i % n) as f32))
            .collect();
        w.write_rows(k, 0, v)?;
    }
    w.finish()?.commit()?;
    Ok(())
}

/// SYNTHETIC zones: one town in two districts (west and east halves of the sample area).
fn sample_zones(extent: [f64; 4]) -> String {
    let [x0, y0, x1, y1] = extent;
    let xm = 0.5 * (x0 + x1);
    let poly =
        |a: f64, b: f64| format!("[[[{a},{y0}],[{b},{y0}],[{b},{y1}],[{a},{y1}],[{a},{y0}]]]");
    format!(
        r#"{{"type": "FeatureCollection", "name": "SYNTHETIC sample zones",
"crs": {{"type": "name", "properties": {{"name": "urn:ogc:def:crs:EPSG::{SAMPLE_EPSG}"}}}},
"features": [
{{"type": "Feature", "properties": {{"town": "Sampleton", "district": "west"}}, "geometry": {{"type": "Polygon", "coordinates": {}}}}},
{{"type": "Feature", "properties": {{"town": "Sampleton", "district": "east"}}, "geometry": {{"type": "Polygon", "coordinates": {}}}}}
]}}
"#,
        poly(x0, xm),
        poly(xm, x1)
    )
}

/// The samples' land-cover map: the patches as ESA WorldCover codes (UInt8, 0 = no data).
fn write_landcover(path: &Path, grid: &Grid, extent: [f64; 4]) -> Result<()> {
    let mut md = BTreeMap::new();
    md.insert(
        "SYNTHETIC".to_string(),
        "yes: the sample landscape's patches as ESA WorldCover codes".to_string(),
    );
    let band = OutBand {
        description: "land cover (ESA WorldCover codes)".into(),
        unit: "class".into(),
    };
    let mut w = RasterWriter::create::<u8>(
        path,
        grid,
        &[band],
        Some(0.0),
        &md,
        &WriteOptions::default(),
    )?;
    let mut codes = Vec::with_capacity(grid.width * grid.height);
    for r in 0..grid.height {
        for c in 0..grid.width {
            let (x, y) = grid.pixel_centre(c, r);
            let u = (x - extent[0]) / (extent[2] - extent[0]);
            let v = (y - extent[1]) / (extent[3] - extent[1]);
            codes.push(cover_at(u, v).worldcover());
        }
    }
    w.write_rows(0, 0, codes)?;
    w.finish()?.commit()?;
    Ok(())
}

/// SYNTHETIC monthly station climate for 2024 (a mild oceanic year: smooth annual cycles of temperature,
/// rain and sunshine). Not observations.
fn synthetic_climate_csv() -> String {
    use std::f64::consts::PI;
    let mut s = String::from("year,month,tmax_degC,tmin_degC,rain_mm,sun_hours\n");
    for m in 1..=12u32 {
        // Warmest, sunniest and driest in mid-July (month 7.5).
        let c = (2.0 * PI * (m as f64 - 7.5) / 12.0).cos();
        let tmax = 14.0 + 7.0 * c;
        let tmin = 6.0 + 5.0 * c;
        let rain = 80.0 - 30.0 * c;
        let sun = 140.0 + 70.0 * c;
        s.push_str(&format!(
            "2024,{m},{tmax:.1},{tmin:.1},{rain:.1},{sun:.1}\n"
        ));
    }
    s
}

const SAMPLE_DRIVERS: &str = r#"# SYNTHETIC climate drivers for carbonmap's samples: climate_station_2024.csv is a made-up smooth year.
step = "month"

[station]
file = "climate_station_2024.csv"
latitude = 50.7
year = "year"
month = "month"

[station.columns]
tmax = { column = "tmax_degC", unit = "degC" }
tmin = { column = "tmin_degC", unit = "degC" }
precip = { column = "rain_mm", unit = "mm" }
sunshine = { column = "sun_hours", unit = "h" }

[derive]
tmean = "mean-of-tmax-tmin"
srad = "angstrom-prescott"
vpd = "tmin-as-dewpoint"
"#;

/// A large synthetic stack for benchmarks: one base file per band at `size` x `size`, and `dates` VRT files
/// that reference it with a different gain per date (so every date has different values without writing
/// `dates` full copies). Returns the manifest path.
pub fn generate_bench_stack(dir: &Path, size: usize, dates: usize) -> Result<PathBuf> {
    io::init();
    crate::commit::prepare_folder(dir)?;
    let (x0, y0) = SAMPLE_ORIGIN;
    let extent = [
        x0,
        y0 - SAMPLE_RES * size as f64,
        x0 + SAMPLE_RES * size as f64,
        y0,
    ];
    let grid = Grid::from_spec(&format!("EPSG:{SAMPLE_EPSG}"), SAMPLE_RES, extent)?;
    let base = dir.join("base.tif");
    if !base.exists() {
        let d = SynthDate {
            date: "2024-06-01".into(),
            vigour: 1.0,
            cloud: Some((0.3, 0.7, 0.1)),
            other_crs: None,
        };
        write_s2_date(&base, &grid, extent, &grid.crs_wkt.clone(), &d)?;
    }
    let mut manifest = String::from("# SYNTHETIC benchmark stack (carbonmap::synth); not real imagery.\nsensor = \"sentinel2-l2a\"\n");
    let gt = grid.gt;
    for k in 0..dates {
        let month = 1 + (k % 12) as u32;
        let year = 2024 + (k / 12) as i32;
        let date = format!("{year:04}-{month:02}-15");
        let gain = 0.85 + 0.3 * (k as f64 / dates.max(1) as f64);
        let mut bands_xml = String::new();
        for (b, name) in ["B02", "B03", "B04", "B08", "SCL"].iter().enumerate() {
            let src = format!(
                "<SourceFilename relativeToVRT=\"1\">base.tif</SourceFilename><SourceBand>{}</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{size}\" ySize=\"{size}\"/><DstRect xOff=\"0\" yOff=\"0\" xSize=\"{size}\" ySize=\"{size}\"/>",
                b + 1
            );
            let source = if *name == "SCL" {
                format!("<SimpleSource>{src}</SimpleSource>")
            } else {
                format!("<ComplexSource>{src}<NODATA>0</NODATA><ScaleOffset>0</ScaleOffset><ScaleRatio>{gain}</ScaleRatio></ComplexSource>")
            };
            bands_xml.push_str(&format!(
                "  <VRTRasterBand dataType=\"UInt16\" band=\"{}\"><Description>{name}</Description><NoDataValue>0</NoDataValue>{source}</VRTRasterBand>\n",
                b + 1
            ));
        }
        let vrt = format!(
            "<VRTDataset rasterXSize=\"{size}\" rasterYSize=\"{size}\">\n  <SRS>{}</SRS>\n  <GeoTransform>{}, {}, 0, {}, 0, {}</GeoTransform>\n{bands_xml}</VRTDataset>\n",
            xml_escape(&grid.crs_wkt),
            gt[0],
            gt[1],
            gt[3],
            gt[5]
        );
        let name = format!("date_{k:02}.vrt");
        io::write_atomic(&dir.join(&name), vrt.as_bytes())?;
        manifest.push_str(&format!(
            "\n[[scene]]\ndate = \"{date}\"\nfile = \"{name}\"\n"
        ));
    }
    let path = dir.join("stack.toml");
    io::write_atomic(&path, manifest.as_bytes())?;
    Ok(path)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
