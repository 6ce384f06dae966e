//! Field plots and other observation tables: a CSV with coordinate columns, or points from a vector file
//! (GeoPackage, GeoJSON, Shapefile through GDAL/OGR), each with an observed value in a declared unit and
//! optional id, class, site, zone, year and grouping columns. Everything is checked on load: missing or
//! non-numeric coordinates, unknown units and duplicate ids are errors that name the file and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io;
use crate::units::CarbonUnit;

/// How to read an observation table.
#[derive(Debug, Clone, Default)]
pub struct PlotSpec {
    pub path: PathBuf,
    /// Vector layer name (files with several layers).
    pub layer: Option<String>,
    /// CSV coordinate columns (x = longitude / easting, y = latitude / northing).
    pub x_field: String,
    pub y_field: String,
    /// CRS of CSV coordinates (EPSG:4326 when not given); vector files carry their own.
    pub crs: Option<String>,
    /// A table without coordinates, joined to a model table on this column (for example a date).
    pub key_field: Option<String>,
    pub id_field: Option<String>,
    pub observed_field: String,
    /// One unit for every row ...
    pub unit: Option<String>,
    /// ... or a column holding each row's unit (as ForC's `units`).
    pub unit_field: Option<String>,
    pub class_field: Option<String>,
    /// One class for every plot (a tower's vegetation type), instead of a class column.
    pub class: Option<String>,
    /// Map the class column's codes to carbonmap's vegetation types (models/class-maps/NAME.toml or a file).
    pub class_map: Option<String>,
    /// Plots of one site are kept together in cross-validation folds.
    pub site_field: Option<String>,
    /// Zone of each plot from a column (instead of a zone layer).
    pub zone_field: Option<String>,
    /// Further columns to summarise by (for example a biome).
    pub group_fields: Vec<String>,
    /// Keep only rows where FIELD equals one of the values (FIELD=V1,V2); several filters all apply.
    pub filters: Vec<(String, Vec<String>)>,
}

/// One observation.
#[derive(Debug, Clone)]
pub struct Plot {
    /// Where it came from ("line 12" or "feature 3"), for messages.
    pub origin: String,
    pub id: String,
    /// Coordinates in the table's CRS (NaN in a keyed table).
    pub x: f64,
    pub y: f64,
    pub key: Option<String>,
    pub observed: f64,
    pub unit: CarbonUnit,
    pub class: Option<String>,
    pub site: Option<String>,
    pub zone: Option<String>,
    pub groups: Vec<String>,
}

/// The plots of one table and what was left out.
#[derive(Debug, Clone)]
pub struct Plots {
    pub path: PathBuf,
    /// CRS of the coordinates (WKT); None for keyed tables.
    pub crs_wkt: Option<String>,
    pub plots: Vec<Plot>,
    /// Rows dropped by the filters.
    pub filtered_out: usize,
    /// Rows kept by the filters whose observation is empty or NA (listed by origin).
    pub without_observation: Vec<String>,
    /// Class codes the class map does not map, with their plot counts (those plots have no class).
    pub unmapped_classes: BTreeMap<String, usize>,
}

/// A table from a plot table's own class codes to carbonmap's vegetation types.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMap {
    pub name: String,
    pub citation: String,
    pub map: BTreeMap<String, String>,
}

impl ClassMap {
    /// A built-in map by name (models/class-maps/) or a .toml file; every target must be a vegetation type.
    pub fn resolve(name_or_path: &str) -> Result<ClassMap> {
        let (m, path): (ClassMap, _) =
            crate::models::resolve_table("class map", "class-maps/", name_or_path)?;
        let types: Vec<String> = crate::landcover::vegetation_types()?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let bad: Vec<String> = m
            .map
            .iter()
            .filter(|(_, t)| !types.contains(t))
            .map(|(k, t)| format!("{k} = \"{t}\""))
            .collect();
        if !bad.is_empty() {
            return Err(Error::config(
                &path,
                format!(
                    "not vegetation types: {} (known: {})",
                    bad.join(", "),
                    types.join(", ")
                ),
            ));
        }
        Ok(m)
    }
}

/// A row of a table: the requested columns' values (None = empty or NA) and its coordinates.
pub struct Row {
    /// "line 12" or "feature 3", for messages.
    pub origin: String,
    pub vals: Vec<Option<String>>,
    pub point: Option<(f64, f64)>,
}

fn is_missing(s: &str) -> bool {
    let t = s.trim();
    t.is_empty() || ["na", "nan", "ni", "null", "none"].contains(&t.to_ascii_lowercase().as_str())
}

impl PlotSpec {
    /// The columns this spec reads (besides coordinates).
    fn columns(&self) -> Vec<String> {
        let mut c = vec![self.observed_field.clone()];
        for f in [
            &self.id_field,
            &self.unit_field,
            &self.class_field,
            &self.site_field,
            &self.zone_field,
            &self.key_field,
        ]
        .into_iter()
        .flatten()
        {
            c.push(f.clone());
        }
        c.extend(self.group_fields.iter().cloned());
        c.extend(self.filters.iter().map(|f| f.0.clone()));
        c.sort();
        c.dedup();
        c
    }
}

/// Read a CSV (header line, comma separated) into rows of the requested columns and, when `xy` names the
/// coordinate columns, coordinates (missing or non-numeric ones are errors naming the line).
/// (No comment lines: the csv crate's line numbers are only exact without them.)
pub fn read_csv(path: &Path, xy: Option<(&str, &str)>, cols: &[String]) -> Result<Vec<Row>> {
    let text = crate::io::read_text(path, "a CSV table")?;
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = r
        .headers()
        .map_err(|e| Error::input(path, format!("no header line: {e}")))?
        .clone();
    let col = |n: &str| {
        h.iter().position(|x| x.trim() == n).ok_or_else(|| {
            Error::input(
                path,
                format!(
                    "has no column \"{n}\" (columns: {})",
                    h.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    };
    let idx = cols.iter().map(|c| col(c)).collect::<Result<Vec<_>>>()?;
    let xy_idx = match xy {
        None => None,
        Some((x, y)) => Some((col(x)?, col(y)?, x, y)),
    };
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| Error::input(path, format!("{e}")))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let origin = format!("line {line}");
        let vals = idx
            .iter()
            .map(|&i| {
                rec.get(i)
                    .filter(|s| !is_missing(s))
                    .map(|s| s.trim().to_string())
            })
            .collect();
        let point = match xy_idx {
            None => None,
            Some((xc, yc, xname, yname)) => {
                let num = |c: usize, name: &str| -> Result<f64> {
                    let t = rec.get(c).unwrap_or("").trim();
                    if is_missing(t) {
                        return Err(Error::input(
                            path,
                            format!("{origin}: coordinate {name} is missing"),
                        ));
                    }
                    t.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            Error::input(
                                path,
                                format!("{origin}: coordinate {name} \"{t}\" is not a number"),
                            )
                        })
                };
                Some((num(xc, xname)?, num(yc, yname)?))
            }
        };
        rows.push(Row {
            origin,
            vals,
            point,
        });
    }
    Ok(rows)
}

/// Read a vector layer's points.
fn read_points(spec: &PlotSpec, cols: &[String]) -> Result<(Vec<Row>, Option<String>)> {
    let layer = io::read_vector(&spec.path, spec.layer.as_deref(), cols)?;
    let mut rows = Vec::new();
    for f in layer.features {
        let origin = format!("feature {}", f.fid);
        let point = io::point_of(f.geometry.as_ref()).ok_or_else(|| {
            Error::input(&spec.path, format!("{origin}: plots must be points (this feature has another geometry type, or none)"))
        })?;
        rows.push(Row {
            origin,
            vals: f
                .fields
                .into_iter()
                .map(|v| v.map(|v| v.text()).filter(|s| !is_missing(s)))
                .collect(),
            point: Some(point),
        });
    }
    Ok((rows, layer.crs_wkt))
}

/// Load and check an observation table.
pub fn load(spec: &PlotSpec) -> Result<Plots> {
    let path = &spec.path;
    if !path.exists() {
        return Err(Error::input(path, "file does not exist"));
    }
    if spec.unit.is_some() == spec.unit_field.is_some() {
        return Err(Error::Usage(format!(
            "{}: give the observations' unit (--observed-unit, for example \"Mg C ha-1 yr-1\") or the column that holds it (--observed-unit-field), one of the two: units are never assumed",
            path.display()
        )));
    }
    let fixed_unit = match &spec.unit {
        Some(u) => Some(CarbonUnit::parse_for(u, path)?),
        None => None,
    };
    let cols = spec.columns();
    let is_csv = path
        .extension()
        .map(|e| e.eq_ignore_ascii_case("csv"))
        .unwrap_or(false);
    let (rows, crs_wkt) = if is_csv || spec.key_field.is_some() {
        let crs = match (&spec.key_field, &spec.crs) {
            (Some(_), _) => None,
            (None, Some(c)) => Some(io::crs_wkt(c)?),
            (None, None) => Some(io::crs_wkt("EPSG:4326")?),
        };
        let xy = match spec.key_field {
            Some(_) => None,
            None => Some((spec.x_field.as_str(), spec.y_field.as_str())),
        };
        (read_csv(path, xy, &cols)?, crs)
    } else {
        let (rows, crs) = read_points(spec, &cols)?;
        let crs = match (crs, &spec.crs) {
            (Some(c), _) => Some(c),
            (None, Some(c)) => Some(io::crs_wkt(c)?),
            (None, None) => {
                return Err(Error::input(
                    path,
                    "the layer has no CRS; declare it with --plots-crs",
                ))
            }
        };
        (rows, crs)
    };
    let ci = |name: &str| cols.iter().position(|c| c == name).expect("requested");
    let get = |row: &Row, name: &Option<String>| -> Option<String> {
        name.as_ref().and_then(|n| row.vals[ci(n)].clone())
    };
    let mut units: BTreeMap<String, CarbonUnit> = BTreeMap::new();
    let mut plots = Vec::new();
    let mut filtered_out = 0;
    let mut without_observation = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    if spec.class.is_some() && spec.class_field.is_some() {
        return Err(Error::Usage(
            "--plot-class gives every plot one class; --class-field reads it per plot: one of the two".into(),
        ));
    }
    let class_map = match &spec.class_map {
        Some(m) if spec.class_field.is_none() => {
            return Err(Error::Usage(format!(
                "--class-map {m} maps the codes of --class-field: give the class column"
            )))
        }
        Some(m) => Some(ClassMap::resolve(m)?),
        None => None,
    };
    let mut unmapped: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = Vec::new();
    'rows: for row in rows {
        for (f, allowed) in &spec.filters {
            match &row.vals[ci(f)] {
                Some(v) if allowed.iter().any(|a| a == v) => {}
                _ => {
                    filtered_out += 1;
                    continue 'rows;
                }
            }
        }
        let Some(obs_text) = row.vals[ci(&spec.observed_field)].clone() else {
            without_observation.push(row.origin);
            continue;
        };
        let observed: f64 = obs_text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                Error::input(
                    path,
                    format!(
                        "{}: {} \"{obs_text}\" is not a number",
                        row.origin, spec.observed_field
                    ),
                )
            })?;
        let unit = match &fixed_unit {
            Some(u) => u.clone(),
            None => {
                let f = spec.unit_field.as_ref().expect("checked");
                let text = row.vals[ci(f)].clone().ok_or_else(|| {
                    Error::input(path, format!("{}: unit column {f} is empty", row.origin))
                })?;
                match units.get(&text) {
                    Some(u) => u.clone(),
                    None => {
                        let u = CarbonUnit::parse(&text)
                            .map_err(|e| Error::input(path, format!("{}: {e}", row.origin)))?;
                        units.insert(text, u.clone());
                        u
                    }
                }
            }
        };
        let id = get(&row, &spec.id_field)
            .or_else(|| get(&row, &spec.key_field))
            .unwrap_or_else(|| row.origin.clone());
        if let Some(first) = seen.insert(id.clone(), row.origin.clone()) {
            duplicates.push(format!("\"{id}\" ({first} and {})", row.origin));
        }
        let key = get(&row, &spec.key_field);
        if spec.key_field.is_some() && key.is_none() {
            return Err(Error::input(
                path,
                format!("{}: key column is empty", row.origin),
            ));
        }
        let (x, y) = row.point.unwrap_or((f64::NAN, f64::NAN));
        let mut class = get(&row, &spec.class_field).or_else(|| spec.class.clone());
        if let (Some(m), Some(c)) = (&class_map, &class) {
            match m.map.get(c) {
                Some(t) => class = Some(t.clone()),
                None => {
                    *unmapped.entry(c.clone()).or_insert(0) += 1;
                    class = None;
                }
            }
        }
        plots.push(Plot {
            origin: row.origin.clone(),
            id,
            x,
            y,
            key,
            observed,
            unit,
            class,
            site: get(&row, &spec.site_field),
            zone: get(&row, &spec.zone_field),
            groups: spec
                .group_fields
                .iter()
                .map(|g| row.vals[ci(g)].clone().unwrap_or_else(|| "(none)".into()))
                .collect(),
        });
    }
    if !duplicates.is_empty() {
        let n = duplicates.len();
        duplicates.truncate(10);
        return Err(Error::input(
            path,
            format!(
                "{n} duplicate plot id(s) in column {}: {}{}",
                spec.id_field.as_deref().unwrap_or("?"),
                duplicates.join(", "),
                if n > 10 { ", ..." } else { "" }
            ),
        ));
    }
    if plots.is_empty() {
        return Err(Error::input(
            path,
            format!(
                "no observations left ({filtered_out} rows filtered out, {} without a value in {})",
                without_observation.len(),
                spec.observed_field
            ),
        ));
    }
    Ok(Plots {
        path: path.to_path_buf(),
        crs_wkt,
        plots,
        filtered_out,
        without_observation,
        unmapped_classes: unmapped,
    })
}

/// Values of column `value` keyed by column `key` (a model table: one row per key; empty or NA = NaN).
pub fn read_keyed(path: &Path, key: &str, value: &str) -> Result<BTreeMap<String, f64>> {
    let cols = [key.to_string(), value.to_string()];
    let mut out = BTreeMap::new();
    for row in read_csv(path, None, &cols)? {
        let k = row.vals[0].clone().ok_or_else(|| {
            Error::input(path, format!("{}: key column {key} is empty", row.origin))
        })?;
        let v = match &row.vals[1] {
            None => f64::NAN,
            Some(t) => t.parse::<f64>().map_err(|_| {
                Error::input(
                    path,
                    format!("{}: {value} \"{t}\" is not a number", row.origin),
                )
            })?,
        };
        if out.insert(k.clone(), v).is_some() {
            return Err(Error::input(
                path,
                format!("{}: a second row for {key} = {k}", row.origin),
            ));
        }
    }
    Ok(out)
}

/// Parse "FIELD=V1,V2" filters.
pub fn parse_filter(text: &str) -> std::result::Result<(String, Vec<String>), String> {
    let (f, v) = text
        .split_once('=')
        .ok_or_else(|| format!("filter \"{text}\": expected FIELD=VALUE[,VALUE...]"))?;
    Ok((
        f.trim().to_string(),
        v.split(',').map(|s| s.trim().to_string()).collect(),
    ))
}

impl Plots {
    /// Coordinates of every plot in `to_wkt`.
    pub fn coordinates_in(&self, to_wkt: &str) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut xs: Vec<f64> = self.plots.iter().map(|p| p.x).collect();
        let mut ys: Vec<f64> = self.plots.iter().map(|p| p.y).collect();
        let from = self
            .crs_wkt
            .as_deref()
            .ok_or_else(|| Error::input(&self.path, "has no coordinates (a keyed table)"))?;
        io::transform_points(from, to_wkt, &mut xs, &mut ys)?;
        Ok((xs, ys))
    }
}
