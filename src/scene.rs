//! Sensors, masks and scene stacks. A sensor profile (models/sensors/*.toml) says how a product's digital
//! numbers become reflectance and which QA values mean cloud, shadow, snow or no data. A stack manifest lists
//! the dated acquisitions with their files and band names. `SceneReader` reads one acquisition on the
//! analysis grid, strip by strip, as reflectance with a clear-sky mask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::error::{Error, Problems, Result};
use crate::io::{self, BandRequest, Grid, GridReader, RasterInfo, Resampling, Window};
use crate::models;

/// How the QA band is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QaKind {
    /// Each QA value is a class (Sentinel-2 SCL, categorical Fmask): mask the listed values.
    Classes,
    /// QA values are bit flags (HLS Fmask, Landsat QA_PIXEL): mask when any listed bit is set.
    Bits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetRule {
    /// First acquisition date the rule applies to.
    pub from: NaiveDate,
    pub dn_add_offset: f64,
    pub citation: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReflectanceSpec {
    /// reflectance = (DN + dn_add_offset) * scale + offset
    pub scale: f64,
    pub offset: f64,
    #[serde(default)]
    pub dn_add_offset: f64,
    /// Use the file's own GDAL scale/offset when it declares them.
    #[serde(default)]
    pub scale_from_file: bool,
    #[serde(default)]
    pub dn_nodata: Vec<f64>,
    #[serde(default)]
    pub dn_add_offset_rule: Vec<OffsetRule>,
    pub citation: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaSpec {
    pub band: String,
    pub kind: QaKind,
    /// Value given to QA pixels that the source does not cover after warping.
    pub fill: i64,
    /// QA values meaning "no data".
    #[serde(default)]
    pub nodata: Vec<i64>,
    pub default_mask: Vec<String>,
    /// Category name -> class values (kind = classes) or bit numbers (kind = bits).
    pub categories: BTreeMap<String, Vec<i64>>,
    pub citation: String,
}

/// A product's file-naming convention: a regular expression with named groups `band` and either `date`
/// (YYYYMMDD) or `yeardoy` (YYYYDDD); optional `tile` and `res` (metres; the finest file of a band wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamingSpec {
    pub pattern: String,
    pub citation: String,
}

/// A sensor profile: one file under models/sensors/.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorProfile {
    pub name: String,
    pub description: String,
    pub citation: String,
    /// Band letter (Awesome Spectral Indices standard) -> the product's band name.
    pub bands: BTreeMap<String, String>,
    pub reflectance: ReflectanceSpec,
    pub qa: Option<QaSpec>,
    /// How the product names its files, for recognising a stack from a folder.
    pub naming: Option<NamingSpec>,
    /// Where the profile came from (models/sensors/NAME.toml or the user's file).
    #[serde(skip)]
    pub source: PathBuf,
}

impl SensorProfile {
    /// All built-in profiles, sorted by name.
    pub fn builtin() -> Result<Vec<SensorProfile>> {
        models::builtin_entries()
    }

    /// A built-in profile by name, or a profile file given by path (relative to `base`).
    pub fn resolve(name_or_path: &str, base: &Path) -> Result<SensorProfile> {
        models::resolve_entry(name_or_path, base)
    }

    fn check(&self) -> Result<()> {
        if let Some(n) = &self.naming {
            let re = regex::Regex::new(&n.pattern)
                .map_err(|e| Error::config(&self.source, format!("naming.pattern: {e}")))?;
            let names: Vec<&str> = re.capture_names().flatten().collect();
            if !names.contains(&"band") || !(names.contains(&"date") || names.contains(&"yeardoy"))
            {
                return Err(Error::config(
                    &self.source,
                    "naming.pattern needs the named groups `band` and `date` or `yeardoy`",
                ));
            }
        }
        let r = &self.reflectance;
        if !(r.scale.is_finite() && r.scale != 0.0) {
            return Err(Error::config(
                &self.source,
                "reflectance.scale must be a non-zero number",
            ));
        }
        if let Some(qa) = &self.qa {
            for c in &qa.default_mask {
                if !qa.categories.contains_key(c) {
                    return Err(Error::config(
                        &self.source,
                        format!("qa.default_mask names '{c}', which is not in qa.categories"),
                    ));
                }
            }
            if qa.kind == QaKind::Bits {
                if let Some((c, b)) = qa
                    .categories
                    .iter()
                    .flat_map(|(c, v)| v.iter().map(move |b| (c, b)))
                    .find(|(_, b)| !(0..63).contains(*b))
                {
                    return Err(Error::config(
                        &self.source,
                        format!("qa.categories.{c}: bit {b} is out of range 0..62"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// DN offset added before scaling for an acquisition on `date` (the last rule whose start is on or
    /// before the date wins).
    pub fn dn_add_offset_for(&self, date: NaiveDate) -> f64 {
        let mut off = self.reflectance.dn_add_offset;
        let mut rules: Vec<&OffsetRule> = self.reflectance.dn_add_offset_rule.iter().collect();
        rules.sort_by_key(|r| r.from);
        for r in rules {
            if date >= r.from {
                off = r.dn_add_offset;
            }
        }
        off
    }
}

impl models::NamedEntry for SensorProfile {
    const KIND: &'static str = "sensor";
    const FOLDER: &'static str = "sensors/";
    fn name(&self) -> &str {
        &self.name
    }
    fn set_source(&mut self, path: PathBuf) {
        self.source = path;
    }
    fn validate(&self) -> Result<()> {
        self.check()
    }
}

/// A compiled clear-sky test for QA values.
#[derive(Debug, Clone)]
pub struct QaMask {
    kind: QaKind,
    /// Class values to mask (classes) — sorted.
    values: Vec<i64>,
    /// Bits to mask (bits).
    bits: i64,
    nodata: Vec<i64>,
    /// Names of the masked categories (for metadata).
    pub categories: Vec<String>,
}

impl QaMask {
    pub fn new(qa: &QaSpec, categories: &[String], origin: &Path) -> Result<QaMask> {
        let mut values = Vec::new();
        let mut bits = 0i64;
        for c in categories {
            let v = qa.categories.get(c).ok_or_else(|| {
                Error::config(
                    origin,
                    format!(
                        "mask category '{c}' is unknown; this sensor's categories are: {}",
                        qa.categories.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            match qa.kind {
                QaKind::Classes => values.extend(v.iter().copied()),
                QaKind::Bits => {
                    for b in v {
                        bits |= 1i64 << b;
                    }
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(QaMask {
            kind: qa.kind,
            values,
            bits,
            nodata: qa.nodata.clone(),
            categories: categories.to_vec(),
        })
    }

    /// Whether a QA value is clear (neither no data nor a masked category).
    #[inline]
    pub fn is_clear(&self, v: i32) -> bool {
        let v = v as i64;
        if self.nodata.contains(&v) {
            return false;
        }
        match self.kind {
            QaKind::Classes => self.values.binary_search(&v).is_err(),
            QaKind::Bits => v & self.bits == 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Stack manifest

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    /// Built-in sensor name or path to a profile TOML (relative to the manifest).
    sensor: String,
    /// Mask categories to use instead of the profile's default.
    mask: Option<Vec<String>>,
    /// Overrides of the profile's letter -> band name mapping.
    #[serde(default)]
    bands: BTreeMap<String, String>,
    #[serde(rename = "scene")]
    scenes: Vec<SceneEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SceneEntry {
    /// Acquisition date, YYYY-MM-DD.
    date: NaiveDate,
    /// Optional identifier (defaults to the date).
    id: Option<String>,
    /// One multi-band file ...
    file: Option<String>,
    /// ... whose band names are these (default: the file's band descriptions).
    bands: Option<Vec<String>>,
    /// Or one file per band name: a single-band file's path, or `{ path = "...", band = N }` for band N
    /// (1-based) of a multi-band file, such as one date of a time-series raster.
    files: Option<BTreeMap<String, FileRef>>,
    /// Override of the DN offset (for example a Sentinel-2 BOA_ADD_OFFSET read from the product metadata).
    dn_add_offset: Option<f64>,
}

/// A band file in a manifest's `files` table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileRef {
    Path(String),
    Band { path: String, band: usize },
}

/// Where a band of a scene is stored.
#[derive(Debug, Clone)]
pub struct BandSource {
    pub path: PathBuf,
    /// 1-based band number in that file.
    pub index: usize,
    /// The file's GDAL scale/offset for that band, if declared.
    pub file_scale: Option<(f64, f64)>,
    pub file_nodata: Option<f64>,
}

/// The files of one acquisition covering one tile (a product granule, a scene footprint).
#[derive(Debug, Clone)]
pub struct Tile {
    /// Band name -> where it is stored.
    pub bands: BTreeMap<String, BandSource>,
    pub dn_add_offset: f64,
    /// File infos (CRS, extent) of every file of the tile.
    pub files: Vec<RasterInfo>,
}

/// One dated acquisition: one tile, or several tiles of the same date (manifest entries with the same date)
/// that are mosaicked on the analysis grid: per pixel, the first tile (in manifest order) with data wins,
/// and its own QA decides the mask.
#[derive(Debug, Clone)]
pub struct Scene {
    pub id: String,
    pub date: NaiveDate,
    pub tiles: Vec<Tile>,
}

impl Scene {
    /// Every file of every tile.
    pub fn files(&self) -> impl Iterator<Item = &RasterInfo> {
        self.tiles.iter().flat_map(|t| t.files.iter())
    }
}

/// A stack of dated acquisitions from one sensor profile.
#[derive(Debug, Clone)]
pub struct Stack {
    pub manifest: PathBuf,
    pub profile: SensorProfile,
    pub scenes: Vec<Scene>,
    pub mask: Option<QaMask>,
}

/// A file recognised by a profile's naming convention.
struct Recognised {
    date: NaiveDate,
    tile: String,
    band: String,
    res: u32,
    path: PathBuf,
}

fn recognise(re: &regex::Regex, path: &Path) -> Option<Recognised> {
    let name = path.file_name()?.to_string_lossy();
    let c = re.captures(&name)?;
    let date = if let Some(d) = c.name("date") {
        NaiveDate::parse_from_str(d.as_str(), "%Y%m%d").ok()?
    } else {
        let yd = c.name("yeardoy")?.as_str();
        NaiveDate::from_yo_opt(yd[..4].parse().ok()?, yd[4..].parse().ok()?)?
    };
    Some(Recognised {
        date,
        tile: c
            .name("tile")
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        band: c.name("band")?.as_str().to_string(),
        res: c
            .name("res")
            .and_then(|m| m.as_str().parse().ok())
            .unwrap_or(0),
        path: path.to_path_buf(),
    })
}

impl Stack {
    /// A stack manifest (TOML), a folder whose files follow a sensor's naming convention, or a STAC Item,
    /// ItemCollection or static catalog (JSON).
    pub fn open(path: &Path) -> Result<Stack> {
        let remote = crate::stac::is_remote(&path.to_string_lossy());
        if remote || (path.is_file() && crate::stac::is_json_file(path)) {
            let text = crate::stac::manifest_text(path)?;
            let origin = path.with_extension("stac-as-manifest.toml");
            let mf: ManifestFile = models::parse_toml(&text, &origin)?;
            let base = path.parent().unwrap_or(Path::new("."));
            return Self::from_manifest(mf, &origin, base);
        }
        if path.is_dir() {
            let (_, manifest) = Self::recognise_dir(path, None, false)?;
            let tmp = path.join(".carbonmap-recognised-stack.toml");
            // Parse from text with paths relative to the folder; nothing is written into the folder.
            let mf: ManifestFile = models::parse_toml(&manifest, &tmp)?;
            Self::from_manifest(mf, &tmp, path)
        } else {
            Self::load(path)
        }
    }

    /// A folder of dated multi-band rasters of one sensor (any naming): each GeoTIFF's date from `pattern` (a
    /// regular expression on the file name with a named group `date`, YYYY-MM-DD or YYYYMMDD) or else from its
    /// metadata (DATETIME, TIFFTAG_DATETIME, ACQUISITION_DATE, SENSING_TIME, datetime); band names from the band
    /// descriptions. With a pattern, files it does not match are not scenes; without one, every GeoTIFF must
    /// be dated. Returns the manifest text; every file without a date or without band descriptions is listed
    /// in one error.
    pub fn recognise_dated(
        dir: &Path,
        sensor: &str,
        pattern: Option<&str>,
        dates: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<String> {
        let re = match pattern {
            Some(p) => Some(
                regex::Regex::new(p).map_err(|e| Error::Usage(format!("--date-pattern: {e}")))?,
            ),
            None => None,
        };
        if let Some(r) = &re {
            if !r.capture_names().any(|n| n == Some("date")) {
                return Err(Error::Usage(
                    "--date-pattern needs a named group (?P<date>...)".into(),
                ));
            }
        }
        SensorProfile::resolve(sensor, dir)?;
        let parse = |t: &str| {
            let t = t.trim();
            let d = t.get(..10).unwrap_or(t).replace(':', "-");
            NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .or_else(|_| NaiveDate::parse_from_str(t.get(..8).unwrap_or(t), "%Y%m%d"))
                .ok()
        };
        let mut scenes = Vec::new();
        let mut problems = Vec::new();
        for f in crate::io::files_under(dir)? {
            let ext = f
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            if !matches!(ext.as_deref(), Some("tif") | Some("tiff")) {
                continue;
            }
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let info = RasterInfo::read(&f)?;
            let date = match &re {
                Some(r) => r
                    .captures(&name)
                    .and_then(|c| c.name("date"))
                    .and_then(|m| parse(m.as_str())),
                None => [
                    "DATETIME",
                    "TIFFTAG_DATETIME",
                    "ACQUISITION_DATE",
                    "SENSING_TIME",
                    "datetime",
                ]
                .iter()
                .find_map(|k| info.metadata.get(*k).and_then(|v| parse(v))),
            };
            let Some(date) = date else {
                // A pattern selects the scenes: other files are not scenes. Without one, every GeoTIFF is.
                if re.is_none() {
                    problems.push(format!("{name}: no date (no DATETIME, TIFFTAG_DATETIME, ACQUISITION_DATE or SENSING_TIME tag; give --date-pattern)"));
                }
                continue;
            };
            if info.bands.iter().any(|b| b.description.is_empty()) {
                problems.push(format!("{name}: bands without descriptions (name them in a manifest with bands = [...])"));
                continue;
            }
            if dates.is_none_or(|(a, b)| date >= a && date <= b) {
                scenes.push((date, f));
            }
        }
        if !problems.is_empty() {
            return Err(Error::input(dir, problems.join("; ")));
        }
        if scenes.is_empty() {
            return Err(Error::input(
                dir,
                "no dated GeoTIFF found (in the date range)",
            ));
        }
        scenes.sort();
        let mut m = toml::Table::new();
        m.insert("sensor".into(), sensor.into());
        let list = scenes
            .iter()
            .map(|(d, f)| {
                let mut t = toml::Table::new();
                t.insert("date".into(), d.to_string().into());
                t.insert("file".into(), f.display().to_string().into());
                toml::Value::Table(t)
            })
            .collect();
        m.insert("scene".into(), toml::Value::Array(list));
        let body = toml::to_string(&m).map_err(|e| Error::input(dir, format!("manifest: {e}")))?;
        Ok(format!(
            "# dated rasters recognised by carbonmap in {}\n{body}",
            dir.display()
        ))
    }

    /// Recognise a stack in a folder (searched recursively) from the built-in profiles' naming conventions.
    /// Returns the profile name and an equivalent manifest text (paths relative to the folder, or absolute).
    /// With `dates` (first, last; inclusive), only acquisitions in that range are kept.
    pub fn recognise_dir(
        dir: &Path,
        dates: Option<(NaiveDate, NaiveDate)>,
        absolute: bool,
    ) -> Result<(String, String)> {
        if !dir.is_dir() {
            return Err(Error::input(
                dir,
                if dir.exists() {
                    "is a file; expected a folder of scenes (or give a stack manifest with --stack)"
                } else {
                    "folder does not exist"
                },
            ));
        }
        let files = crate::io::files_under(dir)?;
        let mut best: Option<(SensorProfile, Vec<Recognised>)> = None;
        for p in SensorProfile::builtin()? {
            let Some(n) = &p.naming else { continue };
            let re = regex::Regex::new(&n.pattern).expect("validated");
            let hits: Vec<Recognised> = files.iter().filter_map(|f| recognise(&re, f)).collect();
            if !hits.is_empty() && best.as_ref().is_none_or(|(_, b)| hits.len() > b.len()) {
                best = Some((p, hits));
            }
        }
        let Some((profile, hits)) = best else {
            return Err(Error::input(dir, "no file follows a known sensor's naming convention (HLS, Landsat C2 L2, Sentinel-2 SAFE, LEDAPS scene ids); write a stack manifest instead"));
        };
        // (date, tile) -> band -> (res, path), keeping the finest resolution of each band. Several tiles of one
        // date become several [[scene]] entries with that date, which the stack mosaics.
        let mut by_tile: BTreeMap<(NaiveDate, String), BTreeMap<String, (u32, PathBuf)>> =
            BTreeMap::new();
        let (n_all, hits): (usize, Vec<Recognised>) = (
            hits.len(),
            hits.into_iter()
                .filter(|h| dates.is_none_or(|(a, b)| h.date >= a && h.date <= b))
                .collect(),
        );
        if hits.is_empty() {
            let (a, b) = dates.expect("hits were found before filtering");
            return Err(Error::input(
                dir,
                format!(
                    "none of the {n_all} {} file(s) is dated {a} to {b}",
                    profile.name
                ),
            ));
        }
        let root = if absolute {
            dir.canonicalize()
                .map_err(|e| Error::io(dir, "cannot resolve", e))?
        } else {
            PathBuf::new()
        };
        for h in hits {
            let bands = by_tile.entry((h.date, h.tile.clone())).or_default();
            let slot = bands
                .entry(h.band.clone())
                .or_insert((h.res, h.path.clone()));
            if h.res < slot.0 {
                *slot = (h.res, h.path);
            }
        }
        let mut m = format!(
            "# recognised by carbonmap from {} ({} naming)\nsensor = \"{}\"\n",
            dir.display(),
            profile.name,
            profile.name
        );
        for ((date, tile), bands) in by_tile {
            let tile_line = if tile.is_empty() {
                String::new()
            } else {
                format!("# tile {tile}\n")
            };
            m.push_str(&format!(
                "\n[[scene]]\n{tile_line}date = \"{date}\"\n[scene.files]\n"
            ));
            for (band, (_, path)) in bands {
                let rel = root.join(path.strip_prefix(dir).unwrap_or(&path));
                m.push_str(&format!("{band} = {:?}\n", rel.to_string_lossy()));
            }
        }
        Ok((profile.name, m))
    }

    /// Load a manifest and describe every file it names. All problems are collected and reported at once.
    pub fn load(manifest: &Path) -> Result<Stack> {
        let text = crate::io::read_text(
            manifest,
            "a stack manifest (TOML), a folder of scenes, or a STAC item, item collection or catalog (JSON)",
        )?;
        let text = crate::envvars::expand(&text, crate::envvars::from_env)
            .map_err(|e| Error::config(manifest, e))?;
        let mf: ManifestFile = models::parse_toml(&text, manifest)?;
        let base = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::from_manifest(mf, manifest, &base)
    }

    fn from_manifest(mf: ManifestFile, manifest: &Path, base: &Path) -> Result<Stack> {
        let mut profile = SensorProfile::resolve(&mf.sensor, base).map_err(|e| match e {
            Error::Usage(m) => Error::config(manifest, format!("sensor: {m}")),
            other => other,
        })?;
        for (letter, name) in &mf.bands {
            profile.bands.insert(letter.clone(), name.clone());
        }
        let mask = match &profile.qa {
            Some(qa) => {
                let cats = mf.mask.clone().unwrap_or_else(|| qa.default_mask.clone());
                Some(QaMask::new(qa, &cats, manifest)?)
            }
            None => {
                if mf.mask.as_ref().is_some_and(|m| !m.is_empty()) {
                    return Err(Error::config(
                        manifest,
                        format!("mask is given but sensor '{}' has no QA band", profile.name),
                    ));
                }
                None
            }
        };
        if mf.scenes.is_empty() {
            return Err(Error::config(manifest, "lists no [[scene]]"));
        }
        let mut problems = Problems::new();
        let mut scenes: Vec<Scene> = Vec::new();
        // Files opened in parallel (each opening asks PROJ for the CRS); results taken in the manifest's order.
        use rayon::prelude::*;
        let tiles: Vec<Result<Tile>> = mf
            .scenes
            .par_iter()
            .enumerate()
            .map(|(i, s)| {
                let label = format!("scene {} ({})", i + 1, s.date);
                load_tile(manifest, base, &profile, s, &label)
            })
            .collect();
        for (s, tile) in mf.scenes.iter().zip(tiles) {
            if let Some(tile) = problems.take(tile) {
                match scenes.iter_mut().find(|sc| sc.date == s.date) {
                    Some(sc) => sc.tiles.push(tile),
                    None => scenes.push(Scene {
                        id: s.id.clone().unwrap_or_else(|| s.date.to_string()),
                        date: s.date,
                        tiles: vec![tile],
                    }),
                }
            }
        }
        problems.finish()?;
        scenes.sort_by_key(|s| s.date);
        Ok(Stack {
            manifest: manifest.to_path_buf(),
            profile,
            scenes,
            mask,
        })
    }

    /// The band name the profile uses for a letter.
    pub fn band_name(&self, letter: &str) -> Option<&str> {
        self.profile.bands.get(letter).map(|s| s.as_str())
    }

    /// Check that every scene has the bands behind `letters` (with the consumer named in messages) and the
    /// QA band, that every file has a CRS, and that every file overlaps `grid`.
    pub fn check(&self, grid: &Grid, needs: &[(String, String)]) -> Result<()> {
        let mut problems = Problems::new();
        for (letter, who) in needs {
            if self.band_name(letter).is_none() {
                problems.push(Error::config(
                    &self.profile.source,
                    format!(
                        "sensor '{}' has no band for letter {letter} (needed by {who})",
                        self.profile.name
                    ),
                ));
            }
        }
        for s in &self.scenes {
            for t in &s.tiles {
                let (path, have) = tile_band_list(t);
                for (letter, who) in needs {
                    if let Some(name) = self.band_name(letter) {
                        if !t.bands.contains_key(name) {
                            problems.push(Error::band(&path, name, format!("absent from scene {} (band letter {letter}, needed by {who}); the scene has bands {have}", s.date)));
                        }
                    }
                }
                if let Some(qa) = &self.profile.qa {
                    if self.mask.is_some() && !t.bands.contains_key(&qa.band) {
                        problems.push(Error::band(&path, &qa.band, format!("QA band absent from scene {}; the scene has bands {have} (set `mask = []` in the manifest to use no mask)", s.date)));
                    }
                }
            }
            // Every file must be georeferenced; a single-tile scene must overlap the grid, and a multi-tile
            // scene needs at least one tile that does (tiles beside the area simply contribute nothing).
            let mut outside = Vec::new();
            let mut inside = 0;
            for f in s.files() {
                match f.grid() {
                    Err(e) => problems.push(e),
                    Ok(g) => match io::transform_bounds(&g.crs_wkt, &grid.crs_wkt, g.bounds()) {
                        Err(e) => problems.push(Error::input(&f.path, format!("{e}"))),
                        Ok(b) => {
                            let a = grid.bounds();
                            if crate::io::disjoint(b, a) {
                                outside.push(Error::input(&f.path, format!("does not overlap the analysis grid (file extent in grid CRS {:.1},{:.1},{:.1},{:.1}; grid {:.1},{:.1},{:.1},{:.1})", b[0], b[1], b[2], b[3], a[0], a[1], a[2], a[3])));
                            } else {
                                inside += 1;
                            }
                        }
                    },
                }
            }
            if s.tiles.len() == 1 || inside == 0 {
                for e in outside {
                    problems.push(e);
                }
            }
        }
        problems.finish()
    }
}

fn tile_band_list(t: &Tile) -> (PathBuf, String) {
    let path = t.files.first().map(|f| f.path.clone()).unwrap_or_default();
    (path, t.bands.keys().cloned().collect::<Vec<_>>().join(", "))
}

fn band_source(info: &RasterInfo, index: usize) -> BandSource {
    let b = &info.bands[index - 1];
    BandSource {
        path: info.path.clone(),
        index,
        file_scale: match (b.scale, b.offset) {
            (None, None) => None,
            (s, o) => Some((s.unwrap_or(1.0), o.unwrap_or(0.0))),
        },
        file_nodata: b.nodata,
    }
}

fn load_tile(
    manifest: &Path,
    base: &Path,
    profile: &SensorProfile,
    s: &SceneEntry,
    label: &str,
) -> Result<Tile> {
    let mut bands = BTreeMap::new();
    let mut files = Vec::new();
    match (&s.file, &s.files) {
        (Some(file), None) => {
            let path = base.join(file);
            let info = RasterInfo::read(&path)?;
            let names: Vec<String> = match &s.bands {
                Some(names) => {
                    if names.len() != info.bands.len() {
                        return Err(Error::config(manifest, format!("{label}: `bands` lists {} names but {} has {} bands", names.len(), path.display(), info.bands.len())));
                    }
                    names.clone()
                }
                None => {
                    let names: Vec<String> = info.bands.iter().map(|b| b.description.clone()).collect();
                    if names.iter().any(|n| n.is_empty()) {
                        return Err(Error::config(manifest, format!("{label}: {} has bands without descriptions; list their names with `bands = [...]`", path.display())));
                    }
                    names
                }
            };
            for (i, n) in names.iter().enumerate() {
                bands.insert(n.clone(), band_source(&info, i + 1));
            }
            files.push(info);
        }
        (None, Some(map)) => {
            for (name, file) in map {
                let (file, band) = match file {
                    FileRef::Path(p) => (p, None),
                    FileRef::Band { path, band } => (path, Some(*band)),
                };
                let path = base.join(file);
                let info = RasterInfo::read(&path)?;
                let index = match band {
                    None if info.bands.len() != 1 => {
                        return Err(Error::config(manifest, format!("{label}: files.{name} = {} has {} bands; name one with {{ path = \"...\", band = N }}", path.display(), info.bands.len())));
                    }
                    None => 1,
                    Some(b) if b == 0 || b > info.bands.len() => {
                        return Err(Error::config(manifest, format!("{label}: files.{name}: band {b} does not exist in {} ({} bands)", path.display(), info.bands.len())));
                    }
                    Some(b) => b,
                };
                bands.insert(name.clone(), band_source(&info, index));
                if !files.iter().any(|f: &RasterInfo| f.path == info.path) {
                    files.push(info);
                }
            }
        }
        _ => return Err(Error::config(manifest, format!("{label}: give exactly one of `file` (one multi-band file) or `files` (one file per band)"))),
    }
    Ok(Tile {
        bands,
        dn_add_offset: s
            .dn_add_offset
            .unwrap_or_else(|| profile.dn_add_offset_for(s.date)),
        files,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Reading a scene on the grid

/// Reads reflectance bands (by letter) and the clear-sky mask of one scene on the analysis grid, mosaicking
/// its tiles (the first tile with data at a pixel wins).
pub struct SceneReader<'a> {
    stack: &'a Stack,
    tiles: Vec<TileReader>,
}

/// The readers of one tile: one per letter, and the QA band's with its file nodata.
struct TileReader {
    refl: Vec<(GridReader, ReflConv)>,
    qa: Option<(GridReader, Option<f64>)>,
    /// When every band (and the QA band) comes from one file read directly: that file with the reflectance
    /// bands then the QA band, read in one call (a pixel-interleaved file's tiles decompressed once).
    joint: Option<GridReader>,
    /// The joint file's bands are all UInt16: read as such (exact) and converted to float64 by us.
    joint_u16: bool,
}

/// A tile's DNs, the reflectance bands one after the other: UInt16 as stored, or float64 from GDAL.
enum Raw {
    U16(Vec<u16>),
    F64(Vec<f64>),
}

/// DN -> reflectance conversion of one band.
#[derive(Debug, Clone, Copy)]
struct ReflConv {
    add: f64,
    scale: f64,
    offset: f64,
    /// The file's own nodata value for the band, if any.
    file_nodata: Option<f64>,
}

impl TileReader {
    fn new(
        stack: &Stack,
        date: NaiveDate,
        tile: &Tile,
        letters: &[String],
        grid: &Grid,
    ) -> Result<TileReader> {
        let spec = &stack.profile.reflectance;
        let first_path = || tile.files[0].path.clone();
        let mut refl = Vec::with_capacity(letters.len());
        for letter in letters {
            let name = stack.band_name(letter).ok_or_else(|| {
                Error::Usage(format!(
                    "sensor '{}' has no band for letter {letter}",
                    stack.profile.name
                ))
            })?;
            let src = tile.bands.get(name).ok_or_else(|| {
                Error::band(first_path(), name, format!("absent from scene {date}"))
            })?;
            let (scale, offset) = match (spec.scale_from_file, src.file_scale) {
                (true, Some(so)) => so,
                _ => (spec.scale, spec.offset),
            };
            let request = [BandRequest {
                index: src.index,
                name: name.to_string(),
            }];
            let reader = GridReader::new(
                &src.path,
                &request,
                grid,
                Resampling::Bilinear,
                spec.dn_nodata.first().copied(),
                f64::NAN,
            )?;
            refl.push((
                reader,
                ReflConv {
                    add: tile.dn_add_offset,
                    scale,
                    offset,
                    file_nodata: src.file_nodata,
                },
            ));
        }
        let qa = match (&stack.profile.qa, &stack.mask) {
            (Some(qa), Some(_)) => {
                let src = tile.bands.get(&qa.band).ok_or_else(|| {
                    Error::band(
                        first_path(),
                        &qa.band,
                        format!("QA band absent from scene {date}"),
                    )
                })?;
                let request = [BandRequest {
                    index: src.index,
                    name: qa.band.clone(),
                }];
                let reader = GridReader::new(
                    &src.path,
                    &request,
                    grid,
                    Resampling::Nearest,
                    src.file_nodata,
                    qa.fill as f64,
                )?;
                Some((reader, src.file_nodata))
            }
            _ => None,
        };
        let joint = joint_reader(&refl, qa.as_ref().map(|q| &q.0), grid)?;
        let joint_u16 = joint.as_ref().is_some_and(GridReader::is_direct_u16);
        Ok(TileReader {
            refl,
            qa,
            joint,
            joint_u16,
        })
    }

    /// DNs (and warped values), the reflectance bands one after the other in one buffer (UInt16 as stored when
    /// the joint file's bands all are, else float64), and the QA band's codes: from one call when the file is
    /// shared, otherwise band by band.
    fn read_raw(&self, w: &Window) -> Result<(Raw, Option<Vec<i32>>)> {
        let n = w.len();
        let nr = self.refl.len();
        match (&self.joint, self.joint_u16) {
            (Some(j), true) => return self.read_joint::<u16>(j, w).map(|(b, q)| (Raw::U16(b), q)),
            (Some(j), false) => return self.read_joint::<f64>(j, w).map(|(b, q)| (Raw::F64(b), q)),
            (None, _) => {}
        }
        let mut buf = vec![0f64; nr * n];
        for ((reader, _), part) in self.refl.iter().zip(buf.chunks_exact_mut(n.max(1))) {
            reader.read_window(0, w, part)?;
        }
        let qa = match &self.qa {
            Some((r, _)) => {
                let mut q = vec![0i32; n];
                r.read_window(0, w, &mut q)?;
                Some(q)
            }
            None => None,
        };
        Ok((Raw::F64(buf), qa))
    }

    /// Every band of the joint file in one call, as `T` (the QA band's codes after the reflectance bands, exact
    /// for integer codes): the reflectance bands' buffer and the codes.
    fn read_joint<T: gdal::raster::GdalType + Copy + Default + Into<f64>>(
        &self,
        j: &GridReader,
        w: &Window,
    ) -> Result<(Vec<T>, Option<Vec<i32>>)> {
        let (n, nr) = (w.len(), self.refl.len());
        let nb = nr + usize::from(self.qa.is_some());
        let mut buf = vec![T::default(); nb * n];
        j.read_bands(&(0..nb).collect::<Vec<_>>(), w, &mut buf)?;
        let qa = self
            .qa
            .is_some()
            .then(|| buf[nr * n..].iter().map(|&v| v.into() as i32).collect());
        buf.truncate(nr * n);
        Ok((buf, qa))
    }

    /// Reflectance planes (NaN where no data or not clear) and, per pixel, whether the tile has data there
    /// (every band present, cloudy or not).
    fn read(&self, stack: &Stack, w: &Window) -> Result<(Vec<Vec<f64>>, Vec<bool>)> {
        let n = w.len();
        let (raw, qa) = self.read_raw(w)?;
        let clear: Option<Vec<bool>> = match (&self.qa, &stack.mask, qa) {
            (Some((_, file_nd)), Some(mask), Some(q)) => Some(
                q.iter()
                    .map(|&v| mask.is_clear(v) && file_nd.is_none_or(|nd| v as f64 != nd))
                    .collect(),
            ),
            _ => None,
        };
        let mut has_data = vec![true; n];
        let planes = match raw {
            Raw::U16(dns) => self.reflectance(stack, &dns, n, clear.as_deref(), &mut has_data),
            Raw::F64(dns) => self.reflectance(stack, &dns, n, clear.as_deref(), &mut has_data),
        };
        Ok((planes, has_data))
    }

    /// Reflectance planes from the DNs of the reflectance bands (`n` pixels each, one after the other), NaN
    /// where a band has no data (`has_data` false there) or the pixel is not clear.
    fn reflectance<T: Copy + Into<f64>>(
        &self,
        stack: &Stack,
        raw: &[T],
        n: usize,
        clear: Option<&[bool]>,
        has_data: &mut [bool],
    ) -> Vec<Vec<f64>> {
        let dn_nodata = &stack.profile.reflectance.dn_nodata;
        // Reflectance and indices are computed in float64 and rounded once, to the output type.
        let mut planes = Vec::with_capacity(self.refl.len());
        for ((_, conv), dns) in self.refl.iter().zip(raw.chunks_exact(n.max(1))) {
            let plane = dns
                .iter()
                .enumerate()
                .map(|(i, &dn)| {
                    let dn: f64 = dn.into();
                    let missing = dn.is_nan()
                        || dn_nodata.contains(&dn)
                        || conv.file_nodata.is_some_and(|nd| nd == dn);
                    if missing {
                        has_data[i] = false;
                    }
                    let masked = clear.is_some_and(|c| !c[i]);
                    if missing || masked {
                        f64::NAN
                    } else {
                        (dn + conv.add) * conv.scale + conv.offset
                    }
                })
                .collect();
            planes.push(plane);
        }
        planes
    }
}

/// One reader for every band of a tile (the reflectance bands in order, then the QA band) when they all come
/// from one file read directly; None otherwise (bands in several files, or a warped file, whose QA band is
/// resampled differently).
fn joint_reader(
    refl: &[(GridReader, ReflConv)],
    qa: Option<&GridReader>,
    grid: &Grid,
) -> Result<Option<GridReader>> {
    let readers: Vec<&GridReader> = refl.iter().map(|(r, _)| r).chain(qa).collect();
    let path = readers[0].path();
    if readers.iter().any(|r| !r.is_direct() || r.path() != path) {
        return Ok(None);
    }
    let requests: Vec<BandRequest> = readers.iter().map(|r| r.requests()[0].clone()).collect();
    GridReader::new(path, &requests, grid, Resampling::Nearest, None, f64::NAN).map(Some)
}

impl<'a> SceneReader<'a> {
    /// Open the bands behind `letters` (in that order) of every tile of `scene`.
    pub fn new(
        stack: &'a Stack,
        scene: &'a Scene,
        letters: &[String],
        grid: &Grid,
    ) -> Result<SceneReader<'a>> {
        let tiles = scene
            .tiles
            .iter()
            .map(|t| TileReader::new(stack, scene.date, t, letters, grid))
            .collect::<Result<Vec<_>>>()?;
        Ok(SceneReader { stack, tiles })
    }

    /// Read rows `row0 .. row0 + nrows`: reflectance per letter (NaN where no data or not clear).
    pub fn read(&self, row0: usize, nrows: usize, width: usize) -> Result<Vec<Vec<f64>>> {
        self.read_window(&Window::rows(row0, nrows, width))
    }

    /// As `read`, for the window `w` of the grid.
    pub fn read_window(&self, w: &Window) -> Result<Vec<Vec<f64>>> {
        let (mut planes, mut has_data) = self.tiles[0].read(self.stack, w)?;
        for tile in &self.tiles[1..] {
            let (p, h) = tile.read(self.stack, w)?;
            for i in 0..has_data.len() {
                if !has_data[i] && h[i] {
                    has_data[i] = true;
                    for (dst, src) in planes.iter_mut().zip(&p) {
                        dst[i] = src[i];
                    }
                }
            }
        }
        Ok(planes)
    }
}
