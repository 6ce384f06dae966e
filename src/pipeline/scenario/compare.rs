//! Scenario minus base: difference rasters of every period output of the NPP job (NPP, Rh, NEP,
//! sequestration; GPP for MOD17), and per zone the base, scenario and difference totals over the period, with
//! true pixel areas. Each total is over the pixels with a result in its own run; the difference column is the
//! scenario total minus the base total, so the table adds up, and the total row is the sum of the zone rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::run::StripOut;
use crate::error::{Error, Result};
use crate::io::{
    self, BandRequest, Grid, GridReader, OutBand, RasterInfo, RasterWriter, Resampling, Window,
    WriteOptions,
};
use crate::pipeline::balance::BalanceSummary;
use crate::pipeline::npp::NppSummary;
use crate::progress::Silent;
use crate::zones::{Zones, OUTSIDE};

use super::landcover::LandCover;
use super::substitute::Substitution;
use super::Scenario;

/// Period outputs compared, by file-name prefix, and how a pixel's value becomes a zone total: (prefix, total
/// column, factor from value x m2 to the column's unit).
const OUTPUTS: [(&str, &str, f64); 5] = [
    ("GPP_gC_m2", "GPP_tC", 1e-6),
    ("NPP_gC_m2", "NPP_tC", 1e-6),
    ("Rh_gC_m2", "Rh_tC", 1e-6),
    ("NEP_gC_m2", "NEP_tC", 1e-6),
    ("sequestration_tCO2_ha", "sequestration_tCO2", 1e-4),
];

pub struct Compared {
    pub outputs: Vec<PathBuf>,
    pub zone_table: String,
}

pub use crate::commit::readable;

/// Per zone: changed area (m2) and, per compared output, (base total, scenario total, base pixels without a
/// result, scenario pixels without a result).
#[derive(Default, Clone)]
struct ZoneRow {
    changed_m2: f64,
    totals: Vec<(f64, f64, u64, u64)>,
}

/// The outputs both runs wrote, as (index in OUTPUTS, base file, scenario file).
fn output_pairs(base: &NppSummary, scen: &NppSummary) -> Vec<(usize, PathBuf, PathBuf)> {
    let period = &base.period_label;
    let find = |run: &NppSummary, name: &str| {
        run.outputs
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
            .map(|p| readable(p))
    };
    OUTPUTS
        .iter()
        .enumerate()
        .filter_map(|(i, (prefix, _, _))| {
            let name = format!("{prefix}_{period}.tif");
            Some((i, find(base, &name)?, find(scen, &name)?))
        })
        .collect()
}

/// One difference raster per compared output, in OUT/difference, in the output's unit.
fn difference_writers(
    s: &Scenario,
    pairs: &[(usize, PathBuf, PathBuf)],
    grid: &Grid,
    (out_dir, period): (&Path, &str),
    write: &WriteOptions,
) -> Result<Vec<RasterWriter>> {
    let diff_dir = out_dir.join("difference");
    let mut writers = Vec::new();
    for (i, b, _) in pairs {
        let prefix = OUTPUTS[*i].0;
        let unit = RasterInfo::read(b)?.bands[0].unit.clone();
        let mut md = BTreeMap::new();
        md.insert("SCENARIO".to_string(), s.name.clone());
        md.insert(
            "DIFFERENCE".to_string(),
            "scenario minus base (positive: larger in the scenario)".to_string(),
        );
        md.insert("PERIOD".to_string(), period.to_string());
        md.insert("UNITS".to_string(), unit.clone());
        writers.push(RasterWriter::create::<f32>(
            &diff_dir.join(format!("{prefix}_difference_{period}.tif")),
            grid,
            &[OutBand {
                description: format!("{prefix}: scenario minus base, {period}"),
                unit,
            }],
            None,
            &md,
            write,
        )?);
    }
    Ok(writers)
}

pub fn run(
    s: &Scenario,
    grid: &Grid,
    base: &NppSummary,
    scen: &NppSummary,
    lc: &LandCover,
    out_dir: &Path,
    write: &WriteOptions,
) -> Result<Compared> {
    let period = &base.period_label;
    let pairs = output_pairs(base, scen);
    let reader = |p: &Path, band: usize| io::band_reader(p, band, grid, f64::NAN);
    let readers: Vec<(GridReader, GridReader)> = pairs
        .iter()
        .map(|(_, b, c)| Ok((reader(b, 1)?, reader(c, 1)?)))
        .collect::<Result<_>>()?;
    let changed = GridReader::new(
        &lc.scratch,
        &[BandRequest {
            index: 2,
            name: "change".into(),
        }],
        grid,
        Resampling::Nearest,
        None,
        0.0,
    )?;
    let zones = s.zones.as_ref().map(|z| Zones::load(z, grid)).transpose()?;
    let mut writers = difference_writers(s, &pairs, grid, (out_dir, period), write)?;
    let areas = crate::area::PixelAreas::of(grid)?;
    let mut rows: BTreeMap<i32, ZoneRow> = BTreeMap::new();
    let empty = ZoneRow {
        changed_m2: 0.0,
        totals: vec![(0.0, 0.0, 0, 0); pairs.len()],
    };
    let strip = crate::engine::strips::rows(
        grid.width,
        grid.height,
        24,
        4 * pairs.len().max(1),
        s.base.memory_mb,
    );
    let read = |s: Window| read_strip(zones.as_ref(), &changed, &readers, s);
    let kernel = |_, x: StripIn| {
        Ok(StripOut {
            planes: x
                .pairs
                .iter()
                .map(|(b, c)| {
                    vec![b
                        .iter()
                        .zip(c)
                        .map(|(b, c)| c - b)
                        .collect::<Vec<f32>>()
                        .into()]
                })
                .collect(),
            side: x,
        })
    };
    let dims = crate::engine::run::strips(grid.width, grid.height, strip);
    // Vector zones are rasterised on this thread (GDAL geometries are not `Send`): no read-ahead.
    crate::engine::run::run_local(
        "compare",
        dims,
        &mut writers,
        &Silent,
        (read, kernel),
        |s, x| {
            for (px, &id) in x.ids.iter().enumerate() {
                if x.changed[px] > 0 {
                    let a = areas.at(px % grid.width, s.row0 + px / grid.width);
                    rows.entry(id).or_insert_with(|| empty.clone()).changed_m2 += a;
                }
            }
            for (k, ((b, c), (i, _, _))) in x.pairs.iter().zip(&pairs).enumerate() {
                let factor = OUTPUTS[*i].2;
                for (px, &id) in x.ids.iter().enumerate() {
                    let a = areas.at(px % grid.width, s.row0 + px / grid.width) * factor;
                    let t = &mut rows.entry(id).or_insert_with(|| empty.clone()).totals[k];
                    if b[px].is_finite() {
                        t.0 += b[px] as f64 * a;
                    } else {
                        t.2 += 1;
                    }
                    if c[px].is_finite() {
                        t.1 += c[px] as f64 * a;
                    } else {
                        t.3 += 1;
                    }
                }
            }
        },
    )?;
    let mut outputs = Vec::new();
    for w in writers {
        outputs.push(w.finish()?.commit()?);
    }
    let cols: Vec<&str> = pairs.iter().map(|(i, _, _)| OUTPUTS[*i].1).collect();
    let (text, table) = zone_table(s, zones.as_ref(), &rows, &cols, out_dir, period)?;
    outputs.push(table);
    Ok(Compared {
        outputs,
        zone_table: text,
    })
}

/// A strip of the comparison's inputs: zone ids, the land-cover change flag, and each compared output's base
/// and scenario values.
struct StripIn {
    ids: Vec<i32>,
    changed: Vec<i32>,
    pairs: Vec<(Vec<f32>, Vec<f32>)>,
}

fn read_strip(
    zones: Option<&Zones>,
    changed: &GridReader,
    readers: &[(GridReader, GridReader)],
    s: Window,
) -> Result<StripIn> {
    let ids = match zones {
        Some(z) => z.read_rows(s.row0, s.nrows)?,
        None => vec![0; s.len()],
    };
    let mut ch = vec![0i32; s.len()];
    changed.read_rows(0, s.row0, s.nrows, &mut ch)?;
    let mut pairs = Vec::with_capacity(readers.len());
    for (br, cr) in readers {
        let (mut b, mut c) = (vec![0f32; s.len()], vec![0f32; s.len()]);
        br.read_rows(0, s.row0, s.nrows, &mut b)?;
        cr.read_rows(0, s.row0, s.nrows, &mut c)?;
        pairs.push((b, c));
    }
    Ok(StripIn {
        ids,
        changed: ch,
        pairs,
    })
}

/// scenario_zones_PERIOD.csv: one row per zone (and outside the zones), then the total.
fn zone_table(
    s: &Scenario,
    zones: Option<&Zones>,
    rows: &BTreeMap<i32, ZoneRow>,
    cols: &[&str],
    out_dir: &Path,
    period: &str,
) -> Result<(String, PathBuf)> {
    let levels: Vec<String> = zones.map_or_else(|| vec!["zone".to_string()], |z| z.levels.clone());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = levels.clone();
    header.push("changed_ha".into());
    for c in cols {
        for run in ["base", "scenario", "difference"] {
            header.push(format!("{c}_{run}"));
        }
    }
    for c in cols {
        header.push(format!("{c}_pixels_without_result_base"));
        header.push(format!("{c}_pixels_without_result_scenario"));
    }
    let csv_err = |e: csv::Error| Error::Processing(format!("scenario zone table: {e}"));
    w.write_record(&header).map_err(csv_err)?;
    let mut total = ZoneRow {
        changed_m2: 0.0,
        totals: vec![(0.0, 0.0, 0, 0); cols.len()],
    };
    let mut record = |key: Vec<String>, r: &ZoneRow| -> Result<()> {
        let mut rec = key;
        rec.push(fmt(r.changed_m2 / 1e4));
        for t in &r.totals {
            rec.extend([fmt(t.0), fmt(t.1), fmt(t.1 - t.0)]);
        }
        for t in &r.totals {
            rec.extend([t.2.to_string(), t.3.to_string()]);
        }
        w.write_record(&rec).map_err(csv_err)
    };
    for (id, r) in rows {
        let key = match (zones, *id == OUTSIDE) {
            (_, true) | (None, _) => {
                let mut k = vec![String::new(); levels.len()];
                k[0] = if zones.is_some() {
                    "(outside the zones)".into()
                } else {
                    "(whole grid)".into()
                };
                k
            }
            (Some(z), false) => z.key(*id),
        };
        record(key, r)?;
        total.changed_m2 += r.changed_m2;
        for (t, z) in total.totals.iter_mut().zip(&r.totals) {
            *t = (t.0 + z.0, t.1 + z.1, t.2 + z.2, t.3 + z.3);
        }
    }
    if zones.is_some() {
        let mut k = vec![String::new(); levels.len()];
        k[0] = "(total)".into();
        record(k, &total)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Processing(format!("scenario zone table: {e}")))?;
    let target = out_dir.join(format!("scenario_zones_{period}.csv"));
    let notes = vec![
        format!("scenario {}: {}", s.name, s.description),
        format!(
            "totals over the period {period} (not per year): t C for GPP, NPP, Rh and NEP, t CO2 for sequestration, with true pixel areas"
        ),
        "difference = scenario minus base; positive sequestration and NEP differences mean more uptake in the scenario".into(),
        "each total is over the pixels with a result in its own run; pixels without one are counted".into(),
    ];
    io::write_table(&target, &bytes, &notes)?;
    Ok((short_view(&bytes, levels.len()), target))
}

/// The zone table for the terminal: the zone, the changed area and the sequestration columns.
fn short_view(csv_bytes: &[u8], nlevels: usize) -> String {
    let mut r = csv::Reader::from_reader(csv_bytes);
    let header: Vec<String> = r
        .headers()
        .map(|h| h.iter().map(str::to_string).collect())
        .unwrap_or_default();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| {
            let h = &header[i];
            i < nlevels
                || h == "changed_ha"
                || (h.starts_with("sequestration_tCO2_") && !h.contains("pixels"))
        })
        .collect();
    let line = |cells: Vec<&str>| cells.join("  ") + "\n";
    let mut out = line(keep.iter().map(|&i| header[i].as_str()).collect());
    for rec in r.records().flatten() {
        out += &line(keep.iter().map(|&i| rec.get(i).unwrap_or("")).collect());
    }
    out
}

pub(super) fn fmt(v: f64) -> String {
    format!("{v:.6}")
}

/// scenario_changes.csv (pixels and area per change and transition) and scenario_substitution.csv (the
/// donors of every changed group and month).
pub fn change_tables(
    s: &Scenario,
    lc: &LandCover,
    subst: &Substitution,
    out_dir: &Path,
    period: &str,
) -> Result<Vec<PathBuf>> {
    let name = |c: i64| {
        s.legend
            .class(c)
            .map_or_else(String::new, |c| c.name.clone())
    };
    let mut a = String::from("change,from_code,from_name,to_code,to_name,pixels,area_ha\n");
    for st in &lc.changes {
        for ((from, to), (n, m2)) in &st.transitions {
            a += &format!(
                "\"{}\",{from},\"{}\",{to},\"{}\",{n},{}\n",
                st.label,
                name(*from),
                name(*to),
                fmt(m2 / 1e4)
            );
        }
    }
    let mut b = String::from(
        "change,class_code,class_name,month,donor_scope,donors,ndvi_median,ndvi_p25,ndvi_p75\n",
    );
    // Text fields quoted, quotes doubled (RFC 4180): names and scopes may hold commas.
    let q = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    for r in &subst.rows {
        b += &format!(
            "{},{},{},{},{},{},{},{},{}\n",
            q(&r.change),
            r.class,
            q(&name(r.class)),
            r.month,
            q(&r.scope),
            r.donors,
            fmt(r.median),
            fmt(r.p25),
            fmt(r.p75)
        );
    }
    let ta = out_dir.join("scenario_changes.csv");
    let tb = out_dir.join(format!("scenario_substitution_{period}.csv"));
    let notes_a = vec![format!(
        "scenario {}: land-cover changes applied in order, a later change wins",
        s.name
    )];
    let mut notes_b = vec![format!(
        "space-for-time substitution: each month, changed pixels take the median NDVI of unchanged pixels of their new class within {} m of the change's bounding box (the whole scene below {} donors; without any, the class's vegetation type's profile of a climatology table, donor_scope climatology)",
        s.substitution.distance_m, s.substitution.min_pixels
    )];
    notes_b.extend(
        subst
            .climatology_citation
            .iter()
            .map(|c| format!("climatology: {c}")),
    );
    io::write_table(&ta, a.as_bytes(), &notes_a)?;
    io::write_table(&tb, b.as_bytes(), &notes_b)?;
    Ok(vec![ta, tb])
}

/// The balances of base and scenario compared: difference rasters of the fine emissions (total) and net
/// balance, and `scenario_balance_zones.csv` joining both runs' zone tables (t CO2 yr-1).
pub fn balance(
    s: &Scenario,
    grid: &Grid,
    base: &BalanceSummary,
    scen: &BalanceSummary,
    out_dir: &Path,
    write: &WriteOptions,
) -> Result<(Vec<PathBuf>, String)> {
    let find = |outs: &[PathBuf], name: &str| -> Result<PathBuf> {
        outs.iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
            .map(|p| readable(p))
            .ok_or_else(|| Error::Processing(format!("the balance wrote no {name}")))
    };
    let mut outputs = Vec::new();
    for (name, what) in [
        (
            "net_balance_tCO2_ha_yr",
            "net balance (positive: more net emissions in the scenario)",
        ),
        ("emissions_tCO2_ha_yr", "emissions, all sectors"),
    ] {
        let file = format!("{name}.tif");
        let (b, c) = (find(&base.outputs, &file)?, find(&scen.outputs, &file)?);
        let target = out_dir
            .join("difference")
            .join(format!("{name}_difference.tif"));
        outputs.push(difference(s, grid, (&b, &c), &target, what, write)?);
    }
    let (b, c) = (
        find(&base.outputs, "zones_balance.csv")?,
        find(&scen.outputs, "zones_balance.csv")?,
    );
    let (text, table) = join_zone_balances(s, &b, &c, out_dir)?;
    outputs.push(table);
    outputs.push(join_lattice_balances(
        s,
        &find(&base.outputs, "lattice_balance.csv")?,
        &find(&scen.outputs, "lattice_balance.csv")?,
        out_dir,
    )?);
    Ok((outputs, text))
}

/// `target` = scenario minus base of band 1 of two rasters on the grid.
fn difference(
    s: &Scenario,
    grid: &Grid,
    (base, scen): (&Path, &Path),
    target: &Path,
    what: &str,
    write: &WriteOptions,
) -> Result<PathBuf> {
    let unit = RasterInfo::read(base)?.bands[0].unit.clone();
    let reader = |p: &Path| io::band_reader(p, 1, grid, f64::NAN);
    let (br, cr) = (reader(base)?, reader(scen)?);
    let mut md = BTreeMap::new();
    md.insert("SCENARIO".to_string(), s.name.clone());
    md.insert(
        "DIFFERENCE".to_string(),
        format!("scenario minus base: {what}"),
    );
    md.insert("UNITS".to_string(), unit.clone());
    let w = RasterWriter::create::<f32>(
        target,
        grid,
        &[OutBand {
            description: format!("{what}: scenario minus base"),
            unit,
        }],
        None,
        &md,
        write,
    )?;
    let strip = crate::engine::strips::rows(grid.width, grid.height, 12, 4, s.base.memory_mb);
    let read = move |s: Window| {
        let (mut b, mut c) = (vec![0f32; s.len()], vec![0f32; s.len()]);
        br.read_rows(0, s.row0, s.nrows, &mut b)?;
        cr.read_rows(0, s.row0, s.nrows, &mut c)?;
        Ok((b, c))
    };
    let kernel = |_, (b, c): (Vec<f32>, Vec<f32>)| {
        Ok(StripOut {
            planes: vec![vec![b
                .iter()
                .zip(&c)
                .map(|(b, c)| c - b)
                .collect::<Vec<f32>>()
                .into()]],
            side: (),
        })
    };
    let mut writers = [w];
    let dims = crate::engine::run::strips(grid.width, grid.height, strip);
    crate::engine::run::run(what, dims, &mut writers, &Silent, (read, kernel), |_, _| {})?;
    let [w] = writers;
    w.finish()?.commit()
}

/// scenario_balance_zones.csv: per row of the balance's zone table (level, zone, parent), emissions,
/// sequestration and net balance of base and scenario and their difference.
/// Rows of a table: the `keys` columns' text and the `cols` columns' numbers (NaN when empty).
type Rows = Vec<(Vec<String>, Vec<f64>)>;

fn read_keyed(p: &Path, keys: &[&str], cols: &[&str]) -> Result<Rows> {
    let mut r = csv::Reader::from_path(p)
        .map_err(|e| Error::Processing(format!("{}: {e}", p.display())))?;
    let h = r
        .headers()
        .map_err(|e| Error::Processing(e.to_string()))?
        .clone();
    let idx = |k: &str| h.iter().position(|x| x == k);
    let keys: Vec<usize> = keys.iter().filter_map(|k| idx(k)).collect();
    let vals: Vec<Option<usize>> = cols.iter().map(|k| idx(k)).collect();
    r.records()
        .map(|rec| {
            let rec = rec.map_err(|e| Error::Processing(e.to_string()))?;
            Ok((
                keys.iter()
                    .map(|&i| rec.get(i).unwrap_or("").to_string())
                    .collect(),
                vals.iter()
                    .map(|i| {
                        i.and_then(|i| rec.get(i))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN)
                    })
                    .collect(),
            ))
        })
        .collect()
}

/// scenario_balance_lattice.csv: every lattice cell the area covers with its covered emissions,
/// sequestration and net balance for base, scenario and their difference (t CO2 yr-1).
fn join_lattice_balances(
    s: &Scenario,
    base: &Path,
    scen: &Path,
    out_dir: &Path,
) -> Result<PathBuf> {
    const KEYS: [&str; 5] = ["cell_id", "row", "col", "x_centre", "y_centre"];
    const COLS: [&str; 3] = [
        "emissions_covered_tCO2_yr",
        "sequestration_covered_tCO2_yr",
        "net_balance_covered_tCO2_yr",
    ];
    let (b, c) = (
        read_keyed(base, &KEYS, &COLS)?,
        read_keyed(scen, &KEYS, &COLS)?,
    );
    let mut out = KEYS.join(",");
    for col in COLS {
        out += &format!(",{col}_base,{col}_scenario,{col}_difference");
    }
    out += "\n";
    for (key, bv) in &b {
        let Some((_, cv)) = c.iter().find(|(k, _)| k[0] == key[0]) else {
            continue;
        };
        out += &format!("\"{}\",{}", key[0], key[1..].join(","));
        for (x, y) in bv.iter().zip(cv) {
            out += &format!(",{},{},{}", fmt(*x), fmt(*y), fmt(y - x));
        }
        out += "\n";
    }
    let target = out_dir.join("scenario_balance_lattice.csv");
    let notes = vec![
        format!("scenario {}: {}", s.name, s.description),
        "t CO2 yr-1 for the part of each lattice cell the area covers (emission changes included there); net balance = emissions - sequestration, positive = net source; difference = scenario minus base".into(),
    ];
    io::write_table(&target, out.as_bytes(), &notes)?;
    Ok(target)
}

fn join_zone_balances(
    s: &Scenario,
    base: &Path,
    scen: &Path,
    out_dir: &Path,
) -> Result<(String, PathBuf)> {
    const COLS: [&str; 3] = [
        "emissions_total_tCO2_yr",
        "sequestration_tCO2_yr",
        "net_balance_tCO2_yr",
    ];
    let read = |p: &Path| read_keyed(p, &["level", "zone", "parent"], &COLS);
    let (b, c) = (read(base)?, read(scen)?);
    let mut out = String::from("level,zone,parent");
    for col in COLS {
        out += &format!(",{col}_base,{col}_scenario,{col}_difference");
    }
    out += "\n";
    let mut view = String::from("level  zone  net_balance_tCO2_yr_base  net_balance_tCO2_yr_scenario  net_balance_tCO2_yr_difference\n");
    for (key, bv) in &b {
        let Some((_, cv)) = c.iter().find(|(k, _)| k == key) else {
            continue;
        };
        out += &key
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(",");
        for (x, y) in bv.iter().zip(cv) {
            out += &format!(",{},{},{}", fmt(*x), fmt(*y), fmt(y - x));
        }
        out += "\n";
        view += &format!(
            "{}  {}  {}  {}  {}\n",
            key[0],
            key.get(1).map_or("", |s| s.as_str()),
            fmt(bv[2]),
            fmt(cv[2]),
            fmt(cv[2] - bv[2])
        );
    }
    let target = out_dir.join("scenario_balance_zones.csv");
    let notes = vec![
        format!("scenario {}: {}", s.name, s.description),
        "t CO2 yr-1 (the balance of a calendar year); net balance = emissions - sequestration, positive = net source; difference = scenario minus base (negative net balance difference: the scenario emits less net)".into(),
    ];
    io::write_table(&target, out.as_bytes(), &notes)?;
    Ok((view, target))
}
