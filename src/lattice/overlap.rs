//! Exact area-weighted overlap between the pixels of one grid (the "walker", streamed by strips) and the cells
//! of another (the "lattice", held in memory), in any pair of CRSs.
//!
//! Every walker pixel is mapped into the lattice's measuring space by transforming its four corners (corners
//! are shared between neighbouring pixels, so the mapped pixels tile the plane without gaps or overlaps), and
//! clipped against each lattice cell it touches (Sutherland-Hodgman against the cell rectangle). Areas are
//! shoelace areas in the measuring space: the lattice CRS itself when it is projected, and (longitude,
//! sin of the authalic latitude) when it is geographic - Lambert's cylindrical equal-area map of the CRS's
//! ellipsoid (crate::area), in which the lattice's cells are still rectangles and an area is proportional to
//! the true area on the ellipsoid, so
//! degree-squares never stand in for areas. Pixels that straddle a cell border are split by area, never
//! assigned by their centre; the pieces of a pixel add up to the whole pixel, which makes every transfer
//! between the grids mass conserving.

use rayon::prelude::*;

use crate::error::Result;
use crate::io::{self, Grid};

/// Relative rounding tolerance under which a cell counts as wholly covered.
const WHOLE_TOLERANCE: f64 = 1e-9;

/// The lattice as rectangles in its measuring space.
#[derive(Debug, Clone)]
pub struct CellSpace {
    pub grid: Grid,
    /// The ellipsoid of a geographic lattice (None: projected, measured in its own CRS).
    geographic: Option<crate::area::Ellipsoid>,
    x0: f64,
    dx: f64,
    /// Row boundaries in measuring y, north to south (decreasing), `height + 1` values.
    row_y: Vec<f64>,
}

impl CellSpace {
    pub fn new(grid: &Grid) -> Result<CellSpace> {
        let geographic = if grid.spatial_ref()?.is_geographic() {
            Some(crate::area::ellipsoid_of(grid)?)
        } else {
            None
        };
        let row_y = (0..=grid.height)
            .map(|j| {
                let y = grid.gt[3] + j as f64 * grid.gt[5];
                match &geographic {
                    Some(e) => e.sin_authalic(y.clamp(-90.0, 90.0)),
                    None => y,
                }
            })
            .collect();
        Ok(CellSpace {
            grid: grid.clone(),
            geographic,
            x0: grid.gt[0],
            dx: grid.gt[1],
            row_y,
        })
    }

    /// Map a point in the lattice CRS to measuring space.
    fn measure(&self, x: f64, y: f64) -> (f64, f64) {
        match &self.geographic {
            Some(e) => (x, e.sin_authalic(y.clamp(-90.0, 90.0))),
            None => (x, y),
        }
    }

    /// Area of cell (row, col) in measuring space (the same for every column).
    pub fn cell_area(&self, row: usize) -> f64 {
        self.dx * (self.row_y[row] - self.row_y[row + 1])
    }

    /// Fraction of cell `cell` (row-major index) that `covered` (measuring area) makes up, snapped to 1 when
    /// whole: mapped pixels tile the plane, so a wholly covered cell's pieces add up to its area up to rounding.
    pub fn coverage(&self, cell: usize, covered: f64) -> f64 {
        let f = covered / self.cell_area(cell / self.grid.width);
        if f > 1.0 - WHOLE_TOLERANCE {
            1.0
        } else {
            f
        }
    }

    /// Rows whose y-band intersects [ylo, yhi] (measuring space), clamped to the lattice.
    fn rows(&self, ylo: f64, yhi: f64) -> std::ops::Range<usize> {
        // row_y is decreasing: row j spans [row_y[j+1], row_y[j]].
        let first = self.row_y.partition_point(|&b| b > yhi).saturating_sub(1);
        let last = self.row_y.partition_point(|&b| b > ylo);
        first..last.min(self.grid.height)
    }

    fn cols(&self, xlo: f64, xhi: f64) -> std::ops::Range<usize> {
        let w = self.grid.width as f64;
        let a = ((xlo - self.x0) / self.dx).floor().clamp(0.0, w) as usize;
        let b = ((xhi - self.x0) / self.dx).floor().clamp(-1.0, w - 1.0);
        if b < 0.0 {
            return 0..0;
        }
        a..(b as usize + 1)
    }
}

/// Overlaps of one strip of walker pixels with lattice cells, in compressed rows: the pieces of pixel `i`
/// are `cells[offsets[i]..offsets[i+1]]` with areas `areas[..]`, all in measuring space.
#[derive(Debug, Default)]
pub struct StripOverlap {
    pub row0: usize,
    pub nrows: usize,
    pub width: usize,
    pub offsets: Vec<usize>,
    pub cells: Vec<u32>,
    pub areas: Vec<f64>,
    /// Whole area of each pixel in measuring space (NaN where its corners could not be transformed).
    pub pixel_area: Vec<f64>,
}

impl StripOverlap {
    pub fn pieces(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        (self.offsets[i]..self.offsets[i + 1]).map(move |k| (self.cells[k] as usize, self.areas[k]))
    }
}

/// Walks the pixels of `walker` strip by strip and yields their overlaps with the lattice.
pub struct Overlapper {
    pub space: CellSpace,
    pub walker: Grid,
    same_crs: bool,
}

impl Overlapper {
    pub fn new(walker: &Grid, lattice: &Grid) -> Result<Overlapper> {
        Ok(Overlapper {
            space: CellSpace::new(lattice)?,
            walker: walker.clone(),
            same_crs: io::same_crs(&walker.crs_wkt, &lattice.crs_wkt),
        })
    }

    /// Overlaps of walker rows `row0 .. row0 + nrows`.
    pub fn strip(&self, row0: usize, nrows: usize) -> Result<StripOverlap> {
        let w = self.walker.width;
        let gt = self.walker.gt;
        let (xs, ys) = if self.same_crs {
            let xs = (row0..=row0 + nrows)
                .flat_map(|_| (0..=w).map(|c| gt[0] + c as f64 * gt[1]))
                .collect();
            let ys = (row0..=row0 + nrows)
                .flat_map(|r| (0..=w).map(move |_| gt[3] + r as f64 * gt[5]))
                .collect();
            (xs, ys)
        } else {
            super::corners::strip_corners(&self.walker, &self.space.grid.crs_wkt, row0, nrows)
        };
        let pts: Vec<(f64, f64)> = xs
            .par_iter()
            .zip(ys.par_iter())
            .map(|(&x, &y)| self.space.measure(x, y))
            .collect();
        let rows: Vec<RowPieces> = (0..nrows)
            .into_par_iter()
            .map(|r| {
                let mut out = RowPieces::default();
                for c in 0..w {
                    let i0 = r * (w + 1) + c;
                    let i1 = (r + 1) * (w + 1) + c;
                    let quad = [pts[i0], pts[i0 + 1], pts[i1 + 1], pts[i1]];
                    pixel_pieces(&self.space, &quad, &mut out);
                }
                out
            })
            .collect();
        let mut s = StripOverlap {
            row0,
            nrows,
            width: w,
            offsets: Vec::with_capacity(w * nrows + 1),
            ..Default::default()
        };
        s.offsets.push(0);
        for r in rows {
            let base = s.cells.len();
            s.cells.extend_from_slice(&r.cells);
            s.areas.extend_from_slice(&r.areas);
            s.offsets.extend(r.ends.iter().map(|e| base + e));
            s.pixel_area.extend_from_slice(&r.pixel_area);
        }
        Ok(s)
    }
}

#[derive(Default)]
struct RowPieces {
    cells: Vec<u32>,
    areas: Vec<f64>,
    ends: Vec<usize>,
    pixel_area: Vec<f64>,
}

fn shoelace(poly: &[(f64, f64)]) -> f64 {
    let n = poly.len();
    let mut s = 0.0;
    for i in 0..n {
        let (x1, y1) = poly[i];
        let (x2, y2) = poly[(i + 1) % n];
        s += x1 * y2 - x2 * y1;
    }
    (s * 0.5).abs()
}

/// Clip a polygon against the half-plane kept by `inside`, intersecting edges with `cut`.
fn clip_edge(
    poly: &[(f64, f64)],
    out: &mut Vec<(f64, f64)>,
    inside: impl Fn((f64, f64)) -> bool,
    cut: impl Fn((f64, f64), (f64, f64)) -> (f64, f64),
) {
    out.clear();
    let n = poly.len();
    for i in 0..n {
        let cur = poly[i];
        let prev = poly[(i + n - 1) % n];
        match (inside(prev), inside(cur)) {
            (true, true) => out.push(cur),
            (true, false) => out.push(cut(prev, cur)),
            (false, true) => {
                out.push(cut(prev, cur));
                out.push(cur);
            }
            (false, false) => {}
        }
    }
}

/// Area of a convex polygon inside the rectangle [x0, x1] x [y0, y1] (Sutherland-Hodgman).
pub fn clipped_area(poly: &[(f64, f64)], x0: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    let at_x = |x: f64| {
        move |a: (f64, f64), b: (f64, f64)| {
            let t = (x - a.0) / (b.0 - a.0);
            (x, a.1 + t * (b.1 - a.1))
        }
    };
    let at_y = |y: f64| {
        move |a: (f64, f64), b: (f64, f64)| {
            let t = (y - a.1) / (b.1 - a.1);
            (a.0 + t * (b.0 - a.0), y)
        }
    };
    let mut a: Vec<(f64, f64)> = poly.to_vec();
    let mut b = Vec::with_capacity(8);
    clip_edge(&a, &mut b, |p| p.0 >= x0, at_x(x0));
    clip_edge(&b, &mut a, |p| p.0 <= x1, at_x(x1));
    clip_edge(&a, &mut b, |p| p.1 >= y0, at_y(y0));
    clip_edge(&b, &mut a, |p| p.1 <= y1, at_y(y1));
    if a.len() < 3 {
        0.0
    } else {
        shoelace(&a)
    }
}

fn pixel_pieces(space: &CellSpace, quad: &[(f64, f64); 4], out: &mut RowPieces) {
    let area = shoelace(quad);
    if !area.is_finite() || quad.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
        out.pixel_area.push(f64::NAN);
        out.ends.push(out.cells.len());
        return;
    }
    out.pixel_area.push(area);
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in quad {
        xlo = xlo.min(p.0);
        xhi = xhi.max(p.0);
        ylo = ylo.min(p.1);
        yhi = yhi.max(p.1);
    }
    let rows = space.rows(ylo, yhi);
    let cols = space.cols(xlo, xhi);
    let w = space.grid.width;
    for r in rows {
        let (cy0, cy1) = (space.row_y[r + 1], space.row_y[r]);
        for c in cols.clone() {
            let cx0 = space.x0 + c as f64 * space.dx;
            let cx1 = cx0 + space.dx;
            // The common case: the pixel lies inside one cell.
            let a = if xlo >= cx0 && xhi <= cx1 && ylo >= cy0 && yhi <= cy1 {
                area
            } else {
                clipped_area(quad, cx0, cx1, cy0, cy1)
            };
            if a > 0.0 {
                out.cells.push((r * w + c) as u32);
                out.areas.push(a);
            }
        }
    }
    out.ends.push(out.cells.len());
}

/// How each lattice cell's mass is spread over the fine pixels that cover it: by area, or by area x a proxy
/// weight. A cell only partly covered gives the covered part its area share of the cell's mass; a cell whose
/// covered part has no proxy weight falls back to area. Filled by one pass over the fine grid (`add`), then
/// `finish`ed; `share` is then the fraction of a cell's mass that one piece of a pixel receives.
#[derive(Debug, Clone)]
pub struct Spread {
    covered: Vec<f64>,
    weighted: Vec<f64>,
    coverage: Vec<f64>,
    /// The proxy's weight over each whole cell (when the proxy covers the cells beyond the fine grid).
    whole: Vec<f64>,
}

impl Spread {
    pub fn new(cells: usize) -> Spread {
        Spread {
            covered: vec![0.0; cells],
            weighted: vec![0.0; cells],
            coverage: Vec::new(),
            whole: Vec::new(),
        }
    }

    /// Spread each cell's mass by the proxy over the whole cell: `weights[c]` is the proxy's weight integrated
    /// over cell `c` (measuring area x weight). Cells without weight keep spreading within the fine grid.
    pub fn use_whole_cells(&mut self, weights: Vec<f64>) {
        self.whole = weights;
    }

    /// Fraction of cell `c`'s mass that the fine grid receives: its area share, or with whole-cell spreading
    /// the proxy's weight inside the fine grid over the whole cell's.
    pub fn received(&self, c: usize) -> f64 {
        if self.whole_cell(c) {
            (self.weighted[c] / self.whole[c]).min(1.0)
        } else {
            self.coverage[c]
        }
    }

    /// Whether cell `c` is spread over the whole cell.
    pub fn whole_cell(&self, c: usize) -> bool {
        self.whole.get(c).is_some_and(|w| *w > 0.0)
    }

    /// A piece of area `a` (measuring space) of a pixel with proxy weight `w` lies in cell `c`.
    pub fn add(&mut self, c: usize, a: f64, w: f64) {
        self.covered[c] += a;
        self.weighted[c] += w * a;
    }

    pub fn finish(&mut self, space: &CellSpace) {
        self.coverage = (0..self.covered.len())
            .map(|c| space.coverage(c, self.covered[c]))
            .collect();
    }

    /// Measuring area of cell `c` covered by the fine grid.
    pub fn covered(&self, c: usize) -> f64 {
        self.covered[c]
    }

    /// Fraction of cell `c` covered by the fine grid (after `finish`).
    pub fn coverage(&self, c: usize) -> f64 {
        self.coverage[c]
    }

    /// Covered, but without proxy weight there (spread by area instead).
    pub fn unweighted(&self, c: usize) -> bool {
        self.covered[c] > 0.0 && self.weighted[c] <= 0.0
    }

    /// Fraction of cell `c`'s mass that a piece of area `a` of a pixel with weight `w` receives.
    pub fn share(&self, c: usize, a: f64, w: f64) -> f64 {
        if self.whole_cell(c) {
            w * a / self.whole[c]
        } else if self.weighted[c] > 0.0 {
            self.coverage[c] * w * a / self.weighted[c]
        } else {
            self.coverage[c] * a / self.covered[c]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_by_hand() {
        // Unit square clipped to [0.5, 2] x [0, 0.25]: 0.5 x 0.25 = 0.125.
        let sq = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)];
        assert!((clipped_area(&sq, 0.5, 2.0, 0.0, 0.25) - 0.125).abs() < 1e-15);
        // A diamond |x| + |y| <= 1 (area 2) clipped to x >= 0: 1; to the first quadrant: 0.5.
        let d = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)];
        assert!((clipped_area(&d, 0.0, 5.0, -5.0, 5.0) - 1.0).abs() < 1e-15);
        assert!((clipped_area(&d, 0.0, 5.0, 0.0, 5.0) - 0.5).abs() < 1e-15);
        // Disjoint: nothing.
        assert_eq!(clipped_area(&sq, 2.0, 3.0, 0.0, 1.0), 0.0);
    }
}
