//! Spatially correlated errors (`length_km` on an `npp` or `rh` parameter): per draw, a standard normal field
//! g_d over the map whose values at two places are correlated when they are closer than about two lengths.
//!
//! Construction: knots on a lattice L apart in the grid's CRS (anchored at the CRS origin, not at the grid, so
//! a shard and the whole run draw the same field), each knot an independent standard normal drawn from
//! (seed, parameter, draw, knot) alone; between knots the field is the bilinear blend of its four knots with the
//! weights scaled so that their squares add up to one: every pixel's value is then exactly standard normal,
//! and two places with weights w and v on the knots correlate by sum(w_k v_k). One knot apart along an axis
//! the correlation is 0, half a knot apart 0.71, and beyond two lengths no knot is shared. On a geographic
//! grid the knots are L apart in metres at the grid's central latitude, on the grid's own ellipsoid (degrees of
//! latitude and of longitude there: `area::Ellipsoid::metres_per_degree`).

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::io::Grid;

/// The knot lattice of one field on one grid.
#[derive(Debug, Clone)]
pub struct Field {
    seed: u64,
    param: u64,
    /// Knot spacing in the grid's CRS units (x, y).
    spacing: (f64, f64),
    /// Knots closer than a pixel (along either axis): each pixel takes its nearest knot alone, so pixels are
    /// independent (no two share a knot) and no knot between them is drawn.
    fine: bool,
}

/// A pixel's four knots (lattice indices) and their scaled weights.
#[derive(Debug, Clone, Copy)]
pub struct Stencil {
    pub knots: [(i64, i64); 4],
    pub w: [f64; 4],
}

impl Field {
    /// The field of parameter `param` with correlation length `length_m` (metres) on `grid`, from `seed`.
    pub fn new(grid: &Grid, length_m: f64, seed: u64, param: usize) -> crate::error::Result<Field> {
        let srs = grid.spatial_ref()?;
        let spacing = if srs.is_geographic() {
            let lat = crate::io::grid_centre_latitude(grid)?;
            let (m_lat, m_lon) = crate::area::ellipsoid_of(grid)?.metres_per_degree(lat);
            (length_m / m_lon.max(1e-6), length_m / m_lat)
        } else {
            let l = length_m / srs.linear_units();
            (l, l)
        };
        let fine = spacing.0 < grid.gt[1].abs() || spacing.1 < grid.gt[5].abs();
        Ok(Field {
            seed,
            param: param as u64,
            spacing,
            fine,
        })
    }

    /// The knots and weights of the point (x, y) in CRS units.
    pub fn stencil(&self, x: f64, y: f64) -> Stencil {
        let (u, v) = (x / self.spacing.0, y / self.spacing.1);
        if self.fine {
            let k = (u.round() as i64, v.round() as i64);
            return Stencil {
                knots: [k; 4],
                w: [1.0, 0.0, 0.0, 0.0],
            };
        }
        let (i, j) = (u.floor(), v.floor());
        let (fu, fv) = (u - i, v - j);
        let w = [
            (1.0 - fu) * (1.0 - fv),
            fu * (1.0 - fv),
            (1.0 - fu) * fv,
            fu * fv,
        ];
        let norm = w.iter().map(|w| w * w).sum::<f64>().sqrt();
        let (i, j) = (i as i64, j as i64);
        Stencil {
            knots: [(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)],
            w: w.map(|w| w / norm),
        }
    }

    /// The stencil of a pixel's centre.
    pub fn pixel(&self, grid: &Grid, col: usize, row: usize) -> Stencil {
        let (x, y) = grid.pixel_centre(col, row);
        self.stencil(x, y)
    }

    /// Knot (i, j)'s standard normal value in draw `d`: a function of the seed, the parameter, the draw and
    /// the knot only (ChaCha8 seeded by their hash), so any block order and thread count give the same field.
    pub fn knot(&self, d: usize, (i, j): (i64, i64)) -> f64 {
        let key = hash(&[self.seed, self.param, d as u64, i as u64, j as u64]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
        StandardNormal.sample(&mut rng)
    }

    /// Whether the knots are closer than a pixel (see `fine`): then `knots` would draw many knots no pixel uses,
    /// and `values_at` draws each pixel's own.
    pub fn is_fine(&self) -> bool {
        self.fine
    }

    /// How many knots `knots` draws per draw for rows `row0`..`row0 + nrows`.
    pub fn knot_count(&self, grid: &Grid, row0: usize, nrows: usize) -> usize {
        let (i, j) = self.knot_span(grid, row0, nrows);
        ((i.1 - i.0 + 1) * (j.1 - j.0 + 1)) as usize
    }

    /// The field at a pixel with stencil `s` in every draw, its knots drawn on the spot (no block's table).
    pub fn values_at(&self, s: &Stencil, out: &mut [f64]) {
        for (d, o) in out.iter_mut().enumerate() {
            *o = (0..4)
                .filter(|&k| s.w[k] != 0.0)
                .map(|k| s.w[k] * self.knot(d, s.knots[k]))
                .sum();
        }
    }

    /// The first and last knot column and row the pixels of rows `row0`..`row0 + nrows` touch.
    fn knot_span(&self, grid: &Grid, row0: usize, nrows: usize) -> ((i64, i64), (i64, i64)) {
        let (last_col, last_row) = (grid.width.max(1) - 1, row0 + nrows.max(1) - 1);
        let corners = [
            (0, row0),
            (last_col, row0),
            (0, last_row),
            (last_col, last_row),
        ];
        let ks: Vec<(i64, i64)> = corners
            .iter()
            .flat_map(|&(c, r)| self.pixel(grid, c, r).knots)
            .collect();
        let i = (ks.iter().map(|k| k.0).min(), ks.iter().map(|k| k.0).max());
        let j = (ks.iter().map(|k| k.1).min(), ks.iter().map(|k| k.1).max());
        ((i.0.unwrap(), i.1.unwrap()), (j.0.unwrap(), j.1.unwrap()))
    }

    /// The knots' values in draws 0..`draws` for the pixels of rows `row0`..`row0 + nrows` (every knot their
    /// stencils touch), drawn in parallel; each value depends on its knot and draw only.
    pub fn knots(&self, grid: &Grid, row0: usize, nrows: usize, draws: usize) -> Knots {
        use rayon::prelude::*;
        let ((i0, i1), (j0, j1)) = self.knot_span(grid, row0, nrows);
        let ni = (i1 - i0 + 1) as usize;
        let n = ni * (j1 - j0 + 1) as usize;
        let z = (0..n * draws)
            .into_par_iter()
            .map(|x| {
                let (k, d) = (x / draws, x % draws);
                let knot = (i0 + (k % ni) as i64, j0 + (k / ni) as i64);
                self.knot(d, knot)
            })
            .collect();
        Knots {
            origin: (i0, j0),
            ni,
            draws,
            z,
        }
    }
}

/// Knot values of a block: `z[(knot row * ni + knot column) * draws + d]`.
pub struct Knots {
    origin: (i64, i64),
    ni: usize,
    draws: usize,
    z: Vec<f64>,
}

impl Knots {
    /// The field at a pixel with stencil `s` in every draw: out[d] = sum_k w_k z_d(k).
    pub fn values(&self, s: &Stencil, out: &mut [f64]) {
        let base = s.knots.map(|(i, j)| {
            ((j - self.origin.1) as usize * self.ni + (i - self.origin.0) as usize) * self.draws
        });
        for (d, o) in out.iter_mut().enumerate().take(self.draws) {
            *o = (0..4).map(|k| s.w[k] * self.z[base[k] + d]).sum();
        }
    }
}

/// A 64-bit hash of a list of keys (SplitMix64 chained): a reproducible random number for any set of indices.
pub fn hash(keys: &[u64]) -> u64 {
    keys.iter()
        .fold(0x9E37_79B9_7F4A_7C15u64, |h, &x| splitmix64(h ^ x))
}

/// SplitMix64's finaliser (Steele, Lea & Flood 2014): a well-mixed 64-bit hash of a 64-bit key.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(res: f64) -> Grid {
        let srs = gdal::spatial_ref::SpatialRef::from_epsg(32630).unwrap();
        Grid {
            crs_wkt: srs.to_wkt().unwrap(),
            gt: [400_000.0, res, 0.0, 5_600_000.0, 0.0, -res],
            width: 40,
            height: 30,
        }
    }

    fn corr(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    /// By hand, knots 1 km apart (length 1 km on a metre grid): a point on a knot has the knot's value; a point
    /// half-way to the next knot along x has weights (0.5, 0.5) scaled to (0.7071, 0.7071), so it correlates
    /// with the first by 0.7071; the next knot itself by 0. Monte Carlo over 20,000 draws (sampling sd of a
    /// correlation about 1 / sqrt(20,000) = 0.007) agrees within 0.03, and each value has variance 1.
    #[test]
    fn correlations_are_the_hand_worked_ones() {
        let f = Field::new(&grid(10.0), 1000.0, 5, 0).unwrap();
        let s = f.stencil(401_000.0, 5_599_000.0);
        assert!((s.w[0] - 1.0).abs() < 1e-12 && s.w[1..].iter().all(|w| w.abs() < 1e-12));
        let half = f.stencil(401_500.0, 5_599_000.0);
        assert!((half.w[0] - 0.5f64.sqrt()).abs() < 1e-12);
        let g = |s: &Stencil, d| (0..4).map(|k| s.w[k] * f.knot(d, s.knots[k])).sum::<f64>();
        let next = f.stencil(402_000.0, 5_599_000.0);
        let n = 20_000;
        let (a, b, c): (Vec<f64>, Vec<f64>, Vec<f64>) = (
            (0..n).map(|d| g(&s, d)).collect(),
            (0..n).map(|d| g(&half, d)).collect(),
            (0..n).map(|d| g(&next, d)).collect(),
        );
        assert!(
            (corr(&a, &b) - 0.5f64.sqrt()).abs() < 0.03,
            "{}",
            corr(&a, &b)
        );
        assert!(corr(&a, &c).abs() < 0.03, "{}", corr(&a, &c));
        let var = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        assert!((var(&b) - 1.0).abs() < 0.04, "{}", var(&b));
    }

    /// Knots closer than a pixel (1 m on 30 m pixels): each pixel takes its nearest knot alone, so neighbours
    /// share none (independent), and each pixel's value is a knot's standard normal.
    #[test]
    fn knots_finer_than_pixels_give_each_pixel_its_own() {
        let g = grid(30.0);
        let f = Field::new(&g, 1.0, 4, 0).unwrap();
        assert!(f.is_fine());
        let s: Vec<Stencil> = [(0, 0), (1, 0), (0, 1)]
            .iter()
            .map(|&(c, r)| f.pixel(&g, c, r))
            .collect();
        for x in &s {
            assert_eq!(x.w, [1.0, 0.0, 0.0, 0.0]);
        }
        assert!(s[0].knots[0] != s[1].knots[0] && s[0].knots[0] != s[2].knots[0]);
        // Pixel (0, 0)'s centre is (400015, 5599985): knot (400015, 5599985) of a 1 m lattice.
        assert_eq!(s[0].knots[0], (400_015, 5_599_985));
        let mut v = [0.0; 2];
        f.values_at(&s[0], &mut v);
        assert_eq!(v, [f.knot(0, s[0].knots[0]), f.knot(1, s[0].knots[0])]);
    }

    /// On a geographic grid the knots are the length apart in metres. Independent values: the WGS 84 series for
    /// a degree of latitude, 111,132.954 - 559.822 cos 2 phi + 1.175 cos 4 phi m (110,574.3 m at the equator,
    /// 111,131.8 m at 45 N), and of longitude, 111,412.84 cos phi - 93.5 cos 3 phi + 0.118 cos 5 phi m
    /// (111,319.5 m at the equator, 78,846.3 m at 45 N; the series is good to about 1 m).
    #[test]
    fn geographic_knots_are_metres_apart_on_the_ellipsoid() {
        let e = crate::area::Ellipsoid {
            a: 6_378_137.0,
            e: (0.006_694_379_990_14f64).sqrt(),
        };
        let (lat0, lon0) = e.metres_per_degree(0.0);
        assert!(
            (lat0 - 110_574.3).abs() < 1.0 && (lon0 - 111_319.5).abs() < 1.0,
            "{lat0} {lon0}"
        );
        let (lat45, lon45) = e.metres_per_degree(45.0);
        assert!(
            (lat45 - 111_131.8).abs() < 1.0 && (lon45 - 78_846.3).abs() < 1.0,
            "{lat45} {lon45}"
        );
        let wkt = crate::io::crs_wkt("EPSG:4326").unwrap();
        let g = Grid {
            crs_wkt: wkt,
            gt: [10.0, 0.001, 0.0, 45.5, 0.0, -0.001],
            width: 1000,
            height: 1000,
        };
        // 1 km at 45 N: 1000 / 111,132.9 degrees of latitude and 1000 / 78,846.8 of longitude.
        let f = Field::new(&g, 1000.0, 1, 0).unwrap();
        assert!(
            (f.spacing.1 - 1000.0 / 111_132.9).abs() < 1e-7,
            "{:?}",
            f.spacing
        );
        assert!(
            (f.spacing.0 - 1000.0 / 78_846.8).abs() < 1e-7,
            "{:?}",
            f.spacing
        );
    }

    /// A block's values are the point-by-point ones, whatever rows the block starts at (shards and strips agree).
    #[test]
    fn blocks_agree_with_points_and_with_each_other() {
        let g = grid(100.0);
        let f = Field::new(&g, 700.0, 9, 2).unwrap();
        let at = |k: &Knots, c, r| {
            let mut v = [0.0; 3];
            k.values(&f.pixel(&g, c, r), &mut v);
            v
        };
        let (whole, part) = (f.knots(&g, 0, 30, 3), f.knots(&g, 11, 5, 3));
        for (c, r) in [(0, 11), (39, 15), (7, 12), (20, 13)] {
            assert_eq!(at(&whole, c, r), at(&part, c, r));
        }
        let s = f.pixel(&g, 7, 12);
        let v: f64 = (0..4).map(|k| s.w[k] * f.knot(2, s.knots[k])).sum();
        assert_eq!(at(&whole, 7, 12)[2], v);
        // One row's knots (a wide strip's fallback) and knots drawn on the spot give the same values.
        assert_eq!(at(&f.knots(&g, 12, 1, 3), 7, 12), at(&whole, 7, 12));
        let mut direct = [0.0; 3];
        f.values_at(&s, &mut direct);
        for (a, b) in direct.iter().zip(at(&whole, 7, 12)) {
            assert!((a - b).abs() < 1e-15, "{a} {b}");
        }
        // Another parameter draws another field.
        let other = Field::new(&g, 700.0, 9, 3).unwrap();
        assert_ne!(at(&other.knots(&g, 0, 30, 3), 7, 12), at(&whole, 7, 12));
    }
}
