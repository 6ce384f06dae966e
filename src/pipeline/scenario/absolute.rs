//! Absolute emission changes ("-5,000 t CO2 yr-1 of transport in the east district", "... inside these
//! streets") as factors on the base's emissions: the change over the base's emissions of the sector in the zone
//! (from the base balance's zone table), or inside the polygons (the base's fine emissions summed over the
//! pixels whose centres they contain, each pixel with its true area), so that the scenario's emissions there
//! differ from the base's by exactly the change.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::{self, Grid};
use crate::pipeline::balance::EmissionFactor;

use super::compare;

/// Rows rasterized and read at once.
const STRIP_ROWS: usize = 64;

/// Absolute emission changes as factors of the base's emissions of the sector in the zone (or the whole area),
/// read from the base balance's zone table.
pub(super) fn factors(
    factors: &[EmissionFactor],
    absolute: &[(usize, f64)],
    base: &crate::pipeline::balance::BalanceSummary,
    grid: &Grid,
) -> Result<Vec<EmissionFactor>> {
    let mut out = factors.to_vec();
    if absolute.is_empty() {
        return Ok(out);
    }
    let table = base
        .outputs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "zones_balance.csv"))
        .map(|p| compare::readable(p))
        .ok_or_else(|| Error::Processing("the base balance wrote no zone table".into()))?;
    let rows = crate::io::read_text(&table, "a zone table")?;
    let mut r = csv::Reader::from_reader(rows.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| Error::Processing(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let records: Vec<csv::StringRecord> = r.records().flatten().collect();
    let col = |k: &str| header.iter().position(|h| h == k);
    let mut problems = Vec::new();
    for &(i, change) in absolute {
        let f = &out[i];
        let column = match &f.sector {
            Some(sec) => format!("emissions_{sec}_tCO2_yr"),
            None => "emissions_total_tCO2_yr".into(),
        };
        let (Some(c), Some(lv), Some(zn)) = (col(&column), col("level"), col("zone")) else {
            problems.push(format!(
                "emissions {}: the base balance has no column {column}",
                i + 1
            ));
            continue;
        };
        if let Some(p) = &f.polygons {
            match polygon_emissions(base, p, f.sector.as_deref(), grid) {
                Ok(t) if t > 0.0 && t + change >= 0.0 => out[i].factor = 1.0 + change / t,
                Ok(t) => problems.push(format!(
                    "emissions {}: a change of {change} t CO2 yr-1 on base emissions of {t} inside {} would leave them negative or is undefined",
                    i + 1,
                    p.display()
                )),
                Err(e) => problems.push(e.to_string()),
            }
            continue;
        }
        let (level, zone) = match &f.zone {
            None => ("all", "all"),
            Some(z) => (f.level.as_deref().unwrap_or(""), z.as_str()),
        };
        let total: Option<f64> = records
            .iter()
            .find(|rec| {
                rec.get(zn) == Some(zone) && (level.is_empty() || rec.get(lv) == Some(level))
            })
            .and_then(|rec| rec.get(c))
            .and_then(|v| v.parse().ok());
        match total {
            Some(t) if t > 0.0 && t + change >= 0.0 => out[i].factor = 1.0 + change / t,
            Some(t) => problems.push(format!(
                "emissions {}: a change of {change} t CO2 yr-1 on base emissions of {t} would leave them negative or is undefined",
                i + 1
            )),
            None => problems.push(format!("emissions {}: no base emissions for {level} {zone}", i + 1)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// The base's emissions of `sector` (every sector when None) inside the polygons, t CO2 yr-1: the fine
/// emissions raster (t CO2 ha-1 yr-1, a band per sector after the total) times each pixel's true area.
fn polygon_emissions(
    base: &crate::pipeline::balance::BalanceSummary,
    polygons: &Path,
    sector: Option<&str>,
    grid: &Grid,
) -> Result<f64> {
    let raster = base
        .outputs
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == "emissions_tCO2_ha_yr.tif")
        })
        .map(|p| compare::readable(p))
        .ok_or_else(|| Error::Processing("the base balance wrote no emissions raster".into()))?;
    let info = io::RasterInfo::read(&raster)?;
    let want = format!("emissions {}", sector.unwrap_or("total"));
    let band = info
        .bands
        .iter()
        .position(|b| b.description == want)
        .ok_or_else(|| Error::input(&raster, format!("no band '{want}'")))?;
    let geoms = io::read_polygons(polygons, None, &grid.crs_wkt)?;
    let reader = io::band_reader(&raster, band + 1, grid, f64::NAN)?;
    let areas = crate::area::PixelAreas::of(grid)?;
    let mut total = 0.0;
    for r0 in (0..grid.height).step_by(STRIP_ROWS) {
        let nrows = STRIP_ROWS.min(grid.height - r0);
        let inside = io::rasterize_rows(&geoms, &vec![1.0; geoms.len()], grid, r0, nrows, 0)?;
        if !inside.contains(&1) {
            continue;
        }
        let mut strip = vec![0f64; grid.width * nrows];
        reader.read_rows(0, r0, nrows, &mut strip)?;
        for (i, _) in inside.iter().enumerate().filter(|(_, v)| **v == 1) {
            let (c, r) = (i % grid.width, r0 + i / grid.width);
            if strip[i].is_finite() {
                total += strip[i] * areas.at(c, r) / 1e4;
            }
        }
    }
    Ok(total)
}
