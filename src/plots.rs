//! Field plots and other observation tables: a CSV with coordinate columns, or points from a vector file
//! (GeoPackage, GeoJSON, Shapefile through GDAL/OGR), each with an observed value in a declared unit and
//! optional id, class, site, zone, year and grouping columns. Everything is checked on load: missing or
//! non-numeric coordinates, unknown units and duplicate ids are errors that name the file and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Problems, Result};
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
/// The rows of a CSV (coordinates in `--plots-crs`, EPSG:4326 by default; none for a keyed table) or of a
/// vector layer (its own CRS, else `--plots-crs`), with the CRS of their coordinates.
fn read_rows(spec: &PlotSpec, cols: &[String]) -> Result<(Vec<Row>, Option<String>)> {
    let path = &spec.path;
    let is_csv = path
        .extension()
        .map(|e| e.eq_ignore_ascii_case("csv"))
        .unwrap_or(false);
    if is_csv || spec.key_field.is_some() {
        let crs = match (&spec.key_field, &spec.crs) {
            (Some(_), _) => None,
            (None, Some(c)) => Some(io::crs_wkt(c)?),
            (None, None) => Some(io::crs_wkt("EPSG:4326")?),
        };
        let xy = match spec.key_field {
            Some(_) => None,
            None => Some((spec.x_field.as_str(), spec.y_field.as_str())),
        };
        return Ok((read_csv(path, xy, cols)?, crs));
    }
    let (rows, crs) = read_points(spec, cols)?;
    let crs = match (crs, &spec.crs) {
        (Some(c), _) => c,
        (None, Some(c)) => io::crs_wkt(c)?,
        (None, None) => {
            return Err(Error::input(
                path,
                "the layer has no CRS; declare it with --plots-crs",
            ))
        }
    };
    Ok((rows, Some(crs)))
}

/// The options that decide units and classes, checked before any row is read.
fn check_spec(spec: &PlotSpec) -> Result<(Option<CarbonUnit>, Option<ClassMap>)> {
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
    if spec.class.is_some() && spec.class_field.is_some() {
        return Err(Error::Usage(
            "--plot-class gives every plot one class; --class-field reads it per plot: one of the two".into(),
        ));
    }
    let fixed_unit = match &spec.unit {
        Some(u) => Some(CarbonUnit::parse_for(u, path)?),
        None => None,
    };
    let class_map = match &spec.class_map {
        Some(m) if spec.class_field.is_none() => {
            return Err(Error::Usage(format!(
                "--class-map {m} maps the codes of --class-field: give the class column"
            )))
        }
        Some(m) => Some(ClassMap::resolve(m)?),
        None => None,
    };
    Ok((fixed_unit, class_map))
}

/// Rows to plots: filters, observation, unit, id, key, class (mapped), site, zone and groups.
struct RowReader<'a> {
    spec: &'a PlotSpec,
    cols: &'a [String],
    fixed_unit: Option<CarbonUnit>,
    class_map: Option<ClassMap>,
    /// Units parsed so far, by their text.
    units: BTreeMap<String, CarbonUnit>,
    /// Class codes the class map does not map, with their plot counts.
    unmapped: BTreeMap<String, usize>,
}

impl RowReader<'_> {
    fn value(&self, row: &Row, name: &str) -> Option<String> {
        let i = self.cols.iter().position(|c| c == name).expect("requested");
        row.vals[i].clone()
    }

    fn field(&self, row: &Row, name: &Option<String>) -> Option<String> {
        name.as_ref().and_then(|n| self.value(row, n))
    }

    /// Whether every filter keeps the row.
    fn kept(&self, row: &Row) -> bool {
        self.spec.filters.iter().all(|(f, allowed)| {
            self.value(row, f)
                .is_some_and(|v| allowed.iter().any(|a| *a == v))
        })
    }

    fn unit(&mut self, row: &Row) -> Result<CarbonUnit> {
        if let Some(u) = &self.fixed_unit {
            return Ok(u.clone());
        }
        let path = &self.spec.path;
        let f = self.spec.unit_field.as_ref().expect("checked");
        let text = self.value(row, f).ok_or_else(|| {
            Error::input(path, format!("{}: unit column {f} is empty", row.origin))
        })?;
        if let Some(u) = self.units.get(&text) {
            return Ok(u.clone());
        }
        let u = CarbonUnit::parse(&text)
            .map_err(|e| Error::input(path, format!("{}: {e}", row.origin)))?;
        self.units.insert(text, u.clone());
        Ok(u)
    }

    /// The plot of a row with an observation (`obs_text`).
    fn plot(&mut self, row: &Row, obs_text: &str) -> Result<Plot> {
        let spec = self.spec;
        let observed: f64 = obs_text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                Error::input(
                    &spec.path,
                    format!(
                        "{}: {} \"{obs_text}\" is not a number",
                        row.origin, spec.observed_field
                    ),
                )
            })?;
        let unit = self.unit(row)?;
        let key = self.field(row, &spec.key_field);
        if spec.key_field.is_some() && key.is_none() {
            let what = format!("{}: key column is empty", row.origin);
            return Err(Error::input(&spec.path, what));
        }
        let id = self
            .field(row, &spec.id_field)
            .or_else(|| key.clone())
            .unwrap_or_else(|| row.origin.clone());
        let (x, y) = row.point.unwrap_or((f64::NAN, f64::NAN));
        let mut class = self
            .field(row, &spec.class_field)
            .or_else(|| spec.class.clone());
        if let Some(m) = &self.class_map {
            // A code the map does not map leaves the plot without a class (counted).
            if let Some(c) = class.take() {
                class = m.map.get(&c).cloned();
                if class.is_none() {
                    *self.unmapped.entry(c).or_insert(0) += 1;
                }
            }
        }
        let groups = spec
            .group_fields
            .iter()
            .map(|g| self.value(row, g).unwrap_or_else(|| "(none)".into()))
            .collect();
        Ok(Plot {
            origin: row.origin.clone(),
            id,
            x,
            y,
            key,
            observed,
            unit,
            class,
            site: self.field(row, &spec.site_field),
            zone: self.field(row, &spec.zone_field),
            groups,
        })
    }
}

/// At most this many bad rows are listed (then their count).
const MAX_ROW_PROBLEMS: usize = 20;

pub fn load(spec: &PlotSpec) -> Result<Plots> {
    let path = &spec.path;
    let (fixed_unit, class_map) = check_spec(spec)?;
    let cols = spec.columns();
    let (rows, crs_wkt) = read_rows(spec, &cols)?;
    let mut reader = RowReader {
        spec,
        cols: &cols,
        fixed_unit,
        class_map,
        units: BTreeMap::new(),
        unmapped: BTreeMap::new(),
    };
    let mut plots = Vec::new();
    let mut filtered_out = 0;
    let mut without_observation = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut duplicates = Vec::new();
    // Every bad row is reported (the first MAX_ROW_PROBLEMS named), not only the first.
    let mut problems = Problems::new();
    let mut bad_rows = 0;
    for row in rows {
        if !reader.kept(&row) {
            filtered_out += 1;
            continue;
        }
        let Some(obs_text) = reader.value(&row, &spec.observed_field) else {
            without_observation.push(row.origin);
            continue;
        };
        let plot = match reader.plot(&row, &obs_text) {
            Ok(p) => p,
            Err(e) => {
                bad_rows += 1;
                if bad_rows <= MAX_ROW_PROBLEMS {
                    problems.push(e);
                }
                continue;
            }
        };
        if let Some(first) = seen.insert(plot.id.clone(), row.origin.clone()) {
            duplicates.push(format!("\"{}\" ({first} and {})", plot.id, row.origin));
        }
        plots.push(plot);
    }
    if bad_rows > MAX_ROW_PROBLEMS {
        let more = bad_rows - MAX_ROW_PROBLEMS;
        problems.push(Error::input(path, format!("{more} more bad row(s)")));
    }
    if !duplicates.is_empty() {
        let n = duplicates.len();
        duplicates.truncate(10);
        problems.push(Error::input(
            path,
            format!(
                "{n} duplicate plot id(s) in column {}: {}{}",
                spec.id_field.as_deref().unwrap_or("?"),
                duplicates.join(", "),
                if n > 10 { ", ..." } else { "" }
            ),
        ));
    }
    problems.finish()?;
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
        unmapped_classes: reader.unmapped,
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
