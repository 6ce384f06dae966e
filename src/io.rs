//! All GDAL calls live here: opening rasters, describing them, warping onto an analysis grid through GDAL's
//! warper (as lazy warped VRTs read strip by strip), and writing tiled, compressed GeoTIFF / COG outputs
//! atomically (temporary file beside the target, closed with its error checked, then renamed).

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Once;

use gdal::raster::{GdalType, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DriverManager, Metadata};

use crate::error::{Error, Result};

/// Size of GDAL's block cache in megabytes. Bounded so that peak memory does not grow with raster size.
const GDAL_CACHE_MB: &str = "32";
/// GDAL's block cache in bytes (`GDAL_CACHE_MB`): strips are sized so that pending output tiles stay well below it.
pub const GDAL_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Largest analysis grid: 2^40 pixels, below GDAL's GeoTIFF limit (tile offset arrays of at most 2 GB, that
/// is 2^28 tiles of 256 x 256 = 2^44 pixels) with room for the other bands' arrays.
const MAX_GRID_PIXELS: f64 = 1_099_511_627_776.0;
/// Output tile size in pixels (GeoTIFF TILED=YES, BLOCKXSIZE = BLOCKYSIZE).
pub const TILE: usize = 256;

/// The time written as a GeoPackage's last change (GDAL's OGR_CURRENT_DATE), for reproducible files.
const GPKG_FIXED_DATE: &str = "2000-01-01T00:00:00.000Z";

static INIT: Once = Once::new();

/// Configure GDAL once per process: bounded cache, drivers registered, GDAL's own stderr chatter silenced
/// (every failure still reaches the caller as an `Error` carrying GDAL's message).
pub fn init() {
    INIT.call_once(|| {
        let _ = gdal::config::set_config_option("GDAL_CACHEMAX", GDAL_CACHE_MB);
        // GeoPackages record a "last change" time; a fixed one makes equal results byte-identical files (the
        // manifest of `carbonmap run` records when outputs were written).
        let _ = gdal::config::set_config_option("OGR_CURRENT_DATE", GPKG_FIXED_DATE);
        // Never write .aux.xml sidecars next to inputs (statistics, PAM): inputs are read-only to us.
        let _ = gdal::config::set_config_option("GDAL_PAM_ENABLED", "NO");
        // Cloud reads (remote COGs through /vsicurl/, /vsis3/ ...), GDAL's recommended settings, unless the
        // user's environment sets them: merged consecutive range requests, retries of transient HTTP failures
        // (429, 500, 502, 503, 504) with a growing delay, a larger block cache. (GDAL_DISABLE_READDIR_ON_OPEN is
        // left to the user: set globally it would also hide local sidecars such as world files.)
        for (k, v) in [
            ("GDAL_HTTP_MERGE_CONSECUTIVE_RANGES", "YES"),
            ("GDAL_HTTP_MAX_RETRY", "4"),
            ("GDAL_HTTP_RETRY_DELAY", "0.5"),
            ("CPL_VSIL_CURL_CACHE_SIZE", "67108864"),
        ] {
            if std::env::var_os(k).is_none() {
                let _ = gdal::config::set_config_option(k, v);
            }
        }
        gdal::config::set_error_handler(|_class, _code, _msg| {});
        DriverManager::register_all();
    });
}

fn is_virtual(path: &Path) -> bool {
    path.to_string_lossy().starts_with("/vsi")
}

/// A GDAL subdataset name, `DRIVER:"file":rest` or `DRIVER:file:rest` (NETCDF:"era5.nc":t2m,
/// HDF5:"f.h5"://g/v, ZARR:"store.zarr":/t2m): (driver, file, rest). A driver name has at least two characters,
/// so a Windows drive letter is not one.
pub fn subdataset_parts(s: &str) -> Option<(&str, &str, &str)> {
    let (driver, tail) = s.split_once(':')?;
    if driver.len() < 2
        || !driver
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    if let Some(q) = tail.strip_prefix('"') {
        let end = q.find('"')?;
        let rest = q[end + 1..].strip_prefix(':').unwrap_or(&q[end + 1..]);
        Some((driver, &q[..end], rest))
    } else {
        let (file, rest) = tail.split_once(':').unwrap_or((tail, ""));
        Some((driver, file, rest))
    }
}

/// A raster source named in a file (a path, a /vsi path or a GDAL subdataset name) made relative to `base`.
pub fn join_source(base: &Path, s: &str) -> PathBuf {
    if s.starts_with("/vsi") {
        return PathBuf::from(s);
    }
    match subdataset_parts(s) {
        Some((driver, file, rest)) => {
            let f = base.join(file);
            PathBuf::from(format!("{driver}:\"{}\":{rest}", f.display()))
        }
        None => base.join(s),
    }
}

/// A Zarr store is a folder GDAL opens as a raster.
pub(crate) fn is_zarr_store(path: &Path) -> bool {
    ["zarr.json", ".zgroup", ".zarray"]
        .iter()
        .any(|f| path.join(f).exists())
}

/// Open a raster for reading, with a clear error when it is missing or not readable by GDAL.
pub fn open(path: &Path) -> Result<Dataset> {
    init();
    let text = path.to_string_lossy();
    let file = match subdataset_parts(&text) {
        Some((_, f, _)) => PathBuf::from(f),
        None => path.to_path_buf(),
    };
    if !is_virtual(&file) && !file.exists() {
        return Err(Error::input(&file, "file does not exist"));
    }
    if !is_virtual(&file) && file == path && path.is_dir() && !is_zarr_store(path) {
        return Err(Error::input(
            path,
            "is a directory, expected a raster file (or a Zarr store)",
        ));
    }
    let ds = match expanded_vrt(path)? {
        Some(xml) => Dataset::open(xml.as_str()),
        None => Dataset::open(path),
    }
    .map_err(|e| Error::input(path, format!("not a raster GDAL can read ({e})")))?;
    if ds.raster_count() == 0 {
        return Err(Error::input(path, "has no raster bands"));
    }
    check_intact(&ds, path)?;
    Ok(ds)
}

/// A local GDAL VRT that names its sources with `${NAME}` (so that it opens from any checkout, as the
/// examples' land cover does): its XML with the environment variables expanded and sources relative to the
/// VRT made absolute, for GDAL to open as text. None for any other path. (GDAL's own tools do not expand
/// variables: `envsubst < in.vrt > out.vrt` makes a plain VRT.)
/// The opening of a `${NAME}` reference (spelled with an escape so that brace-counting tools stay balanced).
const DOLLAR_BRACE: &str = "$\u{7b}";

fn expanded_vrt(path: &Path) -> Result<Option<String>> {
    let is_vrt = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("vrt"));
    if !is_vrt || is_virtual(path) || !path.is_file() {
        return Ok(None);
    }
    let text = read_text(path, "VRT (XML)")?;
    if !text.contains(DOLLAR_BRACE) {
        return Ok(None);
    }
    let xml = crate::envvars::expand_xml(&text, crate::envvars::from_env)
        .map_err(|e| Error::input(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let re = regex::Regex::new(
        r#"<SourceFilename relativeToVRT="1"( shared="[01]")?>([^<]*)</SourceFilename>"#,
    )
    .expect("valid pattern");
    let xml = re.replace_all(&xml, |c: &regex::Captures| {
        let shared = c.get(1).map_or("", |m| m.as_str());
        let src = &c[2];
        let abs = if Path::new(src).is_absolute() || src.starts_with("/vsi") {
            src.to_string()
        } else {
            dir.join(src).display().to_string()
        };
        format!(r#"<SourceFilename relativeToVRT="0"{shared}>{abs}</SourceFilename>"#)
    });
    Ok(Some(xml.into_owned()))
}

/// A north-up analysis grid: CRS, geotransform and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// CRS as WKT.
    pub crs_wkt: String,
    /// GDAL geotransform [x0, dx, 0, y0, 0, dy] with dy < 0.
    pub gt: [f64; 6],
    pub width: usize,
    pub height: usize,
}

impl Grid {
    /// The grid of a reference raster.
    pub fn from_raster(path: &Path) -> Result<Grid> {
        let info = RasterInfo::read(path)?;
        info.grid()
    }

    /// A grid from a CRS definition (EPSG:xxxx, WKT, PROJ string), a square resolution and bounds
    /// (xmin, ymin, xmax, ymax) in that CRS. Bounds are snapped outward to whole pixels.
    pub fn from_spec(crs: &str, res: f64, bounds: [f64; 4]) -> Result<Grid> {
        init();
        let srs = SpatialRef::from_definition(crs)
            .map_err(|e| Error::Usage(format!("--crs {crs}: not a CRS GDAL understands ({e})")))?;
        if !(res > 0.0 && res.is_finite()) {
            return Err(Error::Usage(format!(
                "--res {res}: must be a positive number"
            )));
        }
        let [xmin, ymin, xmax, ymax] = bounds;
        if !(xmax > xmin && ymax > ymin) {
            return Err(Error::Usage(format!(
                "--bounds {xmin},{ymin},{xmax},{ymax}: expected xmin,ymin,xmax,ymax with xmax > xmin and ymax > ymin"
            )));
        }
        let w = ((xmax - xmin) / res - 1e-9).ceil().max(1.0);
        let h = ((ymax - ymin) / res - 1e-9).ceil().max(1.0);
        if w * h > MAX_GRID_PIXELS || w > i32::MAX as f64 || h > i32::MAX as f64 {
            let unit = if srs.is_geographic() {
                "degree".to_string()
            } else {
                srs.linear_units_name().unwrap_or_else(|| "CRS unit".into())
            };
            return Err(Error::Usage(format!(
                "--res {res} ({unit}s, the CRS's unit) over --bounds {xmin},{ymin},{xmax},{ymax} gives a grid of \
                 {w:.0} x {h:.0} = {:.3e} pixels, more than a GeoTIFF can hold ({MAX_GRID_PIXELS:.3e} pixels); \
                 check the resolution's unit",
                w * h
            )));
        }
        let (width, height) = (w as usize, h as usize);
        Ok(Grid {
            crs_wkt: srs
                .to_wkt()
                .map_err(|e| Error::Usage(format!("--crs {crs}: {e}")))?,
            gt: [xmin, res, 0.0, ymax, 0.0, -res],
            width,
            height,
        })
    }

    /// The pixels `w` of this grid as a grid of their own (a shard of the analysis grid).
    pub fn window(&self, w: &Window) -> Result<Grid> {
        if w.is_empty() || w.col0 + w.ncols > self.width || w.row0 + w.nrows > self.height {
            return Err(Error::Usage(format!(
                "--window {},{},{},{}: not inside the analysis grid of {} x {} pixels",
                w.col0, w.row0, w.ncols, w.nrows, self.width, self.height
            )));
        }
        let mut gt = self.gt;
        gt[0] += w.col0 as f64 * self.gt[1] + w.row0 as f64 * self.gt[2];
        gt[3] += w.col0 as f64 * self.gt[4] + w.row0 as f64 * self.gt[5];
        Ok(Grid {
            crs_wkt: self.crs_wkt.clone(),
            gt,
            width: w.ncols,
            height: w.nrows,
        })
    }

    /// Where `inner` lies in this grid when its pixels are this grid's pixels (same CRS and resolution,
    /// whole-pixel offsets, inside): its first column and row here.
    pub fn offset_of(&self, inner: &Grid) -> Option<(usize, usize)> {
        let tol = 1e-6 * self.gt[1].abs();
        let same_res = [1, 2, 4, 5]
            .iter()
            .all(|&i| (self.gt[i] - inner.gt[i]).abs() <= tol);
        if !same_res || self.gt[2] != 0.0 || self.gt[4] != 0.0 {
            return None;
        }
        let c = (inner.gt[0] - self.gt[0]) / self.gt[1];
        let r = (inner.gt[3] - self.gt[3]) / self.gt[5];
        let whole = |v: f64| (v - v.round()).abs() <= 1e-6 && v.round() >= 0.0;
        if !whole(c) || !whole(r) {
            return None;
        }
        let (c, r) = (c.round() as usize, r.round() as usize);
        let inside = c + inner.width <= self.width && r + inner.height <= self.height;
        (inside && same_crs(&self.crs_wkt, &inner.crs_wkt)).then_some((c, r))
    }

    /// (xmin, ymin, xmax, ymax) in the grid's CRS.
    pub fn bounds(&self) -> [f64; 4] {
        let x0 = self.gt[0];
        let y0 = self.gt[3];
        let x1 = x0 + self.gt[1] * self.width as f64;
        let y1 = y0 + self.gt[5] * self.height as f64;
        [x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)]
    }

    /// Pixel area in the grid's CRS units squared (metres squared for projected CRSs).
    pub fn pixel_area(&self) -> f64 {
        (self.gt[1] * self.gt[5]).abs()
    }

    pub fn spatial_ref(&self) -> Result<SpatialRef> {
        let mut s = SpatialRef::from_wkt(&self.crs_wkt)
            .map_err(|e| Error::Usage(format!("analysis grid CRS is not valid WKT: {e}")))?;
        s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        Ok(s)
    }

    /// Map coordinates of the centre of pixel (col, row).
    pub fn pixel_centre(&self, col: usize, row: usize) -> (f64, f64) {
        (
            self.gt[0] + (col as f64 + 0.5) * self.gt[1],
            self.gt[3] + (row as f64 + 0.5) * self.gt[5],
        )
    }

    /// Centres of every pixel of rows `row0 .. row0 + nrows`, row-major, as x and y vectors.
    pub fn pixel_centres(&self, row0: usize, nrows: usize) -> (Vec<f64>, Vec<f64>) {
        (row0..row0 + nrows)
            .flat_map(|r| (0..self.width).map(move |c| self.pixel_centre(c, r)))
            .unzip()
    }

    /// Pixel (col, row) that holds map coordinate (x, y), or None outside the grid.
    pub fn pixel_of(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let col = ((x - self.gt[0]) / self.gt[1]).floor();
        let row = ((y - self.gt[3]) / self.gt[5]).floor();
        if col >= 0.0 && row >= 0.0 && (col as usize) < self.width && (row as usize) < self.height {
            Some((col as usize, row as usize))
        } else {
            None
        }
    }

    /// Whether `other` describes the same pixels (same CRS, same geotransform within 1e-6 pixel, same size).
    pub fn same_pixels(&self, other: &Grid) -> bool {
        if self.width != other.width || self.height != other.height {
            return false;
        }
        let tol = 1e-6 * self.gt[1].abs();
        let gt_same = self
            .gt
            .iter()
            .zip(other.gt.iter())
            .all(|(a, b)| (a - b).abs() <= tol);
        gt_same && same_crs(&self.crs_wkt, &other.crs_wkt)
    }
}

/// WKT of a CRS given by any definition GDAL understands (EPSG:xxxx, WKT, PROJ string).
pub fn crs_wkt(definition: &str) -> Result<String> {
    init();
    SpatialRef::from_definition(definition)
        .and_then(|s| s.to_wkt())
        .map_err(|e| {
            Error::Usage(format!(
                "\"{definition}\" is not a CRS GDAL understands ({e})"
            ))
        })
}

/// Whether two WKT strings denote the same CRS (GDAL's OSRIsSame).
pub fn same_crs(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (SpatialRef::from_wkt(a), SpatialRef::from_wkt(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A transformation between two CRSs given as WKT, both in traditional GIS (x = easting/longitude) order.
fn coord_transform(from_wkt: &str, to_wkt: &str) -> Result<CoordTransform> {
    let mut from =
        SpatialRef::from_wkt(from_wkt).map_err(|e| Error::Usage(format!("bad CRS: {e}")))?;
    let mut to = SpatialRef::from_wkt(to_wkt).map_err(|e| Error::Usage(format!("bad CRS: {e}")))?;
    from.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    to.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    CoordTransform::new(&from, &to)
        .map_err(|e| Error::Usage(format!("no transformation between the CRSs: {e}")))
}

/// Whether two bounds (xmin, ymin, xmax, ymax, in one CRS) share no area (touching edges share none).
pub fn disjoint(a: [f64; 4], b: [f64; 4]) -> bool {
    a[0] >= b[2] || a[2] <= b[0] || a[1] >= b[3] || a[3] <= b[1]
}

/// A geographic grid whose longitudes run past 180 degrees east (0 to 360, as climate-model output and some
/// ERA5 downloads store them).
pub fn longitudes_past_180(g: &Grid) -> bool {
    g.bounds()[2] > 180.0 + 1e-9 && g.spatial_ref().is_ok_and(|s| s.is_geographic())
}

/// Bounds in `raster`'s CRS, moved 360 degrees east when they lie west of a raster whose longitudes run past
/// 180 (its 180..360 are the western longitudes): the same place in the raster's terms.
///
/// In a raster that goes round the globe (`wraps_globe`), bounds across its first longitude (the Greenwich
/// meridian) move too: their western part continues past its last column.
pub fn in_raster_longitudes(raster: &Grid, b: [f64; 4]) -> [f64; 4] {
    let west = raster.bounds()[0];
    let moved = longitudes_past_180(raster)
        && (b[2] <= west + 1e-9 || (b[0] < west - 1e-9 && wraps_globe(raster)));
    if moved {
        [b[0] + 360.0, b[1], b[2] + 360.0, b[3]]
    } else {
        b
    }
}

/// A raster of longitudes 0..360 whose columns go once round the globe: its last column's eastern neighbour
/// is its first (a window of its cells may run past the last column, `drivers/gridded.rs`).
pub fn wraps_globe(g: &Grid) -> bool {
    let cell = g.gt[1].abs();
    longitudes_past_180(g) && (g.width as f64 * cell - 360.0).abs() < 1e-3 * cell
}

/// Transform bounds (xmin, ymin, xmax, ymax) from one CRS to another, densifying the edges.
pub fn transform_bounds(from_wkt: &str, to_wkt: &str, b: [f64; 4]) -> Result<[f64; 4]> {
    if same_crs(from_wkt, to_wkt) {
        return Ok(b);
    }
    let ct = coord_transform(from_wkt, to_wkt)?;
    ct.transform_bounds(&b, 21)
        .map_err(|e| Error::Usage(format!("bounds cannot be transformed: {e}")))
}

/// Transform points in place from one CRS to another (x/y in each CRS's traditional GIS order).
///
/// PROJ's choice of an operation between two CRSs (a search of its database) costs milliseconds, far more than
/// transforming a few thousand points, and the lattice overlap and climate mesh transform points in many small
/// batches: each thread keeps the transformations it made (PROJ objects stay on the thread that made them).
/// A transformation is stateless between calls, so a kept one gives the same values as a new one.
pub fn transform_points(
    from_wkt: &str,
    to_wkt: &str,
    xs: &mut [f64],
    ys: &mut [f64],
) -> Result<()> {
    thread_local! {
        static KEPT: std::cell::RefCell<Vec<(String, String, CoordTransform)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    /// Distinct CRS pairs kept per thread (a command uses a handful).
    const KEEP: usize = 8;
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        let i = match kept
            .iter()
            .position(|(f, t, _)| f == from_wkt && t == to_wkt)
        {
            Some(i) => i,
            None => {
                let ct = coord_transform(from_wkt, to_wkt)?;
                if kept.len() == KEEP {
                    kept.remove(0);
                }
                kept.push((from_wkt.to_string(), to_wkt.to_string(), ct));
                kept.len() - 1
            }
        };
        let mut zs = vec![0.0; xs.len()];
        kept[i]
            .2
            .transform_coords(xs, ys, &mut zs)
            .map_err(|e| Error::Usage(format!("points cannot be transformed: {e}")))
    })
}

/// Radius of the authalic sphere (models/earth.toml), used for true areas and distances on geographic grids.
pub fn earth_radius_m() -> Result<f64> {
    #[derive(serde::Deserialize)]
    struct Earth {
        authalic_radius_m: f64,
    }
    let e: Earth = crate::models::parse_toml(
        crate::models::embedded("earth.toml").expect("embedded"),
        &crate::models::embedded_path("earth.toml"),
    )?;
    Ok(e.authalic_radius_m)
}

/// Description of one band of a raster file.
#[derive(Debug, Clone)]
pub struct BandInfo {
    /// 1-based band index.
    pub index: usize,
    /// Band description (often the band name, such as "B04"), empty when the file has none.
    pub description: String,
    pub data_type: String,
    pub nodata: Option<f64>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// The band's declared unit (GDAL unit type), empty when none.
    pub unit: String,
}

/// What carbonmap needs to know about a raster file before reading it.
#[derive(Debug, Clone)]
pub struct RasterInfo {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    pub gt: Option<[f64; 6]>,
    pub crs_wkt: Option<String>,
    pub bands: Vec<BandInfo>,
    pub metadata: BTreeMap<String, String>,
}

impl RasterInfo {
    pub fn read(path: &Path) -> Result<RasterInfo> {
        let ds = open(path)?;
        Self::from_dataset(path, &ds)
    }

    fn from_dataset(path: &Path, ds: &Dataset) -> Result<RasterInfo> {
        let (width, height) = ds.raster_size();
        let wkt = ds.projection();
        let gt = ds.geo_transform().ok();
        let mut bands = Vec::with_capacity(ds.raster_count());
        for i in 1..=ds.raster_count() {
            let b = ds
                .rasterband(i)
                .map_err(|e| Error::gdal(path, format!("band {i}"), e))?;
            bands.push(BandInfo {
                index: i,
                description: b.description().unwrap_or_default(),
                data_type: b.band_type().name(),
                nodata: b.no_data_value(),
                scale: b.scale(),
                offset: b.offset(),
                unit: b.unit(),
            });
        }
        let metadata = ds
            .metadata()
            .filter(|m| m.domain.is_empty())
            .map(|m| (m.key, m.value))
            .collect();
        Ok(RasterInfo {
            path: path.to_path_buf(),
            width,
            height,
            gt,
            crs_wkt: if wkt.trim().is_empty() {
                None
            } else {
                Some(wkt)
            },
            bands,
            metadata,
        })
    }

    /// The raster's own grid; an error when it has no CRS or no geotransform, or is rotated.
    /// Band `band` (1-based), or an error naming the file and the band count.
    pub fn band(&self, band: usize) -> Result<&BandInfo> {
        self.bands.get(band.wrapping_sub(1)).ok_or_else(|| {
            Error::band(
                &self.path,
                band.to_string(),
                format!("does not exist (the file has {} bands)", self.bands.len()),
            )
        })
    }

    pub fn grid(&self) -> Result<Grid> {
        let crs_wkt = self
            .crs_wkt
            .clone()
            .ok_or_else(|| Error::input(&self.path, "has no coordinate reference system (CRS); assign one (gdal_edit.py -a_srs) before using it"))?;
        let gt = self
            .gt
            .ok_or_else(|| Error::input(&self.path, "has no geotransform (no georeferencing)"))?;
        if gt[2] != 0.0 || gt[4] != 0.0 {
            return Err(Error::input(
                &self.path,
                "is rotated (geotransform terms 2 and 4 are not zero); warp it north-up first",
            ));
        }
        if gt[5] >= 0.0 {
            return Err(Error::input(
                &self.path,
                "is not north-up (positive pixel height)",
            ));
        }
        Ok(Grid {
            crs_wkt,
            gt,
            width: self.width,
            height: self.height,
        })
    }

    /// Find a band by its description (case-insensitive).
    pub fn band_by_name(&self, name: &str) -> Option<&BandInfo> {
        self.bands
            .iter()
            .find(|b| b.description.eq_ignore_ascii_case(name))
    }
}

/// How a band is resampled onto the analysis grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampling {
    /// Continuous values (reflectance): bilinear.
    Bilinear,
    /// Categories and bit masks: nearest neighbour.
    Nearest,
    /// Weights that are summed over areas (a downscaling proxy): the area-weighted mean of the source pixels
    /// a target pixel covers, so that a coarser pixel carries exactly the weight of its part.
    Average,
}

impl Resampling {
    fn gdal_name(self) -> &'static str {
        match self {
            Resampling::Bilinear => "bilinear",
            Resampling::Nearest => "near",
            Resampling::Average => "average",
        }
    }
}

/// Run one of GDAL's utilities (`GDALTranslate` or `GDALWarp`) with argv-style options.
fn c_argv(args: &[String]) -> Result<(Vec<CString>, Vec<*mut std::ffi::c_char>)> {
    let owned: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Usage(format!("GDAL option contains a NUL byte: {e}")))?;
    let mut ptrs: Vec<*mut std::ffi::c_char> = owned.iter().map(|c| c.as_ptr() as *mut _).collect();
    ptrs.push(ptr::null_mut());
    Ok((owned, ptrs))
}

pub(crate) fn last_gdal_message() -> String {
    unsafe {
        let msg = gdal_sys::CPLGetLastErrorMsg();
        if msg.is_null() {
            String::new()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

/// GDALTranslate `src` to `dest` ("" with `-of VRT` gives an in-memory VRT).
fn gdal_translate(
    src: &Dataset,
    dest: &str,
    args: &[String],
    path_for_errors: &Path,
) -> Result<Dataset> {
    let (_owned, mut argv) = c_argv(args)?;
    let c_dest = CString::new(dest).map_err(|e| Error::Usage(e.to_string()))?;
    unsafe {
        let opts = gdal_sys::GDALTranslateOptionsNew(argv.as_mut_ptr(), ptr::null_mut());
        if opts.is_null() {
            return Err(Error::input(
                path_for_errors,
                format!(
                    "invalid translate options {args:?}: {}",
                    last_gdal_message()
                ),
            ));
        }
        let mut usage_error = 0;
        let h = gdal_sys::GDALTranslate(c_dest.as_ptr(), src.c_dataset(), opts, &mut usage_error);
        gdal_sys::GDALTranslateOptionsFree(opts);
        if h.is_null() {
            return Err(Error::input(
                path_for_errors,
                format!("GDAL translate failed: {}", last_gdal_message()),
            ));
        }
        Ok(Dataset::from_c_dataset(h))
    }
}

/// GDALTranslate `src` into carbonmap's own output file `dest` (a temporary file of `target`): a failure is a
/// write error (exit 3, naming the disk), not bad input.
pub(crate) fn translate_output(
    src: &Dataset,
    dest: &Path,
    args: &[String],
    target: &Path,
) -> Result<Dataset> {
    gdal_translate(src, &dest.to_string_lossy(), args, target).map_err(|e| match e {
        Error::Input { path, problem } => Error::Processing(format!(
            "{}: writing the file failed (disk full?): {problem}",
            path.display()
        )),
        other => other,
    })
}

/// GDALWarp `src` to `dest` ("" with `-of VRT` gives a lazy in-memory warped VRT).
fn gdal_warp(
    src: &Dataset,
    dest: &str,
    args: &[String],
    path_for_errors: &Path,
) -> Result<Dataset> {
    let (_owned, mut argv) = c_argv(args)?;
    let c_dest = CString::new(dest).map_err(|e| Error::Usage(e.to_string()))?;
    unsafe {
        let opts = gdal_sys::GDALWarpAppOptionsNew(argv.as_mut_ptr(), ptr::null_mut());
        if opts.is_null() {
            return Err(Error::input(
                path_for_errors,
                format!("invalid warp options: {}", last_gdal_message()),
            ));
        }
        let mut usage_error = 0;
        let mut srcs = [src.c_dataset()];
        let h = gdal_sys::GDALWarp(
            c_dest.as_ptr(),
            ptr::null_mut(),
            1,
            srcs.as_mut_ptr(),
            opts,
            &mut usage_error,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if h.is_null() {
            return Err(Error::input(
                path_for_errors,
                format!(
                    "cannot be warped onto the analysis grid: {}",
                    last_gdal_message()
                ),
            ));
        }
        Ok(Dataset::from_c_dataset(h))
    }
}

/// Reads chosen bands of one file on the analysis grid, strip by strip. When the file is already on the
/// grid it is read directly; otherwise through a lazy warped VRT (GDAL's warper), so only the rows asked
/// for are ever resampled and held in memory.
pub struct GridReader {
    // Field order matters: the warped VRT must be dropped before the datasets it references.
    warped: Option<Dataset>,
    _subset: Option<Dataset>,
    source: Dataset,
    path: PathBuf,
    /// Band numbers to read, in the order given to `new` (1-based in the source file).
    bands: Vec<usize>,
    band_names: Vec<String>,
    grid: Grid,
    /// Column and row of the grid's first pixel in the file read directly (the grid is a window of the file's
    /// own grid, for example one shard of it), (0, 0) for a warped file.
    offset: (usize, usize),
}

/// A rectangle of the analysis grid: columns `col0 .. col0 + ncols`, rows `row0 .. row0 + nrows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub col0: usize,
    pub row0: usize,
    pub ncols: usize,
    pub nrows: usize,
}

impl Window {
    /// Whole rows `row0 .. row0 + nrows` of a grid `width` wide.
    pub fn rows(row0: usize, nrows: usize, width: usize) -> Window {
        Window {
            col0: 0,
            row0,
            ncols: width,
            nrows,
        }
    }
    pub fn len(&self) -> usize {
        self.ncols * self.nrows
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One band to read from a file.
#[derive(Debug, Clone)]
pub struct BandRequest {
    /// 1-based band number in the file.
    pub index: usize,
    /// Name used in error messages.
    pub name: String,
}

impl GridReader {
    /// Prepare to read `bands` of `path` on `grid`, resampled with `resampling`. `src_nodata` overrides
    /// the file's own nodata value when the file declares none. Warped continuous bands are read as
    /// Float32 with NaN where the source has no data; warped categorical bands keep their values and get
    /// `dst_fill` where the source does not cover the grid.
    pub fn new(
        path: &Path,
        bands: &[BandRequest],
        grid: &Grid,
        resampling: Resampling,
        src_nodata: Option<f64>,
        dst_fill: f64,
    ) -> Result<GridReader> {
        let source = open(path)?;
        let info = RasterInfo::from_dataset(path, &source)?;
        for b in bands {
            if b.index == 0 || b.index > info.bands.len() {
                return Err(Error::band(
                    path,
                    &b.name,
                    format!(
                        "band number {} does not exist (the file has {})",
                        b.index,
                        info.bands.len()
                    ),
                ));
            }
        }
        let own = info.grid()?;
        let band_names = bands.iter().map(|b| b.name.clone()).collect();
        // On the grid, or the grid is a whole-pixel window of the file's grid (a shard): read directly.
        if let Some(offset) = own.offset_of(grid) {
            return Ok(GridReader {
                warped: None,
                _subset: None,
                source,
                path: path.to_path_buf(),
                bands: bands.iter().map(|b| b.index).collect(),
                band_names,
                grid: grid.clone(),
                offset,
            });
        }
        // Select the bands into an in-memory VRT, then warp that lazily onto the grid.
        let mut targs: Vec<String> = vec!["-of".into(), "VRT".into()];
        for b in bands {
            targs.push("-b".into());
            targs.push(b.index.to_string());
        }
        let file_nodata = info.bands[bands[0].index - 1].nodata;
        if file_nodata.is_none() {
            if let Some(nd) = src_nodata {
                targs.push("-a_nodata".into());
                targs.push(format_float(nd));
            }
        }
        let subset = gdal_translate(&source, "", &targs, path)?;
        let [xmin, ymin, xmax, ymax] = grid.bounds();
        let mut wargs: Vec<String> = vec![
            "-of".into(),
            "VRT".into(),
            "-t_srs".into(),
            grid.crs_wkt.clone(),
            "-te".into(),
            format_float(xmin),
            format_float(ymin),
            format_float(xmax),
            format_float(ymax),
            "-ts".into(),
            grid.width.to_string(),
            grid.height.to_string(),
            "-r".into(),
            resampling.gdal_name().into(),
            // GDAL's warp kernel on the command's threads (each pixel is computed on its own: the same values
            // for any count).
            "-wo".into(),
            format!("NUM_THREADS={}", rayon::current_num_threads().max(1)),
            // The exact transformer for every pixel (not GDAL's default approximation interpolated over
            // chunks whose layout depends on the grid's extent), and the resampling scale fixed from the two
            // grids' pixel sizes (GDAL otherwise estimates it per chunk): a pixel gets the same value whether
            // the grid is the whole area or one shard of it.
            "-et".into(),
            "0".into(),
        ];
        let (xscale, yscale) = warp_scales(&own, grid)?;
        wargs.extend([
            "-wo".to_string(),
            format!("XSCALE={}", format_float(xscale)),
            "-wo".to_string(),
            format!("YSCALE={}", format_float(yscale)),
        ]);
        match resampling {
            // Float64, so that warped values reach the formulas unrounded (indices are rounded once, at the end).
            Resampling::Bilinear | Resampling::Average => {
                wargs.extend(["-ot", "Float64", "-dstnodata", "nan"].map(String::from));
            }
            Resampling::Nearest => {
                wargs.extend([
                    "-ot".to_string(),
                    "Int32".to_string(),
                    "-dstnodata".to_string(),
                    format_float(dst_fill),
                ]);
            }
        }
        let warped = gdal_warp(&subset, "", &wargs, path)?;
        Ok(GridReader {
            warped: Some(warped),
            _subset: Some(subset),
            source,
            path: path.to_path_buf(),
            bands: (1..=bands.len()).collect(),
            band_names,
            grid: grid.clone(),
            offset: (0, 0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dataset(&self) -> &Dataset {
        self.warped.as_ref().unwrap_or(&self.source)
    }

    /// The bands requested, in order.
    pub fn requests(&self) -> Vec<BandRequest> {
        self.bands
            .iter()
            .zip(&self.band_names)
            .map(|(&index, name)| BandRequest {
                index,
                name: name.clone(),
            })
            .collect()
    }

    /// Whether the file is read as it is (on the grid, or the grid is a window of it), not warped.
    pub fn is_direct(&self) -> bool {
        self.warped.is_none()
    }

    /// Whether every band requested is stored as UInt16 and read directly (no warping): such bands can be
    /// read in their own type, exactly, a quarter of the bytes of float64.
    pub fn is_direct_u16(&self) -> bool {
        self.is_direct()
            && self.bands.iter().all(|&b| {
                self.source
                    .rasterband(b)
                    .is_ok_and(|r| r.band_type() == gdal::raster::GdalDataType::UInt16)
            })
    }

    /// Read rows `row0 .. row0 + nrows` of the `k`-th requested band into `buf` (len = width * nrows).
    pub fn read_rows<T: GdalType + Copy>(
        &self,
        k: usize,
        row0: usize,
        nrows: usize,
        buf: &mut [T],
    ) -> Result<()> {
        self.read_window(k, &Window::rows(row0, nrows, self.grid.width), buf)
    }

    /// Read `w` of several requested bands (`ks`, positions as in `read_window`) in one call, band after band
    /// into `buf` (len = ks.len() * w.len()). A warped file is warped once for all of them, block by block,
    /// instead of once per band (which, with bands larger than GDAL's block cache, would warp each chunk again
    /// for every band); a pixel-interleaved file is decompressed once for all of them (one handle per band
    /// would decompress each tile again for every band).
    pub fn read_bands<T: GdalType + Copy>(
        &self,
        ks: &[usize],
        w: &Window,
        buf: &mut [T],
    ) -> Result<()> {
        assert_eq!(buf.len(), ks.len() * w.len());
        let size = std::mem::size_of::<T>() as i32;
        let ds = self.dataset();
        let mut map: Vec<i32> = ks.iter().map(|&k| self.bands[k] as i32).collect();
        // SAFETY: resets this thread's GDAL error state. `buf` holds ks.len() bands of w.ncols x w.nrows f32 values with the spacings given; the
        // band map has ks.len() valid band numbers of `ds`, alive for the call.
        let err = unsafe {
            gdal_sys::CPLErrorReset();
            gdal_sys::GDALDatasetRasterIO(
                ds.c_dataset(),
                gdal_sys::GDALRWFlag::GF_Read,
                (w.col0 + self.offset.0) as i32,
                (w.row0 + self.offset.1) as i32,
                w.ncols as i32,
                w.nrows as i32,
                buf.as_mut_ptr() as *mut std::ffi::c_void,
                w.ncols as i32,
                w.nrows as i32,
                T::gdal_ordinal(),
                map.len() as i32,
                map.as_mut_ptr(),
                size,
                size * w.ncols as i32,
                size * w.len() as i32,
            )
        };
        if err != gdal_sys::CPLErr::CE_None {
            return Err(Error::band(
                &self.path,
                &self.band_names[ks[0]],
                format!(
                    "read failed at rows {}..{} (truncated or corrupt file?): {}",
                    w.row0,
                    w.row0 + w.nrows,
                    last_gdal_message()
                ),
            ));
        }
        Ok(())
    }

    /// Read `w` of the `k`-th requested band into `buf` (len = w.ncols * w.nrows, row by row).
    pub fn read_window<T: GdalType + Copy>(
        &self,
        k: usize,
        w: &Window,
        buf: &mut [T],
    ) -> Result<()> {
        let (row0, nrows) = (w.row0, w.nrows);
        let ds = self.dataset();
        let name = &self.band_names[k];
        let band = ds
            .rasterband(self.bands[k])
            .map_err(|e| Error::band(&self.path, name, format!("cannot be opened: {e}")))?;
        band.read_into_slice::<T>(
            (
                (w.col0 + self.offset.0) as isize,
                (row0 + self.offset.1) as isize,
            ),
            (w.ncols, nrows),
            (w.ncols, nrows),
            buf,
            None,
        )
        .map_err(|e| {
            Error::band(
                &self.path,
                name,
                format!(
                    "read failed at rows {row0}..{} (truncated or corrupt file?): {e}",
                    row0 + nrows
                ),
            )
        })
    }
}

/// GDAL's warp scales (destination pixels per source pixel along x and y): a source pixel at the centre of
/// the source file, measured in the grid's CRS, against the grid's pixel size. They depend on the file and the
/// grid's CRS and resolution only, not on the grid's extent.
fn warp_scales(own: &Grid, grid: &Grid) -> Result<(f64, f64)> {
    let g = own.gt;
    let (cx, cy) = (own.width as f64 / 2.0, own.height as f64 / 2.0);
    let at = |c: f64, r: f64| (g[0] + c * g[1] + r * g[2], g[3] + c * g[4] + r * g[5]);
    let pts = [at(cx, cy), at(cx + 1.0, cy), at(cx, cy + 1.0)];
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    transform_points(&own.crs_wkt, &grid.crs_wkt, &mut xs, &mut ys)?;
    let d = |i: usize| (xs[i] - xs[0]).hypot(ys[i] - ys[0]);
    let (sx, sy) = (d(1) / grid.gt[1].abs(), d(2) / grid.gt[5].abs());
    if sx.is_finite() && sy.is_finite() && sx > 0.0 && sy > 0.0 {
        Ok((sx, sy))
    } else {
        Ok((1.0, 1.0))
    }
}

/// Format a float for a GDAL command-line option without losing precision.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else {
        format!("{v:?}")
    }
}

/// Options of an output raster.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Cloud-optimised GeoTIFF layout with overviews instead of a plain tiled GeoTIFF.
    pub cog: bool,
}

/// One output band: description and unit.
#[derive(Debug, Clone)]
pub struct OutBand {
    pub description: String,
    pub unit: String,
}

/// Writes one raster strip by strip to a temporary file beside the target, and renames it into place on
/// `finish`. Dropped without `finish` (an error, a panic), the temporary file is removed: a failed run never
/// leaves a partial file under the final name, and never touches an earlier output.
pub struct RasterWriter {
    ds: Option<Dataset>,
    tmp: PathBuf,
    target: PathBuf,
    options: WriteOptions,
    width: usize,
    nbands: usize,
    /// GDAL overview resampling per band (COG outputs): AVERAGE for continuous quantities, MODE for classes,
    /// NEAREST for counts.
    overview_resampling: Vec<&'static str>,
    /// Category names per band (0-based) to keep in the `.aux.xml` sidecar GDAL reads them from (GeoTIFF has no
    /// place for them inside the file).
    categories: Vec<(usize, Vec<String>)>,
    /// The band a style and a map show (1-based; `MAP_BAND`, else 1), its description and unit, and band 1's
    /// classes when it has them: the QGIS style written beside it.
    shown: (usize, OutBand),
    classes: Option<Vec<(u16, String, (u8, u8, u8))>>,
    /// Set once the output has been renamed into place.
    done: bool,
}

/// Metadata item naming the band (1-based) that a multi-band output's QGIS style and `--maps` map show: the
/// headline quantity (a lattice balance's net balance), where band 1 would be one sector's emissions.
pub const MAP_BAND: &str = "MAP_BAND";

/// The band `MAP_BAND` names in `metadata` (band 1 when absent or out of range), with its description and unit.
fn shown_band(metadata: &BTreeMap<String, String>, bands: &[OutBand]) -> (usize, OutBand) {
    let band = metadata
        .get(MAP_BAND)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|b| (1..=bands.len()).contains(b))
        .unwrap_or(1);
    let shown = bands.get(band - 1).cloned().unwrap_or(OutBand {
        description: String::new(),
        unit: String::new(),
    });
    (band, shown)
}

/// Temporary name beside `target`: `.NAME.partial-PID`.
fn partial_name(target: &Path, pid: u32) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.partial-{pid}"))
}

/// Create the output folder, remove what killed runs left, and name this process's temporary file for `target`.
fn temporary_beside(target: &Path) -> Result<PathBuf> {
    crate::commit::prepare_folder(target.parent().unwrap_or(Path::new("")))?;
    remove_stale_partials(target);
    Ok(partial_name(target, std::process::id()))
}

/// Remove temporary files that killed runs left beside `target` (never a final output).
fn remove_stale_partials(target: &Path) {
    let Some(dir) = target.parent() else { return };
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.partial-");
    if let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl RasterWriter {
    /// Create `target` (its temporary file) on `grid` with one band per `bands`, pixel type `T`.
    /// Float outputs get NaN as nodata; integer outputs get `nodata` when given.
    /// `metadata` becomes dataset-level tags (units, software version, parameters).
    pub fn create<T: GdalType + Copy>(
        target: &Path,
        grid: &Grid,
        bands: &[OutBand],
        nodata: Option<f64>,
        metadata: &BTreeMap<String, String>,
        options: &WriteOptions,
    ) -> Result<RasterWriter> {
        init();
        let tmp = temporary_beside(target)?;
        let driver = DriverManager::get_driver_by_name("GTiff")
            .map_err(|e| Error::gdal(target, "GTiff driver", e))?;
        let is_float = T::datatype().is_floating();
        let mut co = RasterCreationOptions::new();
        let tile = TILE.to_string();
        // GDAL compresses a flushed strip's tiles on this many threads and writes them in tile order.
        let threads = rayon::current_num_threads().max(1).to_string();
        let codec = crate::engine::codec::current().creation_options(is_float);
        for (k, v) in [
            ("TILED", "YES"),
            ("BLOCKXSIZE", tile.as_str()),
            ("BLOCKYSIZE", tile.as_str()),
            ("BIGTIFF", "IF_SAFER"),
            ("INTERLEAVE", "BAND"),
            ("NUM_THREADS", threads.as_str()),
        ]
        .into_iter()
        .chain(codec.iter().map(|(k, v)| (*k, v.as_str())))
        {
            co.add_name_value(k, v)
                .map_err(|e| Error::gdal(target, "creation option", e))?;
        }
        let mut ds = driver
            .create_with_band_type_with_options::<T, _>(
                &tmp,
                grid.width,
                grid.height,
                bands.len(),
                &co,
            )
            .map_err(|e| Error::gdal(target, "cannot create output", e))?;
        let mut w = RasterWriter {
            ds: None,
            tmp,
            target: target.to_path_buf(),
            options: options.clone(),
            width: grid.width,
            nbands: bands.len(),
            overview_resampling: bands
                .iter()
                .map(|b| match (b.unit.as_str(), is_float) {
                    ("count", _) => "NEAREST",
                    (_, true) => "AVERAGE",
                    (_, false) => "MODE",
                })
                .collect(),
            categories: Vec::new(),
            shown: shown_band(metadata, bands),
            classes: None,
            done: false,
        };
        let ctx = |what: &str| format!("cannot set {what}");
        ds.set_geo_transform(&grid.gt)
            .map_err(|e| Error::gdal(target, ctx("geotransform"), e))?;
        ds.set_projection(&grid.crs_wkt)
            .map_err(|e| Error::gdal(target, ctx("CRS"), e))?;
        for (k, v) in metadata {
            ds.set_metadata_item(k, v, "")
                .map_err(|e| Error::gdal(target, ctx("metadata"), e))?;
        }
        for (i, b) in bands.iter().enumerate() {
            let mut band = ds
                .rasterband(i + 1)
                .map_err(|e| Error::gdal(target, ctx("band"), e))?;
            band.set_description(&b.description)
                .map_err(|e| Error::gdal(target, ctx("band description"), e))?;
            let nd = if is_float { Some(f64::NAN) } else { nodata };
            if let Some(nd) = nd {
                band.set_no_data_value(Some(nd))
                    .map_err(|e| Error::gdal(target, ctx("nodata"), e))?;
            }
            let unit = CString::new(b.unit.as_str()).map_err(|e| Error::Usage(e.to_string()))?;
            unsafe {
                gdal_sys::GDALSetRasterUnitType(band.c_rasterband(), unit.as_ptr());
            }
        }
        w.ds = Some(ds);
        Ok(w)
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Give band `band` (0-based) of a class raster a colour table and category names: `classes` are
    /// (code, name, (r, g, b)); other entries up to the highest code are transparent black and unnamed.
    pub fn set_categories(
        &mut self,
        band: usize,
        classes: &[(u16, String, (u8, u8, u8))],
    ) -> Result<()> {
        use gdal::raster::{ColorEntry, ColorTable, PaletteInterpretation};
        let ds = self.ds.as_mut().expect("writer used after finish");
        let mut b = ds
            .rasterband(band + 1)
            .map_err(|e| Error::gdal(&self.target, format!("band {}", band + 1), e))?;
        let max = classes.iter().map(|c| c.0).max().unwrap_or(0);
        let mut ct = ColorTable::new(PaletteInterpretation::Rgba);
        let mut names = vec![String::new(); max as usize + 1];
        for i in 0..=max {
            ct.set_color_entry(i, &ColorEntry::rgba(0, 0, 0, 0));
        }
        for (code, name, (r, g, bl)) in classes {
            ct.set_color_entry(
                *code,
                &ColorEntry::rgba(*r as i16, *g as i16, *bl as i16, 255),
            );
            names[*code as usize] = name.clone();
        }
        b.set_color_table(&ct);
        self.categories.push((band, names));
        if band == 0 {
            self.classes = Some(classes.to_vec());
        }
        Ok(())
    }

    /// Write the QGIS style of the shown band (NAME.qml beside NAME.tif, which QGIS loads with the raster)
    /// under a temporary name: (temporary, final).
    fn write_style(&self) -> Result<(PathBuf, PathBuf)> {
        let range = if self.classes.is_some() {
            (0.0, 1.0)
        } else {
            let ds = Dataset::open(&self.tmp)
                .map_err(|e| Error::gdal(&self.target, "reopening for its style", e))?;
            let b = ds
                .rasterband(self.shown.0)
                .map_err(|e| Error::gdal(&self.target, format!("band {}", self.shown.0), e))?;
            // Approximate (sampled) limits are enough for a colour ramp; an all-empty band gets 0..1.
            b.compute_raster_min_max(true)
                .map(|m| (m.min, m.max))
                .unwrap_or((0.0, 1.0))
        };
        let qml = crate::report::raster_qml(
            (self.shown.0, &self.shown.1),
            range,
            self.classes.as_deref(),
        )?;
        let target = self.target.with_extension("qml");
        let tmp = temporary_beside(&target)?;
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(qml.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&target, "cannot write (disk full?)", e));
        }
        Ok((tmp, target))
    }

    /// Write the category names into `file`'s `.aux.xml` sidecar (GDAL's PAM, enabled for this call only:
    /// carbonmap otherwise never writes sidecars, least of all beside inputs). Returns the sidecar's path.
    fn write_category_sidecar(&self, file: &Path) -> Result<Option<PathBuf>> {
        if self.categories.is_empty() {
            return Ok(None);
        }
        let key = CString::new("GDAL_PAM_ENABLED").expect("no NUL");
        let yes = CString::new("YES").expect("no NUL");
        // SAFETY: thread-local configuration, set and cleared around this call on this thread.
        unsafe { gdal_sys::CPLSetThreadLocalConfigOption(key.as_ptr(), yes.as_ptr()) };
        let result = (|| -> Result<()> {
            let ds = Dataset::open(file)
                .map_err(|e| Error::gdal(&self.target, "reopening for class names", e))?;
            for (band, names) in &self.categories {
                let b = ds
                    .rasterband(band + 1)
                    .map_err(|e| Error::gdal(&self.target, format!("band {}", band + 1), e))?;
                let cnames = names
                    .iter()
                    .map(|n| CString::new(n.as_str()).map_err(|e| Error::Usage(e.to_string())))
                    .collect::<Result<Vec<_>>>()?;
                let mut ptrs: Vec<*mut std::ffi::c_char> =
                    cnames.iter().map(|c| c.as_ptr() as *mut _).collect();
                ptrs.push(std::ptr::null_mut());
                // SAFETY: a NULL-terminated list of valid C strings that outlive the call (GDAL copies them).
                let err = unsafe {
                    gdal_sys::GDALSetRasterCategoryNames(b.c_rasterband(), ptrs.as_mut_ptr())
                };
                if err != gdal_sys::CPLErr::CE_None {
                    return Err(Error::Processing(format!(
                        "{}: GDAL could not set the category names",
                        self.target.display()
                    )));
                }
            }
            gdal_checked(&self.target, "writing the class names (disk full?)", || {
                ds.close()
            })
        })();
        // SAFETY: as above.
        unsafe { gdal_sys::CPLSetThreadLocalConfigOption(key.as_ptr(), ptr::null()) };
        result?;
        let mut aux = file.as_os_str().to_owned();
        aux.push(".aux.xml");
        let aux = PathBuf::from(aux);
        if !aux.is_file() {
            return Err(Error::Processing(format!(
                "{}: GDAL wrote no .aux.xml with the class names",
                self.target.display()
            )));
        }
        Ok(Some(aux))
    }

    /// Write rows `row0 .. row0 + data.len() / width` of band `band` (0-based).
    pub fn write_rows<T: GdalType + Copy>(
        &mut self,
        band: usize,
        row0: usize,
        data: Vec<T>,
    ) -> Result<()> {
        let w = Window::rows(row0, data.len() / self.width, self.width);
        self.write_window(band, &w, data)
    }

    /// Write `w` of band `band` (0-based) from `data` (row by row, len = w.len()).
    pub fn write_window<T: GdalType + Copy>(
        &mut self,
        band: usize,
        w: &Window,
        data: Vec<T>,
    ) -> Result<()> {
        let (row0, nrows) = (w.row0, w.nrows);
        let ds = self.ds.as_mut().expect("writer used after finish");
        let mut b = ds
            .rasterband(band + 1)
            .map_err(|e| Error::gdal(&self.target, format!("band {}", band + 1), e))?;
        let mut buf = gdal::raster::Buffer::new((w.ncols, nrows), data);
        b.write((w.col0 as isize, row0 as isize), (w.ncols, nrows), &mut buf)
            .map_err(|e| {
                Error::gdal(
                    &self.target,
                    format!("write failed at rows {row0}..{}", row0 + nrows),
                    e,
                )
            })
    }

    /// Write every cached block to the file now. Called after each strip, so that tiles reach the file in
    /// strip order whatever the cache pressure from other threads: output bytes do not depend on timing.
    pub fn flush(&mut self) -> Result<()> {
        let ds = self.ds.as_mut().expect("writer used after finish");
        gdal_checked(
            &self.target,
            "flushing the output failed (disk full?)",
            || ds.flush_cache(),
        )
    }

    pub fn band_count(&self) -> usize {
        self.nbands
    }

    /// The raster's height in pixels.
    pub fn height(&self) -> usize {
        let ds = self.ds.as_ref().expect("writer used after finish");
        ds.raster_size().1
    }

    /// Overviews of the finished GeoTIFF (before it becomes a COG), each band with its own resampling
    /// (GDAL's default for COG, cubic, mixes NaN into continuous quantities and invents classes and counts).
    /// Levels halve the size until it fits one tile, as the COG driver's own.
    fn build_overviews(&self) -> Result<()> {
        use gdal::{DatasetOptions, GdalOpenFlags};
        let mut ds = Dataset::open_ex(
            &self.tmp,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_UPDATE | GdalOpenFlags::GDAL_OF_RASTER,
                ..Default::default()
            },
        )
        .map_err(|e| Error::gdal(&self.target, "reopening for overviews", e))?;
        let (w, h) = ds.raster_size();
        let mut levels = Vec::new();
        let mut f = 2usize;
        while w.max(h) / (f / 2) > TILE {
            levels.push(f as i32);
            f *= 2;
        }
        if levels.is_empty() {
            return Ok(());
        }
        // GeoTIFF builds internal overviews for all bands at once (nearest), then each band's are computed
        // again from its full resolution with its own resampling.
        let all: Vec<i32> = (1..=self.nbands as i32).collect();
        ds.build_overviews("NEAREST", &levels, &all)
            .map_err(|e| Error::gdal(&self.target, "building overviews (disk full?)", e))?;
        for (i, how) in self
            .overview_resampling
            .iter()
            .enumerate()
            .filter(|(_, h)| **h != "NEAREST")
        {
            let band = ds
                .rasterband(i + 1)
                .map_err(|e| Error::gdal(&self.target, format!("band {}", i + 1), e))?;
            let c_how = CString::new(*how).expect("no NUL");
            // SAFETY: the band and its overview bands belong to `ds`, alive for the call.
            let err = unsafe {
                let h = band.c_rasterband();
                let n = gdal_sys::GDALGetOverviewCount(h);
                let mut ovr: Vec<gdal_sys::GDALRasterBandH> =
                    (0..n).map(|k| gdal_sys::GDALGetOverview(h, k)).collect();
                gdal_sys::GDALRegenerateOverviews(
                    h,
                    n,
                    ovr.as_mut_ptr(),
                    c_how.as_ptr(),
                    None,
                    ptr::null_mut(),
                )
            };
            if err != gdal_sys::CPLErr::CE_None {
                return Err(Error::Processing(format!(
                    "{}: band {}: {how} overviews failed: {}",
                    self.target.display(),
                    i + 1,
                    last_gdal_message()
                )));
            }
        }
        gdal_checked(&self.target, "closing the overviews (disk full?)", || {
            ds.close()
        })
    }

    /// Close the dataset (checking GDAL's result) and convert to COG if asked. The output stays under its
    /// temporary name until `PendingOutput::commit`, so a run can finish every output before renaming any.
    pub fn finish(mut self) -> Result<PendingOutput> {
        let ds = self.ds.take().expect("writer finished twice");
        gdal_checked(
            &self.target,
            "closing the output failed (disk full?)",
            || ds.close(),
        )?;
        verify_geotiff(&self.tmp, &self.target)?;
        if self.options.cog {
            self.build_overviews()?;
            let src = Dataset::open(&self.tmp)
                .map_err(|e| Error::gdal(&self.target, "reopening for COG", e))?;
            let cog_tmp =
                partial_name(&self.target, std::process::id()).with_extension("cog-partial");
            let mut args: Vec<String> = [
                "-of",
                "COG",
                "-co",
                "OVERVIEWS=FORCE_USE_EXISTING",
                "-co",
                "BIGTIFF=IF_SAFER",
            ]
            .map(String::from)
            .to_vec();
            let codec = crate::engine::codec::current();
            let is_float = src.rasterband(1).is_ok_and(|b| b.band_type().is_floating());
            for (k, v) in codec.creation_options(is_float) {
                // The COG driver picks the predictor for the pixel type itself (PREDICTOR=YES: integers only).
                let v = if k == "PREDICTOR" {
                    "YES".to_string()
                } else {
                    v
                };
                // The COG driver names DEFLATE's level LEVEL (ZSTD's too).
                let k = if k == "ZLEVEL" || k == "ZSTD_LEVEL" {
                    "LEVEL"
                } else {
                    k
                };
                args.extend(["-co".to_string(), format!("{k}={v}")]);
            }
            args.extend([
                "-co".to_string(),
                format!("NUM_THREADS={}", rayon::current_num_threads().max(1)),
            ]);
            let res = translate_output(&src, &cog_tmp, &args, &self.target)
                .and_then(|out| {
                    gdal_checked(&self.target, "closing the COG failed (disk full?)", || {
                        out.close()
                    })
                })
                .and_then(|()| verify_geotiff(&cog_tmp, &self.target));
            drop(src);
            if let Err(e) = res {
                let _ = std::fs::remove_file(&cog_tmp);
                return Err(e);
            }
            let _ = std::fs::remove_file(&self.tmp);
            self.tmp = cog_tmp;
        }
        let aux = self.write_category_sidecar(&self.tmp)?;
        let mut target_aux = self.target.as_os_str().to_owned();
        target_aux.push(".aux.xml");
        let mut sidecars: Vec<(PathBuf, PathBuf)> = aux
            .map(|a| (a, PathBuf::from(target_aux)))
            .into_iter()
            .collect();
        let qml = self.write_style()?;
        sidecars.push(qml);
        self.done = true;
        Ok(PendingOutput {
            tmp: self.tmp.clone(),
            target: self.target.clone(),
            sidecars,
            committed: false,
        })
    }
}

/// A finished output under its temporary name. `commit` renames it into place; dropped uncommitted, the
/// temporary file is removed.
pub struct PendingOutput {
    tmp: PathBuf,
    target: PathBuf,
    /// Sidecars committed with the raster (the `.aux.xml` with class names, the QGIS style): (temporary, final).
    sidecars: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl PendingOutput {
    /// Rename a finished scratch file (carbonmap's own working file in its own temporary folder, never a
    /// user's output) into place now, outside the command's commit.
    pub fn keep_scratch(mut self) -> Result<PathBuf> {
        std::fs::rename(&self.tmp, &self.target)
            .map_err(|e| Error::io(&self.target, "cannot rename the scratch file into place", e))?;
        self.committed = true;
        Ok(self.target.clone())
    }

    /// Hand the finished output to the command's commit (or rename it now outside a command scope).
    pub fn commit(mut self) -> Result<PathBuf> {
        for (tmp, target) in &self.sidecars {
            crate::commit::stage(tmp, target)?;
        }
        crate::commit::stage(&self.tmp, &self.target)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
            for (tmp, _) in &self.sidecars {
                let _ = std::fs::remove_file(tmp);
            }
        }
    }
}

/// Write a small text output (a table, a JSON file) atomically: temporary file beside the target, synced,
/// then renamed.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = temporary_beside(target)?;
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Verified: the file holds exactly the bytes written.
        if std::fs::read(&tmp)? != bytes {
            return Err(std::io::Error::other(
                "the file read back differs from what was written",
            ));
        }
        Ok(())
    })();
    let res = written
        .map_err(|e| Error::io(target, "cannot write (disk full?)", e))
        .and_then(|()| crate::commit::stage(&tmp, target));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Write a CSV table (its header on the first line, units in the column names) and, beside it as
/// `NAME.csv.json`, the notes a reader needs (sign conventions, what a total covers, provenance), so that QGIS,
/// pandas, Python's csv module and GDAL's CSV driver read the table as it is.
pub fn write_table(target: &Path, csv: &[u8], notes: &[String]) -> Result<()> {
    let mut sidecar = target.as_os_str().to_owned();
    sidecar.push(".json");
    let doc = serde_json::json!({
        "table": target.file_name().map(|n| n.to_string_lossy().into_owned()),
        "written_by": format!("carbonmap {}", crate::VERSION),
        "notes": notes,
    });
    let mut text = serde_json::to_vec_pretty(&doc).expect("plain data");
    text.push(b'\n');
    write_atomic(target, csv)?;
    write_atomic(Path::new(&sidecar), &text)
}

/// Run a GDAL call whose failure the gdal crate does not report on GDAL < 3.7 (`flush_cache`, `close` return
/// `Ok` there whatever happened): GDAL's error state is reset before and read after the call.
pub(crate) fn gdal_checked(
    target: &Path,
    context: &str,
    call: impl FnOnce() -> gdal::errors::Result<()>,
) -> Result<()> {
    // SAFETY: resets this thread's GDAL error state; no pointers involved.
    unsafe { gdal_sys::CPLErrorReset() };
    call().map_err(|e| Error::gdal(target, context, e))?;
    // SAFETY: reads this thread's GDAL error state.
    let (class, number) = unsafe {
        (
            gdal_sys::CPLGetLastErrorType(),
            gdal_sys::CPLGetLastErrorNo(),
        )
    };
    if class == gdal_sys::CPLErr::CE_Failure || class == gdal_sys::CPLErr::CE_Fatal {
        let msg = last_gdal_message();
        return Err(Error::Processing(format!(
            "{}: {context}: {msg} (GDAL error {number}); nothing was committed",
            target.display()
        )));
    }
    Ok(())
}

/// A truncated GeoTIFF (a copy or download cut short) is found without reading any pixel: every tile or strip
/// the file's directory lists must lie inside the file. Other formats are left to their drivers.
fn check_intact(ds: &Dataset, path: &Path) -> Result<()> {
    if ds.driver().short_name() != "GTiff" || is_virtual(path) {
        return Ok(());
    }
    let Ok(file_len) = std::fs::metadata(path).map(|m| m.len()) else {
        return Ok(());
    };
    let (w, h) = ds.raster_size();
    // Pixel-interleaved bands share their tiles: the first band's list is every band's.
    let pixel = ds.metadata_item("INTERLEAVE", "IMAGE_STRUCTURE").as_deref() == Some("PIXEL");
    let bands = if pixel { 1 } else { ds.raster_count() };
    for i in 1..=bands {
        let Ok(band) = ds.rasterband(i) else { continue };
        let (bw, bh) = band.block_size();
        let (nx, ny) = (w.div_ceil(bw.max(1)), h.div_ceil(bh.max(1)));
        for by in 0..ny {
            for bx in 0..nx {
                let item = |k: &str| {
                    band.metadata_item(&format!("BLOCK_{k}_{bx}_{by}"), "TIFF")
                        .and_then(|v| v.parse::<u64>().ok())
                };
                if let (Some(o), Some(n)) = (item("OFFSET"), item("SIZE")) {
                    if o > 0 && o + n > file_len {
                        return Err(Error::input(
                            path,
                            format!(
                                "truncated or damaged GeoTIFF: band {i} block ({bx}, {by}) ends at byte {} of a \
                                 {file_len}-byte file (copy or download it again)",
                                o + n
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Check a finished GeoTIFF without reading every pixel: GDAL reopens it, every tile of every band has an
/// offset and a size inside the file, and the first and last tiles of each band decode.
pub fn verify_geotiff(tmp: &Path, target: &Path) -> Result<()> {
    let bad = |what: String| {
        Error::Processing(format!(
            "{}: the written file failed verification ({what}); nothing was committed (disk full?)",
            target.display()
        ))
    };
    let file_len = std::fs::metadata(tmp)
        .map_err(|e| Error::io(target, "cannot stat the written file", e))?
        .len();
    let ds = Dataset::open(tmp).map_err(|e| bad(format!("GDAL cannot reopen it: {e}")))?;
    let (w, h) = ds.raster_size();
    for i in 1..=ds.raster_count() {
        let band = ds
            .rasterband(i)
            .map_err(|e| bad(format!("band {i}: {e}")))?;
        let (bw, bh) = band.block_size();
        let (nx, ny) = (w.div_ceil(bw), h.div_ceil(bh));
        for by in 0..ny {
            for bx in 0..nx {
                let item = |k: &str| {
                    band.metadata_item(&format!("BLOCK_{k}_{bx}_{by}"), "TIFF")
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match (item("OFFSET"), item("SIZE")) {
                    (Some(o), Some(n)) if o > 0 && n > 0 && o + n <= file_len => {}
                    (o, n) => {
                        return Err(bad(format!(
                            "band {i} tile ({bx}, {by}) at offset {o:?} size {n:?} in a file of {file_len} bytes"
                        )))
                    }
                }
            }
        }
        for (bx, by) in [(0, 0), (nx - 1, ny - 1)] {
            // SAFETY: reads one block into a buffer of the block's size in its own data type.
            let size = bw * bh * band_type_size(&band);
            let mut buf = vec![0u8; size];
            let err = unsafe {
                gdal_sys::GDALReadBlock(
                    band.c_rasterband(),
                    bx as i32,
                    by as i32,
                    buf.as_mut_ptr().cast(),
                )
            };
            if err != gdal_sys::CPLErr::CE_None {
                return Err(bad(format!(
                    "band {i} tile ({bx}, {by}) does not decode: {}",
                    last_gdal_message()
                )));
            }
        }
    }
    Ok(())
}

fn band_type_size(band: &gdal::raster::RasterBand) -> usize {
    // SAFETY: GDALGetDataTypeSizeBytes takes a plain enum value.
    unsafe {
        gdal_sys::GDALGetDataTypeSizeBytes(band.band_type() as gdal_sys::GDALDataType::Type)
            as usize
    }
}

impl Drop for RasterWriter {
    fn drop(&mut self) {
        if let Some(ds) = self.ds.take() {
            let _ = ds.close();
        }
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Fraction (0..1) of the grid's extent that a raster's extent covers, computed in the raster's CRS (the
/// grid's bounds are transformed there, densified along the edges).
pub fn coverage_fraction(grid: &Grid, raster: &Grid) -> Result<f64> {
    coverage_of(grid, raster, false)
}

/// `coverage_fraction`, a raster with longitudes 0..360 covering western grids by its 180..360 (for sources
/// read through a window that puts them there: gridded archives, `drivers/gridded.rs`).
pub fn coverage_fraction_wrapped(grid: &Grid, raster: &Grid) -> Result<f64> {
    coverage_of(grid, raster, true)
}

fn coverage_of(grid: &Grid, raster: &Grid, wrap: bool) -> Result<f64> {
    let gb = transform_bounds(&grid.crs_wkt, &raster.crs_wkt, grid.bounds())?;
    let gb = if wrap {
        in_raster_longitudes(raster, gb)
    } else {
        gb
    };
    let rb = raster.bounds();
    let w = match wrap && wraps_globe(raster) {
        true => gb[2] - gb[0],
        false => (gb[2].min(rb[2]) - gb[0].max(rb[0])).max(0.0),
    };
    let h = (gb[3].min(rb[3]) - gb[1].max(rb[1])).max(0.0);
    let area = (gb[2] - gb[0]) * (gb[3] - gb[1]);
    Ok(if area > 0.0 {
        (w * h / area).min(1.0)
    } else {
        0.0
    })
}

/// Approximate minimum and maximum of each listed band's raw values, the file opened once (GDAL may sample
/// or use overviews); `None` for a band that holds no valid pixel.
pub fn bands_min_max(path: &Path, bands: &[usize]) -> Result<Vec<Option<(f64, f64)>>> {
    let ds = open(path)?;
    bands
        .iter()
        .map(|&band| {
            let b = ds.rasterband(band).map_err(|e| {
                Error::band(path, band.to_string(), format!("cannot be opened: {e}"))
            })?;
            Ok(min_max(&b, true))
        })
        .collect()
}

/// Whether a band has at least one pixel that is not nodata or NaN: windows of whole blocks are read in
/// row-major order until one holds such a pixel (usually the first; the whole band only when it has none).
/// A window holds at most `VALID_SCAN_PX` pixels (whole blocks), whatever the raster's width.
pub fn has_valid_pixel(path: &Path, band: usize) -> Result<bool> {
    /// Pixels read at once (8 MiB of f64), rounded to whole blocks.
    const VALID_SCAN_PX: usize = 1 << 20;
    has_valid_pixel_within(path, band, VALID_SCAN_PX)
}

/// `has_valid_pixel` reading windows of about `max_px` pixels (whole blocks, at least one).
fn has_valid_pixel_within(path: &Path, band: usize, max_px: usize) -> Result<bool> {
    let ds = open(path)?;
    let b = ds
        .rasterband(band)
        .map_err(|e| Error::band(path, band.to_string(), format!("cannot be opened: {e}")))?;
    let (w, h) = b.size();
    let (bw, bh) = b.block_size();
    let rows = bh.clamp(1, h.max(1));
    let cols = (max_px / rows / bw.max(1)).max(1) * bw.max(1);
    let nodata = b.no_data_value();
    for row0 in (0..h).step_by(rows) {
        for col0 in (0..w).step_by(cols.min(w).max(1)) {
            let (nc, nr) = (cols.min(w - col0), rows.min(h - row0));
            let mut part = vec![0f64; nc * nr];
            b.read_into_slice::<f64>(
                (col0 as isize, row0 as isize),
                (nc, nr),
                (nc, nr),
                &mut part,
                None,
            )
            .map_err(|e| Error::band(path, band.to_string(), format!("read failed: {e}")))?;
            if part.iter().any(|v| !v.is_nan() && Some(*v) != nodata) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A band's minimum and maximum over valid pixels; `None` when it has none. (The gdal crate returns Ok(0, 0)
/// whatever happened: GDAL's error state says whether a valid pixel was found.)
fn min_max(band: &gdal::raster::RasterBand, approx: bool) -> Option<(f64, f64)> {
    // SAFETY: resets and reads this thread's GDAL error state.
    unsafe { gdal_sys::CPLErrorReset() };
    let mm = band.compute_raster_min_max(approx).ok()?;
    let failed = unsafe { gdal_sys::CPLGetLastErrorType() } != gdal_sys::CPLErr::CE_None;
    (!failed && mm.min.is_finite() && mm.max.is_finite()).then_some((mm.min, mm.max))
}

/// Latitude (degrees) of a grid's centre.
pub fn grid_centre_latitude(grid: &Grid) -> Result<f64> {
    let b = grid.bounds();
    let mut xs = [(b[0] + b[2]) / 2.0];
    let mut ys = [(b[1] + b[3]) / 2.0];
    transform_points(&grid.crs_wkt, &crs_wkt("EPSG:4326")?, &mut xs, &mut ys)?;
    Ok(ys[0])
}

/// Latitude (degrees north) of every pixel centre of rows `row0 .. row0 + nrows`, row-major.
/// The columns of `w` from values of its whole rows (`width` per row).
pub fn window_of_rows<T: Copy>(rows: Vec<T>, width: usize, w: &Window) -> Vec<T> {
    if w.col0 == 0 && w.ncols == width {
        return rows;
    }
    rows.chunks_exact(width)
        .flat_map(|r| r[w.col0..w.col0 + w.ncols].iter().copied())
        .collect()
}

/// Latitude (degrees north) of each pixel centre of `w`.
pub fn window_latitudes(grid: &Grid, w: &Window) -> Result<Vec<f64>> {
    Ok(window_of_rows(
        pixel_latitudes(grid, w.row0, w.nrows)?,
        grid.width,
        w,
    ))
}

pub fn pixel_latitudes(grid: &Grid, row0: usize, nrows: usize) -> Result<Vec<f64>> {
    let (mut xs, mut ys) = grid.pixel_centres(row0, nrows);
    if grid.spatial_ref()?.is_geographic() {
        return Ok(ys);
    }
    transform_points(&grid.crs_wkt, &crs_wkt("EPSG:4326")?, &mut xs, &mut ys)?;
    Ok(ys)
}

/// A raster sampled at one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PointSample {
    /// The point is not on the raster.
    Outside,
    /// Every pixel of the window is no data (or NaN).
    NoData,
    /// Mean of the window's valid pixels, and how many there were.
    Value { mean: f64, pixels: usize },
}

/// Sample band `band` of `path` at points given in the raster's CRS: the mean of the valid pixels of a
/// `window` x `window` block (odd; 1 = the pixel that holds the point) centred on the point's pixel, clipped at
/// the raster's edges. No-data values and NaN are left out of the mean; the band's scale and offset apply.
pub fn sample_points(
    path: &Path,
    band: usize,
    xs: &[f64],
    ys: &[f64],
    window: usize,
) -> Result<Vec<PointSample>> {
    let info = RasterInfo::read(path)?;
    let grid = info.grid()?;
    let b = info.band(band)?;
    let nodata = b.nodata;
    let ds = open(path)?;
    let rb = ds
        .rasterband(band)
        .map_err(|e| Error::band(path, band.to_string(), format!("cannot be opened: {e}")))?;
    let half = (window.max(1) / 2) as isize;
    let mut out = Vec::with_capacity(xs.len());
    let mut buf = Vec::new();
    for (&x, &y) in xs.iter().zip(ys) {
        let Some((c, r)) = grid.pixel_of(x, y) else {
            out.push(PointSample::Outside);
            continue;
        };
        let c0 = (c as isize - half).max(0) as usize;
        let r0 = (r as isize - half).max(0) as usize;
        let c1 = ((c as isize + half) as usize).min(grid.width - 1);
        let r1 = ((r as isize + half) as usize).min(grid.height - 1);
        let (w, h) = (c1 - c0 + 1, r1 - r0 + 1);
        buf.resize(w * h, 0f64);
        rb.read_into_slice::<f64>((c0 as isize, r0 as isize), (w, h), (w, h), &mut buf, None)
            .map_err(|e| {
                Error::band(
                    path,
                    band.to_string(),
                    format!("read failed at pixel ({c}, {r}): {e}"),
                )
            })?;
        let valid: Vec<f64> = buf
            .iter()
            .copied()
            .filter(|v| v.is_finite() && Some(*v) != nodata)
            .map(|v| v * b.scale.unwrap_or(1.0) + b.offset.unwrap_or(0.0))
            .collect();
        out.push(if valid.is_empty() {
            PointSample::NoData
        } else {
            PointSample::Value {
                mean: valid.iter().sum::<f64>() / valid.len() as f64,
                pixels: valid.len(),
            }
        });
    }
    Ok(out)
}

/// A field value read from a vector file.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldVal {
    Num(f64),
    Text(String),
}

impl FieldVal {
    /// The value as text (numbers without losing precision).
    pub fn text(&self) -> String {
        match self {
            FieldVal::Num(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", *v as i64),
            FieldVal::Num(v) => format!("{v:?}"),
            FieldVal::Text(s) => s.clone(),
        }
    }
}

/// One feature of a vector layer: its id, the requested fields (None = null or empty) and its geometry.
pub struct VectorFeature {
    pub fid: u64,
    pub fields: Vec<Option<FieldVal>>,
    pub geometry: Option<gdal::vector::Geometry>,
}

/// The features of one layer of a vector file (GeoPackage, GeoJSON, Shapefile, CSV with a WKT column ...).
pub struct VectorLayer {
    pub path: PathBuf,
    pub layer: String,
    pub crs_wkt: Option<String>,
    pub features: Vec<VectorFeature>,
}

/// One band of a raster read onto `grid` by nearest neighbour (outputs of this run compared pixel for pixel,
/// class maps), `fill` outside it.
pub fn band_reader(path: &Path, band: usize, grid: &Grid, fill: f64) -> Result<GridReader> {
    GridReader::new(
        path,
        &[BandRequest {
            index: band,
            name: path.display().to_string(),
        }],
        grid,
        Resampling::Nearest,
        None,
        fill,
    )
}

/// The polygons of a vector file (every feature of `layer`, or its only layer) in the CRS `crs_wkt`.
pub fn read_polygons(
    path: &Path,
    layer: Option<&str>,
    crs_wkt: &str,
) -> Result<Vec<gdal::vector::Geometry>> {
    let l = read_vector(path, layer, &[])?;
    let crs = l
        .crs_wkt
        .clone()
        .ok_or_else(|| Error::input(path, "the polygons have no CRS"))?;
    let mut geoms: Vec<_> = l.features.into_iter().filter_map(|f| f.geometry).collect();
    if geoms.is_empty() {
        return Err(Error::input(path, "no polygons"));
    }
    reproject_geometries(&mut geoms, &crs, crs_wkt)?;
    Ok(geoms)
}

/// Whether GDAL opens `path` as a raster with bands.
pub fn is_raster(path: &Path) -> bool {
    init();
    // GDAL sees raster bands (a damaged raster is still a raster: `open` then says what is wrong with it).
    match expanded_vrt(path) {
        Ok(Some(xml)) => Dataset::open(xml.as_str()),
        _ => Dataset::open(path),
    }
    .is_ok_and(|ds| ds.raster_count() > 0)
}

/// Whether `path` is a vector file and not a raster (formats such as GeoPackage can hold either).
pub fn is_vector_only(path: &Path) -> bool {
    is_vector(path) && !is_raster(path)
}

/// Whether GDAL opens `path` as a vector file (with at least one layer).
pub fn is_vector(path: &Path) -> bool {
    init();
    gdal::Dataset::open_ex(
        path,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .map(|d| d.layer_count() > 0)
    .unwrap_or(false)
}

/// Read `fields` and the geometry of every feature of one layer (`layer`, or the file's only layer).
pub fn read_vector(path: &Path, layer: Option<&str>, fields: &[String]) -> Result<VectorLayer> {
    use gdal::vector::{FieldValue, LayerAccess};
    init();
    if !is_virtual(path) && !path.exists() {
        return Err(Error::input(path, "file does not exist"));
    }
    let ds = gdal::Dataset::open_ex(
        path,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .map_err(|e| Error::input(path, format!("not a vector file GDAL can read ({e})")))?;
    let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
    let mut lyr = match layer {
        Some(n) => ds.layer_by_name(n).map_err(|_| {
            Error::input(
                path,
                format!("has no layer \"{n}\" (layers: {})", names.join(", ")),
            )
        })?,
        None if names.len() == 1 => ds.layer(0).map_err(|e| Error::gdal(path, "layer 0", e))?,
        None if names.is_empty() => return Err(Error::input(path, "has no vector layers")),
        None => {
            return Err(Error::input(
                path,
                format!(
                    "has {} layers ({}); name one",
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
    };
    let lname = lyr.name();
    let available: Vec<String> = lyr.defn().fields().map(|f| f.name()).collect();
    let mut idx = Vec::with_capacity(fields.len());
    for f in fields {
        match available.iter().position(|a| a.eq_ignore_ascii_case(f)) {
            Some(i) => idx.push(i),
            None => {
                return Err(Error::input(
                    path,
                    format!(
                        "layer \"{lname}\" has no field \"{f}\" (fields: {})",
                        available.join(", ")
                    ),
                ))
            }
        }
    }
    let crs_wkt = lyr.spatial_ref().and_then(|s| s.to_wkt().ok());
    let mut features = Vec::new();
    for feat in lyr.features() {
        let mut vals = Vec::with_capacity(idx.len());
        for &i in &idx {
            let v = feat
                .field(i)
                .map_err(|e| Error::gdal(path, format!("feature {:?}", feat.fid()), e))?;
            vals.push(match v {
                Some(FieldValue::RealValue(x)) => Some(FieldVal::Num(x)),
                Some(FieldValue::IntegerValue(x)) => Some(FieldVal::Num(x as f64)),
                Some(FieldValue::Integer64Value(x)) => Some(FieldVal::Num(x as f64)),
                Some(FieldValue::StringValue(s)) if s.trim().is_empty() => None,
                Some(FieldValue::StringValue(s)) => Some(FieldVal::Text(s.trim().to_string())),
                Some(other) => Some(FieldVal::Text(format!("{other:?}"))),
                None => None,
            });
        }
        features.push(VectorFeature {
            fid: feat.fid().unwrap_or(features.len() as u64),
            fields: vals,
            geometry: feat.geometry().cloned(),
        });
    }
    Ok(VectorLayer {
        path: path.to_path_buf(),
        layer: lname,
        crs_wkt,
        features,
    })
}

/// The (x, y) of a point geometry (None for other geometry types).
pub fn point_of(g: Option<&gdal::vector::Geometry>) -> Option<(f64, f64)> {
    let g = g?;
    if !g.geometry_name().eq_ignore_ascii_case("POINT") {
        return None;
    }
    let p = g.get_point(0);
    (p.0.is_finite() && p.1.is_finite()).then_some((p.0, p.1))
}

/// Reproject geometries in place from `from_wkt` to `to_wkt`.
pub fn reproject_geometries(
    geoms: &mut [gdal::vector::Geometry],
    from_wkt: &str,
    to_wkt: &str,
) -> Result<()> {
    if same_crs(from_wkt, to_wkt) {
        return Ok(());
    }
    let ct = coord_transform(from_wkt, to_wkt)?;
    for g in geoms.iter_mut() {
        g.transform_inplace(&ct)
            .map_err(|e| Error::Usage(format!("geometry cannot be reprojected: {e}")))?;
    }
    Ok(())
}

/// Burn `values[i]` where geometry `i` covers a pixel centre (GDAL's rasteriser, later geometries win) into
/// rows `row0 .. row0 + nrows` of `grid`; `fill` elsewhere. Geometries must be in the grid's CRS.
pub fn rasterize_rows(
    geoms: &[gdal::vector::Geometry],
    values: &[f64],
    grid: &Grid,
    row0: usize,
    nrows: usize,
    fill: i32,
) -> Result<Vec<i32>> {
    init();
    let here = Path::new("zones (in memory)");
    let driver =
        DriverManager::get_driver_by_name("MEM").map_err(|e| Error::gdal(here, "MEM driver", e))?;
    let mut ds = driver
        .create_with_band_type::<i32, _>("", grid.width, nrows, 1)
        .map_err(|e| Error::gdal(here, "create", e))?;
    let mut gt = grid.gt;
    gt[3] += row0 as f64 * gt[5];
    ds.set_geo_transform(&gt)
        .map_err(|e| Error::gdal(here, "geotransform", e))?;
    ds.set_projection(&grid.crs_wkt)
        .map_err(|e| Error::gdal(here, "projection", e))?;
    {
        let mut band = ds.rasterband(1).map_err(|e| Error::gdal(here, "band", e))?;
        band.fill(fill as f64, None)
            .map_err(|e| Error::gdal(here, "fill", e))?;
    }
    let (geoms, values) = crossing_rows(geoms, values, &gt, nrows);
    if !geoms.is_empty() {
        gdal::raster::rasterize(&mut ds, &[1], &geoms, &values, None)
            .map_err(|e| Error::gdal(here, "rasterize", e))?;
    }
    let band = ds.rasterband(1).map_err(|e| Error::gdal(here, "band", e))?;
    let mut out = vec![fill; grid.width * nrows];
    band.read_into_slice::<i32>(
        (0, 0),
        (grid.width, nrows),
        (grid.width, nrows),
        &mut out,
        None,
    )
    .map_err(|e| Error::gdal(here, "read", e))?;
    Ok(out)
}

/// The geometries (in order, with their values) whose envelope reaches the `nrows` rows of a north-up strip
/// whose geotransform is `gt`: the rest cannot cover a pixel centre there. GDAL's rasteriser transforms every
/// geometry it is given, so a strip of 40,000 zones no longer pays for all of them; the pixels are the same.
fn crossing_rows(
    geoms: &[gdal::vector::Geometry],
    values: &[f64],
    gt: &[f64; 6],
    nrows: usize,
) -> (Vec<gdal::vector::Geometry>, Vec<f64>) {
    let (y0, y1) = (gt[3], gt[3] + nrows as f64 * gt[5]);
    let (lo, hi) = (y0.min(y1), y0.max(y1));
    let rotated = gt[2] != 0.0 || gt[4] != 0.0;
    (geoms.iter().zip(values))
        .filter(|(g, _)| {
            let e = g.envelope();
            rotated || (e.MaxY >= lo && e.MinY <= hi)
        })
        .map(|(g, v)| (g.clone(), *v))
        .unzip()
}

/// A column of a vector table to write.
pub enum VecField {
    Text(Vec<String>),
    Num(Vec<f64>),
}

/// One layer to write: name, geometries (in `crs_wkt`), named columns, and its QGIS style (QML), stored in the
/// GeoPackage's `layer_styles` table as the layer's default so QGIS opens it styled.
pub struct VectorOut {
    pub name: String,
    pub geometries: Vec<Option<gdal::vector::Geometry>>,
    pub columns: Vec<(String, VecField)>,
    pub style: Option<String>,
}

/// QGIS's `layer_styles` table in a GeoPackage: one default style per styled layer (the update time fixed, so
/// the file stays byte-reproducible).
fn write_layer_styles(ds: &mut Dataset, target: &Path, layers: &[VectorOut]) -> Result<usize> {
    use gdal::vector::{Feature, LayerAccess, LayerOptions, OGRFieldType};
    let styled: Vec<&VectorOut> = layers.iter().filter(|l| l.style.is_some()).collect();
    if styled.is_empty() {
        return Ok(0);
    }
    let lyr = ds
        .create_layer(LayerOptions {
            name: "layer_styles",
            srs: None,
            ty: gdal_sys::OGRwkbGeometryType::wkbNone,
            options: None,
        })
        .map_err(|e| Error::gdal(target, "layer layer_styles", e))?;
    let text = [
        "f_table_catalog",
        "f_table_schema",
        "f_table_name",
        "f_geometry_column",
        "styleName",
        "styleQML",
        "styleSLD",
        "description",
        "owner",
        "ui",
        "update_time",
    ];
    let mut defs: Vec<(&str, OGRFieldType::Type)> =
        text.iter().map(|n| (*n, OGRFieldType::OFTString)).collect();
    defs.insert(7, ("useAsDefault", OGRFieldType::OFTInteger));
    lyr.create_defn_fields(&defs)
        .map_err(|e| Error::gdal(target, "fields of layer_styles", e))?;
    for l in styled {
        let mut f = Feature::new(lyr.defn()).map_err(|e| Error::gdal(target, "feature", e))?;
        let values = [
            ("f_table_catalog", ""),
            ("f_table_schema", ""),
            ("f_table_name", l.name.as_str()),
            ("f_geometry_column", "geom"),
            ("styleName", l.name.as_str()),
            ("styleQML", l.style.as_deref().unwrap_or("")),
            ("styleSLD", ""),
            ("description", "carbonmap"),
            ("owner", ""),
            ("ui", ""),
            ("update_time", GPKG_FIXED_DATE),
        ];
        for (name, v) in values {
            let i = defs
                .iter()
                .position(|d| d.0 == name)
                .expect("field defined");
            f.set_field_string(i, v)
                .map_err(|e| Error::gdal(target, "field", e))?;
        }
        let i = defs
            .iter()
            .position(|d| d.0 == "useAsDefault")
            .expect("field");
        f.set_field_integer(i, 1)
            .map_err(|e| Error::gdal(target, "field", e))?;
        f.create(&lyr)
            .map_err(|e| Error::gdal(target, "write style", e))?;
    }
    Ok(1)
}

/// Write layers into a GeoPackage atomically (temporary file beside the target, closed, renamed).
pub fn write_gpkg(target: &Path, crs_wkt: &str, layers: &[VectorOut]) -> Result<()> {
    init();
    let tmp = temporary_beside(target)?;
    let driver = DriverManager::get_driver_by_name("GPKG")
        .map_err(|e| Error::gdal(target, "GPKG driver", e))?;
    let srs = SpatialRef::from_wkt(crs_wkt).map_err(|e| Error::gdal(target, "CRS", e))?;
    let result = (|| -> Result<()> {
        let mut ds = driver
            .create_vector_only(&tmp)
            .map_err(|e| Error::gdal(target, "create", e))?;
        // One transaction a layer: GeoPackage commits each feature on its own otherwise (40,000 zones took
        // seconds of SQLite journal writes).
        for l in layers {
            let mut tx = ds
                .start_transaction()
                .map_err(|e| Error::gdal(target, format!("layer {}", l.name), e))?;
            write_layer(&mut tx, target, &srs, l)?;
            tx.commit()
                .map_err(|e| Error::gdal(target, format!("writing layer {}", l.name), e))?;
        }
        let extra = write_layer_styles(&mut ds, target, layers)?;
        gdal_checked(target, "closing the GeoPackage failed (disk full?)", || {
            ds.close()
        })?;
        let back = gdal::Dataset::open(&tmp)
            .map_err(|e| Error::gdal(target, "the written GeoPackage does not reopen", e))?;
        if back.layer_count() != layers.len() + extra {
            return Err(Error::Processing(format!(
                "{}: the written GeoPackage has {} layer(s), {} were written",
                target.display(),
                back.layer_count(),
                layers.len()
            )));
        }
        drop(back);
        crate::commit::stage(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    // OGR's errors carry a bare code: add GDAL's message (SQLite's "database or disk is full").
    result.map_err(|e| match e {
        Error::Gdal { path, context, .. } => Error::Processing(format!(
            "{}: {context}: {} (disk full?); nothing was committed",
            path.display(),
            last_gdal_message()
        )),
        other => other,
    })
}

/// One layer of `write_gpkg`: its fields, then each feature with its geometry (a polygon as a one-part
/// multipolygon, the layer's type) and values (NaN as null).
fn write_layer(
    ds: &mut gdal::Dataset,
    target: &Path,
    srs: &SpatialRef,
    l: &VectorOut,
) -> Result<()> {
    use gdal::vector::{Feature, LayerAccess, LayerOptions, OGRFieldType};
    let lyr = ds
        .create_layer(LayerOptions {
            name: &l.name,
            srs: Some(srs),
            ty: gdal_sys::OGRwkbGeometryType::wkbMultiPolygon,
            options: None,
        })
        .map_err(|e| Error::gdal(target, format!("layer {}", l.name), e))?;
    let defs: Vec<(&str, OGRFieldType::Type)> = l
        .columns
        .iter()
        .map(|(n, c)| {
            (
                n.as_str(),
                match c {
                    VecField::Text(_) => OGRFieldType::OFTString,
                    VecField::Num(_) => OGRFieldType::OFTReal,
                },
            )
        })
        .collect();
    lyr.create_defn_fields(&defs)
        .map_err(|e| Error::gdal(target, format!("fields of {}", l.name), e))?;
    for (i, g) in l.geometries.iter().enumerate() {
        let mut f = Feature::new(lyr.defn()).map_err(|e| Error::gdal(target, "feature", e))?;
        if let Some(g) = g {
            let g = if g.geometry_type() == gdal_sys::OGRwkbGeometryType::wkbPolygon {
                let mut m =
                    gdal::vector::Geometry::empty(gdal_sys::OGRwkbGeometryType::wkbMultiPolygon)
                        .map_err(|e| Error::gdal(target, "geometry", e))?;
                m.add_geometry(g.clone())
                    .map_err(|e| Error::gdal(target, "geometry", e))?;
                m
            } else {
                g.clone()
            };
            f.set_geometry(g)
                .map_err(|e| Error::gdal(target, "geometry", e))?;
        }
        for (k, (_, c)) in l.columns.iter().enumerate() {
            match c {
                VecField::Text(v) => f.set_field_string(k, &v[i]),
                VecField::Num(v) if v[i].is_finite() => f.set_field_double(k, v[i]),
                VecField::Num(_) => f.set_field_null(k),
            }
            .map_err(|e| Error::gdal(target, "field", e))?;
        }
        f.create(&lyr)
            .map_err(|e| Error::gdal(target, "write feature", e))?;
    }
    Ok(())
}

/// Magic numbers of binary formats users give by mistake where text is expected.
const BINARY_KINDS: [(&[u8], &str); 9] = [
    (b"II*\0", "a TIFF/GeoTIFF raster"),
    (b"MM\0*", "a TIFF/GeoTIFF raster"),
    (b"II+\0", "a BigTIFF raster"),
    (b"\x89PNG", "a PNG image"),
    (b"SQLite format 3", "a GeoPackage/SQLite database"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x89HDF", "an HDF5/NetCDF-4 file"),
    (b"CDF\x01", "a NetCDF file"),
    (b"\0\0\0\x0cjP", "a JPEG 2000 image"),
];

/// Read a text input (TOML, CSV, JSON). A missing file, a binary file (named by its kind: "this is a GeoTIFF
/// raster") and text that is not UTF-8 (with the line) are bad-input errors; `expected` says what was wanted.
pub fn read_text(path: &Path, expected: &str) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::input(path, "file does not exist"),
        std::io::ErrorKind::IsADirectory => {
            Error::input(path, format!("is a folder; expected {expected}"))
        }
        _ => Error::io(path, "cannot read", e),
    })?;
    if let Some((_, kind)) = BINARY_KINDS.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Err(Error::input(
            path,
            format!("this is {kind}, not text; expected {expected}"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let binary = bytes.iter().take(4096).any(|b| *b == 0);
        Error::input(
            path,
            if binary {
                format!("is a binary file, not text; expected {expected}")
            } else {
                format!(
                    "line {line}: not UTF-8 text (byte 0x{:02x} at offset {at}); save it as UTF-8 ({expected})",
                    bytes[at]
                )
            },
        )
    })
}

/// A GDAL subdataset name whose file (or Zarr store) exists: `NETCDF:"era5.nc":t2m`, not a CRS such as
/// `EPSG:4326` that has the same shape.
fn names_existing_subdataset(f: &Path) -> bool {
    subdataset_parts(&f.to_string_lossy()).is_some_and(|(_, file, _)| Path::new(file).exists())
}

/// Every file a command reads: its input paths, files in input folders, files a TOML input names (stack
/// manifests, driver files: relative to the TOML file), the files GDAL reads with a dataset (Shapefile parts)
/// and a model's sidecar. `strict`: a missing path is an error (else it is skipped; the command reports it).
pub fn input_closure(paths: &[PathBuf], strict: bool) -> Result<Vec<PathBuf>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = todo.pop() {
        // Remote inputs (a STAC URL, /vsicurl/ ...) are not hashed: their local description is.
        if crate::stac::is_remote(&p.to_string_lossy()) {
            continue;
        }
        // A GDAL subdataset name reads its file.
        if let Some((_, file, _)) = subdataset_parts(&p.to_string_lossy()) {
            todo.push(PathBuf::from(file));
            continue;
        }
        if p.is_dir() {
            match files_under(&p) {
                // A Zarr store is one dataset: its chunks are read through it, not opened one by one (a year
                // of hourly chunks is thousands of files, each probed by every GDAL driver).
                Ok(files) if is_zarr_store(&p) => seen.extend(files),
                Ok(files) => todo.extend(files),
                Err(e) if strict => return Err(e),
                Err(_) => {}
            }
            continue;
        }
        if !p.exists() {
            if strict {
                return Err(Error::input(&p, "file does not exist"));
            }
            continue;
        }
        if !seen.insert(p.clone()) {
            continue;
        }
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "toml" => {
                let value: toml::Value = match crate::models::read_toml(&p) {
                    Ok(v) => v,
                    Err(e) if strict => return Err(e),
                    Err(_) => continue,
                };
                let base = p.parent().unwrap_or(Path::new("."));
                let mut strings = Vec::new();
                toml_strings(&value, &mut strings);
                todo.extend(
                    strings
                        .into_iter()
                        .map(|s| join_source(base, &s))
                        .filter(|f| f.is_file() || names_existing_subdataset(f)),
                );
            }
            "json" | "geojson" => {
                let sidecar = crate::pipeline::classify::sidecar_path(&p);
                if sidecar.is_file() {
                    // A carbonmap model names no other file; read as a JSON tree, a forest's 23 MB took
                    // 290 MB (Germany's predict peaked there, before any raster).
                    todo.push(sidecar);
                    continue;
                }
                // A STAC document: the local files its links and assets name (relative to it). Read as a
                // JSON tree only when a probe (which keeps no geometry) finds STAC: a zones GeoJSON of a
                // country's townships is not held whole for this.
                let text = read_text(&p, "JSON").ok().filter(|t| may_be_stac(t));
                if let Some(Ok(v)) = text.map(|t| serde_json::from_str::<serde_json::Value>(&t)) {
                    if crate::stac::is_stac(&v) {
                        let base = p.parent().unwrap_or(Path::new("."));
                        let mut hrefs = Vec::new();
                        json_hrefs(&v, &mut hrefs);
                        todo.extend(
                            hrefs
                                .into_iter()
                                .filter(|h| !crate::stac::is_remote(h))
                                .map(|h| base.join(h.strip_prefix("file://").unwrap_or(&h)))
                                .filter(|f| f.is_file()),
                        );
                    }
                }
            }
            "csv" => {}
            _ => todo.extend(dataset_files(&p).into_iter().filter(|f| f.is_file())),
        }
    }
    Ok(seen.into_iter().collect())
}

/// Whether a JSON text may be a STAC document (as `stac::is_stac` decides): a `stac_version`, or a feature
/// collection with a feature that has a `stac_version` or `assets`. Read without keeping what it skips.
fn may_be_stac(text: &str) -> bool {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Feature {
        stac_version: Option<IgnoredAny>,
        assets: Option<IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        stac_version: Option<IgnoredAny>,
        features: Option<Vec<Feature>>,
    }
    match serde_json::from_str::<Doc>(text) {
        Ok(d) => {
            d.stac_version.is_some()
                || d.features.is_some_and(|f| {
                    f.iter()
                        .any(|f| f.stac_version.is_some() || f.assets.is_some())
                })
        }
        Err(_) => false,
    }
}

/// Every "href" string of a JSON document.
fn json_hrefs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, e) in m {
                match (k.as_str(), e) {
                    ("href", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => json_hrefs(e, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|e| json_hrefs(e, out)),
        _ => {}
    }
}

fn toml_strings(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|e| toml_strings(e, out)),
        toml::Value::Table(t) => t.values().for_each(|e| toml_strings(e, out)),
        _ => {}
    }
}

/// Exchange two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`); an error where the kernel or file
/// system does not support it, and the caller falls back to two renames.
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes())?;
        let cb = CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths; AT_FDCWD resolves relative ones from the working folder.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// The union of two polygonal geometries; where GEOS cannot form it (an invalid ring, say), a multipolygon of
/// both geometries' polygons, so that no part of a zone is ever dropped.
pub fn union_keep(a: gdal::vector::Geometry, b: &gdal::vector::Geometry) -> gdal::vector::Geometry {
    if let Some(u) = a.union(b) {
        return u;
    }
    let Ok(mut multi) =
        gdal::vector::Geometry::empty(gdal_sys::OGRwkbGeometryType::wkbMultiPolygon)
    else {
        return a;
    };
    for g in [&a, b] {
        let parts: Vec<gdal::vector::Geometry> =
            if g.geometry_count() > 0 && g.geometry_name().eq_ignore_ascii_case("MULTIPOLYGON") {
                (0..g.geometry_count())
                    .map(|i| (*g.get_geometry(i)).clone())
                    .collect()
            } else {
                vec![g.clone()]
            };
        for p in parts {
            let _ = multi.add_geometry(p);
        }
    }
    multi
}

/// `g`'s part inside `rect`, an axis-aligned rectangle (a raster's extent): `g` itself when its envelope lies
/// inside (no GEOS call: zones of a large hierarchy lie inside mostly), else their intersection (None when GEOS
/// cannot form it).
pub fn clip_to_rect(
    g: &gdal::vector::Geometry,
    rect: &gdal::vector::Geometry,
) -> Option<gdal::vector::Geometry> {
    let (e, r) = (g.envelope(), rect.envelope());
    let inside = e.MinX >= r.MinX && e.MaxX <= r.MaxX && e.MinY >= r.MinY && e.MaxY <= r.MaxY;
    match inside {
        true => Some(g.clone()),
        false => g.intersection(rect),
    }
}

/// The union of many polygonal geometries (`union_keep`'s), pairwise in rounds (neighbours first, in order), so
/// that each geometry takes part in about log2(n) unions of geometries of similar size: one after another, a
/// province of 10,000 townships spent minutes adding each one to an ever larger polygon. None when empty.
pub fn union_all(geoms: Vec<gdal::vector::Geometry>) -> Option<gdal::vector::Geometry> {
    let mut round = geoms;
    while round.len() > 1 {
        let mut next = Vec::with_capacity(round.len().div_ceil(2));
        let mut it = round.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => union_keep(a, &b),
                None => a,
            });
        }
        round = next;
    }
    round.pop()
}

/// `union_all` of each group, the groups on all cores. A GDAL geometry cannot leave the thread that made it,
/// so each crosses as WKB (exact: the same doubles); a group of one is itself, and a group that does not
/// convert is dissolved here. The results do not depend on the thread count.
pub fn union_groups(
    groups: Vec<Vec<gdal::vector::Geometry>>,
) -> Vec<Option<gdal::vector::Geometry>> {
    use gdal::vector::Geometry;
    use rayon::prelude::*;
    let wkb = |g: &Geometry| g.wkb().ok();
    let parts: Vec<Option<Vec<Vec<u8>>>> = (groups.iter())
        .map(|g| match g.len() > 1 {
            true => g.iter().map(wkb).collect(),
            false => None,
        })
        .collect();
    let unions: Vec<Option<Vec<u8>>> = parts
        .par_iter()
        .map(|p| {
            let p = p.as_ref()?;
            let geoms: Option<Vec<Geometry>> =
                p.iter().map(|b| Geometry::from_wkb(b).ok()).collect();
            union_all(geoms?).as_ref().and_then(wkb)
        })
        .collect();
    (groups.into_iter().zip(unions))
        .map(|(g, u)| match u.and_then(|b| Geometry::from_wkb(&b).ok()) {
            Some(u) => Some(u),
            None => union_all(g),
        })
        .collect()
}

/// SHA-256 of bytes (hex).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Every file under a folder (recursively), sorted by path.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| {
            let p = e.path().unwrap_or(dir).to_path_buf();
            Error::io(p, "cannot list folder", e.into())
        })?;
        if !e.file_type().is_dir() {
            files.push(e.into_path());
        }
    }
    Ok(files)
}

/// A file's modification time, nanoseconds since 1970 (0 when the file system does not say).
pub fn modified_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// SHA-256 of a file's contents (hex), read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(path, "cannot read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The files GDAL reads for a raster or vector dataset (a Shapefile's .shx/.dbf/.prj, a raster's .aux.xml or
/// world file ...), the dataset's own path included; empty when GDAL cannot open it.
pub fn dataset_files(path: &Path) -> Vec<PathBuf> {
    init();
    let expanded = expanded_vrt(path).ok().flatten();
    let Ok(ds) = (match &expanded {
        Some(xml) => gdal::Dataset::open(xml.as_str()),
        None => gdal::Dataset::open(path),
    }) else {
        return Vec::new();
    };
    // A VRT opened from its expanded text does not list itself.
    let mut files = if expanded.is_some() {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    // SAFETY: GDALGetFileList returns a NULL-terminated string list owned by the caller (freed below).
    unsafe {
        let list = gdal_sys::GDALGetFileList(ds.c_dataset());
        if !list.is_null() {
            let mut i = 0;
            while !(*list.add(i)).is_null() {
                files.push(PathBuf::from(
                    CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned(),
                ));
                i += 1;
            }
            gdal_sys::CSLDestroy(list);
        }
    }
    files
}

/// A raster band reduced for a map: at most `max_side` pixels on the long side, averaged by GDAL (nodata
/// excluded, NaN where no pixel has data).
pub struct BandPreview {
    pub values: Vec<f32>,
    pub width: usize,
    pub height: usize,
    /// Ground size of one preview pixel in metres (at the raster's centre row).
    pub metres_per_pixel: f64,
    pub description: String,
    pub unit: String,
    /// A categorical band's colour table (value -> RGB), for the values present.
    pub palette: Option<BTreeMap<i64, (u8, u8, u8)>>,
    /// Its class names (from the raster's category names; empty when it has none).
    pub class_names: BTreeMap<i64, String>,
    pub frame: MapFrame,
}

/// A band's category names (GDAL keeps them in the `.aux.xml` sidecar carbonmap writes beside class rasters;
/// read with GDAL's PAM enabled for this call only, on this thread). Empty when there are none.
pub fn category_names(path: &Path, band: usize) -> BTreeMap<i64, String> {
    let key = CString::new("GDAL_PAM_ENABLED").expect("no NUL");
    let yes = CString::new("YES").expect("no NUL");
    // SAFETY: thread-local configuration, set and cleared around this call on this thread.
    unsafe { gdal_sys::CPLSetThreadLocalConfigOption(key.as_ptr(), yes.as_ptr()) };
    let names = (|| -> Option<BTreeMap<i64, String>> {
        let ds = Dataset::open(path).ok()?;
        // GeoTIFF loads its sidecar lazily, on the first georeferencing or metadata request.
        let _ = ds.geo_transform();
        let b = ds.rasterband(band).ok()?;
        // SAFETY: GDAL returns a NULL-terminated list owned by the band, read before the dataset is dropped.
        let list = unsafe { gdal_sys::GDALGetRasterCategoryNames(b.c_rasterband()) };
        if list.is_null() {
            return None;
        }
        let mut out = BTreeMap::new();
        for i in 0.. {
            let p = unsafe { *list.add(i) };
            if p.is_null() {
                break;
            }
            let name = unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned();
            if !name.is_empty() {
                out.insert(i as i64, name);
            }
        }
        Some(out)
    })();
    // SAFETY: as above.
    unsafe { gdal_sys::CPLSetThreadLocalConfigOption(key.as_ptr(), ptr::null()) };
    names.unwrap_or_default()
}

/// Where a map is: its CRS (name and code), its bounds in that CRS, and whether the CRS is geographic (no
/// constant scale: no scale bar).
#[derive(Debug, Clone)]
pub struct MapFrame {
    pub crs: String,
    pub bounds: [f64; 4],
    pub geographic: bool,
}

impl MapFrame {
    pub fn of(grid: &Grid) -> Result<MapFrame> {
        let srs = grid.spatial_ref()?;
        let name = srs.name().filter(|n| !n.is_empty() && n != "unknown");
        let code = match (srs.auth_name(), srs.auth_code()) {
            (Some(a), Ok(c)) => format!(" ({a}:{c})"),
            _ => String::new(),
        };
        // A CRS without a name (a custom projection such as a study area's own equal-area one) is said by its
        // definition: "unknown" on a map reads as if the map had no CRS.
        let name = name.unwrap_or_else(|| match srs.to_proj4() {
            Ok(p) => {
                let p = p.replace(" +no_defs", "").replace(" +type=crs", "");
                format!("custom CRS {}", p.trim())
            }
            Err(_) => "unnamed CRS".into(),
        });
        Ok(MapFrame {
            crs: format!("{name}{code}"),
            bounds: grid.bounds(),
            geographic: srs.is_geographic(),
        })
    }
}

pub fn read_preview(path: &Path, band: usize, max_side: usize) -> Result<BandPreview> {
    let ds = open(path)?;
    let info = RasterInfo::from_dataset(path, &ds)?;
    let grid = info.grid()?;
    let b = info.band(band)?.clone();
    let k = grid.width.max(grid.height).div_ceil(max_side.max(1)).max(1);
    let (w, h) = (grid.width.div_ceil(k), grid.height.div_ceil(k));
    let rb = ds
        .rasterband(band)
        .map_err(|e| Error::band(path, band.to_string(), format!("cannot be opened: {e}")))?;
    let table = rb.color_table();
    let categorical = table.is_some();
    let mut values = vec![0f32; w * h];
    let alg = if categorical {
        gdal::raster::ResampleAlg::NearestNeighbour
    } else {
        gdal::raster::ResampleAlg::Average
    };
    rb.read_into_slice::<f32>(
        (0, 0),
        (grid.width, grid.height),
        (w, h),
        &mut values,
        Some(alg),
    )
    .map_err(|e| Error::band(path, band.to_string(), format!("read failed: {e}")))?;
    if let Some(nd) = b.nodata {
        for v in values.iter_mut().filter(|v| (**v as f64) == nd) {
            *v = f32::NAN;
        }
    }
    let palette = table.map(|t| {
        values
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| *v as i64)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|c| {
                let e = t.entry_as_rgb(usize::try_from(c).ok()?)?;
                let b = |x: i16| x.clamp(0, 255) as u8;
                Some((c, (b(e.r), b(e.g), b(e.b))))
            })
            .collect()
    });
    let areas = crate::area::PixelAreas::of(&grid)?;
    let metres_per_pixel =
        areas.at(grid.width / 2, grid.height / 2).sqrt() * grid.width as f64 / w as f64;
    Ok(BandPreview {
        values,
        width: w,
        height: h,
        metres_per_pixel,
        description: b.description,
        unit: b.unit,
        class_names: if categorical {
            category_names(path, band)
        } else {
            BTreeMap::new()
        },
        palette,
        frame: MapFrame::of(&grid)?,
    })
}

#[cfg(test)]
mod union_tests {
    use gdal::vector::Geometry;

    #[test]
    fn a_union_geos_refuses_keeps_both_parts() {
        super::init();
        // Overlapping self-intersecting rings, which GEOS cannot union (TopologyException).
        let pairs = [
            (
                "POLYGON((0 0,10 10,10 0,0 10,0 0))",
                "POLYGON((5 0,15 10,15 0,5 10,5 0))",
            ),
            (
                "POLYGON((0 0,10 10,0 10,10 0,0 0))",
                "POLYGON((0 5,10 5,5 0,5 10,0 5))",
            ),
            (
                "POLYGON((0 0,10 0,0 10,10 10,0 0))",
                "POLYGON((0 0,10 0,10 10,0 10,0 0))",
            ),
        ];
        let (a, b) = pairs
            .iter()
            .map(|(x, y)| {
                (
                    Geometry::from_wkt(x).unwrap(),
                    Geometry::from_wkt(y).unwrap(),
                )
            })
            .find(|(a, b)| a.union(b).is_none())
            .expect("one pair GEOS cannot union");
        let u = super::union_keep(a.clone(), &b);
        assert_eq!(u.geometry_name(), "MULTIPOLYGON");
        assert_eq!(u.geometry_count(), 2);
        // Valid polygons are unioned as usual.
        let c = Geometry::from_wkt("POLYGON((0 0,1 0,1 1,0 1,0 0))").unwrap();
        let d = Geometry::from_wkt("POLYGON((1 0,2 0,2 1,1 1,1 0))").unwrap();
        assert!((super::union_keep(c, &d).area() - 2.0).abs() < 1e-12);
    }

    /// A square inside the rectangle comes back as it is; one across its edge is cut to the part inside.
    #[test]
    fn clip_to_rect_keeps_what_lies_inside_and_cuts_what_crosses() {
        let rect = Geometry::from_wkt("POLYGON((0 0,10 0,10 10,0 10,0 0))").unwrap();
        let inside = Geometry::from_wkt("POLYGON((1 1,3 1,3 3,1 3,1 1))").unwrap();
        let kept = super::clip_to_rect(&inside, &rect).unwrap();
        assert_eq!(kept.wkt().unwrap(), inside.wkt().unwrap());
        let across = Geometry::from_wkt("POLYGON((8 8,12 8,12 12,8 12,8 8))").unwrap();
        assert!((super::clip_to_rect(&across, &rect).unwrap().area() - 4.0).abs() < 1e-12);
    }

    /// A 7 x 3 block of unit squares dissolves into one polygon of area 21, its extent the block's.
    #[test]
    fn union_all_dissolves_many_squares_into_one() {
        let squares = (0..21)
            .map(|i| {
                let (x, y) = ((i % 7) as f64, (i / 7) as f64);
                let wkt = format!(
                    "POLYGON(({x} {y},{} {y},{} {},{x} {},{x} {y}))",
                    x + 1.0,
                    x + 1.0,
                    y + 1.0,
                    y + 1.0
                );
                Geometry::from_wkt(&wkt).unwrap()
            })
            .collect();
        let u = super::union_all(squares).unwrap();
        assert_eq!(u.geometry_name(), "POLYGON");
        assert!((u.area() - 21.0).abs() < 1e-12);
        let e = u.envelope();
        assert_eq!((e.MinX, e.MaxX, e.MinY, e.MaxY), (0.0, 7.0, 0.0, 3.0));
        assert!(super::union_all(Vec::new()).is_none());
    }

    /// A strip of 10 rows of a 1 m north-up grid whose top is y = 90 (y 90..80; `rasterize_rows` shifts the
    /// geotransform to the strip) keeps, in order, the squares that reach it (one inside, one touching its top
    /// edge, one across it) and drops those above and below; a rotated grid keeps all.
    #[test]
    fn crossing_rows_keeps_what_reaches_the_strip_in_order() {
        let sq = |y0: f64, y1: f64| {
            let wkt = format!("POLYGON((0 {y0},5 {y0},5 {y1},0 {y1},0 {y0}))");
            Geometry::from_wkt(&wkt).unwrap()
        };
        let geoms = vec![
            sq(95.0, 99.0),
            sq(82.0, 85.0),
            sq(90.0, 93.0),
            sq(70.0, 79.0),
            sq(60.0, 95.0),
        ];
        let gt = [0.0, 1.0, 0.0, 90.0, 0.0, -1.0];
        let (kept, values) = super::crossing_rows(&geoms, &[1.0, 2.0, 3.0, 4.0, 5.0], &gt, 10);
        assert_eq!(values, vec![2.0, 3.0, 5.0]);
        assert_eq!(kept.len(), 3);
        let rotated = [0.0, 1.0, 0.1, 90.0, 0.0, -1.0];
        assert_eq!(
            super::crossing_rows(&geoms, &[0.0; 5], &rotated, 10)
                .0
                .len(),
            5
        );
    }

    /// Groups dissolved on a pool of 2 give each group's `union_all` here, byte for byte in WKB: a block of
    /// squares, a group of one (itself), an empty group (none) and two overlapping squares (area 1.75).
    #[test]
    fn union_groups_match_each_groups_union_all() {
        let sq = |x: f64, y: f64, d: f64| {
            let wkt = format!(
                "POLYGON(({x} {y},{} {y},{} {},{x} {},{x} {y}))",
                x + d,
                x + d,
                y + d,
                y + d
            );
            Geometry::from_wkt(&wkt).unwrap()
        };
        let groups = || -> Vec<Vec<Geometry>> {
            vec![
                (0..21)
                    .map(|i| sq((i % 7) as f64, (i / 7) as f64, 1.0))
                    .collect(),
                vec![sq(5.0, 5.0, 2.0)],
                Vec::new(),
                vec![sq(0.0, 0.0, 1.0), sq(0.5, 0.5, 1.0)],
            ]
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let wkb = |g: Vec<Option<Geometry>>| -> Vec<Option<Vec<u8>>> {
            g.iter()
                .map(|g| g.as_ref().map(|g| g.wkb().unwrap()))
                .collect()
        };
        let got = pool.install(|| wkb(super::union_groups(groups())));
        let want = wkb(groups().into_iter().map(super::union_all).collect());
        assert_eq!(got, want);
        assert!(got[2].is_none());
        let overlap = Geometry::from_wkb(got[3].as_ref().unwrap()).unwrap();
        assert!((overlap.area() - 1.75).abs() < 1e-12);
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn subdataset_names_are_recognised_and_joined() {
        assert_eq!(
            subdataset_parts(r#"NETCDF:"era5.nc":t2m"#),
            Some(("NETCDF", "era5.nc", "t2m"))
        );
        assert_eq!(
            subdataset_parts(r#"HDF5:"f.h5"://g/v"#),
            Some(("HDF5", "f.h5", "//g/v"))
        );
        assert_eq!(subdataset_parts("C:/data/x.tif"), None);
        assert_eq!(subdataset_parts("data/x.tif"), None);
        assert_eq!(
            join_source(Path::new("/d"), r#"NETCDF:"era5.nc":t2m"#),
            PathBuf::from(r#"NETCDF:"/d/era5.nc":t2m"#)
        );
        assert_eq!(
            join_source(Path::new("/d"), "x.tif"),
            PathBuf::from("/d/x.tif")
        );
        assert_eq!(
            join_source(Path::new("/d"), "/vsicurl/https://h/x.tif"),
            PathBuf::from("/vsicurl/https://h/x.tif")
        );
        // A missing file behind a subdataset name is named.
        let e = open(Path::new(r#"NETCDF:"/nonexistent/era5.nc":t2m"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/era5.nc") && e.contains("does not exist"),
            "{e}"
        );
    }
}

/// Read a whole file through GDAL's virtual file systems (/vsicurl/ for http(s), /vsis3/, /vsiaz/ ...), with
/// GDAL's HTTP retries and credentials from its usual environment; at most `max_bytes`.
pub fn read_vsi(path: &str, max_bytes: i64) -> Result<Vec<u8>> {
    init();
    let c = std::ffi::CString::new(path)
        .map_err(|_| Error::Usage(format!("{path}: a NUL byte in the path")))?;
    let mut buf: *mut u8 = std::ptr::null_mut();
    let mut n: u64 = 0;
    // SAFETY: GDAL allocates `buf` (n bytes plus a terminating NUL) on success; we copy it and free it with
    // VSIFree, GDAL's allocator.
    let ok = unsafe {
        gdal_sys::VSIIngestFile(
            std::ptr::null_mut(),
            c.as_ptr(),
            &mut buf,
            &mut n,
            max_bytes,
        )
    };
    if ok == 0 || buf.is_null() {
        return Err(Error::input(
            Path::new(path),
            "cannot be read (missing, not reachable after GDAL's retries, or larger than allowed)",
        ));
    }
    let bytes = unsafe { std::slice::from_raw_parts(buf, n as usize).to_vec() };
    unsafe { gdal_sys::VSIFree(buf as *mut std::ffi::c_void) };
    Ok(bytes)
}

/// GDAL's HTTP result (cpl_http.h, unchanged since GDAL 1.x); gdal-sys does not bind cpl_http.h.
#[repr(C)]
struct CplHttpResult {
    n_status: std::ffi::c_int,
    content_type: *mut std::ffi::c_char,
    err_buf: *mut std::ffi::c_char,
    n_data_len: std::ffi::c_int,
    n_data_alloc: std::ffi::c_int,
    data: *mut u8,
    headers: *mut *mut std::ffi::c_char,
    n_mime_part_count: std::ffi::c_int,
    mime_parts: *mut std::ffi::c_void,
}

extern "C" {
    fn CPLHTTPFetch(
        url: *const std::ffi::c_char,
        options: *const *const std::ffi::c_char,
    ) -> *mut CplHttpResult;
    fn CPLHTTPDestroyResult(result: *mut CplHttpResult);
}

/// POST a JSON body to `url` through GDAL's HTTP client (its proxy, authentication and retry settings: the
/// same 4 retries of transient failures as reads) and return the response body.
pub fn http_post_json(url: &str, body: &str) -> Result<Vec<u8>> {
    init();
    let retries =
        gdal::config::get_config_option("GDAL_HTTP_MAX_RETRY", "4").unwrap_or_else(|_| "4".into());
    let delay = gdal::config::get_config_option("GDAL_HTTP_RETRY_DELAY", "0.5")
        .unwrap_or_else(|_| "0.5".into());
    let opts = [
        format!("POSTFIELDS={body}"),
        "HEADERS=Content-Type: application/json".to_string(),
        format!("MAX_RETRY={retries}"),
        format!("RETRY_DELAY={delay}"),
    ];
    let c_url = CString::new(url).map_err(|_| Error::Usage(format!("{url}: a NUL byte")))?;
    let c_opts: Vec<CString> = opts
        .iter()
        .map(|o| CString::new(o.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Usage(format!("{url}: a NUL byte in the request")))?;
    let mut ptrs: Vec<*const std::ffi::c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(ptr::null());
    // SAFETY: the URL and the NULL-terminated option list outlive the call; GDAL allocates the result, which
    // is read and then released with CPLHTTPDestroyResult.
    unsafe {
        let r = CPLHTTPFetch(c_url.as_ptr(), ptrs.as_ptr());
        if r.is_null() {
            return Err(Error::input(
                Path::new(url),
                "the POST request failed (GDAL built without curl?)",
            ));
        }
        let res = &*r;
        let err = (!res.err_buf.is_null())
            .then(|| CStr::from_ptr(res.err_buf).to_string_lossy().into_owned());
        let out = if res.n_status != 0 || err.is_some() {
            Err(Error::input(
                Path::new(url),
                format!(
                    "the POST request failed: {}",
                    err.unwrap_or_else(|| format!("status {}", res.n_status))
                ),
            ))
        } else if res.data.is_null() {
            Ok(Vec::new())
        } else {
            Ok(std::slice::from_raw_parts(res.data, res.n_data_len as usize).to_vec())
        };
        CPLHTTPDestroyResult(r);
        out
    }
}

/// What identifies the version of a remote file (a /vsicurl/, /vsis3/ ... path): its ETag, else its
/// Last-Modified date, with its size, from the HTTP headers GDAL's request returned. ("size N" alone when the
/// server sends neither: such a file's changes are seen only when its size changes.)
pub fn remote_version(path: &str) -> Result<(u64, String)> {
    init();
    let c =
        CString::new(path).map_err(|_| Error::Usage(format!("{path}: a NUL byte in the path")))?;
    let domain = CString::new("HEADERS").expect("no NUL");
    // SAFETY: GDAL returns a NULL-terminated list of "KEY=VALUE" strings owned by the caller (freed below).
    let headers: Vec<(String, String)> = unsafe {
        let list = gdal_sys::VSIGetFileMetadata(c.as_ptr(), domain.as_ptr(), std::ptr::null_mut());
        if list.is_null() {
            return Err(Error::input(
                Path::new(path),
                "cannot be reached for its version (no HTTP headers after GDAL's retries)",
            ));
        }
        let mut v = Vec::new();
        let mut i = 0;
        while !(*list.add(i)).is_null() {
            let kv = CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned();
            if let Some((k, val)) = kv.split_once('=') {
                v.push((k.trim().to_ascii_lowercase(), val.trim().to_string()));
            }
            i += 1;
        }
        gdal_sys::CSLDestroy(list);
        v
    };
    let get = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    let size = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let version = match (get("etag"), get("last-modified")) {
        (Some(e), _) => format!("ETag {e}"),
        (None, Some(m)) => format!("Last-Modified {m}"),
        (None, None) => format!("size {size}"),
    };
    Ok((size, version))
}

#[cfg(test)]
mod closure_tests {
    use super::*;

    #[test]
    fn stac_documents_bring_their_local_assets_and_skip_remote_ones() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("a.tif"), b"x").unwrap();
        std::fs::write(d.join("b.nc"), b"x").unwrap();
        // A Zarr store: its chunk files are inputs as they are (a chunk is no dataset of its own).
        std::fs::create_dir_all(d.join("s.zarr/tp")).unwrap();
        std::fs::write(d.join("s.zarr/.zgroup"), b"{}").unwrap();
        std::fs::write(d.join("s.zarr/tp/.zarray"), b"{}").unwrap();
        std::fs::write(d.join("s.zarr/tp/0.0.0"), b"{\x08\xf3\x06").unwrap();
        std::fs::write(
            d.join("item.json"),
            r#"{"type": "Feature", "stac_version": "1.0.0", "links": [],
               "assets": {"a": {"href": "a.tif"}, "r": {"href": "https://h.org/r.tif"}}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("drivers.toml"),
            // A CRS such as "EPSG:4326" has the shape of a subdataset name (DRIVER:file) but names no file.
            "[raster.tmean]\nfile = 'NETCDF:\"b.nc\":t2m'\nunit = \"degC\"\ncrs = \"EPSG:4326\"\n\
             [raster.precip]\nfile = 'ZARR:\"s.zarr\":/tp'\nunit = \"mm\"\n",
        )
        .unwrap();
        // An item collection whose features carry the version; a zones GeoJSON with an "href" in a property
        // is not STAC (its features have neither a version nor assets), so it brings no file.
        std::fs::write(d.join("c.tif"), b"x").unwrap();
        std::fs::write(
            d.join("items.json"),
            r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "stac_version": "1.0.0",
               "geometry": null, "assets": {"c": {"href": "c.tif"}}}]}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("zones.geojson"),
            r#"{"type": "FeatureCollection", "features": [{"type": "Feature",
               "geometry": {"type": "Point", "coordinates": [0, 0]}, "properties": {"href": "b.nc"}}]}"#,
        )
        .unwrap();
        assert!(!may_be_stac(
            &std::fs::read_to_string(d.join("zones.geojson")).unwrap()
        ));
        let got = input_closure(
            &[
                d.join("item.json"),
                d.join("items.json"),
                d.join("zones.geojson"),
                d.join("drivers.toml"),
                PathBuf::from("https://h.org/x.json"),
            ],
            true,
        )
        .unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "a.tif",
                "b.nc",
                "c.tif",
                "drivers.toml",
                "item.json",
                "items.json",
                ".zgroup",
                ".zarray",
                "0.0.0",
                "zones.geojson"
            ],
            "{got:?}"
        );
    }
}

#[cfg(test)]
mod read_bands_tests {
    use super::*;
    use gdal::raster::RasterCreationOptions;

    /// A pixel-interleaved, tiled, DEFLATE UInt16 file (the layout of the peer's Sentinel-2 scenes) with value
    /// 1000 b + 10 row + col in band b.
    fn interleaved(path: &Path) -> Grid {
        let (w, h) = (40usize, 30usize);
        let mut co = RasterCreationOptions::new();
        for (k, v) in [
            ("INTERLEAVE", "PIXEL"),
            ("TILED", "YES"),
            ("BLOCKXSIZE", "16"),
            ("BLOCKYSIZE", "16"),
            ("COMPRESS", "DEFLATE"),
        ] {
            co.add_name_value(k, v).unwrap();
        }
        let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = driver
            .create_with_band_type_with_options::<u16, _>(path, w, h, 3, &co)
            .unwrap();
        let srs = gdal::spatial_ref::SpatialRef::from_epsg(32652).unwrap();
        ds.set_spatial_ref(&srs).unwrap();
        ds.set_geo_transform(&[300000.0, 10.0, 0.0, 4150000.0, 0.0, -10.0])
            .unwrap();
        for b in 1..=3 {
            let data: Vec<u16> = (0..w * h)
                .map(|i| (1000 * b + 10 * (i / w) + i % w) as u16)
                .collect();
            let mut buf = gdal::raster::Buffer::new((w, h), data);
            ds.rasterband(b)
                .unwrap()
                .write((0, 0), (w, h), &mut buf)
                .unwrap();
        }
        drop(ds);
        Grid::from_raster(path).unwrap()
    }

    /// Several bands in one call, as float64 and as integers, in the order asked: the values written.
    #[test]
    fn bands_read_together_are_the_values_written_in_the_order_asked() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("scene.tif");
        let grid = interleaved(&path);
        let bands: Vec<BandRequest> = [3, 1]
            .iter()
            .map(|&index| BandRequest {
                index,
                name: format!("b{index}"),
            })
            .collect();
        let r = GridReader::new(&path, &bands, &grid, Resampling::Nearest, None, f64::NAN).unwrap();
        assert!(r.is_direct());
        let w = Window {
            col0: 5,
            row0: 12,
            ncols: 20,
            nrows: 10,
        };
        let mut f = vec![0f64; 2 * w.len()];
        r.read_bands(&[0, 1], &w, &mut f).unwrap();
        let mut q = vec![0i32; 2 * w.len()];
        r.read_bands(&[1, 0], &w, &mut q).unwrap();
        for i in 0..w.len() {
            let (row, col) = (w.row0 + i / w.ncols, w.col0 + i % w.ncols);
            let v = |b: usize| 1000 * b + 10 * row + col;
            assert_eq!(f[i], v(3) as f64);
            assert_eq!(f[w.len() + i], v(1) as f64);
            assert_eq!(q[i], v(1) as i32);
            assert_eq!(q[w.len() + i], v(3) as i32);
        }
    }
}

#[cfg(test)]
mod map_frame_tests {
    /// A custom projection without a name is labelled by its definition; an EPSG one by its name and code.
    #[test]
    fn a_custom_crs_is_labelled_by_its_definition() {
        let custom = gdal::spatial_ref::SpatialRef::from_proj4(
            "+proj=laea +lat_0=50.72 +lon_0=-3.51 +datum=WGS84 +units=m",
        )
        .unwrap();
        let grid = |wkt: String| super::Grid {
            crs_wkt: wkt,
            gt: [-3540.0, 30.0, 0.0, 3360.0, 0.0, -30.0],
            width: 10,
            height: 10,
        };
        let f = super::MapFrame::of(&grid(custom.to_wkt().unwrap())).unwrap();
        assert!(
            f.crs
                .starts_with("custom CRS +proj=laea +lat_0=50.72 +lon_0=-3.51"),
            "{}",
            f.crs
        );
        let utm = gdal::spatial_ref::SpatialRef::from_epsg(32630).unwrap();
        let f = super::MapFrame::of(&grid(utm.to_wkt().unwrap())).unwrap();
        assert_eq!(f.crs, "WGS 84 / UTM zone 30N (EPSG:32630)");
    }
}

#[cfg(test)]
mod valid_pixel_tests {
    use super::*;
    use gdal::raster::RasterCreationOptions;

    /// A tiled Float32 raster of 40 x 50 px in blocks of 16 rows, no data -9999, every pixel `fill` but for
    /// `one` (row, col, value).
    fn raster(path: &Path, fill: f32, one: Option<(usize, usize, f32)>) {
        init();
        let (w, h) = (40usize, 50usize);
        let mut co = RasterCreationOptions::new();
        for (k, v) in [("TILED", "YES"), ("BLOCKXSIZE", "16"), ("BLOCKYSIZE", "16")] {
            co.add_name_value(k, v).unwrap();
        }
        let d = DriverManager::get_driver_by_name("GTiff").unwrap();
        let ds = d
            .create_with_band_type_with_options::<f32, _>(path, w, h, 1, &co)
            .unwrap();
        let mut b = ds.rasterband(1).unwrap();
        b.set_no_data_value(Some(-9999.0)).unwrap();
        let mut v = vec![fill; w * h];
        if let Some((r, c, x)) = one {
            v[r * w + c] = x;
        }
        let mut buf = gdal::raster::Buffer::new((w, h), v);
        b.write((0, 0), (w, h), &mut buf).unwrap();
    }

    #[test]
    fn a_valid_pixel_is_found_in_any_block_and_nodata_or_nan_never_count() {
        let t = tempfile::tempdir().unwrap();
        let cases = [
            ("nodata_only", -9999.0, None, false),
            ("nan_only", f32::NAN, None, false),
            // The only valid pixel in the last row (the last, partial row of blocks).
            ("last_row", f32::NAN, Some((49, 39, 0.0)), true),
            ("first_pixel", -9999.0, Some((0, 0, -1.5)), true),
        ];
        for (name, fill, one, want) in cases {
            let p = t.path().join(format!("{name}.tif"));
            raster(&p, fill, one);
            assert_eq!(has_valid_pixel(&p, 1).unwrap(), want, "{name}");
            // Windows of one 16 x 16 block each: the last window of the last row (8 x 2 px) is reached too.
            assert_eq!(
                has_valid_pixel_within(&p, 1, 1).unwrap(),
                want,
                "{name} by blocks"
            );
        }
    }
}

#[cfg(test)]
mod bounds_tests {
    /// Hand boxes: overlapping, touching along an edge (no common area) and apart.
    #[test]
    fn disjoint_bounds_share_no_area() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!(!super::disjoint(a, [5.0, 5.0, 15.0, 15.0]));
        assert!(super::disjoint(a, [10.0, 0.0, 20.0, 10.0]));
        assert!(super::disjoint(a, [0.0, -9.0, 10.0, -1.0]));
    }

    /// A latitude-longitude file of 0..360 holds Exeter (-3.5 E) at 356.5; a UTM grid's longitudes run past
    /// 180 only numerically (metres), so nothing moves there; east of the file's west edge nothing moves.
    /// Across it, bounds move only in a file whose 360 columns go round the globe.
    #[test]
    fn western_bounds_move_into_a_0_to_360_file() {
        let g = |crs: &str, gt: [f64; 6], w: usize| super::Grid {
            crs_wkt: super::crs_wkt(crs).unwrap(),
            gt,
            width: w,
            height: 10,
        };
        let global = g("EPSG:4326", [0.0, 1.0, 0.0, 90.0, 0.0, -1.0], 360);
        let exeter = [-3.6, 50.6, -3.4, 50.8];
        assert!(super::longitudes_past_180(&global));
        assert_eq!(
            super::in_raster_longitudes(&global, exeter),
            [356.4, 50.6, 356.6, 50.8]
        );
        // Straddling 0 degrees: moved in a file round the globe (its columns continue past 360); left as it
        // is in one that is not (the coverage check then says how much is covered).
        let greenwich = [-0.5, 51.0, 0.5, 51.5];
        assert!(super::wraps_globe(&global));
        assert_eq!(
            super::in_raster_longitudes(&global, greenwich),
            [359.5, 51.0, 360.5, 51.5]
        );
        let atlantic = g("EPSG:4326", [0.0, 1.0, 0.0, 90.0, 0.0, -1.0], 359);
        assert!(super::longitudes_past_180(&atlantic) && !super::wraps_globe(&atlantic));
        assert_eq!(super::in_raster_longitudes(&atlantic, greenwich), greenwich);
        let utm = g(
            "EPSG:32630",
            [400000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0],
            100,
        );
        assert!(!super::longitudes_past_180(&utm));
        let korea = g("EPSG:4326", [-180.0, 1.0, 0.0, 90.0, 0.0, -1.0], 360);
        assert!(!super::longitudes_past_180(&korea));
    }
}
