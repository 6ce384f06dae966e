//! Land cover: legends (models/legends/*.toml) that map a product's codes to class names and to carbonmap's
//! vegetation types (which the NPP models key their parameters on), checking a land-cover raster against its
//! legend, and per-class area tables.

pub mod accuracy;
pub mod forest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::io::{BandRequest, GridReader, RasterInfo, Resampling};
use crate::models;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VegetationType {
    pub name: String,
    /// MCD12Q1 LC_Type2 (UMD) class whose MOD17 BPLUT parameters apply; None = no NPP modelled.
    pub mod17_umd: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VegetationTypesFile {
    #[allow(dead_code)]
    citation: String,
    #[serde(rename = "type")]
    types: Vec<VegetationType>,
}

/// carbonmap's vegetation-type vocabulary (models/legends/vegetation_types.toml).
pub fn vegetation_types() -> Result<Vec<VegetationType>> {
    let rel = "legends/vegetation_types.toml";
    let f: VegetationTypesFile = models::parse_toml(
        models::embedded(rel).expect("embedded"),
        &models::embedded_path(rel),
    )?;
    Ok(f.types)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegendClass {
    pub code: i64,
    pub name: String,
    pub vegetation_type: String,
    /// "#rrggbb"
    pub color: String,
    /// Why a class maps to its vegetation type, where that is a choice.
    pub note: Option<String>,
}

impl LegendClass {
    /// Colour as (r, g, b).
    pub fn rgb(&self) -> Option<(u8, u8, u8)> {
        hex_rgb(&self.color)
    }
}

/// A "#rrggbb" colour as (r, g, b).
pub fn hex_rgb(s: &str) -> Option<(u8, u8, u8)> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 {
        return None;
    }
    let p = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some((p(0)?, p(2)?, p(4)?))
}

/// A land-cover legend: one file under models/legends/ or the user's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Legend {
    pub product: String,
    pub name: String,
    pub citation: String,
    /// Codes meaning "no data".
    #[serde(default)]
    pub nodata: Vec<i64>,
    #[serde(rename = "class")]
    pub classes: Vec<LegendClass>,
    #[serde(skip)]
    pub source: PathBuf,
}

impl Legend {
    /// All built-in legends, sorted by product name.
    pub fn builtin() -> Result<Vec<Legend>> {
        models::builtin_entries()
    }

    /// A built-in legend by product name, or a legend file (path ending in .toml).
    pub fn resolve(name_or_path: &str) -> Result<Legend> {
        models::resolve_entry(name_or_path, Path::new(""))
    }

    fn check(&self) -> Result<()> {
        let types = vegetation_types()?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.classes {
            if !seen.insert(c.code) {
                return Err(Error::config(
                    &self.source,
                    format!("class code {} appears twice", c.code),
                ));
            }
            if self.nodata.contains(&c.code) {
                return Err(Error::config(
                    &self.source,
                    format!("class code {} is also declared as nodata", c.code),
                ));
            }
            if !types.iter().any(|t| t.name == c.vegetation_type) {
                return Err(Error::config(
                    &self.source,
                    format!(
                        "class {} ({}): unknown vegetation_type '{}'; known: {}",
                        c.code,
                        c.name,
                        c.vegetation_type,
                        types
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if c.rgb().is_none() {
                return Err(Error::config(
                    &self.source,
                    format!(
                        "class {} ({}): color '{}' is not #rrggbb",
                        c.code, c.name, c.color
                    ),
                ));
            }
        }
        if self.classes.is_empty() {
            return Err(Error::config(&self.source, "has no [[class]]"));
        }
        Ok(())
    }

    pub fn class(&self, code: i64) -> Option<&LegendClass> {
        self.classes.iter().find(|c| c.code == code)
    }
}

impl models::NamedEntry for Legend {
    const KIND: &'static str = "legend";
    const FOLDER: &'static str = "legends/";
    fn name(&self) -> &str {
        &self.product
    }
    fn set_source(&mut self, path: PathBuf) {
        self.source = path;
    }
    fn validate(&self) -> Result<()> {
        self.check()
    }
    fn skip(rel: &str) -> bool {
        rel.ends_with("vegetation_types.toml")
    }
}

/// Values that land-cover products commonly use for "no data" without always declaring it.
const NODATA_LOOKALIKES: [i64; 7] = [0, 127, 255, 32767, 65535, -9999, -32768];

/// Per code of one band: pixel count and area in square metres (true areas on geographic grids), read
/// strip by strip in one pass. Also returns the band's nodata value.
pub fn histogram(path: &Path, band: usize) -> Result<(BTreeMap<i64, (u64, f64)>, Option<f64>)> {
    let info = RasterInfo::read(path)?;
    let grid = info.grid()?;
    let b = info.band(band)?;
    if b.data_type.starts_with("Float") {
        return Err(Error::band(
            path,
            band.to_string(),
            format!("is {}, not integer class codes", b.data_type),
        ));
    }
    let nodata = b.nodata;
    let reader = GridReader::new(
        path,
        &[BandRequest {
            index: band,
            name: band.to_string(),
        }],
        &grid,
        Resampling::Nearest,
        None,
        0.0,
    )?;
    let areas = crate::area::PixelAreas::of(&grid)?;
    // About 1 M pixels per strip.
    let rows = (1024 * 1024 / grid.width.max(1)).clamp(1, grid.height);
    let mut tally = Tally::default();
    let mut buf = Vec::new();
    let mut row0 = 0;
    while row0 < grid.height {
        let n = rows.min(grid.height - row0);
        buf.resize(n * grid.width, 0i64);
        reader.read_rows(0, row0, n, &mut buf)?;
        // The strip's pixel areas in parallel; the sums pixel after pixel in row order, as ever.
        use rayon::prelude::*;
        let strip_areas: Vec<Vec<f64>> = (row0..row0 + n)
            .into_par_iter()
            .map(|r| areas.row(r))
            .collect();
        for (row, a) in buf.chunks(grid.width).zip(&strip_areas) {
            for (&v, &a) in row.iter().zip(a) {
                tally.add(v, a);
            }
        }
        row0 += n;
    }
    Ok((tally.into_map(), nodata))
}

/// Pixel counts and areas per code, added in the order given: codes 0 to 65535 in a table, others in a map.
#[derive(Default)]
struct Tally {
    small: Vec<(u64, f64)>,
    other: BTreeMap<i64, (u64, f64)>,
}

impl Tally {
    const SMALL: usize = 65_536;

    #[inline]
    fn add(&mut self, code: i64, area: f64) {
        let e = match usize::try_from(code) {
            Ok(i) if i < Self::SMALL => {
                if self.small.is_empty() {
                    self.small = vec![(0, 0.0); Self::SMALL];
                }
                &mut self.small[i]
            }
            _ => self.other.entry(code).or_insert((0, 0.0)),
        };
        e.0 += 1;
        e.1 += area;
    }

    fn into_map(self) -> BTreeMap<i64, (u64, f64)> {
        let mut map = self.other;
        for (i, e) in self.small.into_iter().enumerate() {
            if e.0 > 0 {
                map.insert(i as i64, e);
            }
        }
        map
    }
}

/// One row of a per-class area table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassArea {
    pub code: i64,
    pub name: String,
    pub vegetation_type: String,
    pub pixels: u64,
    pub area_ha: f64,
}

/// Check a land-cover raster against a legend: every code must be a class or declared nodata (in the legend or
/// the file). Missing codes are an error listing each with its pixel count, saying when one looks like an
/// undeclared nodata value. Returns the per-class area table (hectares; true areas on geographic grids).
pub fn check_map(path: &Path, band: usize, legend: &Legend) -> Result<Vec<ClassArea>> {
    let (hist, file_nodata) = histogram(path, band)?;
    check_codes(path, band, legend, &hist, file_nodata)
}

/// `check_map` on a histogram already read (code -> pixels and m2) with the band's nodata value.
pub fn check_codes(
    path: &Path,
    band: usize,
    legend: &Legend,
    hist: &BTreeMap<i64, (u64, f64)>,
    file_nodata: Option<f64>,
) -> Result<Vec<ClassArea>> {
    let total: u64 = hist.values().map(|h| h.0).sum();
    let is_nodata =
        |v: i64| legend.nodata.contains(&v) || file_nodata.is_some_and(|nd| nd == v as f64);
    let missing: Vec<(i64, u64)> = hist
        .iter()
        .filter(|(v, _)| legend.class(**v).is_none() && !is_nodata(**v))
        .map(|(v, h)| (*v, h.0))
        .collect();
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|(v, c)| {
                let hint = if NODATA_LOOKALIKES.contains(v) {
                    " — looks like an undeclared nodata value: declare it (legend `nodata = [..]`, or gdal_edit.py -a_nodata on the raster)"
                } else {
                    ""
                };
                format!("code {v}: {c} pixels ({:.2}%){hint}", 100.0 * *c as f64 / total as f64)
            })
            .collect();
        return Err(Error::band(
            path,
            band.to_string(),
            format!(
                "{} code(s) are not in legend '{}' ({}):\n    {}",
                missing.len(),
                legend.product,
                legend.source.display(),
                lines.join("\n    ")
            ),
        ));
    }
    Ok(legend
        .classes
        .iter()
        .map(|c| ClassArea {
            code: c.code,
            name: c.name.clone(),
            vegetation_type: c.vegetation_type.clone(),
            pixels: hist.get(&c.code).map_or(0, |h| h.0),
            // m2 -> ha
            area_ha: hist.get(&c.code).map_or(0.0, |h| h.1) / 1e4,
        })
        .collect())
}

/// The area table as CSV (units in the header).
pub fn area_table_csv(rows: &[ClassArea]) -> String {
    let total: f64 = rows.iter().map(|r| r.area_ha).sum();
    let mut s = String::from("code,class,vegetation_type,pixels,area_ha,area_percent\n");
    for r in rows {
        let pct = if total > 0.0 {
            100.0 * r.area_ha / total
        } else {
            0.0
        };
        s.push_str(&format!(
            "{},\"{}\",{},{},{:.4},{:.3}\n",
            r.code,
            r.name.replace('"', "'"),
            r.vegetation_type,
            r.pixels,
            r.area_ha,
            pct
        ));
    }
    s
}
