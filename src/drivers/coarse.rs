//! Coarse climate rasters (a few kilometres or more per pixel, on any CRS) interpolated bilinearly in the
//! kernel instead of warped by GDAL onto every analysis pixel: the part of the raster over the grid is held in
//! memory (all steps), each analysis pixel's position in it is found by transforming a mesh of points (every
//! `MESH` pixels) and interpolating between them, and the value is GDAL's bilinear rule: the four nearest
//! source pixel centres weighted by distance, source no-data and pixels beyond the raster's edge left out and
//! the weights renormalised; no value where the source pixel holding the point has none, or the point lies
//! outside the raster.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::io::{self, Grid, Window};

/// Analysis pixels between transformed mesh points (positions are interpolated linearly in between: the
/// error is far below a hundredth of a source pixel for the map projections of a region).
const MESH: usize = 16;
/// Interpolate in the kernel only when a source pixel spans at least this many analysis pixels each way...
const MIN_PIXEL_RATIO: f64 = 4.0;
/// ...and the source window over the grid (all steps) fits in this many bytes; otherwise GDAL warps.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// The part of a driver raster over the analysis grid, every step, in memory.
pub struct Coarse {
    layout: Layout,
    /// Stored values per step, row by row; NaN where the file has no data.
    data: Vec<Vec<f32>>,
    /// Per step: no NaN anywhere in it (the common case), so every tap of a pixel counts.
    whole: Vec<bool>,
}

impl Coarse {
    /// Load `bands` of `path` (whose own grid is `own`) over `grid`, or None when GDAL should warp instead
    /// (fine rasters, rotated ones, or too large a window).
    pub fn load(
        path: &Path,
        own: &Grid,
        bands: &[usize],
        nodata: Option<f64>,
        grid: &Grid,
    ) -> Result<Option<Coarse>> {
        if own.gt[2] != 0.0 || own.gt[4] != 0.0 || grid.gt[2] != 0.0 || grid.gt[4] != 0.0 {
            return Ok(None);
        }
        let [xmin, ymin, xmax, ymax] =
            io::transform_bounds(&grid.crs_wkt, &own.crs_wkt, grid.bounds())?;
        let (dx, dy) = (own.gt[1], -own.gt[5]);
        // Source pixels across the grid's extent against analysis pixels across it.
        let src_across = ((xmax - xmin) / dx).max((ymax - ymin) / dy);
        if src_across * MIN_PIXEL_RATIO > grid.width.max(grid.height) as f64 {
            return Ok(None);
        }
        let c0 = (((xmin - own.gt[0]) / dx).floor() as i64 - 2).max(0) as usize;
        let c1 = ((((xmax - own.gt[0]) / dx).ceil() as i64 + 2).max(0) as usize).min(own.width);
        let r0 = (((own.gt[3] - ymax) / dy).floor() as i64 - 2).max(0) as usize;
        let r1 = ((((own.gt[3] - ymin) / dy).ceil() as i64 + 2).max(0) as usize).min(own.height);
        if c1 <= c0 || r1 <= r0 || (c1 - c0) * (r1 - r0) * bands.len() * 4 > MAX_BYTES {
            return Ok(None);
        }
        let (ncols, nrows) = (c1 - c0, r1 - r0);
        let ds = io::open(path)?;
        let mut data = Vec::with_capacity(bands.len());
        for &b in bands {
            let band = ds.rasterband(b).map_err(|e| {
                Error::band(path, &format!("band {b}"), format!("cannot be opened: {e}"))
            })?;
            let mut v = vec![0f32; ncols * nrows];
            band.read_into_slice::<f32>(
                (c0 as isize, r0 as isize),
                (ncols, nrows),
                (ncols, nrows),
                &mut v,
                None,
            )
            .map_err(|e| Error::band(path, &format!("band {b}"), format!("read failed: {e}")))?;
            if let Some(nd) = nodata {
                for x in v.iter_mut().filter(|x| **x as f64 == nd) {
                    *x = f32::NAN;
                }
            }
            data.push(v);
        }
        let mut gt = own.gt;
        gt[0] += c0 as f64 * dx;
        gt[3] -= r0 as f64 * dy;
        Ok(Some(Coarse {
            layout: Layout {
                gt,
                crs_wkt: own.crs_wkt.clone(),
                ncols,
                nrows,
                off: (c0, r0),
                full: (own.width, own.height),
            },
            whole: data.iter().map(|v| !v.iter().any(|x| x.is_nan())).collect(),
            data,
        }))
    }

    /// Each pixel of `w` (of `grid`) as a continuous (column, row) position in the window held.
    pub fn positions(&self, grid: &Grid, w: &Window) -> Result<Vec<(f64, f64)>> {
        let nodes = |n: usize| -> Vec<usize> {
            let mut v: Vec<usize> = (0..n).step_by(MESH).collect();
            if *v.last().unwrap() != n - 1 {
                v.push(n - 1);
            }
            v
        };
        let (mc, mr) = (nodes(w.ncols), nodes(w.nrows));
        let mut xs = Vec::with_capacity(mc.len() * mr.len());
        let mut ys = Vec::with_capacity(xs.capacity());
        for &r in &mr {
            for &c in &mc {
                xs.push(grid.gt[0] + (w.col0 + c) as f64 * grid.gt[1] + 0.5 * grid.gt[1]);
                ys.push(grid.gt[3] + (w.row0 + r) as f64 * grid.gt[5] + 0.5 * grid.gt[5]);
            }
        }
        if !io::same_crs(&grid.crs_wkt, &self.layout.crs_wkt) {
            io::transform_points(&grid.crs_wkt, &self.layout.crs_wkt, &mut xs, &mut ys)?;
        }
        let uv: Vec<(f64, f64)> = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| {
                let gt = &self.layout.gt;
                ((x - gt[0]) / gt[1], (y - gt[3]) / gt[5])
            })
            .collect();
        // Linear between mesh nodes along both axes.
        let span = |nodes: &[usize], i: usize| -> (usize, f64) {
            let k = nodes
                .partition_point(|&n| n <= i)
                .saturating_sub(1)
                .min(nodes.len().saturating_sub(2));
            if nodes.len() == 1 {
                return (0, 0.0);
            }
            (k, (i - nodes[k]) as f64 / (nodes[k + 1] - nodes[k]) as f64)
        };
        let at = |k: usize, j: usize| uv[k * mc.len() + j];
        // Each column's mesh span, the same for every row.
        let cols: Vec<(usize, usize, f64)> = (0..w.ncols)
            .map(|c| {
                let (kc, fc) = span(&mc, c);
                (kc, (kc + 1).min(mc.len() - 1), fc)
            })
            .collect();
        // Rows in parallel (each position on its own: the same values for any thread count).
        use rayon::prelude::*;
        let mut out = vec![(0.0, 0.0); w.len()];
        out.par_chunks_mut(w.ncols.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                let (kr, fr) = span(&mr, r);
                let kr1 = (kr + 1).min(mr.len() - 1);
                for (o, &(kc, kc1, fc)) in row.iter_mut().zip(&cols) {
                    let lerp = |a: (f64, f64), b: (f64, f64), f: f64| {
                        (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f)
                    };
                    let top = lerp(at(kr, kc), at(kr, kc1), fc);
                    let bottom = lerp(at(kr1, kc), at(kr1, kc1), fc);
                    *o = lerp(top, bottom, fr);
                }
            });
        Ok(out)
    }

    /// The bilinear stencil of every position: computed once per block, applied to every step.
    pub fn stencil(&self, positions: &[(f64, f64)]) -> Stencil {
        use rayon::prelude::*;
        Stencil(
            positions
                .par_iter()
                .map(|&(u, v)| self.taps(u, v))
                .collect(),
        )
    }

    /// Bilinear values of steps `ks` with `stencil` (stored values; NaN where none) into `planes`, one per
    /// step, in parallel over chunks of pixels. Every step of a chunk is sampled while its taps are in cache (a
    /// pixel's taps are 64 bytes, read once per chunk instead of once per step).
    pub fn sample(&self, ks: &[usize], stencil: &Stencil, planes: &mut [&mut [f32]]) {
        use rayon::prelude::*;
        /// Pixels per chunk: their taps (64 kB) stay in a core's L2 cache across the steps.
        const CHUNK: usize = 1024;
        let n = stencil.0.len();
        assert!(planes.len() == ks.len() && planes.iter().all(|p| p.len() == n));
        // Each plane cut into the same chunks; chunk j of every plane goes to one task.
        let planes = planes.iter_mut().map(|p| &mut p[..]);
        crate::engine::parts::cut_alike(planes, n, CHUNK)
            .into_par_iter()
            .zip(stencil.0.par_chunks(CHUNK))
            .for_each(|(mut outs, taps)| {
                for (o, &k) in outs.iter_mut().zip(ks) {
                    let data = &self.data[k];
                    if self.whole[k] {
                        Taps::apply_all::<true>(o, taps, data);
                    } else {
                        Taps::apply_all::<false>(o, taps, data);
                    }
                }
            });
    }

    /// The source pixels and weights of the point (u, v) of the window held: none when the point lies outside
    /// the raster; otherwise the pixel that holds it and the four nearest pixel centres (those inside the
    /// raster with a non-zero weight), in GDAL's order.
    fn taps(&self, u: f64, v: f64) -> Taps {
        let none = Taps {
            centre: NONE,
            cells: [NONE; 4],
            weights: [0.0; 4],
            wsum: 0.0,
        };
        let (fu, fv) = (u + self.layout.off.0 as f64, v + self.layout.off.1 as f64);
        if fu < 0.0 || fv < 0.0 || fu > self.layout.full.0 as f64 || fv > self.layout.full.1 as f64
        {
            return none;
        }
        let (ci, cj) = (u.floor() as i64, v.floor() as i64);
        if ci < 0 || cj < 0 || ci as usize >= self.layout.ncols || cj as usize >= self.layout.nrows
        {
            return none;
        }
        let mut t = Taps {
            centre: (cj as usize * self.layout.ncols + ci as usize) as u32,
            ..none
        };
        let (x, y) = (u - 0.5, v - 0.5);
        let (i0, j0) = (x.floor(), y.floor());
        let (fx, fy) = (x - i0, y - j0);
        for (n, (di, dj, w)) in [
            (0, 0, (1.0 - fx) * (1.0 - fy)),
            (1, 0, fx * (1.0 - fy)),
            (0, 1, (1.0 - fx) * fy),
            (1, 1, fx * fy),
        ]
        .into_iter()
        .enumerate()
        {
            let (i, j) = (i0 as i64 + di, j0 as i64 + dj);
            if i < 0
                || j < 0
                || i as usize >= self.layout.ncols
                || j as usize >= self.layout.nrows
                || w == 0.0
            {
                continue;
            }
            t.cells[n] = (j as usize * self.layout.ncols + i as usize) as u32;
            t.weights[n] = w;
            t.wsum += w;
        }
        t
    }
}

const NONE: u32 = u32::MAX;

/// Where a coarse raster's window lies: rasters with the same layout (temperature, precipitation and radiation
/// of one climate product) have the same stencil over any block.
#[derive(Clone, PartialEq)]
struct Layout {
    /// Geotransform of the window held (north-up).
    gt: [f64; 6],
    crs_wkt: String,
    /// Window size and the window's offset in the whole raster, and the whole raster's size.
    ncols: usize,
    nrows: usize,
    off: (usize, usize),
    full: (usize, usize),
}

/// The last stencil computed, reused by the next raster with the same layout over the same block. It is
/// computed outside the lock (a rayon worker waiting inside `stencil` may run another read that asks for it),
/// so two readers at once may both compute it: the same values either way.
#[derive(Default)]
pub struct StencilCache(Mutex<Option<(Layout, Window, Arc<Stencil>)>>);

impl StencilCache {
    /// The stencil of `c` over block `w` of `grid`.
    pub fn get(&self, c: &Coarse, grid: &Grid, w: &Window) -> Result<Arc<Stencil>> {
        let layout = c.layout.clone();
        if let Some((l, cw, s)) = self.0.lock().expect("stencil cache").as_ref() {
            if *l == layout && cw == w {
                return Ok(Arc::clone(s));
            }
        }
        let s = Arc::new(c.stencil(&c.positions(grid, w)?));
        *self.0.lock().expect("stencil cache") = Some((layout, *w, Arc::clone(&s)));
        Ok(s)
    }
}

/// Per analysis pixel of a block: where its value comes from in the window held.
pub struct Stencil(Vec<Taps>);

#[derive(Clone, Copy)]
struct Taps {
    centre: u32,
    cells: [u32; 4],
    weights: [f64; 4],
    /// The weights of the cells added in order: `apply`'s sum where no neighbour lacks a value (kept so that a
    /// step without NaN needs no check per value).
    wsum: f64,
}

impl Taps {
    /// GDAL's bilinear rule: no value where the holding pixel has none; otherwise the weighted mean of the
    /// neighbours with a value (weights renormalised), none when their weights add up to almost nothing.
    /// `WHOLE`: the step has no NaN, so every tap counts and the weights' sum is the one kept with the taps
    /// (the same sums in the same order, without a check per value).
    #[inline]
    fn apply<const WHOLE: bool>(&self, data: &[f32]) -> f32 {
        if self.centre == NONE || (!WHOLE && data[self.centre as usize].is_nan()) {
            return f32::NAN;
        }
        let (mut acc, mut wsum) = (0.0f64, 0.0f64);
        for (&c, &w) in self.cells.iter().zip(&self.weights) {
            if c == NONE {
                continue;
            }
            let val = data[c as usize];
            if WHOLE || !val.is_nan() {
                acc += w * val as f64;
                wsum += w;
            }
        }
        let wsum = if WHOLE { self.wsum } else { wsum };
        if wsum < 1e-5 {
            f32::NAN
        } else {
            (acc / wsum) as f32
        }
    }

    /// `apply` of each pixel's taps, into `out`.
    fn apply_all<const WHOLE: bool>(out: &mut [f32], taps: &[Taps], data: &[f32]) {
        for (o, t) in out.iter_mut().zip(taps) {
            *o = t.apply::<WHOLE>(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BandRequest, GridReader, OutBand, RasterWriter, Resampling, WriteOptions};
    use std::collections::BTreeMap;

    /// The path for steps without NaN (`apply::<true>`, through `sample`) gives the same bits as the general
    /// rule (`apply::<false>`, itself checked against GDAL's warp below) at every position: inside, on pixel
    /// centres and edges, at the window's borders and outside it.
    #[test]
    fn steps_without_nan_give_the_general_rules_bits() {
        let (ncols, nrows) = (7, 5);
        let data: Vec<f32> = (0..ncols * nrows)
            .map(|i| ((i as f32) * 0.37).sin() * 9.0 + 0.1 * i as f32)
            .collect();
        let c = Coarse {
            layout: Layout {
                gt: [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
                crs_wkt: String::new(),
                ncols,
                nrows,
                off: (0, 0),
                full: (ncols, nrows),
            },
            whole: vec![true],
            data: vec![data],
        };
        let mut taps = Vec::new();
        for i in 0..=160 {
            for j in 0..=110 {
                // Steps of 1/20 px from -0.5 to 7.5 and 5.0: centres, edges, borders and beyond.
                taps.push(c.taps(i as f64 / 20.0 - 0.5, j as f64 / 20.0 - 0.5));
            }
        }
        let stencil = Stencil(taps);
        let mut out = vec![0f32; stencil.0.len()];
        c.sample(&[0], &stencil, &mut [&mut out[..]]);
        let general: Vec<u32> = stencil
            .0
            .iter()
            .map(|t| t.apply::<false>(&c.data[0]).to_bits())
            .collect();
        assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), general);
        assert!(out.iter().any(|v| v.is_nan()) && out.iter().any(|v| !v.is_nan()));
    }

    /// Against GDAL's own bilinear warp of the same raster onto the same grid: a 0.05-degree field on
    /// EPSG:4326 with one no-data pixel, onto a 100 m UTM grid (EPSG:32652) inside it. Equal to within GDAL's
    /// approximate transformer; no value exactly where GDAL has none.
    #[test]
    fn interpolates_as_gdal_warps() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("coarse.tif");
        let own = Grid::from_spec("EPSG:4326", 0.05, [126.8, 37.3, 127.3, 37.7]).unwrap();
        let mut w = RasterWriter::create::<f32>(
            &src,
            &own,
            &[OutBand {
                description: "T".into(),
                unit: "degC".into(),
            }],
            None,
            &BTreeMap::new(),
            &WriteOptions::default(),
        )
        .unwrap();
        let mut v: Vec<f32> = (0..own.width * own.height)
            .map(|i| {
                ((i % own.width) as f32 * 1.7 + (i / own.width) as f32 * 0.9).sin() * 10.0 + 12.0
            })
            .collect();
        v[3 * own.width + 4] = f32::NAN;
        w.write_rows(0, 0, v).unwrap();
        w.finish().unwrap().commit().unwrap();
        let grid = Grid::from_spec(
            "EPSG:32652",
            100.0,
            [310_000.0, 4_140_000.0, 330_000.0, 4_160_000.0],
        )
        .unwrap();
        let own = crate::io::RasterInfo::read(&src).unwrap().grid().unwrap();
        let c = Coarse::load(&src, &own, &[1], None, &grid)
            .unwrap()
            .expect("coarse");
        let win = Window::rows(0, grid.height, grid.width);
        let mut ours = vec![0f32; win.len()];
        c.sample(
            &[0],
            &c.stencil(&c.positions(&grid, &win).unwrap()),
            &mut [&mut ours[..]],
        );
        let r = GridReader::new(
            &src,
            &[BandRequest {
                index: 1,
                name: "T".into(),
            }],
            &grid,
            Resampling::Bilinear,
            None,
            f64::NAN,
        )
        .unwrap();
        let mut gdal = vec![0f32; win.len()];
        r.read_rows(0, 0, grid.height, &mut gdal).unwrap();
        let mut compared = 0;
        let pos = c.positions(&grid, &win).unwrap();
        for ((a, b), (u, v)) in ours.iter().zip(&gdal).zip(&pos) {
            if a.is_nan() != b.is_nan() {
                // Only on the edge of the no-data pixel, where GDAL's approximate transformer puts the point
                // on the other side (within 1e-3 of a source pixel).
                let edge = |x: f64| (x - x.round()).abs() < 1e-3;
                assert!(edge(*u) || edge(*v), "{a} vs {b} at ({u}, {v})");
                continue;
            }
            if !a.is_nan() {
                // The field changes by up to 17 units per source pixel: 0.03 is a 2e-3 pixel shift, far within
                // GDAL's approximate transformer (error threshold 0.125 px); ours transforms a 16-px mesh.
                // Next to the no-data pixel both renormalise over the valid neighbours, GDAL with its own
                // weighting: a looser bound there.
                let near_nodata = (u - 4.5).abs() < 1.0 && (v - 3.5).abs() < 1.0;
                let tol = if near_nodata { 5e-2 } else { 3e-2 };
                assert!((a - b).abs() < tol, "{a} vs GDAL {b} at ({u}, {v})");
                compared += 1;
            }
        }
        assert!(compared > 30_000 && compared < win.len(), "{compared}");
    }
}
