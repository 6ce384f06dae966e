//! `carbonmap regrid`: a carbon quantity moved from one grid onto another, conserving mass (the finer grid
//! streamed, the coarser held in memory).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{proxy_weights, ProxyReader, ProxySpec};
use crate::engine::run::{Plane, StripOut};
use crate::error::{Error, Problems, Result};
use crate::io::{self, OutBand, RasterWriter, Window, WriteOptions};
use crate::lattice::overlap::{Overlapper, Spread, StripOverlap};
use crate::lattice::{Lattice, LatticeSpec};
use crate::progress::Progress;
use crate::units::CarbonUnit;

/// `carbonmap regrid`: move a carbon quantity from one grid onto another, conserving mass.
#[derive(Debug, Clone)]
pub struct RegridJob {
    pub input: LatticeSpec,
    /// A raster whose grid is the target.
    pub to: PathBuf,
    pub out_unit: String,
    pub proxy: Option<ProxySpec>,
    pub output: PathBuf,
    pub write: WriteOptions,
}

#[derive(Debug, Clone)]
pub struct RegridSummary {
    pub output: PathBuf,
    /// Sums over the input and over the output, t CO2 yr-1, per band.
    pub input_totals: Vec<f64>,
    pub output_totals: Vec<f64>,
    pub direction: &'static str,
    pub warnings: Vec<String>,
}

/// Regrid every band of the input onto the target grid. The finer of the two grids is walked pixel by pixel
/// (streamed); the coarser one is held in memory. Coarse to fine spreads each cell uniformly by area (or by the
/// proxy); fine to coarse sums each pixel's mass into the cells by area share.
pub fn run_regrid(job: &RegridJob, progress: &dyn Progress) -> Result<RegridSummary> {
    let mut problems = Problems::new();
    let src = problems.take(Lattice::load(&job.input));
    let target = problems.take(io::Grid::from_raster(&job.to));
    let out_unit = problems.take(CarbonUnit::parse(&job.out_unit).map_err(Error::Usage));
    problems.finish()?;
    let (src, target, out_unit) = (
        src.expect("checked"),
        target.expect("checked"),
        out_unit.expect("checked"),
    );
    let mut warnings = src.warnings.clone();
    let src_area = crate::area::PixelAreas::of(&src.grid)?;
    let tgt_area = crate::area::PixelAreas::of(&target)?;
    let downscale = tgt_area.mean() <= src_area.mean();
    if job.proxy.is_some() && !downscale {
        return Err(Error::Usage(
            "--proxy spreads a coarse grid over a finer one; the target grid here is the coarser"
                .into(),
        ));
    }
    let input_totals: Vec<f64> = src
        .mass
        .iter()
        .map(|s| s.iter().filter(|v| v.is_finite()).sum())
        .collect();
    let mut md = BTreeMap::new();
    md.insert("CARBONMAP_VERSION".to_string(), crate::VERSION.to_string());
    md.insert("SOURCE".into(), src.path.display().to_string());
    md.insert("SOURCE_UNIT_DECLARED".into(), src.unit.text.clone());
    md.insert("UNITS".into(), out_unit.text.clone());
    md.insert(
        "REGRIDDING".into(),
        "mass conserving, exact area-weighted overlaps (carbonmap lattice::overlap)".into(),
    );
    let bands: Vec<OutBand> = src
        .sectors
        .iter()
        .map(|s| OutBand {
            description: s.clone(),
            unit: out_unit.text.clone(),
        })
        .collect();
    let out = RegridOut {
        src: &src,
        target: &target,
        out_unit: &out_unit,
        tgt_area: &tgt_area,
        bands: &bands,
        md: &md,
    };
    let output_totals = if downscale {
        regrid_down(job, &out, &input_totals, &mut warnings, progress)?
    } else {
        regrid_up(job, &out, &mut warnings, progress)?
    };
    Ok(RegridSummary {
        output: job.output.clone(),
        input_totals,
        output_totals,
        direction: if downscale {
            "coarse to fine"
        } else {
            "fine to coarse"
        },
        warnings,
    })
}

/// `part` as a percentage of `whole` ("of 0" when the whole is zero).
pub fn percent_of(part: f64, whole: f64) -> String {
    if whole == 0.0 {
        "of 0".into()
    } else {
        format!("{:.4} %", 100.0 * part / whole)
    }
}

/// What both regridding directions share: the source lattice, the target grid and the output's description.
struct RegridOut<'a> {
    src: &'a Lattice,
    target: &'a io::Grid,
    out_unit: &'a CarbonUnit,
    tgt_area: &'a crate::area::PixelAreas,
    bands: &'a [OutBand],
    md: &'a BTreeMap<String, String>,
}

/// Coarse to fine: walk the target's pixels and spread each source cell's mass over them (uniformly by area,
/// or by the proxy). Returns the output's totals per band (t CO2 yr-1).
fn regrid_down(
    job: &RegridJob,
    o: &RegridOut,
    input_totals: &[f64],
    warnings: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<Vec<f64>> {
    let RegridOut {
        src,
        target,
        out_unit,
        tgt_area,
        bands,
        md,
    } = *o;
    let nb = src.sectors.len();
    let strip_rows = io::TILE;
    let mut output_totals = vec![0f64; nb];
    // Walk the target's pixels; the source's cells are spread over them.
    let ov = Overlapper::new(&target, &src.grid)?;
    let proxy = job
        .proxy
        .as_ref()
        .map(|px| ProxyReader::open(px, &target))
        .transpose()?;
    let weights = |row0: usize, nrows: usize| proxy_weights(&proxy, row0, nrows);
    let ncell = src.cells();
    let mut spread = Spread::new(ncell);
    // The next strip's overlaps are computed beside the current strip's sums (in pixel order, here).
    let kernel = |w: Window, s: StripOverlap| {
        let wts = weights(w.row0, w.nrows)?;
        for i in 0..w.len() {
            for (c, a) in s.pieces(i) {
                spread.add(c, a, wts.as_ref().map_or(1.0, |x| x[i]));
            }
        }
        Ok(StripOut::none())
    };
    crate::engine::run::run(
        "regrid: coverage",
        crate::engine::run::strips(target.width, target.height, strip_rows),
        &mut [],
        progress,
        (|w: Window| ov.strip(w.row0, w.nrows), kernel),
        |_, ()| {},
    )?;
    spread.finish(&ov.space);
    let lost: Vec<f64> = (0..nb)
        .map(|k| {
            (0..ncell)
                .map(|c| src.mass[k][c] * (1.0 - spread.coverage(c)))
                .filter(|v| v.is_finite())
                .sum()
        })
        .collect();
    if lost
        .iter()
        .zip(input_totals)
        .any(|(l, t)| l.abs() > 1e-9 * t.abs().max(1e-300))
    {
        let per_band: Vec<String> = lost
            .iter()
            .zip(input_totals)
            .map(|(l, t)| format!("{l:.4e} t CO2 yr-1 ({})", percent_of(*l, *t)))
            .collect();
        let msg = format!(
            "the target grid does not cover the whole source: of the source's mass, {} lies outside it",
            per_band.join(", ")
        );
        progress.warn(&msg);
        warnings.push(msg);
    }
    let wr = RasterWriter::create::<f64>(&job.output, &target, &bands, None, &md, &job.write)?;
    let read = |s: Window| Ok((ov.strip(s.row0, s.nrows)?, weights(s.row0, s.nrows)?));
    // Each pixel's mass from its cells' shares; the totals summed in pixel order (whatever the thread count).
    let kernel = |s: Window, (st, w): (StripOverlap, Option<Vec<f64>>)| {
        let mut out = vec![vec![f64::NAN; s.len()]; nb];
        let mut m = vec![0f64; nb];
        for i in 0..s.len() {
            let wi = w.as_ref().map_or(1.0, |w| w[i]);
            let a_true = tgt_area.at(i % target.width, s.row0 + i / target.width);
            let mut any = false;
            m.iter_mut().for_each(|x| *x = 0.0);
            for (c, a) in st.pieces(i) {
                any = true;
                let f = spread.share(c, a, wi);
                for k in 0..nb {
                    m[k] += src.mass[k][c] * f;
                }
            }
            if any {
                for k in 0..nb {
                    if m[k].is_finite() {
                        output_totals[k] += m[k];
                    }
                    out[k][i] = out_unit.from_tco2_yr(m[k], a_true);
                }
            }
        }
        let planes = vec![out.into_iter().map(Plane::from).collect()];
        Ok(StripOut { planes, side: () })
    };
    let mut writers = [wr];
    // The overlaps are computed where the pieces are used (PROJ's transformations stay on this thread).
    crate::engine::run::run_local(
        "regrid: writing",
        crate::engine::run::strips(target.width, target.height, strip_rows),
        &mut writers,
        progress,
        (read, kernel),
        |_, ()| {},
    )?;
    let [wr] = writers;
    wr.finish()?.commit()?;
    Ok(output_totals)
}

/// Fine to coarse: walk the source's pixels (streamed) and sum their mass into the target's cells. Returns the
/// output's totals per band (t CO2 yr-1).
fn regrid_up(
    job: &RegridJob,
    o: &RegridOut,
    warnings: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<Vec<f64>> {
    let RegridOut {
        src,
        target,
        out_unit,
        tgt_area,
        bands,
        md,
    } = *o;
    let nb = src.sectors.len();
    let strip_rows = io::TILE;
    let mut output_totals = vec![0f64; nb];
    // Walk the source's pixels (streamed) and sum their mass into the target's cells.
    let ov = Overlapper::new(&src.grid, &target)?;
    let ncell = target.width * target.height;
    let mut acc = vec![vec![0f64; ncell]; nb];
    let mut cov = vec![0f64; ncell];
    // The next strip's overlaps are computed beside the current strip's sums (in pixel order, here).
    let kernel = |w: Window, s: StripOverlap| {
        for i in 0..w.len() {
            let cell = w.row0 * src.grid.width + i;
            let ap = s.pixel_area[i];
            for (c, a) in s.pieces(i) {
                cov[c] += a;
                for k in 0..nb {
                    let v = src.mass[k][cell];
                    if v.is_finite() {
                        acc[k][c] += v * a / ap;
                    }
                }
            }
        }
        Ok(StripOut::none())
    };
    crate::engine::run::run(
        "regrid: summing into the target",
        crate::engine::run::strips(src.grid.width, src.grid.height, strip_rows),
        &mut [],
        progress,
        (|w: Window| ov.strip(w.row0, w.nrows), kernel),
        |_, ()| {},
    )?;
    let partial = (0..ncell)
        .filter(|&c| cov[c] > 0.0 && ov.space.coverage(c, cov[c]) < 1.0)
        .count();
    if partial > 0 {
        let msg = format!(
            "{partial} target cell(s) are only partly covered by the source; their values hold the covered part's mass only"
        );
        progress.warn(&msg);
        warnings.push(msg);
    }
    let mut wr = RasterWriter::create::<f64>(&job.output, &target, &bands, None, &md, &job.write)?;
    for (k, a) in acc.iter().enumerate() {
        output_totals[k] = a.iter().sum();
        let v: Vec<f64> = (0..ncell)
            .map(|c| {
                if cov[c] > 0.0 {
                    out_unit.from_tco2_yr(a[c], tgt_area.at(c % target.width, c / target.width))
                } else {
                    f64::NAN
                }
            })
            .collect();
        wr.write_rows(k, 0, v)?;
    }
    wr.finish()?.commit()?;
    Ok(output_totals)
}
