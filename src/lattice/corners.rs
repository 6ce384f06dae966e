//! The corners of a strip of walker pixels in the lattice's CRS, as the overlap needs them.
//!
//! Transforming every corner with PROJ is most of the overlap's time (a transverse Mercator inverse and forward
//! per corner), while a transformation between two CRSs is smooth at the scale of a few pixels. So corners are
//! transformed exactly at mesh knots every `KNOT` corners along both axes, fixed in the walker grid (a corner
//! gets the same position whatever strip it is computed in, so neighbouring strips share their border corners
//! exactly), and bilinearly between the knots of a mesh cell where that is exact to `MAX_ERROR_PX` of a
//! pixel: each mesh cell's centre and the midpoints of its four edges are also transformed exactly and compared
//! with their interpolation (GDAL's approximate transformer tests a midpoint; the centre alone is not enough:
//! a conformal map is harmonic, its curvatures along the two axes cancel at a cell's centre while its edges
//! bend). A cell that fails the test, or has a knot that cannot be transformed, has every corner transformed
//! exactly. Pixels still tile the plane (neighbours share their corners), so the transfer stays mass
//! conserving whichever way a corner was computed.
//!
//! Measured (scripts/bench-chain.sh's stack, UTM 52N to EPSG:5179, 10 m pixels): along a 16-corner mesh
//! cell's edge the interpolation is off by 1e-6 of a pixel, along an 8-corner one by 3e-7, so every 8-corner
//! cell is interpolated and PROJ transforms 4 points in 64 instead of every one (per mesh cell a knot, its centre
//! and two edge midpoints it shares with its neighbours); from UTM to EPSG:4326 even the
//! 8-corner edges are off by 1e-5 of a pixel (meridians converge), so every cell is transformed exactly and the
//! values are those of the exact transform.

use rayon::prelude::*;

use crate::io::{self, Grid};

/// Corners between mesh knots (a power of two keeps the knots of any tile-aligned strip or shard in place).
pub const KNOT: usize = 8;

/// The largest interpolation error accepted at a mesh cell's probes, as a fraction of the pixel's size there:
/// a millionth of a pixel (10 micrometres on 10 m pixels) changes a pixel's area in the lattice's space by a
/// few millionths (its four corners each move), and a cell's total only through the pixels on its border (the
/// pieces of a cell still tile it). Measured on the README's Exeter run: fine emissions per pixel up to 6e-6
/// relative, cell totals 2e-9.
pub const MAX_ERROR_PX: f64 = 1e-6;

/// Corner positions (x, y) in the lattice CRS, row-major over corner rows `row0 ..= row0 + nrows` and corner
/// columns `0 ..= walker.width`. NaN where a corner cannot be transformed.
pub fn strip_corners(
    walker: &Grid,
    to_wkt: &str,
    row0: usize,
    nrows: usize,
) -> (Vec<f64>, Vec<f64>) {
    let w = walker.width;
    let at = |c: f64, r: f64| {
        (
            walker.gt[0] + c * walker.gt[1],
            walker.gt[3] + r * walker.gt[5],
        )
    };
    let cols = knots(0, w, w);
    let rows = knots(row0, row0 + nrows, walker.height);
    let mesh = Mesh::new(
        &cols,
        &rows,
        |pts| transform(&walker.crs_wkt, to_wkt, pts),
        at,
    );
    // Corner rows in parallel (each corner on its own: the same values for any thread count); NaN marks a
    // corner of a cell that failed the test, transformed exactly below.
    let mut pts = vec![(f64::NAN, f64::NAN); (w + 1) * (nrows + 1)];
    pts.par_chunks_mut(w + 1).enumerate().for_each(|(i, row)| {
        let (kr, fr) = span(&rows, row0 + i);
        for (c, p) in row.iter_mut().enumerate() {
            let (kc, fc) = span(&cols, c);
            if let Some(q) = mesh.interpolate(kr, kc, fr, fc) {
                *p = q;
            }
        }
    });
    let exact: Vec<usize> = (0..pts.len())
        .filter(|&i| pts[i].0.is_nan() || pts[i].1.is_nan())
        .collect();
    let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = pts.into_iter().unzip();
    for &i in &exact {
        (xs[i], ys[i]) = at((i % (w + 1)) as f64, (row0 + i / (w + 1)) as f64);
    }
    if !exact.is_empty() {
        let mut pts: Vec<(f64, f64)> = exact.iter().map(|&i| (xs[i], ys[i])).collect();
        transform(&walker.crs_wkt, to_wkt, &mut pts);
        for (&i, (x, y)) in exact.iter().zip(pts) {
            (xs[i], ys[i]) = (x, y);
        }
    }
    (xs, ys)
}

/// Knot indices covering `lo ..= hi`: the multiples of `KNOT` around them, the grid's last corner `end`.
fn knots(lo: usize, hi: usize, end: usize) -> Vec<usize> {
    let first = lo / KNOT * KNOT;
    let last = hi.div_ceil(KNOT) * KNOT;
    let mut v: Vec<usize> = (first..=last.min(end)).step_by(KNOT).collect();
    if *v.last().expect("at least one knot") != last.min(end) {
        v.push(last.min(end));
    }
    v
}

/// The mesh interval holding corner `i` and the fraction along it (a knot starts its own interval; the last
/// knot belongs to the last interval, at fraction 1).
fn span(knots: &[usize], i: usize) -> (usize, f64) {
    if knots.len() == 1 {
        return (0, 0.0);
    }
    // Knots are multiples of KNOT from the first but for the last: the interval by division (the same as
    // `knots.partition_point(|&n| n <= i).saturating_sub(1).min(knots.len() - 2)`).
    let k = ((i - knots[0]) / KNOT).min(knots.len() - 2);
    debug_assert_eq!(
        k,
        knots
            .partition_point(|&n| n <= i)
            .saturating_sub(1)
            .min(knots.len() - 2)
    );
    (k, (i - knots[k]) as f64 / (knots[k + 1] - knots[k]) as f64)
}

/// Where a mesh cell is tested (fractions down and across): its centre and the midpoints of its edges.
const PROBES: [(f64, f64); 5] = [(0.5, 0.5), (0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0)];

/// Knot positions and, per mesh cell, whether interpolation passed the probes' test.
struct Mesh {
    ncols: usize,
    pts: Vec<(f64, f64)>,
    good: Vec<bool>,
}

impl Mesh {
    fn new(
        cols: &[usize],
        rows: &[usize],
        transform: impl Fn(&mut [(f64, f64)]),
        at: impl Fn(f64, f64) -> (f64, f64),
    ) -> Mesh {
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| (c, r)))
            .map(|(c, r)| at(c as f64, r as f64))
            .collect();
        // The knots and every cell's probes in one batch of exact transforms. Neighbouring cells share an
        // edge's midpoint (the same position from either cell), so it is transformed once: per cell, its centre,
        // and the midpoints of the horizontal edges (knot rows x cells across) and of the vertical ones (cells
        // down x knot columns).
        let (nc, nr) = (cols.len().saturating_sub(1), rows.len().saturating_sub(1));
        let mid = |k: &[usize], i: usize| k[i] as f64 + 0.5 * (k[i + 1] - k[i]) as f64;
        let centres = (0..nr).flat_map(|i| (0..nc).map(move |j| (i, j)));
        pts.extend(centres.map(|(i, j)| at(mid(cols, j), mid(rows, i))));
        let across = (0..nr.min(1) * (nr + 1)).flat_map(|i| (0..nc).map(move |j| (i, j)));
        pts.extend(across.map(|(i, j)| at(mid(cols, j), rows[i] as f64)));
        let down = (0..nr).flat_map(|i| (0..nc.min(1) * (nc + 1)).map(move |j| (i, j)));
        pts.extend(down.map(|(i, j)| at(cols[j] as f64, mid(rows, i))));
        transform(&mut pts);
        let centres = pts.split_off(cols.len() * rows.len());
        let (centres, rest) = centres.split_at(nr * nc);
        let (across, down) = rest.split_at(if nr > 0 { (nr + 1) * nc } else { 0 });
        let mut mesh = Mesh {
            ncols: cols.len(),
            pts,
            good: vec![false; nr * nc],
        };
        for i in 0..nr {
            for j in 0..nc {
                // In PROBES' order: centre, top, bottom, left, right.
                let exact = [
                    centres[i * nc + j],
                    across[i * nc + j],
                    across[(i + 1) * nc + j],
                    down[i * (nc + 1) + j],
                    down[i * (nc + 1) + j + 1],
                ];
                mesh.good[i * nc + j] = mesh.passes(i, j, &exact, cols[j + 1] - cols[j]);
            }
        }
        mesh
    }

    /// The bilinear position in cell (i, j) at fractions (fr down, fc across).
    fn bilinear(&self, i: usize, j: usize, fr: f64, fc: f64) -> (f64, f64) {
        let k = |a: usize, b: usize| self.pts[(i + a) * self.ncols + j + b];
        let lerp =
            |p: (f64, f64), q: (f64, f64), f: f64| (p.0 + (q.0 - p.0) * f, p.1 + (q.1 - p.1) * f);
        lerp(lerp(k(0, 0), k(0, 1), fc), lerp(k(1, 0), k(1, 1), fc), fr)
    }

    /// Whether cell (i, j)'s interpolated probes lie within `MAX_ERROR_PX` of a pixel of their `exact` transforms.
    fn passes(&self, i: usize, j: usize, exact: &[(f64, f64)], corners_across: usize) -> bool {
        let (a, b) = (
            self.pts[i * self.ncols + j],
            self.pts[i * self.ncols + j + 1],
        );
        let pixel = (b.0 - a.0).hypot(b.1 - a.1) / corners_across.max(1) as f64;
        // NaN anywhere (a knot or a probe not transformable) fails.
        pixel > 0.0
            && PROBES.iter().zip(exact).all(|(&(fr, fc), e)| {
                let (x, y) = self.bilinear(i, j, fr, fc);
                (x - e.0).hypot(y - e.1) <= MAX_ERROR_PX * pixel
            })
    }

    /// The interpolated corner, or None where the cell's corners are to be transformed exactly.
    fn interpolate(&self, kr: usize, kc: usize, fr: f64, fc: f64) -> Option<(f64, f64)> {
        let nc = self.ncols.saturating_sub(1);
        if nc == 0 || self.good.is_empty() || !self.good[kr * nc + kc] {
            return None;
        }
        // Knots themselves are exact: take them as transformed (no rounding through the weights).
        match (fr, fc) {
            (0.0, 0.0) => Some(self.pts[kr * self.ncols + kc]),
            _ => Some(self.bilinear(kr, kc, fr, fc)),
        }
    }
}

/// Transform points in place, in parallel chunks (each with its own PROJ transformation: PROJ objects are not
/// shared between threads; every point is transformed on its own, so the result does not depend on the
/// chunks); points that cannot be transformed become NaN.
fn transform(from: &str, to: &str, pts: &mut [(f64, f64)]) {
    pts.par_chunks_mut(4096).for_each(|chunk| {
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = chunk.iter().copied().unzip();
        transform_or_nan(from, to, &mut xs, &mut ys);
        for (p, (x, y)) in chunk.iter_mut().zip(xs.into_iter().zip(ys)) {
            *p = (x, y);
        }
    });
}

/// Transform points in place; points that cannot be transformed become NaN (their pixels get a NaN area).
fn transform_or_nan(from: &str, to: &str, xs: &mut [f64], ys: &mut [f64]) {
    // A failed batch may have transformed some points in place: retry each from its original.
    let original: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
    if io::transform_points(from, to, xs, ys).is_ok() {
        return;
    }
    for ((x, y), (ox, oy)) in xs.iter_mut().zip(ys.iter_mut()).zip(original) {
        let (mut px, mut py) = ([ox], [oy]);
        (*x, *y) = if io::transform_points(from, to, &mut px, &mut py).is_ok() {
            (px[0], py[0])
        } else {
            (f64::NAN, f64::NAN)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knots_are_fixed_in_the_grid_and_end_at_its_last_corner() {
        assert_eq!(knots(0, 20, 100), vec![0, 8, 16, 24]);
        assert_eq!(knots(250, 260, 600), vec![248, 256, 264]);
        assert_eq!(knots(90, 100, 100), vec![88, 96, 100]);
        assert_eq!(knots(0, 5, 5), vec![0, 5]);
        assert_eq!(span(&[0, 8, 16], 8), (1, 0.0));
        assert_eq!(span(&[0, 8, 16], 16), (1, 1.0));
        assert_eq!(span(&[88, 96, 100], 98), (1, 0.5));
    }

    fn wkt(epsg: u32) -> String {
        gdal::spatial_ref::SpatialRef::from_epsg(epsg)
            .unwrap()
            .to_wkt()
            .unwrap()
    }

    fn utm52(width: usize, height: usize, px: f64) -> Grid {
        Grid {
            width,
            height,
            gt: [300000.0, px, 0.0, 4150000.0, 0.0, -px],
            crs_wkt: wkt(32652),
        }
    }

    fn exact(walker: &Grid, to: &str, row0: usize, nrows: usize) -> (Vec<f64>, Vec<f64>) {
        let mut pts: Vec<(f64, f64)> = (row0..=row0 + nrows)
            .flat_map(|r| (0..=walker.width).map(move |c| (c, r)))
            .map(|(c, r)| {
                (
                    walker.gt[0] + c as f64 * walker.gt[1],
                    walker.gt[3] + r as f64 * walker.gt[5],
                )
            })
            .collect();
        transform(&walker.crs_wkt, to, &mut pts);
        pts.into_iter().unzip()
    }

    #[test]
    fn interpolated_corners_stay_within_the_tolerance_and_strips_agree_on_their_border() {
        let walker = utm52(100, 70, 10.0);
        let to = wkt(5179);
        let (xs, ys) = strip_corners(&walker, &to, 0, 70);
        let (ex, ey) = exact(&walker, &to, 0, 70);
        let worst = xs
            .iter()
            .zip(&ys)
            .zip(ex.iter().zip(&ey))
            .map(|((x, y), (a, b))| (x - a).hypot(y - b))
            .fold(0.0, f64::max);
        assert!(worst < MAX_ERROR_PX * 10.0, "worst corner off by {worst} m");
        // The mesh was used (some corners differ from PROJ's in the last bits), and knots are the exact
        // transforms, bit for bit.
        assert!(xs != ex);
        assert_eq!((xs[16], ys[16]), (ex[16], ey[16]));
        assert_eq!(
            (xs[8 * 101 + 96], ys[8 * 101 + 96]),
            (ex[8 * 101 + 96], ey[8 * 101 + 96])
        );
        // Two strips compute their shared corner row identically.
        let (a, _) = strip_corners(&walker, &to, 0, 37);
        let (b, _) = strip_corners(&walker, &to, 37, 33);
        assert_eq!(&a[37 * 101..], &b[..101]);
        assert_eq!(&a[..], &xs[..38 * 101]);
    }

    /// Corners PROJ cannot transform (latitudes past the pole, on a grid whose top row is at 91 N) are NaN, as
    /// without the mesh, and a mesh cell with such a knot has its other corners transformed exactly.
    #[test]
    fn corners_that_cannot_be_transformed_are_nan_and_their_mesh_cells_exact() {
        let walker = Grid {
            width: 20,
            height: 20,
            gt: [0.0, 0.25, 0.0, 91.0, 0.0, -0.25],
            crs_wkt: wkt(4326),
        };
        let to = wkt(3035);
        let (xs, ys) = strip_corners(&walker, &to, 0, 20);
        let (ex, ey) = exact(&walker, &to, 0, 20);
        let nan = |v: &[f64]| v.iter().map(|x| x.is_nan()).collect::<Vec<_>>();
        assert_eq!(nan(&xs), nan(&ex));
        // Corner rows 0 to 3 (91 to 90.25 N) cannot be transformed; row 4 (the pole) and below can.
        assert!(xs[..4 * 21].iter().all(|x| x.is_nan()));
        assert!(xs[4 * 21..].iter().all(|x| x.is_finite()));
        // Mesh row 0 (corner rows 0 to 8) has knots that failed: its transformable corners are PROJ's own.
        assert_eq!(&xs[4 * 21..9 * 21], &ex[4 * 21..9 * 21]);
        assert_eq!(&ys[4 * 21..9 * 21], &ey[4 * 21..9 * 21]);
    }

    #[test]
    fn a_transformation_too_curved_for_the_mesh_is_exact() {
        let walker = utm52(40, 20, 10.0);
        let to = wkt(4326);
        assert_eq!(
            strip_corners(&walker, &to, 0, 20),
            exact(&walker, &to, 0, 20)
        );
    }
}
