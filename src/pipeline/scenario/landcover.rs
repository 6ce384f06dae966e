//! The scenario's land cover on the analysis grid: the base map (nearest neighbour, as `npp` reads it) with
//! the changes applied in order (a later change wins). A scratch file holds three bands, the scenario class,
//! the change that set it (0: unchanged) and the base class, for the NDVI substitution; the scenario class
//! alone is also an output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::run::{Plane, StripOut};
use crate::error::{Error, Result};
use crate::io::{
    self, BandRequest, Grid, GridReader, OutBand, RasterInfo, RasterWriter, Resampling, Window,
};

use super::{ChangeSpec, Scenario};

/// Outside the base land cover (the npp job's own fill for land cover).
const OUTSIDE: i32 = -2_147_483_647;

/// A change's effect: pixels and area (m2) per (base class, new class), and the bounding box (col0, row0,
/// col1, row1, inclusive) of the pixels it changed.
#[derive(Debug, Clone, Default)]
pub struct ChangeStats {
    pub label: String,
    pub transitions: BTreeMap<(i64, i64), (u64, f64)>,
    pub bbox: Option<[usize; 4]>,
}

impl ChangeStats {
    pub fn pixels(&self) -> u64 {
        self.transitions.values().map(|t| t.0).sum()
    }

    /// A pixel at (col, row) of `area` m2 changed from `from` to `to`.
    fn add(&mut self, from: i32, to: i32, (col, row): (usize, usize), area: f64) {
        let t = self
            .transitions
            .entry((from as i64, to as i64))
            .or_default();
        t.0 += 1;
        t.1 += area;
        self.bbox = Some(match self.bbox {
            None => [col, row, col, row],
            Some(bb) => [
                bb[0].min(col),
                bb[1].min(row),
                bb[2].max(col),
                bb[3].max(row),
            ],
        });
    }
}

/// Change `k` applied to a strip: where it gives a new class for a pixel of the legend (of one of its `from`
/// classes), the pixel takes it (classes outside the legend are counted, not applied).
fn apply(
    k: usize,
    c: &ChangeSpec,
    new: &[Option<i32>],
    (cls, by): (&mut [i32], &mut [i32]),
    in_legend: &impl Fn(i32) -> bool,
    unknown: &mut BTreeMap<usize, BTreeMap<i64, u64>>,
) {
    for (px, to) in new.iter().enumerate() {
        let Some(to) = *to else { continue };
        if !in_legend(cls[px]) || (!c.from.is_empty() && !c.from.contains(&(cls[px] as i64))) {
            continue;
        }
        if !in_legend(to) {
            *unknown.entry(k).or_default().entry(to as i64).or_default() += 1;
            continue;
        }
        if to != cls[px] {
            cls[px] = to;
            by[px] = k as i32 + 1;
        }
    }
}

pub struct LandCover {
    /// Scratch: band 1 scenario class, band 2 the change (1-based; 0 unchanged), band 3 base class.
    pub scratch: PathBuf,
    /// The scenario land cover as an output (OUT/scenario/landcover_scenario.tif).
    pub output: PathBuf,
    pub changes: Vec<ChangeStats>,
    pub changed_m2: f64,
    pub nodata: i32,
    pub warnings: Vec<String>,
}

impl LandCover {
    pub fn changed_pixels(&self) -> u64 {
        self.changes.iter().map(ChangeStats::pixels).sum()
    }
}

/// What a change reads for each strip.
enum Source {
    Polygons(Vec<gdal::vector::Geometry>),
    Raster(GridReader, Option<f64>),
}

impl Source {
    /// The class a change gives each pixel of rows `row0 .. row0 + n` (None: the change does not reach it).
    fn classes(
        &self,
        c: &ChangeSpec,
        grid: &Grid,
        row0: usize,
        n: usize,
    ) -> Result<Vec<Option<i32>>> {
        Ok(match self {
            Source::Polygons(g) => io::rasterize_rows(g, &vec![1.0; g.len()], grid, row0, n, 0)?
                .into_iter()
                .map(|m| (m == 1).then(|| c.to.expect("checked") as i32))
                .collect(),
            Source::Raster(r, nd) => {
                let mut v = vec![0i32; n * grid.width];
                r.read_rows(0, row0, n, &mut v)?;
                v.into_iter()
                    .map(|x| (x != OUTSIDE && Some(x as f64) != *nd).then_some(x))
                    .collect()
            }
        })
    }
}

fn source(c: &ChangeSpec, label: &str, grid: &Grid) -> Result<Source> {
    if let Some(p) = &c.polygons {
        let geoms = io::read_polygons(p, c.layer.as_deref(), &grid.crs_wkt)
            .map_err(|e| Error::input(p, format!("{label}: {e}")))?;
        return Ok(Source::Polygons(geoms));
    }
    let p = c.raster.as_ref().expect("checked: polygons or raster");
    let nodata = RasterInfo::read(p)?.band(1)?.nodata;
    let reader = GridReader::new(
        p,
        &[BandRequest {
            index: 1,
            name: "scenario land cover".into(),
        }],
        grid,
        Resampling::Nearest,
        None,
        OUTSIDE as f64,
    )?;
    Ok(Source::Raster(reader, nodata))
}

/// The scratch file (scenario class, change, base class) and the output (scenario class) of the scenario's
/// land cover.
fn writers(
    s: &Scenario,
    grid: &Grid,
    (scratch, output): (&Path, &Path),
    nodata: i32,
) -> Result<[RasterWriter; 2]> {
    let band = |d: &str| OutBand {
        description: d.into(),
        unit: "class".into(),
    };
    let sw = RasterWriter::create::<i32>(
        scratch,
        grid,
        &[
            band("scenario class"),
            band("change (0 unchanged)"),
            band("base class"),
        ],
        Some(nodata as f64),
        &Default::default(),
        &Default::default(),
    )?;
    let mut md = std::collections::BTreeMap::new();
    md.insert("SCENARIO".to_string(), s.name.clone());
    md.insert("SCENARIO_DESCRIPTION".to_string(), s.description.clone());
    md.insert("LEGEND".to_string(), s.legend.product.clone());
    let ow = RasterWriter::create::<i32>(
        output,
        grid,
        &[band("scenario land cover")],
        Some(nodata as f64),
        &md,
        &s.base.write,
    )?;
    Ok([sw, ow])
}

/// Build the scenario land cover; every change must change at least one pixel, and a raster change may only
/// hold the legend's classes.
pub fn build(s: &Scenario, grid: &Grid, scratch_dir: &Path, out_dir: &Path) -> Result<LandCover> {
    let base_nd = RasterInfo::read(&s.base.landcover)?
        .band(s.base.landcover_band)?
        .nodata;
    let nodata = base_nd
        .filter(|v| v.fract() == 0.0 && *v >= i32::MIN as f64 && *v <= i32::MAX as f64)
        .map_or(OUTSIDE, |v| v as i32);
    let base = GridReader::new(
        &s.base.landcover,
        &[BandRequest {
            index: s.base.landcover_band,
            name: "base land cover".into(),
        }],
        grid,
        Resampling::Nearest,
        None,
        nodata as f64,
    )?;
    let labels: Vec<String> = s
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| c.label(i))
        .collect();
    let sources: Vec<Source> = s
        .changes
        .iter()
        .zip(&labels)
        .map(|(c, l)| source(c, l, grid))
        .collect::<Result<_>>()?;
    let scratch = scratch_dir.join("landcover_scenario.tif");
    let output = out_dir.join("landcover_scenario.tif");
    let [sw, ow] = writers(s, grid, (&scratch, &output), nodata)?;
    let areas = crate::area::PixelAreas::of(grid)?;
    let mut stats: Vec<ChangeStats> = labels
        .iter()
        .map(|l| ChangeStats {
            label: l.clone(),
            ..Default::default()
        })
        .collect();
    let mut unknown: BTreeMap<usize, BTreeMap<i64, u64>> = BTreeMap::new();
    let in_legend = |c: i32| c != nodata && c != OUTSIDE && s.legend.class(c as i64).is_some();
    let rows = crate::engine::strips::rows(grid.width, grid.height, 16, 12, s.base.memory_mb);
    let mut changed_m2 = 0.0;
    // The base classes and each change's new classes over a strip (polygons rasterised on this thread).
    let read = |w: Window| {
        let mut base_cls = vec![0i32; w.len()];
        base.read_rows(0, w.row0, w.nrows, &mut base_cls)?;
        let news = sources
            .iter()
            .zip(&s.changes)
            .map(|(src, c)| src.classes(c, grid, w.row0, w.nrows))
            .collect::<Result<Vec<_>>>()?;
        Ok((base_cls, news))
    };
    // The changes applied in order; the changed pixels (pixel, change, from, to) for the statistics.
    let kernel = |_, (base_cls, news): (Vec<i32>, Vec<Vec<Option<i32>>>)| {
        let mut cls = base_cls.clone();
        let mut by = vec![0i32; cls.len()];
        for (k, (new, c)) in news.iter().zip(&s.changes).enumerate() {
            apply(k, c, new, (&mut cls, &mut by), &in_legend, &mut unknown);
        }
        let mut changed = Vec::new();
        for (px, (c, b)) in cls.iter().zip(by.iter_mut()).enumerate() {
            if *c == base_cls[px] {
                *b = 0;
            } else {
                changed.push((px, *b as usize - 1, base_cls[px], *c));
            }
        }
        let scratch: Vec<Plane> = vec![cls.clone().into(), by.into(), base_cls.into()];
        Ok(StripOut {
            planes: vec![scratch, vec![cls.into()]],
            side: changed,
        })
    };
    let mut writers = [sw, ow];
    crate::engine::run::run_local(
        "scenario land cover",
        crate::engine::run::strips(grid.width, grid.height, rows),
        &mut writers,
        &crate::progress::Silent,
        (read, kernel),
        |w, changed| {
            for (px, k, from, to) in changed {
                let (col, row) = (px % grid.width, w.row0 + px / grid.width);
                let a = areas.at(col, row);
                changed_m2 += a;
                stats[k].add(from, to, (col, row), a);
            }
        },
    )?;
    let [sw, ow] = writers;
    check(&stats, &unknown, &s.legend)?;
    sw.finish()?.keep_scratch()?;
    let output = ow.finish()?.commit()?;
    Ok(LandCover {
        scratch,
        output,
        changes: stats,
        changed_m2,
        nodata,
        warnings: Vec::new(),
    })
}

/// Every change changed something and named only the legend's classes.
fn check(
    stats: &[ChangeStats],
    unknown: &BTreeMap<usize, BTreeMap<i64, u64>>,
    legend: &crate::landcover::Legend,
) -> Result<()> {
    let mut problems = Vec::new();
    for (k, codes) in unknown {
        let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c} ({n} px)")).collect();
        problems.push(Error::Invalid(vec![format!(
            "{}: classes the legend {} does not know: {}",
            stats[*k].label,
            legend.product,
            list.join(", ")
        )]));
    }
    for st in stats {
        if st.pixels() == 0 {
            problems.push(Error::Invalid(vec![format!(
                "{}: changes no pixel (its area lies outside the grid, or every pixel there that may change \
                 already has the new class, or a later change undoes it)",
                st.label
            )]));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(
            problems
                .into_iter()
                .flat_map(Error::into_problems)
                .collect(),
        ))
    }
}
