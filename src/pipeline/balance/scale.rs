//! Emission changes (a scenario's "energy -20 % in the east district"): factors on the emissions each pixel
//! receives, per sector (or every sector), everywhere, in one zone or inside polygons (pixel centres, any OGR
//! file in any CRS). A pixel's factor for a sector is the product of every change that names it. Applied to the
//! fine emissions and so to the net balance rasters, the zone tables and the covered part of every lattice cell
//! (its covered emissions and net balance); a cell's whole emissions (`emissions_total`, the per-sector columns)
//! stay the lattice as given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{self, Grid};
use crate::zones::{Zones, OUTSIDE};

/// One change: `factor` times the emissions of `sector` (all when None) in the zone whose `level` field is
/// `zone` (everywhere when None).
#[derive(Debug, Clone, PartialEq)]
pub struct EmissionFactor {
    pub level: Option<String>,
    pub zone: Option<String>,
    /// Inside these polygons instead of a zone.
    pub polygons: Option<PathBuf>,
    pub sector: Option<String>,
    pub factor: f64,
}

impl EmissionFactor {
    pub fn describe(&self) -> String {
        format!(
            "{} x {} in {}",
            self.factor,
            self.sector.as_deref().unwrap_or("every sector"),
            match (&self.level, &self.zone, &self.polygons) {
                (_, _, Some(p)) => format!("the polygons of {}", p.display()),
                (Some(l), Some(z), _) => format!("{l} = {z}"),
                (None, Some(z), _) => format!("zone {z}"),
                _ => "every zone".into(),
            }
        )
    }
}

/// Per-sector multipliers of the pixels outside every changed zone, and of each changed zone's pixels.
#[derive(Debug, Clone)]
pub struct Factors {
    all: Vec<f64>,
    by_zone: BTreeMap<i32, Vec<f64>>,
    /// Polygons (in the grid's CRS) and the multipliers of the pixels inside.
    polygons: Vec<(Vec<gdal::vector::Geometry>, Vec<f64>)>,
}

impl Factors {
    /// The changes resolved against the lattice's sectors and the zones; every problem listed.
    pub fn resolve(
        list: &[EmissionFactor],
        sectors: &[String],
        zones: Option<&Zones>,
        grid: &Grid,
        origin: &Path,
    ) -> Result<Option<Factors>> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let mut all = vec![1.0; sectors.len()];
        let mut by_zone: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
        let mut polygons = Vec::new();
        for f in list {
            let what = f.describe();
            if !(f.factor.is_finite() && f.factor >= 0.0) {
                problems.push(format!(
                    "emission change {what}: the factor must be a number >= 0"
                ));
            } else if f.factor == 1.0 {
                problems.push(format!(
                    "emission change {what}: a factor of 1 changes nothing"
                ));
            }
            let ks: Vec<usize> = match &f.sector {
                None => (0..sectors.len()).collect(),
                Some(s) => match sectors.iter().position(|x| x == s) {
                    Some(k) => vec![k],
                    None => {
                        problems.push(format!(
                            "emission change {what}: the lattice has no sector {s} (its sectors: {})",
                            sectors.join(", ")
                        ));
                        continue;
                    }
                },
            };
            if let Some(p) = &f.polygons {
                if f.zone.is_some() {
                    problems.push(format!(
                        "emission change {what}: give a zone or polygons, not both"
                    ));
                    continue;
                }
                match io::read_polygons(p, None, &grid.crs_wkt) {
                    Ok(g) => {
                        let mut m = vec![1.0; sectors.len()];
                        ks.iter().for_each(|&k| m[k] = f.factor);
                        polygons.push((g, m));
                    }
                    Err(e) => problems.extend(e.into_problems()),
                }
                continue;
            }
            let Some(zone) = &f.zone else {
                ks.iter().for_each(|&k| all[k] *= f.factor);
                continue;
            };
            let ids = match zones {
                None => {
                    problems.push(format!(
                        "emission change {what}: names a zone, but no zones are given"
                    ));
                    continue;
                }
                Some(z) => match matching_zones(z, f.level.as_deref(), zone) {
                    Ok(ids) => ids,
                    Err(e) => {
                        problems.push(format!("emission change {what}: {e}"));
                        continue;
                    }
                },
            };
            for id in ids {
                let m = by_zone
                    .entry(id)
                    .or_insert_with(|| vec![1.0; sectors.len()]);
                ks.iter().for_each(|&k| m[k] *= f.factor);
            }
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(
                problems
                    .into_iter()
                    .map(|p| format!("{}: {p}", origin.display()))
                    .collect(),
            ));
        }
        // Zone factors include the changes made everywhere.
        for m in by_zone.values_mut() {
            m.iter_mut().zip(&all).for_each(|(x, a)| *x *= a);
        }
        Ok(Some(Factors {
            all,
            by_zone,
            polygons,
        }))
    }

    /// The multipliers of every pixel of rows `row0 .. row0 + nrows` (pixel-major, one per sector).
    pub fn strip(
        &self,
        zone_ids: Option<&[i32]>,
        grid: &Grid,
        row0: usize,
        nrows: usize,
    ) -> Result<Vec<f64>> {
        let n = grid.width * nrows;
        let nsec = self.all.len();
        let mut m = Vec::with_capacity(n * nsec);
        for i in 0..n {
            let z = zone_ids.map(|z| z[i]).filter(|z| *z != OUTSIDE);
            m.extend_from_slice(self.of(z));
        }
        for (geoms, f) in &self.polygons {
            let inside = io::rasterize_rows(geoms, &vec![1.0; geoms.len()], grid, row0, nrows, 0)?;
            for (i, _) in inside.iter().enumerate().filter(|(_, v)| **v == 1) {
                m[i * nsec..(i + 1) * nsec]
                    .iter_mut()
                    .zip(f)
                    .for_each(|(x, f)| *x *= f);
            }
        }
        Ok(m)
    }

    /// The multipliers of a pixel in zone `zone` (None: outside every zone).
    #[inline]
    pub fn of(&self, zone: Option<i32>) -> &[f64] {
        zone.and_then(|z| self.by_zone.get(&z)).unwrap_or(&self.all)
    }
}

/// The zone ids whose `level` field (any level when None) equals `value`.
fn matching_zones(
    z: &Zones,
    level: Option<&str>,
    value: &str,
) -> std::result::Result<Vec<i32>, String> {
    if !z.is_vector() {
        return value
            .parse::<i32>()
            .map(|v| vec![v])
            .map_err(|_| format!("zone \"{value}\": raster zones are integer codes"));
    }
    let levels: Vec<usize> = match level {
        Some(l) => match z.levels.iter().position(|x| x == l) {
            Some(i) => vec![i],
            None => {
                return Err(format!(
                    "no zone field {l} (the zones' fields: {})",
                    z.levels.join(", ")
                ))
            }
        },
        None => (0..z.levels.len()).collect(),
    };
    let ids: Vec<i32> = (0..z.keys.len())
        .filter(|&id| {
            levels
                .iter()
                .any(|&i| z.keys[id].get(i).is_some_and(|v| v == value))
        })
        .map(|id| id as i32)
        .collect();
    if ids.is_empty() {
        Err(format!(
            "no zone has {} = {value}",
            level.unwrap_or("a field")
        ))
    } else {
        Ok(ids)
    }
}
