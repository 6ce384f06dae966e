//! `balance`'s tables: one row per lattice cell (cells CSV) and per zone at each level of the hierarchy
//! (zones CSV and GeoPackage), with units in every header.

use std::collections::BTreeMap;
use std::path::Path;

use super::{extent_polygon, indicators, Prepared, ZoneAcc};
use crate::error::{Error, Result};
use crate::io;
use crate::lattice::Lattice;
use crate::report;
use crate::zones::Zones;

pub(super) struct CellRow {
    pub(super) cell: usize,
    pub(super) coverage: f64,
    pub(super) valid: f64,
    pub(super) emissions_covered: f64,
    pub(super) sequestration: f64,
}

impl CellRow {
    pub(super) fn net_ratio(&self) -> (f64, f64) {
        (
            self.emissions_covered - self.sequestration,
            ratio(self.sequestration, self.emissions_covered),
        )
    }
}

pub(super) fn ratio(s: f64, e: f64) -> f64 {
    if e > 0.0 {
        s / e
    } else {
        f64::NAN
    }
}

pub(super) fn csv_err(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("writing a table failed: {e}"))
}

pub(super) fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

pub(super) fn cells_table(lat: &Lattice, rows: &[CellRow]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let mut h: Vec<String> = [
            "cell_id",
            "row",
            "col",
            "x_centre",
            "y_centre",
            "cell_area_ha",
            "coverage_fraction",
            "sink_valid_fraction",
        ]
        .map(String::from)
        .to_vec();
        h.extend(lat.sectors.iter().map(|s| format!("emissions_{s}_tCO2_yr")));
        h.extend(
            [
                "emissions_total_tCO2_yr",
                "emissions_covered_tCO2_yr",
                "sequestration_covered_tCO2_yr",
                "net_balance_covered_tCO2_yr",
                "neutrality_ratio",
            ]
            .map(String::from),
        );
        w.write_record(&h).map_err(csv_err)?;
        for r in rows.iter().filter(|r| r.coverage > 0.0) {
            let (row, col) = (r.cell / lat.grid.width, r.cell % lat.grid.width);
            let (net, rat) = r.net_ratio();
            let (cx, cy) = lat.grid.pixel_centre(col, row);
            let mut f = vec![
                lat.cell_id(r.cell),
                row.to_string(),
                col.to_string(),
                format!("{cx:?}"),
                format!("{cy:?}"),
                num(lat.cell_area_m2(r.cell) / 1e4),
                num(r.coverage),
                num(r.valid),
            ];
            f.extend(lat.mass.iter().map(|s| num(s[r.cell])));
            f.extend(
                [
                    lat.total(r.cell),
                    r.emissions_covered,
                    r.sequestration,
                    net,
                    rat,
                ]
                .map(num),
            );
            w.write_record(&f).map_err(csv_err)?;
        }
        w.flush().map_err(csv_err)?;
    }
    Ok(out)
}

/// (level, key path, sums) rows: the whole sink raster, then each level of the zone hierarchy.
pub(super) fn zone_table_rows(
    zones: Option<&Zones>,
    all: &ZoneAcc,
    acc: &BTreeMap<i32, ZoneAcc>,
    shapes: &[(f64, f64)],
) -> Vec<(String, Vec<String>, ZoneAcc, Vec<i32>)> {
    let mut rows = vec![(
        "all".to_string(),
        vec!["all".to_string()],
        all.clone(),
        vec![],
    )];
    let Some(z) = zones else { return rows };
    // Vector zones without any pixel still get a row (zero area) so that every zone is listed.
    let mut ids: Vec<i32> = acc.keys().copied().collect();
    if z.is_vector() {
        ids = (0..z.keys.len() as i32).collect();
    }
    for (lvl, name) in z.levels.iter().enumerate() {
        let mut grouped: BTreeMap<Vec<String>, (ZoneAcc, Vec<i32>)> = BTreeMap::new();
        for &id in &ids {
            let key: Vec<String> = z.key(id)[..=lvl].to_vec();
            let e = grouped.entry(key).or_default();
            if let Some(a) = acc.get(&id) {
                e.0.add(a);
            }
            if let Some(&(total, inside)) = shapes.get(id as usize) {
                e.0.shape_area += total;
                e.0.shape_area_inside += inside;
            }
            e.1.push(id);
        }
        for (key, (a, members)) in grouped {
            rows.push((name.clone(), key, a, members));
        }
    }
    rows
}

/// What the zone table's indicator columns need besides the zone sums (see `indicators`).
pub(super) struct Indicators<'a> {
    population: bool,
    targets: Option<&'a indicators::Targets>,
    previous: Option<&'a indicators::Previous>,
}

impl Indicators<'_> {
    pub(super) fn of(p: &Prepared) -> Indicators<'_> {
        Indicators {
            population: p.population.is_some(),
            targets: p.targets.as_ref(),
            previous: p.previous.as_ref(),
        }
    }

    pub(super) fn headers(&self) -> Vec<String> {
        indicators::headers(
            self.population,
            self.targets.is_some(),
            self.previous.is_some(),
        )
    }

    /// The indicator values of the zone at `level` whose path from the top level is `key`.
    pub(super) fn values(&self, level: &str, key: &[String], a: &ZoneAcc) -> Vec<f64> {
        let has = a.pixels > 0;
        let e: f64 = if has {
            a.emissions.iter().sum()
        } else {
            f64::NAN
        };
        let seq = if has { a.sequestration } else { f64::NAN };
        let zone = key.last().map_or("", String::as_str);
        let parent = key[..key.len().saturating_sub(1)].join("/");
        indicators::values(&indicators::ZoneFigures {
            area_ha: a.area_m2 / 1e4,
            emissions: e,
            net: e - seq,
            ratio: if has { ratio(seq, e) } else { f64::NAN },
            population: self.population.then_some(a.population),
            targets: self.targets.map(|t| t.get(level, zone)),
            sequestration: seq,
            share_measured: a.share_measured(),
            previous: self.previous.map(|pr| pr.get(level, zone, &parent)),
        })
    }
}

pub(super) fn zones_table(
    lat: &Lattice,
    rows: &[(String, Vec<String>, ZoneAcc, Vec<i32>)],
    ind: &Indicators,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let mut h: Vec<String> = [
            "level",
            "zone",
            "parent",
            "pixels",
            "area_ha",
            "sink_valid_area_ha",
        ]
        .map(String::from)
        .to_vec();
        h.extend(lat.sectors.iter().map(|s| format!("emissions_{s}_tCO2_yr")));
        h.extend(
            [
                "emissions_total_tCO2_yr",
                "sequestration_tCO2_yr",
                "net_balance_tCO2_yr",
                "neutrality_ratio",
            ]
            .map(String::from),
        );
        h.extend(ind.headers());
        w.write_record(&h).map_err(csv_err)?;
        for (level, key, a, _) in rows {
            let e: f64 = a.emissions.iter().sum();
            let mut f = vec![
                level.clone(),
                key.last().cloned().unwrap_or_default(),
                key[..key.len() - 1].join("/"),
                a.pixels.to_string(),
                num(a.area_m2 / 1e4),
                num(a.valid_area_m2 / 1e4),
            ];
            let has = a.pixels > 0;
            f.extend((0..lat.sectors.len()).map(|k| {
                if has {
                    num(a.emissions.get(k).copied().unwrap_or(0.0))
                } else {
                    String::new()
                }
            }));
            if has {
                f.extend(
                    [
                        e,
                        a.sequestration,
                        e - a.sequestration,
                        ratio(a.sequestration, e),
                    ]
                    .map(num),
                );
            } else {
                f.extend(std::iter::repeat_n(String::new(), 4));
            }
            f.extend(ind.values(level, key, a).into_iter().map(num));
            w.write_record(&f).map_err(csv_err)?;
        }
        w.flush().map_err(csv_err)?;
    }
    Ok(out)
}

/// A zone row of level `lvl` (named `level`): its key has one name a level down to it.
fn in_level(r: &(String, Vec<String>, ZoneAcc, Vec<i32>), lvl: usize, level: &str) -> bool {
    r.0 == level && r.1.len() == lvl + 1
}

/// Each zone row's shape, unclipped (None: not a zone row, or no shape): the finest level's dissolved from
/// its features, each coarser level's from its children's shapes, already dissolved (a province from its
/// cities, not from its 10,000 townships again). A zone's children hold exactly its features: every feature
/// has a row at every level, under its own key's prefixes.
fn dissolved_levels(
    z: &Zones,
    rows: &[(String, Vec<String>, ZoneAcc, Vec<i32>)],
) -> Vec<Option<gdal::vector::Geometry>> {
    let mut shapes: Vec<Option<gdal::vector::Geometry>> = rows.iter().map(|_| None).collect();
    let finest = z.levels.len().saturating_sub(1);
    for (lvl, level) in z.levels.iter().enumerate().rev() {
        // The level below's shapes by their parent's key.
        let mut children: BTreeMap<&[String], Vec<gdal::vector::Geometry>> = BTreeMap::new();
        if lvl < finest {
            for (i, r) in rows.iter().enumerate() {
                if in_level(r, lvl + 1, &z.levels[lvl + 1]) {
                    let g = shapes[i].clone();
                    children.entry(&r.1[..=lvl]).or_default().extend(g);
                }
            }
        }
        let at: Vec<usize> = (0..rows.len())
            .filter(|&i| in_level(&rows[i], lvl, level))
            .collect();
        let groups = (at.iter())
            .map(|&i| match lvl < finest {
                true => children.remove(&rows[i].1[..]).unwrap_or_default(),
                false => (rows[i].3.iter())
                    .filter_map(|&id| z.shapes[id as usize].clone())
                    .collect(),
            })
            .collect();
        for (i, g) in at.into_iter().zip(io::union_groups(groups)) {
            shapes[i] = g;
        }
    }
    shapes
}

pub(super) fn write_zones_gpkg(
    target: &Path,
    (z, lat): (&Zones, &Lattice),
    rows: &[(String, Vec<String>, ZoneAcc, Vec<i32>)],
    ind: &Indicators,
) -> Result<Vec<ZoneShape>> {
    use io::{VecField, VectorOut};
    // Zones are drawn as the part that was measured: their shapes clipped to the sink raster's extent.
    let extent = extent_polygon(&z.grid, target)?;
    let mut shapes = dissolved_levels(z, rows);
    let mut layers = Vec::new();
    let mut names = Vec::new(); // each layer's zone names, for the map
    for (lvl, level) in z.levels.iter().enumerate() {
        let at_level = |r: &&(String, Vec<String>, ZoneAcc, Vec<i32>)| in_level(r, lvl, level);
        let sel: Vec<_> = rows.iter().filter(at_level).collect();
        names.push(
            sel.iter()
                .map(|r| r.1.last().cloned().unwrap_or_default())
                .collect::<Vec<String>>(),
        );
        let geoms = (rows.iter().enumerate())
            .filter(|(_, r)| at_level(r))
            .map(|(i, _)| {
                let g = shapes[i].take();
                g.map(|g| io::clip_to_rect(&g, &extent).unwrap_or(g))
            })
            .collect();
        let mut columns = vec![
            ("zone".to_string(), VecField::Text(names[lvl].clone())),
            (
                "parent".to_string(),
                VecField::Text(sel.iter().map(|r| r.1[..r.1.len() - 1].join("/")).collect()),
            ),
            (
                "pixels".to_string(),
                VecField::Num(sel.iter().map(|r| r.2.pixels as f64).collect()),
            ),
            (
                "area_ha".to_string(),
                VecField::Num(sel.iter().map(|r| r.2.area_m2 / 1e4).collect()),
            ),
            (
                "sink_valid_area_ha".to_string(),
                VecField::Num(sel.iter().map(|r| r.2.valid_area_m2 / 1e4).collect()),
            ),
        ];
        let has = |r: &&(String, Vec<String>, ZoneAcc, Vec<i32>)| r.2.pixels > 0;
        for (k, s) in lat.sectors.iter().enumerate() {
            columns.push((
                format!("emissions_{s}_tCO2_yr"),
                VecField::Num(
                    sel.iter()
                        .map(|r| {
                            if has(r) {
                                r.2.emissions.get(k).copied().unwrap_or(0.0)
                            } else {
                                f64::NAN
                            }
                        })
                        .collect(),
                ),
            ));
        }
        let e = |r: &&(String, Vec<String>, ZoneAcc, Vec<i32>)| -> f64 {
            if has(r) {
                r.2.emissions.iter().sum()
            } else {
                f64::NAN
            }
        };
        columns.push((
            "emissions_total_tCO2_yr".into(),
            VecField::Num(sel.iter().map(e).collect()),
        ));
        columns.push((
            "sequestration_tCO2_yr".into(),
            VecField::Num(
                sel.iter()
                    .map(|r| if has(r) { r.2.sequestration } else { f64::NAN })
                    .collect(),
            ),
        ));
        columns.push((
            "net_balance_tCO2_yr".into(),
            VecField::Num(sel.iter().map(|r| e(r) - r.2.sequestration).collect()),
        ));
        columns.push((
            "neutrality_ratio".into(),
            VecField::Num(sel.iter().map(|r| ratio(r.2.sequestration, e(r))).collect()),
        ));
        // The indicators, as in the CSV.
        let figures: Vec<Vec<f64>> = sel.iter().map(|r| ind.values(level, &r.1, &r.2)).collect();
        for (k, name) in ind.headers().into_iter().enumerate() {
            columns.push((name, VecField::Num(figures.iter().map(|f| f[k]).collect())));
        }
        let net: Vec<f64> = sel.iter().map(|r| e(r) - r.2.sequestration).collect();
        layers.push(VectorOut {
            name: format!("balance_{level}"),
            geometries: geoms,
            columns,
            style: Some(report::zones_qml("net_balance_tCO2_yr", &net)?),
        });
    }
    io::write_gpkg(target, &z.crs_wkt, &layers)?;
    // The finest level's style also as a file beside the GeoPackage (QGIS: Layer Properties > Style > Load).
    if let Some(style) = layers.last().and_then(|l| l.style.as_ref()) {
        io::write_atomic(&target.with_extension("qml"), style.as_bytes())?;
    }
    // Every level's clipped shapes with the zone's name, for the map.
    let mut shapes = Vec::new();
    for (lvl, (l, names)) in layers.into_iter().zip(names).enumerate() {
        let named = names.into_iter().zip(l.geometries);
        shapes.extend(named.filter_map(|(n, g)| g.map(|g| (lvl, n, g))));
    }
    Ok(shapes)
}

/// A zone's shape clipped to the sink raster's extent, with its level (0: the coarsest) and name.
pub(super) type ZoneShape = (usize, String, gdal::vector::Geometry);
