//! Indicators per planning unit beside the zone table's totals: net balance per hectare, population and the
//! per-person figures (from a population raster), and the gap to a target per zone (from a targets table).
//!
//! Population: a raster of persons per area (`persons km-2`, `persons ha-1`, `persons m-2`) read onto the sink's
//! grid by area-weighted averaging and multiplied by each pixel's true area, or persons per pixel
//! (`persons pixel-1`) of a raster on the sink's own grid. Targets: a CSV with `level`, `zone` and
//! `target_net_balance_tCO2_yr` and/or `target_neutrality_ratio` (either may be empty); every named zone must
//! exist at its level. Previous: the zone table of an earlier run (the season before) gives the change in net
//! balance, emissions and sequestration per zone; a missing file (the first season) is a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Problems, Result};
use crate::io::{self, BandRequest, Grid, GridReader, Resampling};
use crate::zones::Zones;

/// A population raster and its unit.
#[derive(Debug, Clone)]
pub struct PopulationSpec {
    pub path: PathBuf,
    pub band: usize,
    pub unit: String,
}

/// Population read per strip as persons per pixel.
pub struct Population {
    reader: GridReader,
    width: usize,
    /// Persons per m2 per stored unit (None: the values are persons per pixel).
    per_m2: Option<f64>,
}

impl Population {
    pub fn open(spec: &PopulationSpec, grid: &Grid) -> Result<Population> {
        let per_m2 = match spec.unit.trim() {
            "persons km-2" => Some(1e-6),
            "persons ha-1" => Some(1e-4),
            "persons m-2" => Some(1.0),
            "persons pixel-1" => None,
            other => {
                return Err(Error::input(
                    &spec.path,
                    format!("--population-unit \"{other}\": expected \"persons km-2\", \"persons ha-1\", \"persons m-2\" or \"persons pixel-1\""),
                ))
            }
        };
        let info = io::RasterInfo::read(&spec.path)?;
        info.band(spec.band)?;
        if per_m2.is_none() && !info.grid()?.same_pixels(grid) {
            return Err(Error::input(
                &spec.path,
                "persons per pixel must be on the sink raster's grid (a count cannot be resampled); give a density (persons km-2) or warp the counts first",
            ));
        }
        let reader = GridReader::new(
            &spec.path,
            &[BandRequest {
                index: spec.band,
                name: "population".into(),
            }],
            grid,
            if per_m2.is_some() {
                Resampling::Average
            } else {
                Resampling::Nearest
            },
            None,
            f64::NAN,
        )?;
        Ok(Population {
            reader,
            width: grid.width,
            per_m2,
        })
    }

    /// Persons in each pixel of rows `row0..row0+nrows` (0 where the raster has no data), given each pixel's
    /// true area.
    pub fn persons(
        &self,
        row0: usize,
        nrows: usize,
        area_m2: impl Fn(usize) -> f64,
    ) -> Result<Vec<f64>> {
        let w = io::Window::rows(row0, nrows, self.width);
        let mut v = vec![0f64; w.len()];
        self.reader.read_window::<f64>(0, &w, &mut v)?;
        Ok(v.iter()
            .enumerate()
            .map(|(i, &x)| match (x.is_finite(), self.per_m2) {
                (false, _) => 0.0,
                (true, Some(f)) => x * f * area_m2(i),
                (true, None) => x,
            })
            .collect())
    }
}

/// Targets per (level, zone).
#[derive(Debug, Clone, Default)]
pub struct Targets {
    rows: BTreeMap<(String, String), (Option<f64>, Option<f64>)>,
}

impl Targets {
    /// Read a targets table, checking that every zone it names exists at its level of `zones`.
    pub fn load(path: &Path, zones: Option<&Zones>) -> Result<Targets> {
        let text = io::read_text(path, "a targets table (CSV)")?;
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| Error::input(path, format!("cannot read the header line: {e}")))?
            .clone();
        let col = |n: &str| headers.iter().position(|h| h.trim() == n);
        let (Some(lc), Some(zc)) = (col("level"), col("zone")) else {
            return Err(Error::input(
                path,
                "needs columns level and zone, and target_net_balance_tCO2_yr and/or target_neutrality_ratio",
            ));
        };
        let (nc, rc) = (
            col("target_net_balance_tCO2_yr"),
            col("target_neutrality_ratio"),
        );
        if nc.is_none() && rc.is_none() {
            return Err(Error::input(
                path,
                "has neither target_net_balance_tCO2_yr nor target_neutrality_ratio",
            ));
        }
        let known: BTreeSet<(String, String)> = zones
            .map(|z| {
                z.levels
                    .iter()
                    .enumerate()
                    .flat_map(|(l, name)| z.keys.iter().map(move |k| (name.clone(), k[l].clone())))
                    .chain([("all".to_string(), "all".to_string())])
                    .collect()
            })
            .unwrap_or_else(|| [("all".to_string(), "all".to_string())].into());
        let mut problems = Problems::new();
        let mut rows = BTreeMap::new();
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Error::input(path, format!("line {line}: {e}")));
                    continue;
                }
            };
            let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim();
            let num = |c: Option<usize>, what: &str, problems: &mut Problems| -> Option<f64> {
                let t = field(c);
                if t.is_empty() {
                    return None;
                }
                match t.parse::<f64>() {
                    Ok(v) if v.is_finite() => Some(v),
                    _ => {
                        problems.push(Error::input(
                            path,
                            format!("line {line}: {what} \"{t}\" is not a number"),
                        ));
                        None
                    }
                }
            };
            let key = (field(Some(lc)).to_string(), field(Some(zc)).to_string());
            if !known.contains(&key) {
                problems.push(Error::input(
                    path,
                    format!(
                        "line {line}: no zone \"{}\" at level \"{}\" (levels: all, {})",
                        key.1,
                        key.0,
                        zones.map(|z| z.levels.join(", ")).unwrap_or_default()
                    ),
                ));
                continue;
            }
            let n = num(nc, "target_net_balance_tCO2_yr", &mut problems);
            let r = num(rc, "target_neutrality_ratio", &mut problems);
            if rows.insert(key.clone(), (n, r)).is_some() {
                problems.push(Error::input(
                    path,
                    format!("line {line}: a second target for {} {}", key.0, key.1),
                ));
            }
        }
        problems.finish()?;
        Ok(Targets { rows })
    }

    pub fn get(&self, level: &str, zone: &str) -> (Option<f64>, Option<f64>) {
        self.rows
            .get(&(level.to_string(), zone.to_string()))
            .copied()
            .unwrap_or((None, None))
    }
}

/// The indicator columns' names, after the zone table's totals.
pub fn headers(population: bool, targets: bool, previous: bool) -> Vec<String> {
    let mut h = vec![
        "net_balance_tCO2_ha_yr".to_string(),
        "zone_share_measured".to_string(),
    ];
    if population {
        h.extend(
            [
                "population_persons",
                "emissions_tCO2_per_person_yr",
                "net_balance_tCO2_per_person_yr",
            ]
            .map(String::from),
        );
    }
    if targets {
        h.extend(
            [
                "target_net_balance_tCO2_yr",
                "gap_to_target_tCO2_yr",
                "target_neutrality_ratio",
                "neutrality_ratio_gap",
            ]
            .map(String::from),
        );
    }
    if previous {
        h.extend(
            [
                "net_balance_previous_tCO2_yr",
                "net_balance_change_tCO2_yr",
                "emissions_change_tCO2_yr",
                "sequestration_change_tCO2_yr",
            ]
            .map(String::from),
        );
    }
    h
}

/// One zone's indicators (NaN where not defined): net per hectare of the measured area, per person, and the
/// gaps to its targets (net balance above the target, positive = still to cut; target ratio minus the ratio,
/// positive = sequestration still short).
pub struct ZoneFigures {
    pub area_ha: f64,
    pub emissions: f64,
    pub net: f64,
    pub ratio: f64,
    pub population: Option<f64>,
    pub targets: Option<(Option<f64>, Option<f64>)>,
    pub sequestration: f64,
    /// Share of the zone's polygon inside the sink raster (NaN for raster zones and the whole area): below 1,
    /// the zone is measured only in part and its totals cover that part.
    pub share_measured: f64,
    /// The previous run's emissions, sequestration and net balance of the zone.
    pub previous: Option<[f64; 3]>,
}

pub fn values(z: &ZoneFigures) -> Vec<f64> {
    let per = |x: f64, d: f64| if d > 0.0 { x / d } else { f64::NAN };
    let mut v = vec![per(z.net, z.area_ha), z.share_measured];
    if let Some(p) = z.population {
        v.extend([p, per(z.emissions, p), per(z.net, p)]);
    }
    if let Some((tn, tr)) = z.targets {
        let tn = tn.unwrap_or(f64::NAN);
        let tr = tr.unwrap_or(f64::NAN);
        v.extend([tn, z.net - tn, tr, tr - z.ratio]);
    }
    if let Some([pe, ps, pn]) = z.previous {
        v.extend([pn, z.net - pn, z.emissions - pe, z.sequestration - ps]);
    }
    v
}

/// A previous run's zone table (`zones_balance.csv` of the season before): each zone's emissions,
/// sequestration and net balance, for the change since then.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// (level, zone, parent) -> (emissions, sequestration, net balance), t CO2 yr-1.
    rows: BTreeMap<(String, String, String), [f64; 3]>,
}

impl Previous {
    /// The previous table, or None when the file does not exist (the first season): the caller warns.
    pub fn load(path: &Path) -> Result<Option<Previous>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = io::read_text(path, "a previous zone table (zones_balance.csv)")?;
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| Error::input(path, format!("cannot read the header line: {e}")))?
            .clone();
        let cols = [
            "level",
            "zone",
            "parent",
            "emissions_total_tCO2_yr",
            "sequestration_tCO2_yr",
            "net_balance_tCO2_yr",
        ];
        let idx: Vec<usize> = cols
            .iter()
            .map(|c| {
                headers.iter().position(|h| h == *c).ok_or_else(|| {
                    Error::input(
                        path,
                        format!("has no column {c}: not a carbonmap zone table"),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let mut rows = BTreeMap::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| Error::input(path, e.to_string()))?;
            let f = |k: usize| rec.get(idx[k]).unwrap_or("").to_string();
            let n = |k: usize| f(k).parse::<f64>().unwrap_or(f64::NAN);
            rows.insert((f(0), f(1), f(2)), [n(3), n(4), n(5)]);
        }
        Ok(Some(Previous { rows }))
    }

    pub fn get(&self, level: &str, zone: &str, parent: &str) -> [f64; 3] {
        self.rows
            .get(&(level.to_string(), zone.to_string(), parent.to_string()))
            .copied()
            .unwrap_or([f64::NAN; 3])
    }
}
