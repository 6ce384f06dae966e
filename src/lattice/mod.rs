//! Emission lattices: gridded emissions as a raster (one band per sector or year) or as a vector grid (one
//! polygon per cell with emission attributes: GeoPackage, GeoJSON, Shapefile, CSV with a WKT column). Units are
//! declared (by the user, or by the file's band unit), never guessed, and converted to t CO2 yr-1 per cell.
//! `overlap` holds the exact area-weighted transfer between a lattice and a fine raster grid.

pub mod corners;
pub mod overlap;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::io::{self, BandRequest, FieldVal, Grid, GridReader, Resampling};
use crate::units::CarbonUnit;

/// What the user says about an emission lattice.
#[derive(Debug, Clone, Default)]
pub struct LatticeSpec {
    pub path: PathBuf,
    /// Declared unit ("Tg C cell-1 yr-1", "t CO2 km-2 yr-1" ...); required unless every band declares one.
    pub unit: Option<String>,
    /// Raster: bands to use as sectors, by description or number (all bands when empty).
    pub bands: Vec<String>,
    /// Vector: attribute fields holding each sector's emissions (required for vector lattices).
    pub fields: Vec<String>,
    /// Vector: the cell id field (the feature id when absent).
    pub id_field: Option<String>,
    /// Vector: layer name (the only layer when absent).
    pub layer: Option<String>,
    /// CRS of a vector lattice without one (CSV), such as "EPSG:27700".
    pub crs: Option<String>,
    /// Sectors whose values may be negative (land use, removals); negative values elsewhere are warned about.
    pub signed_sectors: Vec<String>,
}

/// A lattice in memory: cells on a regular grid, per sector in t CO2 yr-1 per cell (NaN = no data).
#[derive(Debug, Clone)]
pub struct Lattice {
    pub path: PathBuf,
    pub grid: Grid,
    pub unit: CarbonUnit,
    pub sectors: Vec<String>,
    /// `mass[sector][row * width + col]`, t CO2 yr-1.
    pub mass: Vec<Vec<f64>>,
    /// True areas of the cells, m2.
    pub areas: crate::area::PixelAreas,
    /// Cell ids (vector lattices: the id field; rasters: "r{row}c{col}").
    ids: Option<Vec<String>>,
    /// Things the user should know (negative sector values).
    pub warnings: Vec<String>,
}

impl Lattice {
    pub fn load(spec: &LatticeSpec) -> Result<Lattice> {
        if io::is_vector_only(&spec.path) {
            load_vector(spec)
        } else {
            load_raster(spec)
        }
    }

    pub fn cells(&self) -> usize {
        self.grid.width * self.grid.height
    }

    pub fn cell_id(&self, cell: usize) -> String {
        match &self.ids {
            Some(ids) => ids[cell].clone(),
            None => format!("r{}c{}", cell / self.grid.width, cell % self.grid.width),
        }
    }

    /// Whether a vector lattice has a feature for this cell (raster cells always exist).
    pub fn has_cell(&self, cell: usize) -> bool {
        self.ids.as_ref().is_none_or(|ids| !ids[cell].is_empty())
    }

    /// Sum over sectors, t CO2 yr-1 (NaN when any sector has no data).
    pub fn total(&self, cell: usize) -> f64 {
        self.mass.iter().map(|s| s[cell]).sum()
    }

    pub fn cell_area_m2(&self, cell: usize) -> f64 {
        self.areas
            .at(cell % self.grid.width, cell / self.grid.width)
    }

    fn check_signs(&mut self, spec: &LatticeSpec) {
        for (s, name) in self.sectors.iter().enumerate() {
            if spec
                .signed_sectors
                .iter()
                .any(|x| x.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let neg: Vec<f64> = self.mass[s].iter().copied().filter(|v| *v < 0.0).collect();
            if !neg.is_empty() {
                self.warnings.push(format!(
                    "{}: sector \"{name}\" has {} negative cell(s) (sum {:.6} t CO2 yr-1), but emissions of this sector cannot be negative; values kept as given (declare removals with --signed-sectors {name})",
                    spec.path.display(),
                    neg.len(),
                    neg.iter().sum::<f64>()
                ));
            }
        }
    }
}

fn declared_unit(spec: &LatticeSpec, band_units: &[String]) -> Result<CarbonUnit> {
    let text = match &spec.unit {
        Some(u) => u.clone(),
        None => {
            let first = band_units.first().cloned().unwrap_or_default();
            if first.trim().is_empty() || band_units.iter().any(|u| *u != first) {
                return Err(Error::input(
                    &spec.path,
                    "the lattice's unit is not declared: give it (for example --lattice-unit \"Tg C cell-1 yr-1\" for a mass per cell, or \"t CO2 km-2 yr-1\" for a flux density); carbonmap never guesses units",
                ));
            }
            first
        }
    };
    CarbonUnit::parse_for(&text, &spec.path)
}

fn load_raster(spec: &LatticeSpec) -> Result<Lattice> {
    let info = io::RasterInfo::read(&spec.path)?;
    let grid = info.grid()?;
    let bands: Vec<&io::BandInfo> = if spec.bands.is_empty() {
        info.bands.iter().collect()
    } else {
        spec.bands
            .iter()
            .map(|b| {
                info.band_by_name(b)
                    .or_else(|| {
                        b.parse::<usize>()
                            .ok()
                            .and_then(|i| info.bands.get(i.wrapping_sub(1)))
                    })
                    .ok_or_else(|| {
                        Error::band(
                            &spec.path,
                            b,
                            format!(
                                "no band with this description or number (bands: {})",
                                info.bands
                                    .iter()
                                    .map(|x| if x.description.is_empty() {
                                        x.index.to_string()
                                    } else {
                                        x.description.clone()
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })
            })
            .collect::<Result<_>>()?
    };
    let unit = declared_unit(
        spec,
        &bands.iter().map(|b| b.unit.clone()).collect::<Vec<_>>(),
    )?;
    let areas = crate::area::PixelAreas::of(&grid)?;
    let reader = GridReader::new(
        &spec.path,
        &bands
            .iter()
            .map(|b| BandRequest {
                index: b.index,
                name: sector_name(b),
            })
            .collect::<Vec<_>>(),
        &grid,
        Resampling::Nearest,
        None,
        0.0,
    )?;
    let n = grid.width * grid.height;
    let mut mass = Vec::with_capacity(bands.len());
    for (k, b) in bands.iter().enumerate() {
        let mut v = vec![0f64; n];
        reader.read_rows(k, 0, grid.height, &mut v)?;
        for (i, x) in v.iter_mut().enumerate() {
            if b.nodata.is_some_and(|nd| *x == nd) || !x.is_finite() {
                *x = f64::NAN;
            } else {
                *x = unit.to_tco2_yr(*x, areas.at(i % grid.width, i / grid.width));
            }
        }
        mass.push(v);
    }
    let mut l = Lattice {
        path: spec.path.clone(),
        grid,
        unit,
        sectors: bands.iter().map(|b| sector_name(b)).collect(),
        mass,
        areas,
        ids: None,
        warnings: Vec::new(),
    };
    l.check_signs(spec);
    Ok(l)
}

fn sector_name(b: &io::BandInfo) -> String {
    if b.description.trim().is_empty() {
        format!("band{}", b.index)
    } else {
        b.description.trim().to_string()
    }
}

/// The CRS of a vector lattice: the layer's, or `--lattice-crs` when the file has none (both must agree).
fn vector_crs(spec: &LatticeSpec, layer_crs: Option<&str>) -> Result<String> {
    let path = &spec.path;
    let crs_wkt = match (layer_crs, &spec.crs) {
        (Some(w), None) => w.to_string(),
        (None, Some(c)) | (Some(_), Some(c)) => {
            io::crs_wkt(c).map_err(|e| Error::Usage(format!("--lattice-crs {c}: {e}")))?
        }
        (None, None) => {
            return Err(Error::input(
                path,
                "the lattice has no CRS; declare it (--lattice-crs EPSG:27700, for example)",
            ))
        }
    };
    if let (Some(w), Some(c)) = (layer_crs, &spec.crs) {
        if !io::same_crs(w, &crs_wkt) {
            return Err(Error::input(
                path,
                format!("the layer's CRS differs from --lattice-crs {c}; drop the option or fix the file"),
            ));
        }
    }
    Ok(crs_wkt)
}

/// Each feature's bounding rectangle; refuses features without geometry or that are not axis-aligned
/// rectangles, and an empty layer.
fn feature_rectangles(path: &std::path::Path, layer: &io::VectorLayer) -> Result<Vec<[f64; 4]>> {
    let mut rects = Vec::with_capacity(layer.features.len());
    for f in &layer.features {
        let what = format!("feature {}", f.fid);
        let g = f
            .geometry
            .as_ref()
            .ok_or_else(|| Error::input(path, format!("{what} has no geometry")))?;
        let env = g.envelope();
        let (w, h) = (env.MaxX - env.MinX, env.MaxY - env.MinY);
        let area = g.area();
        if !(w > 0.0 && h > 0.0) || (area - w * h).abs() > 1e-9 * w * h {
            return Err(Error::input(
                path,
                format!("{what} is not an axis-aligned rectangle; a vector lattice must be a regular grid of rectangular cells (aggregate irregular zones with --zones instead)"),
            ));
        }
        rects.push([env.MinX, env.MinY, env.MaxX, env.MaxY]);
    }
    if rects.is_empty() {
        return Err(Error::input(path, "the lattice layer has no features"));
    }
    Ok(rects)
}

/// A feature's emission field as a number: text is parsed, an empty field refused (never read as 0).
fn field_number(
    path: &std::path::Path,
    what: &str,
    name: &str,
    v: &Option<FieldVal>,
) -> Result<f64> {
    match v {
        Some(FieldVal::Num(v)) => Ok(*v),
        Some(FieldVal::Text(t)) => t.parse::<f64>().map_err(|_| {
            Error::input(path, format!("{what}: field {name} = \"{t}\" is not a number"))
        }),
        None => Err(Error::input(
            path,
            format!("{what}: field {name} is empty (write 0 for no emissions; an empty value is never read as 0)"),
        )),
    }
}

/// A vector lattice must be a regular grid of axis-aligned rectangles of one size; it becomes a raster lattice
/// with its cell ids kept (cells without a feature have no data).
fn load_vector(spec: &LatticeSpec) -> Result<Lattice> {
    let path = &spec.path;
    if spec.fields.is_empty() {
        return Err(Error::input(
            path,
            "a vector lattice needs the fields that hold emissions (--lattice-fields energy,transport,...)",
        ));
    }
    let mut want = spec.fields.clone();
    if let Some(id) = &spec.id_field {
        want.push(id.clone());
    }
    let layer = io::read_vector(path, spec.layer.as_deref(), &want)?;
    let crs_wkt = vector_crs(spec, layer.crs_wkt.as_deref())?;
    let rects = feature_rectangles(path, &layer)?;
    let (dx, dy) = (rects[0][2] - rects[0][0], rects[0][3] - rects[0][1]);
    let x0 = rects.iter().map(|r| r[0]).fold(f64::MAX, f64::min);
    let y1 = rects.iter().map(|r| r[3]).fold(f64::MIN, f64::max);
    let x1 = rects.iter().map(|r| r[2]).fold(f64::MIN, f64::max);
    let y0 = rects.iter().map(|r| r[1]).fold(f64::MAX, f64::min);
    let width = ((x1 - x0) / dx).round() as usize;
    let height = ((y1 - y0) / dy).round() as usize;
    let grid = Grid {
        crs_wkt,
        gt: [x0, dx, 0.0, y1, 0.0, -dy],
        width,
        height,
    };
    let n = width * height;
    let areas = crate::area::PixelAreas::of(&grid)?;
    let unit = declared_unit(spec, &[])?;
    let mut mass = vec![vec![f64::NAN; n]; spec.fields.len()];
    let mut ids = vec![String::new(); n];
    for (f, r) in layer.features.iter().zip(&rects) {
        let what = format!("feature {}", f.fid);
        let cf = (r[0] - x0) / dx;
        let rf = (y1 - r[3]) / dy;
        let same_size =
            ((r[2] - r[0]) - dx).abs() <= 1e-9 * dx && ((r[3] - r[1]) - dy).abs() <= 1e-9 * dy;
        if !same_size || (cf - cf.round()).abs() > 1e-6 || (rf - rf.round()).abs() > 1e-6 {
            return Err(Error::input(
                path,
                format!("{what} is not on the lattice's regular grid (cells must all be {dx} x {dy} and aligned)"),
            ));
        }
        let cell = rf.round() as usize * width + cf.round() as usize;
        if !ids[cell].is_empty() {
            return Err(Error::input(
                path,
                format!(
                    "{what} duplicates the cell of another feature ({})",
                    ids[cell]
                ),
            ));
        }
        ids[cell] = match (&spec.id_field, f.fields.last()) {
            (Some(_), Some(Some(v))) => v.text(),
            (Some(id), _) => return Err(Error::input(path, format!("{what} has no {id}"))),
            (None, _) => f.fid.to_string(),
        };
        for (s, name) in spec.fields.iter().enumerate() {
            let v = field_number(path, &what, name, &f.fields[s])?;
            mass[s][cell] = unit.to_tco2_yr(v, areas.at(cell % width, cell / width));
        }
    }
    let mut l = Lattice {
        path: path.clone(),
        grid,
        unit,
        sectors: spec.fields.clone(),
        mass,
        areas,
        ids: Some(ids),
        warnings: Vec::new(),
    };
    l.check_signs(spec);
    Ok(l)
}
