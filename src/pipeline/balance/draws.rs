//! `balance --draws`: every zone's (zones_balance_draws.csv) and every lattice cell's covered
//! (lattice_balance_draws.csv) emissions, sequestration and net balance with intervals, which source dominates
//! each zone's uncertainty (zones_balance_variance.csv), and the per-pixel raster (in balance.rs). Per draw,
//! net_d = sum_j f_d(j) E_j - s_d S over the cell's or zone's own per-sector sums, f_d(j) sector j's inventory
//! multiplier times its allocation multiplier (`sector_params`), so sectors sharing a parameter move together
//! within a draw; with an allocation field, the sectors under it are summed cell by cell, each cell with its
//! own multiplier.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::sector_params::{CellField, SectorParams};
use super::tables::num;
use super::{draws_raster, touched_window, BalanceJob, Prepared, ZoneAcc, SIGN_CONVENTION};
use crate::error::Result;
use crate::io;
use crate::lattice::overlap::Spread;
use crate::lattice::Lattice;
use crate::pipeline::npp::draws::{attribution_of, summary, DrawSpec, Draws};

/// One source of a total's uncertainty and its term in every draw (t CO2 yr-1; sequestration negative).
struct Term {
    source: String,
    draws: Vec<f64>,
}

/// What every total's draws need: the draws, the lattice's sectors and the allocation field, if any.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    d: &'a Draws,
    sectors: &'a [String],
    field: Option<&'a CellField>,
}

impl Ctx<'_> {
    /// Per sector, whether its allocation error is the field (its emissions are then summed cell by cell).
    fn field_sectors(&self) -> Vec<bool> {
        self.sectors
            .iter()
            .map(|s| {
                self.field
                    .is_some_and(|f| f.covers(self.d.emissions_params(s)))
            })
            .collect()
    }
}

/// A total: its emissions per sector, its sequestration, and (with an allocation field) its emissions per
/// cell and sector.
struct Total<'a> {
    e: &'a [f64],
    s: f64,
    by_cell: &'a BTreeMap<usize, Vec<f64>>,
}

/// Per draw, the field sectors' emissions: sum over cells c of a_c,d x sum over those sectors j of (their
/// inventory multiplier, or 1 without `inventory`) x E_c,j.
fn field_draws(t: &Total, c: &Ctx, f: &CellField, mask: &[bool], inventory: bool) -> Vec<f64> {
    let d = c.d;
    let inv: Vec<Option<usize>> = c
        .sectors
        .iter()
        .map(|s| d.emissions_params(s).0.filter(|_| inventory))
        .collect();
    let mut out = vec![0f64; d.n];
    for (&cell, e) in t.by_cell {
        let a = f.of(d, cell);
        for (j, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            for (i, o) in out.iter_mut().enumerate() {
                *o += d.at(i, inv[j]) * a[i] * e[j];
            }
        }
    }
    out
}

/// The terms of net = sum_j f(j) E_j - s S, f(j) sector j's inventory multiplier times its allocation
/// multiplier (`sector_params`): one per pair of parameters (the sectors it multiplies summed; the pair of
/// none is constant), the sectors whose allocation error is a field (cell by cell), and the sequestration.
fn terms(t: &Total, c: &Ctx) -> Vec<Term> {
    let d = c.d;
    let mask = c.field_sectors();
    let mut by_pair: BTreeMap<SectorParams, f64> = BTreeMap::new();
    for ((e, s), _) in t.e.iter().zip(c.sectors).zip(&mask).filter(|(_, m)| !**m) {
        *by_pair.entry(d.emissions_params(s)).or_default() += e;
    }
    let mut out: Vec<Term> = by_pair
        .into_iter()
        .map(|(k, e)| Term {
            source: "emissions".into(),
            draws: (0..d.n).map(|i| d.sector_factor(i, k) * e).collect(),
        })
        .collect();
    if let Some(f) = c.field.filter(|_| mask.contains(&true)) {
        out.push(Term {
            source: "emissions".into(),
            draws: field_draws(t, c, f, &mask, true),
        });
    }
    out.push(sequestration_term(t.s, d));
    out
}

/// The sequestration's term, -s_d S (negative: the sink lowers the net balance).
fn sequestration_term(sequestration: f64, d: &Draws) -> Term {
    let sk = d.sequestration_param();
    Term {
        source: "sequestration".into(),
        draws: (0..d.n).map(|i| -d.at(i, sk) * sequestration).collect(),
    }
}

/// A parameter's name in the attribution table: `emissions:SECTORS`, with ` (allocation)` and the field's
/// length where they apply.
fn label(d: &Draws, k: usize) -> String {
    let p = &d.spec.parameters[k];
    let kind = match (p.error_kind(), p.length_km) {
        ("inventory", _) => String::new(),
        (other, None) => format!(" ({other})"),
        (other, Some(l)) => format!(" ({other}, field {l} km)"),
    };
    format!("{}:{}{kind}", p.target, p.sector_label())
}

/// One source at a time, the others at their means: each emissions parameter's multiplier times the
/// emissions of the sectors it multiplies (in either kind; the field's cell by cell), the emissions without a
/// parameter (constant), and the sequestration.
fn sources(t: &Total, c: &Ctx) -> Vec<Term> {
    let d = c.d;
    let mask = c.field_sectors();
    let mut by_param: BTreeMap<Option<usize>, f64> = BTreeMap::new();
    for ((e, s), m) in t.e.iter().zip(c.sectors).zip(&mask) {
        match d.emissions_params(s) {
            (None, None) => *by_param.entry(None).or_default() += e,
            (a, b) => {
                let b = b.filter(|_| !*m);
                for k in [a, b].into_iter().flatten() {
                    *by_param.entry(Some(k)).or_default() += e;
                }
            }
        }
    }
    let mut out: Vec<Term> = by_param
        .into_iter()
        .map(|(k, e)| Term {
            source: k.map_or_else(
                || "emissions without a parameter".to_string(),
                |k| label(d, k),
            ),
            draws: (0..d.n).map(|i| d.at(i, k) * e).collect(),
        })
        .collect();
    if let Some(f) = c.field.filter(|_| mask.contains(&true)) {
        out.push(Term {
            source: label(d, f.k),
            draws: field_draws(t, c, f, &mask, false),
        });
    }
    out.push(sequestration_term(t.s, d));
    out
}

/// The covered fine pass's per-cell results: spread, valid sink area, sequestration, and the cells' changed
/// per-sector emissions (with emission changes).
pub(super) type Fine<'a> = (&'a Spread, &'a [f64], &'a [f64], Option<&'a [f64]>);

/// Every `--draws` output of a balance: the zone and lattice tables, the attribution and the pixel raster.
pub(super) fn outputs(
    job: &BalanceJob,
    p: &Prepared,
    (all, zone_acc): (&ZoneAcc, &BTreeMap<i32, ZoneAcc>),
    fine: Fine,
    (spec, written): (&DrawSpec, &[PathBuf]),
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<PathBuf>> {
    let file = p.uncertainty.clone().expect("read by prepare with --draws");
    let d = Draws::new(file, &spec.file, spec.n, spec.seed);
    let (_, cells) = touched_window(&p.lattice, fine.0);
    let field = CellField::new(&d, &p.lattice, &cells, spec.seed)?;
    let c = Ctx {
        d: &d,
        sectors: &p.lattice.sectors,
        field: field.as_ref(),
    };
    let mut out = vec![
        zones_table(job, p, all, zone_acc, (c, spec.seed))?,
        variance_table(job, p, all, zone_acc, (c, spec.seed))?,
        lattice_table(job, &p.lattice, fine, &cells, (c, spec.seed))?,
    ];
    let seen: Vec<PathBuf> = written.iter().chain(&out).cloned().collect();
    out.push(draws_raster(
        job,
        p,
        &seen,
        (&d, spec.seed),
        field.as_ref(),
        progress,
    )?);
    Ok(out)
}

/// Three CSV rows, `key,QUANTITY,t CO2 yr-1,mean,sd,p05,p50,p95`, for the emissions, sequestration and net
/// balance of per-sector emissions and a sequestration, each total computed per draw.
fn rows(key: &str, names: [&str; 3], total: &Total, c: &Ctx) -> String {
    let (t, d) = (terms(total, c), c.d);
    let sum = |pick: &dyn Fn(&Term) -> bool, sign: f64| -> Vec<f64> {
        (0..d.n)
            .map(|i| {
                sign * t
                    .iter()
                    .filter(|x| pick(x))
                    .map(|x| x.draws[i])
                    .sum::<f64>()
            })
            .collect()
    };
    let mut em = sum(&|x| x.source != "sequestration", 1.0);
    let mut sq = sum(&|x| x.source == "sequestration", -1.0);
    let mut net = sum(&|_| true, 1.0);
    let mut out = String::new();
    for (q, v) in names.into_iter().zip([&mut em, &mut sq, &mut net]) {
        let st = summary(v);
        out += &format!("{key},{q},t CO2 yr-1,{}\n", st.map(num).join(","));
    }
    out
}

/// A zone's sums as a total.
fn total_of(a: &ZoneAcc) -> Total<'_> {
    Total {
        e: &a.emissions,
        s: a.sequestration,
        by_cell: &a.by_cell,
    }
}

/// `row(name, sums)` for the whole area ("all"), then for every zone (its levels joined by "/").
fn each_zone(
    p: &Prepared,
    all: &ZoneAcc,
    zone_acc: &BTreeMap<i32, ZoneAcc>,
    mut row: impl FnMut(&str, &ZoneAcc),
) {
    row("all", all);
    if let Some(z) = &p.zones {
        for (id, a) in zone_acc {
            row(&z.key(*id).join("/"), a);
        }
    }
}

/// zones_balance_draws.csv: the whole area's and every zone's emissions, sequestration and net balance.
fn zones_table(
    job: &BalanceJob,
    p: &Prepared,
    all: &ZoneAcc,
    zone_acc: &BTreeMap<i32, ZoneAcc>,
    (c, seed): (Ctx, u64),
) -> Result<PathBuf> {
    let names = ["emissions_total", "sequestration", "net_balance"];
    let d = c.d;
    let mut out = String::from("zone,quantity,unit,mean,sd,p05,p50,p95\n");
    each_zone(p, all, zone_acc, |name, a| {
        let key = format!("\"{name}\"");
        out += &rows(&key, names, &total_of(a), &c);
    });
    let target = job.out_dir.join("zones_balance_draws.csv");
    let mut notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of {} ({})", d.n, d.spec.name, d.path.display()),
        format!("{SIGN_CONVENTION}; each total computed per draw from the zone's per-sector sums (sectors in one draw move together)"),
    ];
    notes.extend(npp_only_note(d));
    io::write_table(&target, out.as_bytes(), &notes)?;
    Ok(target)
}

/// A note naming the file's parameters that `balance` does not draw (NPP's, Rh's and the drivers' errors: the
/// sink moves by the sequestration parameter), if it has any.
fn npp_only_note(d: &Draws) -> Option<String> {
    let mut names: Vec<&str> = d
        .spec
        .parameters
        .iter()
        .map(|p| p.target.as_str())
        .filter(|t| !["emissions", "sequestration"].contains(t))
        .collect();
    names.dedup();
    (!names.is_empty()).then(|| {
        format!(
            "the file's {} parameters are drawn by `npp --draws`, not here: the sink moves by the sequestration parameter alone",
            names.join(", ")
        )
    })
}

/// lattice_balance_draws.csv: every cell the area covers, its covered emissions, sequestration and net
/// balance (t CO2 yr-1) with mean, sd and 5/50/95th percentiles over the draws.
fn lattice_table(
    job: &BalanceJob,
    lat: &Lattice,
    (spread, valid, seq, changed): Fine,
    cells: &[usize],
    (ctx, seed): (Ctx, u64),
) -> Result<PathBuf> {
    let d = ctx.d;
    let names = [
        "emissions_covered",
        "sequestration_covered",
        "net_balance_covered",
    ];
    let nsec = lat.sectors.len();
    let mut out = String::from("cell_id,quantity,unit,mean,sd,p05,p50,p95\n");
    for &c in cells.iter().filter(|&&c| spread.coverage(c) > 0.0) {
        let e: Vec<f64> = match changed {
            Some(v) => v[c * nsec..(c + 1) * nsec].to_vec(),
            None => lat.mass.iter().map(|m| m[c] * spread.received(c)).collect(),
        };
        let s = if valid[c] > 0.0 { seq[c] } else { f64::NAN };
        // With an allocation field, the cell's own multiplier.
        let by_cell: BTreeMap<usize, Vec<f64>> = ctx
            .field
            .map(|_| [(c, e.clone())].into_iter().collect())
            .unwrap_or_default();
        let total = Total {
            e: &e,
            s,
            by_cell: &by_cell,
        };
        out += &rows(&lat.cell_id(c), names, &total, &ctx);
    }
    let target = job.out_dir.join("lattice_balance_draws.csv");
    let notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of {} ({})", d.n, d.spec.name, d.path.display()),
        format!("{SIGN_CONVENTION}; the part of each cell the area covers (as lattice_balance.csv); each total computed per draw from the cell's per-sector sums"),
    ];
    io::write_table(&target, out.as_bytes(), &notes)?;
    Ok(target)
}

/// zones_balance_variance.csv: for the whole area and every zone, each source's share of the net balance's
/// variance, one at a time (the variance of the source's term alone over the total's), and the dominant one.
fn variance_table(
    job: &BalanceJob,
    p: &Prepared,
    all: &ZoneAcc,
    zone_acc: &BTreeMap<i32, ZoneAcc>,
    (c, seed): (Ctx, u64),
) -> Result<PathBuf> {
    let d = c.d;
    let mut out = String::from("zone,source,sd_tCO2_yr,share_of_net_variance,dominant\n");
    each_zone(p, all, zone_acc, |name, a| {
        let t = terms(&total_of(a), &c);
        let total: Vec<f64> = (0..d.n)
            .map(|i| t.iter().map(|x| x.draws[i]).sum())
            .collect();
        let one: Vec<(String, Vec<f64>)> = sources(&total_of(a), &c)
            .into_iter()
            .map(|x| (x.source, x.draws))
            .collect();
        for (source, sd, share, dominant) in attribution_of(&total, &one) {
            out += &format!(
                "\"{name}\",\"{source}\",{},{},{dominant}\n",
                num(sd),
                num(share)
            );
        }
    });
    let target = job.out_dir.join("zones_balance_variance.csv");
    let notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of {} ({})", d.n, d.spec.name, d.path.display()),
        "one-at-a-time attribution: a source's share is the variance of its term (its multiplier times the sums it multiplies) over the variance of the net balance; with independent parameters (correlation 0) the shares add up to 1 within sampling error, with correlated ones they do not".into(),
    ];
    io::write_table(&target, out.as_bytes(), &notes)?;
    Ok(target)
}
