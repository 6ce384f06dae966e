//! True pixel areas on the ellipsoid, whatever the grid's CRS. A pixel's corners are taken to geographic
//! coordinates on the CRS's own datum (PROJ), then measured in Lambert's cylindrical equal-area projection of
//! that ellipsoid, x = R_q lon, y = R_q sin(beta), where beta is the authalic latitude (Snyder 1987, eqs. 3-11,
//! 3-12, 10-15): areas there are ellipsoidal areas exactly, so the shoelace area of the four corners is the
//! pixel's true area up to the curvature of its edges (below 1e-9 relative for pixels under a few km).
//!
//! Geographic grids: one value per row, exact (R_q^2 dlon (sin beta1 - sin beta2)). Projected grids: exact
//! areas at knots every `KNOT_STEP` pixels in both directions, bilinear in between (the scale factor of a map
//! projection is smooth: the interpolation error is below 1e-8 relative for knots a few km apart).

use crate::error::{Error, Result};
use crate::io::{self, Grid};

/// Pixels between area knots on projected grids.
const KNOT_STEP: usize = 16;

/// The figure of an ellipsoid for equal-area measures.
#[derive(Debug, Clone, Copy)]
pub struct Ellipsoid {
    /// Semi-major axis (m).
    pub a: f64,
    /// First eccentricity.
    pub e: f64,
}

impl Ellipsoid {
    /// q(phi) of Snyder (1987) eq. 3-12 (for e = 0: 2 sin phi).
    fn q(&self, sin_phi: f64) -> f64 {
        let e = self.e;
        if e < 1e-12 {
            return 2.0 * sin_phi;
        }
        let es = e * sin_phi;
        (1.0 - e * e)
            * (sin_phi / (1.0 - es * es) - (1.0 / (2.0 * e)) * ((1.0 - es) / (1.0 + es)).ln())
    }

    /// Sine of the authalic latitude of geodetic latitude `phi_deg`.
    pub fn sin_authalic(&self, phi_deg: f64) -> f64 {
        (self.q(phi_deg.to_radians().sin()) / self.q(1.0)).clamp(-1.0, 1.0)
    }

    /// Metres of one degree of latitude and of longitude at geodetic latitude `phi_deg`: the meridian's
    /// radius of curvature M = a (1 - e^2) / (1 - e^2 sin^2 phi)^(3/2) and the parallel's radius
    /// N cos phi = a cos phi / (1 - e^2 sin^2 phi)^(1/2) (Snyder 1987 eqs. 4-18 and 4-20), times pi / 180.
    pub fn metres_per_degree(&self, phi_deg: f64) -> (f64, f64) {
        let (s, c) = phi_deg.to_radians().sin_cos();
        let w = 1.0 - self.e * self.e * s * s;
        let m = self.a * (1.0 - self.e * self.e) / w.powf(1.5);
        let n = self.a / w.sqrt();
        let k = std::f64::consts::PI / 180.0;
        (m * k, n * c * k)
    }

    /// Radius of the sphere with the ellipsoid's area (R_q, Snyder eq. 3-13).
    pub fn authalic_radius(&self) -> f64 {
        self.a * (self.q(1.0) / 2.0).sqrt()
    }

    /// Area (m2) of a polygon given by geographic vertices (lon, lat in degrees), straight in (lon, sin beta).
    pub fn polygon_area(&self, lon: &[f64], lat: &[f64]) -> f64 {
        let rq = self.authalic_radius();
        let n = lon.len();
        let mut twice = 0.0;
        for i in 0..n {
            let j = (i + 1) % n;
            let (x0, y0) = (lon[i].to_radians(), self.sin_authalic(lat[i]));
            let (x1, y1) = (lon[j].to_radians(), self.sin_authalic(lat[j]));
            twice += x0 * y1 - x1 * y0;
        }
        rq * rq * twice.abs() / 2.0
    }
}

/// The ellipsoid of a grid's CRS.
pub fn ellipsoid_of(grid: &Grid) -> Result<Ellipsoid> {
    let srs = grid.spatial_ref()?;
    let a = srs
        .semi_major()
        .map_err(|e| Error::Usage(format!("the grid's CRS has no ellipsoid: {e}")))?;
    let b = srs
        .semi_minor()
        .map_err(|e| Error::Usage(format!("the grid's CRS has no ellipsoid: {e}")))?;
    Ok(Ellipsoid {
        a,
        e: (1.0 - (b * b) / (a * a)).max(0.0).sqrt(),
    })
}

/// True areas (m2) of a grid's pixels.
#[derive(Debug, Clone)]
pub struct PixelAreas {
    width: usize,
    /// Knot columns (pixel columns where the area is exact), ascending, the last column included.
    cols: Vec<usize>,
    /// Knot rows, likewise.
    rows: Vec<usize>,
    /// Exact areas at knots, `[row knot][col knot]`.
    knots: Vec<f64>,
}

impl PixelAreas {
    /// Areas of `grid`'s pixels on the ellipsoid of its CRS.
    pub fn of(grid: &Grid) -> Result<PixelAreas> {
        let srs = grid.spatial_ref()?;
        let ell = ellipsoid_of(grid)?;
        if srs.is_geographic() {
            return Ok(Self::geographic(
                grid,
                &ell,
                srs.angular_units().to_degrees(),
            ));
        }
        let cols = knots(grid.width);
        let rows = knots(grid.height);
        let geog = srs
            .geog_cs()
            .and_then(|g| g.to_wkt())
            .map_err(|e| Error::Usage(format!("the grid's CRS has no geographic base: {e}")))?;
        // Knot rows in parallel (each point transformed on its own: the same values for any thread count).
        use rayon::prelude::*;
        let knot_rows = rows
            .par_iter()
            .map(|&r| -> Result<Vec<f64>> {
                // The four corners of every knot pixel of this knot row, transformed in one call.
                let (mut xs, mut ys) = (Vec::new(), Vec::new());
                for &c in &cols {
                    for (dc, dr) in [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)] {
                        let (px, py) = (c as f64 + dc, r as f64 + dr);
                        xs.push(grid.gt[0] + px * grid.gt[1] + py * grid.gt[2]);
                        ys.push(grid.gt[3] + px * grid.gt[4] + py * grid.gt[5]);
                    }
                }
                io::transform_points(&grid.crs_wkt, &geog, &mut xs, &mut ys)?;
                Ok((0..cols.len())
                    .map(|k| ell.polygon_area(&xs[4 * k..4 * k + 4], &ys[4 * k..4 * k + 4]))
                    .collect())
            })
            .collect::<Vec<_>>();
        let mut knots = Vec::with_capacity(cols.len() * rows.len());
        for row in knot_rows {
            knots.extend(row?);
        }
        Ok(PixelAreas {
            width: grid.width,
            cols,
            rows,
            knots,
        })
    }

    /// Geographic grids: exact per row (one knot column).
    fn geographic(grid: &Grid, ell: &Ellipsoid, deg_per_unit: f64) -> PixelAreas {
        let rq = ell.authalic_radius();
        let dlon = (grid.gt[1] * deg_per_unit).abs().to_radians();
        let knots = (0..grid.height)
            .map(|row| {
                let lat1 = (grid.gt[3] + row as f64 * grid.gt[5]) * deg_per_unit;
                let lat2 = (grid.gt[3] + (row + 1) as f64 * grid.gt[5]) * deg_per_unit;
                rq * rq * dlon * (ell.sin_authalic(lat1) - ell.sin_authalic(lat2)).abs()
            })
            .collect();
        PixelAreas {
            width: grid.width,
            cols: vec![0],
            rows: (0..grid.height).collect(),
            knots,
        }
    }

    /// Area (m2) of pixel (`col`, `row`).
    pub fn at(&self, col: usize, row: usize) -> f64 {
        let (r0, r1, fr) = bracket(&self.rows, row);
        let (c0, c1, fc) = bracket(&self.cols, col);
        let n = self.cols.len();
        let v = |r: usize, c: usize| self.knots[r * n + c];
        let top = v(r0, c0) * (1.0 - fc) + v(r0, c1) * fc;
        let bottom = v(r1, c0) * (1.0 - fc) + v(r1, c1) * fc;
        top * (1.0 - fr) + bottom * fr
    }

    /// Areas of the pixels of one row.
    pub fn row(&self, row: usize) -> Vec<f64> {
        (0..self.width).map(|c| self.at(c, row)).collect()
    }

    /// Mean pixel area over the knots (m2).
    pub fn mean(&self) -> f64 {
        self.knots.iter().sum::<f64>() / self.knots.len().max(1) as f64
    }
}

/// Knot positions for `n` pixels: 0, step, 2 step, ..., and the last pixel.
fn knots(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).step_by(KNOT_STEP).collect();
    if v.last() != Some(&(n.max(1) - 1)) {
        v.push(n.max(1) - 1);
    }
    v
}

/// The two knots around `i` and the weight of the second.
fn bracket(knots: &[usize], i: usize) -> (usize, usize, f64) {
    if knots.len() == 1 {
        return (0, 0, 0.0);
    }
    // Knots are regular but for the last: the knot at or before `i` is found by division (the same as
    // `knots.partition_point(|&x| x <= i).clamp(1, knots.len() - 1)`, without a search per pixel).
    let step = knots[1] - knots[0];
    let k = (i / step + 1).min(knots.len() - 1);
    debug_assert_eq!(
        k,
        knots.partition_point(|&x| x <= i).clamp(1, knots.len() - 1)
    );
    let (a, b) = (knots[k - 1], knots[k]);
    let f = if b > a {
        (i.saturating_sub(a)) as f64 / (b - a) as f64
    } else {
        0.0
    };
    (k - 1, k, f.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WGS84: Ellipsoid = Ellipsoid {
        a: 6_378_137.0,
        // e = sqrt(2f - f^2), f = 1 / 298.257223563.
        e: 0.081_819_190_842_621_5,
    };

    #[test]
    fn authalic_radius_of_wgs84_is_snyders() {
        // Snyder (1987) p. 16: R_q = 6371007.2 m for GRS80 (WGS84 differs below 1 mm).
        assert!((WGS84.authalic_radius() - 6_371_007.18).abs() < 0.01);
    }

    #[test]
    fn a_one_degree_cell_at_the_equator_and_at_60_degrees() {
        // Ellipsoidal area of a 1 x 1 degree cell: a^2 (1 - e^2) dlon integral of cos phi / (1 - e^2 sin^2 phi)^2,
        // by numerical integration here (Simpson, 1000 steps), independent of q().
        let cell = |lat0: f64| {
            let (a, e2) = (WGS84.a, WGS84.e * WGS84.e);
            let n = 1000;
            let h = 1f64.to_radians() / n as f64;
            let f = |p: f64| p.cos() / (1.0 - e2 * p.sin().powi(2)).powi(2);
            let mut s = f(lat0.to_radians()) + f((lat0 + 1.0).to_radians());
            for i in 1..n {
                s += f(lat0.to_radians() + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
            }
            a * a * (1.0 - e2) * 1f64.to_radians() * s * h / 3.0
        };
        for lat0 in [0.0, 60.0] {
            let got =
                WGS84.polygon_area(&[0.0, 1.0, 1.0, 0.0], &[lat0, lat0, lat0 + 1.0, lat0 + 1.0]);
            let want = cell(lat0);
            assert!(
                ((got - want) / want).abs() < 1e-9,
                "{lat0}: {got} vs {want}"
            );
        }
        // About 12,309 km2 at the equator (a^2 (1 - e^2) x (pi/180)^2 to first order).
        assert!(
            (cell(0.0) / 1e6 - 12_309.0).abs() < 1.0,
            "{}",
            cell(0.0) / 1e6
        );
    }

    #[test]
    fn bilinear_between_knots() {
        let p = PixelAreas {
            width: 33,
            cols: vec![0, 16, 32],
            rows: vec![0, 16],
            knots: vec![1.0, 2.0, 3.0, 3.0, 4.0, 5.0],
        };
        assert_eq!(p.at(8, 0), 1.5);
        assert_eq!(p.at(16, 8), 3.0);
        assert_eq!(p.at(32, 16), 5.0);
    }
}
