//! Paired Monte Carlo draws of a scenario (`[uncertainty]`): base and scenario under the same parameter
//! draws, so each zone's difference carries only the uncertainty of what changed.

use crate::pipeline::balance::sector_params::SectorParams;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::compare::{fmt, readable};
use super::landcover::LandCover;
use super::Scenario;
use crate::error::{Error, Result};
use crate::io::{self, Grid, GridReader};
use crate::pipeline::npp::draws::Draws;
use crate::pipeline::npp::NppSummary;
use crate::zones::{Zones, OUTSIDE};

/// Per zone: for each NPP parameter (and none), the sums of NPP x area of base and scenario (g C), and the sums
/// of Rh x area.
#[derive(Default, Clone)]
struct PairedSums {
    npp: BTreeMap<Option<usize>, (f64, f64)>,
    rh: (f64, f64),
    /// Scenario minus base emissions (t CO2 yr-1) per emissions parameter (with a balance).
    emissions: BTreeMap<SectorParams, f64>,
}

/// The sector bands of a balance's fine emissions raster (after the total; the total alone for a lattice
/// without sectors), with their emissions parameters.
fn emission_bands(
    path: &Path,
    draws: &crate::pipeline::npp::draws::Draws,
) -> Result<Vec<(usize, SectorParams)>> {
    let info = io::RasterInfo::read(path)?;
    let named: Vec<(usize, String)> = info
        .bands
        .iter()
        .filter_map(|b| {
            b.description
                .strip_prefix("emissions ")
                .map(|s| (b.index, s.to_string()))
        })
        .collect();
    let sectors: Vec<&(usize, String)> = named.iter().filter(|(_, s)| s != "total").collect();
    Ok(if sectors.is_empty() {
        named
            .iter()
            .map(|(i, s)| (*i, draws.emissions_params(s)))
            .collect()
    } else {
        sectors
            .iter()
            .map(|(i, s)| (*i, draws.emissions_params(s)))
            .collect()
    })
}

/// The rasters the paired draws read: base and scenario NPP and Rh, their classes, and each emissions
/// sector's base and scenario fine emissions with its parameter.
struct PairedInputs {
    /// Base NPP, base Rh, scenario NPP, scenario Rh.
    rasters: [GridReader; 4],
    /// Base classes, scenario classes.
    classes: [GridReader; 2],
    sectors: Vec<(SectorParams, GridReader, GridReader)>,
}

impl PairedInputs {
    fn open(
        grid: &Grid,
        (base, scen): (&NppSummary, &NppSummary),
        lc: &LandCover,
        draws: &Draws,
        emissions: Option<(&Path, &Path)>,
    ) -> Result<PairedInputs> {
        let period = &base.period_label;
        let file = |sum: &NppSummary, stem: &str| -> Result<PathBuf> {
            let name = format!("{stem}_{period}.tif");
            sum.outputs
                .iter()
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
                .map(|p| readable(p))
                .ok_or_else(|| Error::Processing(format!("the NPP run wrote no {name}")))
        };
        let reader = |p: &Path, band: usize, fill: f64| io::band_reader(p, band, grid, fill);
        let rasters = [
            reader(&file(base, "NPP_gC_m2")?, 1, f64::NAN)?,
            reader(&file(base, "Rh_gC_m2")?, 1, f64::NAN)?,
            reader(&file(scen, "NPP_gC_m2")?, 1, f64::NAN)?,
            reader(&file(scen, "Rh_gC_m2")?, 1, f64::NAN)?,
        ];
        let classes = [
            reader(&lc.scratch, 3, lc.nodata as f64)?,
            reader(&lc.scratch, 1, lc.nodata as f64)?,
        ];
        let sectors = match emissions {
            Some((b, c)) => emission_bands(b, draws)?
                .into_iter()
                .map(|(band, k)| Ok((k, reader(b, band, f64::NAN)?, reader(c, band, f64::NAN)?)))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(PairedInputs {
            rasters,
            classes,
            sectors,
        })
    }

    /// Every zone's per-parameter sums, strip by strip.
    fn sums(
        &self,
        grid: &Grid,
        zones: Option<&Zones>,
        param: &dyn Fn(i32) -> Option<usize>,
        memory_mb: usize,
    ) -> Result<BTreeMap<i32, PairedSums>> {
        let areas = crate::area::PixelAreas::of(grid)?;
        let mut sums: BTreeMap<i32, PairedSums> = BTreeMap::new();
        let strip = crate::engine::strips::rows(grid.width, grid.height, 48, 4, memory_mb);
        for row0 in (0..grid.height).step_by(strip) {
            let n = strip.min(grid.height - row0);
            let len = n * grid.width;
            let mut v = vec![vec![0f64; len]; 4];
            for (r, buf) in self.rasters.iter().zip(v.iter_mut()) {
                r.read_rows(0, row0, n, buf)?;
            }
            let mut c = vec![vec![0i32; len]; 2];
            for (r, buf) in self.classes.iter().zip(c.iter_mut()) {
                r.read_rows(0, row0, n, buf)?;
            }
            let ids = match zones {
                Some(z) => z.read_rows(row0, n)?,
                None => vec![0; len],
            };
            let mut e = vec![(vec![0f64; len], vec![0f64; len]); self.sectors.len()];
            for ((_, rb, rs), (b, c)) in self.sectors.iter().zip(e.iter_mut()) {
                rb.read_rows(0, row0, n, b)?;
                rs.read_rows(0, row0, n, c)?;
            }
            for px in 0..len {
                let a = areas.at(px % grid.width, row0 + px / grid.width);
                let z = sums.entry(ids[px]).or_default();
                for ((k, _, _), (b, c)) in self.sectors.iter().zip(&e) {
                    if b[px].is_finite() && c[px].is_finite() {
                        // t CO2 ha-1 yr-1 over the pixel's hectares.
                        *z.emissions.entry(*k).or_default() += (c[px] - b[px]) * a / 1e4;
                    }
                }
                for (run, (npp, rh)) in [(0, 1), (2, 3)].into_iter().enumerate() {
                    if !(v[npp][px].is_finite() && v[rh][px].is_finite()) {
                        continue;
                    }
                    let e = z.npp.entry(param(c[run][px])).or_default();
                    let r = if run == 0 {
                        (&mut e.0, &mut z.rh.0)
                    } else {
                        (&mut e.1, &mut z.rh.1)
                    };
                    *r.0 += v[npp][px] * a;
                    *r.1 += v[rh][px] * a;
                }
            }
        }
        Ok(sums)
    }
}

impl PairedSums {
    fn add(&mut self, z: &PairedSums) {
        for (k, (b, sc)) in &z.npp {
            let e = self.npp.entry(*k).or_default();
            e.0 += b;
            e.1 += sc;
        }
        self.rh.0 += z.rh.0;
        self.rh.1 += z.rh.1;
        for (k, x) in &z.emissions {
            *self.emissions.entry(*k).or_default() += x;
        }
    }

    /// The zone's rows: NEP and sequestration differences (and the net balance's with a balance), each per
    /// draw from the per-parameter sums.
    fn rows(&self, key: &[String], draws: &Draws, with_balance: bool) -> String {
        let co2 = crate::units::co2_per_c();
        let mut nep: Vec<f64> = (0..draws.n)
            .map(|d| {
                let r = draws.at(d, draws.rh_param());
                let npp: f64 = self
                    .npp
                    .iter()
                    .map(|(k, (b, s))| draws.at(d, *k) * (s - b))
                    .sum();
                (npp - r * (self.rh.1 - self.rh.0)) / 1e6
            })
            .collect();
        let mut seq: Vec<f64> = nep.iter().map(|x| x * co2).collect();
        let mut net: Vec<f64> = (0..draws.n)
            .map(|d| {
                let e: f64 = self
                    .emissions
                    .iter()
                    .map(|(k, x)| draws.sector_factor(d, *k) * x)
                    .sum();
                e - seq[d]
            })
            .collect();
        let mut quantities = vec![
            ("NEP_difference", "t C", &mut nep),
            ("sequestration_difference", "t CO2", &mut seq),
        ];
        if with_balance {
            quantities.push(("net_balance_difference", "t CO2 yr-1", &mut net));
        }
        let key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
        let mut out = String::new();
        for (q, unit, v) in quantities {
            let st = crate::pipeline::npp::draws::summary(v);
            let st: Vec<String> = st.iter().map(|x| fmt(*x)).collect();
            out += &format!("{},{q},{unit},{}\n", key.join(","), st.join(","));
        }
        out
    }
}

/// `[uncertainty]`: the difference of every zone's NEP and sequestration with its interval from paired draws
/// (the same parameter draws for base and scenario), per draw from per-parameter sums:
/// diff_d = sum_k m_d(k) (NPP_s,k - NPP_b,k) - r_d (Rh_s - Rh_b). With a balance (`emissions`: the base's and
/// the scenario's fine emissions rasters), the net balance difference too:
/// net_d = sum_j e_d(j) (E_s,j - E_b,j) - sequestration diff_d, with e_d(j) the draw's multiplier of sector j.
/// scenario_zones_draws_PERIOD.csv.
pub fn paired_draws(
    s: &Scenario,
    grid: &Grid,
    runs: (&NppSummary, &NppSummary),
    lc: &LandCover,
    draws: &Draws,
    emissions: Option<(&Path, &Path)>,
    out_dir: &Path,
) -> Result<PathBuf> {
    let period = &runs.0.period_label;
    let inputs = PairedInputs::open(grid, runs, lc, draws, emissions)?;
    let zones = s.zones.as_ref().map(|z| Zones::load(z, grid)).transpose()?;
    let param = |code: i32| {
        s.legend
            .class(code as i64)
            .and_then(|c| draws.npp_param(&c.vegetation_type))
    };
    let sums = inputs.sums(grid, zones.as_ref(), &param, s.base.memory_mb)?;
    let levels: Vec<String> = zones
        .as_ref()
        .map_or_else(|| vec!["zone".to_string()], |z| z.levels.clone());
    let mut out = levels.join(",") + ",quantity,unit,mean,sd,p05,p50,p95\n";
    let mut total = PairedSums::default();
    let with_balance = emissions.is_some();
    let label = |text: &str| {
        let mut k = vec![String::new(); levels.len()];
        k[0] = text.into();
        k
    };
    for (id, z) in &sums {
        let key = match (&zones, *id == OUTSIDE) {
            (Some(zs), false) => zs.key(*id),
            (Some(_), true) => label("(outside the zones)"),
            (None, _) => label("(whole grid)"),
        };
        out += &z.rows(&key, draws, with_balance);
        total.add(z);
    }
    if zones.is_some() {
        out += &total.rows(&label("(total)"), draws, with_balance);
    }
    let target = out_dir.join(format!("scenario_zones_draws_{period}.csv"));
    let notes = vec![
        format!(
            "{} paired draws (the same parameters for base and scenario) of {} ({}); differences over the period {period} (not per year), scenario minus base",
            draws.n,
            draws.spec.name,
            draws.path.display()
        ),
        "each zone's difference is computed per draw from per-parameter sums; mean, sd (n - 1), 5th, 50th and 95th percentiles".into(),
        "net_balance_difference (with a balance): emissions minus sequestration, positive = more net emissions in the scenario; each sector's emissions difference times the draw's multiplier of that sector, minus the draw's sequestration difference (the balance's period is a year)".into(),
    ];
    io::write_table(&target, out.as_bytes(), &notes)?;
    Ok(target)
}
