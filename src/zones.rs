//! Zones for summary tables: polygons from a vector file (GeoPackage, GeoJSON, Shapefile ...) with a hierarchy
//! of attribute fields (coarse to fine, for example "region,district"), or integer codes from a raster. Zones are
//! read onto the analysis grid strip by strip (a pixel belongs to the zone that holds its centre).

use std::collections::BTreeMap;
use std::path::PathBuf;

use gdal::vector::Geometry;

use crate::error::{Error, Result};
use crate::io::{self, BandRequest, Grid, GridReader, Resampling};

/// Pixels outside every zone.
pub const OUTSIDE: i32 = i32::MIN;

#[derive(Debug, Clone, Default)]
pub struct ZoneSpec {
    pub path: PathBuf,
    /// Vector: attribute fields from the coarsest level to the finest (at least one).
    pub fields: Vec<String>,
    pub layer: Option<String>,
    /// Raster: the band holding zone codes.
    pub band: usize,
}

enum Source {
    Vector {
        geoms: Vec<Geometry>,
        burn: Vec<f64>,
    },
    Raster(GridReader, Option<f64>),
}

/// Zones on the analysis grid. A pixel's zone id indexes `keys` for vector zones, or is the raster code.
pub struct Zones {
    pub path: PathBuf,
    /// Level names, coarse to fine.
    pub levels: Vec<String>,
    /// Vector zones: the key (one value per level) of each zone id.
    pub keys: Vec<Vec<String>>,
    /// Vector zones: the union of the features of each zone id, in the grid's CRS.
    pub shapes: Vec<Option<Geometry>>,
    pub crs_wkt: String,
    source: Source,
    pub grid: Grid,
}

impl Zones {
    pub fn load(spec: &ZoneSpec, grid: &Grid) -> Result<Zones> {
        if io::is_vector_only(&spec.path) {
            Self::load_vector(spec, grid)
        } else {
            let band = spec.band.max(1);
            let info = io::RasterInfo::read(&spec.path)?;
            if io::coverage_fraction(grid, &info.grid()?)? <= 0.0 {
                return Err(Error::input(
                    &spec.path,
                    "the zone raster does not overlap the analysis grid",
                ));
            }
            let nodata = info.bands.get(band - 1).and_then(|b| b.nodata);
            let reader = GridReader::new(
                &spec.path,
                &[BandRequest {
                    index: band,
                    name: format!("zone codes (band {band})"),
                }],
                grid,
                Resampling::Nearest,
                None,
                OUTSIDE as f64,
            )?;
            Ok(Zones {
                path: spec.path.clone(),
                levels: vec!["zone".into()],
                keys: Vec::new(),
                shapes: Vec::new(),
                crs_wkt: grid.crs_wkt.clone(),
                source: Source::Raster(reader, nodata),
                grid: grid.clone(),
            })
        }
    }

    fn load_vector(spec: &ZoneSpec, grid: &Grid) -> Result<Zones> {
        let z = Self::read_vector(spec, grid)?;
        let [gx0, gy0, gx1, gy1] = grid.bounds();
        let overlaps = z.shapes.iter().flatten().any(|g| {
            let e = g.envelope();
            e.MinX < gx1 && e.MaxX > gx0 && e.MinY < gy1 && e.MaxY > gy0
        });
        if !overlaps {
            return Err(Error::input(
                &spec.path,
                "no zone overlaps the analysis grid (wrong file, or a CRS declared wrongly?)",
            ));
        }
        Ok(z)
    }

    fn read_vector(spec: &ZoneSpec, grid: &Grid) -> Result<Zones> {
        if spec.fields.is_empty() {
            return Err(Error::input(
                &spec.path,
                "vector zones need the attribute field(s) that name them (--zone-fields region,district)",
            ));
        }
        let layer = io::read_vector(&spec.path, spec.layer.as_deref(), &spec.fields)?;
        let crs = layer.crs_wkt.clone().ok_or_else(|| {
            Error::input(&spec.path, "the zone layer has no CRS; assign one first")
        })?;
        let mut index: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        let mut keys: Vec<Vec<String>> = Vec::new();
        let mut geoms = Vec::new();
        let mut burn = Vec::new();
        for f in layer.features {
            let key: Vec<String> = f
                .fields
                .iter()
                .zip(&spec.fields)
                .map(|(v, name)| {
                    v.as_ref().map(|v| v.text()).ok_or_else(|| {
                        Error::input(
                            &spec.path,
                            format!("feature {}: field {name} is empty", f.fid),
                        )
                    })
                })
                .collect::<Result<_>>()?;
            let Some(g) = f.geometry else {
                return Err(Error::input(
                    &spec.path,
                    format!("feature {} has no geometry", f.fid),
                ));
            };
            let id = *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                keys.len() - 1
            });
            geoms.push(g);
            burn.push(id as f64);
        }
        io::reproject_geometries(&mut geoms, &crs, &grid.crs_wkt)?;
        // Each zone's shape: its features dissolved (pairwise in rounds, in file order; zones on all cores).
        let mut parts: Vec<Vec<Geometry>> = vec![Vec::new(); keys.len()];
        for (g, &id) in geoms.iter().zip(&burn) {
            parts[id as usize].push(g.clone());
        }
        let shapes: Vec<Option<Geometry>> = io::union_groups(parts);
        Ok(Zones {
            path: spec.path.clone(),
            levels: spec.fields.clone(),
            keys,
            shapes,
            crs_wkt: grid.crs_wkt.clone(),
            source: Source::Vector { geoms, burn },
            grid: grid.clone(),
        })
    }

    pub fn is_vector(&self) -> bool {
        matches!(self.source, Source::Vector { .. })
    }

    /// Zone ids of rows `row0 .. row0 + nrows` (OUTSIDE where no zone).
    /// Zone ids of the window `w` (vector zones are rasterized by whole rows, then cut to the window).
    pub fn read_window(&self, w: &io::Window) -> Result<Vec<i32>> {
        Ok(io::window_of_rows(
            self.read_rows(w.row0, w.nrows)?,
            self.grid.width,
            w,
        ))
    }

    pub fn read_rows(&self, row0: usize, nrows: usize) -> Result<Vec<i32>> {
        match &self.source {
            Source::Vector { geoms, burn } => {
                io::rasterize_rows(geoms, burn, &self.grid, row0, nrows, OUTSIDE)
            }
            Source::Raster(r, nodata) => {
                let mut v = vec![OUTSIDE; self.grid.width * nrows];
                r.read_rows(0, row0, nrows, &mut v)?;
                if let Some(nd) = nodata {
                    for z in v.iter_mut() {
                        if *z as f64 == *nd {
                            *z = OUTSIDE;
                        }
                    }
                }
                Ok(v)
            }
        }
    }

    /// The key (a value per level) of a zone id.
    pub fn key(&self, id: i32) -> Vec<String> {
        if self.is_vector() {
            self.keys[id as usize].clone()
        } else {
            vec![id.to_string()]
        }
    }
}
