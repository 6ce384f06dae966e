//! The draws of a strip's pixels: per pixel, the statistics of NPP, NEP and sequestration over the draws; and
//! when a parameter is a spatial field (`length_km`), each class's NPP and Rh summed draw by draw, because a
//! field moves the pixels of one class differently in each draw (a class total is then no longer its
//! deterministic sum times one multiplier).

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::draws::{sens_finite, shifted, summary, Draws, ErrorParams, Responses, Sens};
use super::driver_error::{N, NAMES};
use super::field::{Field, Knots};
use crate::error::Result;
use crate::io::Grid;

/// The spatial fields of a run's draws: NPP's, Rh's and each driver's error (parameter index and field), if
/// declared.
pub struct Fields {
    pub npp: Option<(usize, Field)>,
    pub rh: Option<(usize, Field)>,
    /// In `driver_error::DRIVERS` order.
    pub drivers: [Option<(usize, Field)>; N],
}

impl Fields {
    /// The fields the draws' file declares, on `grid`, from the run's seed.
    pub fn new(draws: &Draws, grid: &Grid, seed: u64) -> Result<Fields> {
        let of = |t: &str| -> Result<Option<(usize, Field)>> {
            draws
                .field_param(t)
                .map(|k| {
                    let km = draws.spec.parameters[k].length_km.unwrap_or(f64::NAN);
                    Ok((k, Field::new(grid, km * 1000.0, seed, k)?))
                })
                .transpose()
        };
        let mut drivers = [const { None }; N];
        for (f, name) in drivers.iter_mut().zip(NAMES) {
            *f = of(name)?;
        }
        Ok(Fields {
            npp: of("npp")?,
            rh: of("rh")?,
            drivers,
        })
    }

    pub fn any(&self) -> bool {
        self.npp.is_some() || self.rh.is_some() || self.drivers.iter().any(Option::is_some)
    }

    /// Every field in the order a strip draws them: NPP's, Rh's, then the drivers'.
    fn all(&self) -> impl Iterator<Item = &Option<(usize, Field)>> {
        [&self.npp, &self.rh].into_iter().chain(self.drivers.iter())
    }
}

/// A class's NPP x area and Rh x area (g C) summed in each draw with the fields' multipliers; apart, the
/// drivers' errors' part of them (the sensitivities times each pixel's errors in the draw, with the fields'
/// multipliers), so a field can be drawn alone; and each driver's part alone (without the multipliers).
#[derive(Clone)]
pub struct ClassDraws {
    pub npp: Vec<f64>,
    pub rh: Vec<f64>,
    pub npp_moved: Vec<f64>,
    pub rh_moved: Vec<f64>,
    /// Per driver (`driver_error::DRIVERS` order), its part of NPP and of Rh in each draw.
    pub alone: [(Vec<f64>, Vec<f64>); N],
}

impl ClassDraws {
    fn zeros(nd: usize) -> ClassDraws {
        let z = || vec![0.0; nd];
        ClassDraws {
            npp: z(),
            rh: z(),
            npp_moved: z(),
            rh_moved: z(),
            alone: std::array::from_fn(|_| (z(), z())),
        }
    }
}

/// Per class code, its sums in each draw.
pub type DrawSums = BTreeMap<i32, ClassDraws>;

/// Adds `b` into `a`, draw by draw.
pub fn add_sums(a: &mut DrawSums, b: DrawSums) {
    for (code, c) in b {
        match a.get_mut(&code) {
            Some(t) => {
                let add =
                    |x: &mut Vec<f64>, y: &Vec<f64>| x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
                add(&mut t.npp, &c.npp);
                add(&mut t.rh, &c.rh);
                add(&mut t.npp_moved, &c.npp_moved);
                add(&mut t.rh_moved, &c.rh_moved);
                for (a, b) in t.alone.iter_mut().zip(&c.alone) {
                    add(&mut a.0, &b.0);
                    add(&mut a.1, &b.1);
                }
            }
            None => {
                a.insert(code, c);
            }
        }
    }
}

/// Land-cover confusion per pixel: in each draw a pixel mapped as a class with a row in the matrix is drawn to
/// be each reference class with that row's drawn share (the shares the totals use in that draw); as another
/// class it takes that class's mean NPP and Rh per area over the map (the totals' estimator: its own NDVI under
/// another class's parameters is not computed), as its own class its own values.
pub struct PixelConfusion<'a> {
    pub codes: &'a [i32],
    /// Per draw, per row (in `codes` order), the shares of each reference class.
    pub shares: &'a [Vec<Vec<f64>>],
    /// Per class present in the map: mean NPP and Rh per area (g C m-2) and their mean sensitivities.
    pub means: BTreeMap<i32, (f64, f64, Sens)>,
    pub seed: u64,
}

/// Where pixel (col, row) of `grid` is, as the index of its centre in the lattice of pixel-sized cells anchored
/// at the CRS's origin: the same for a shard (a window of the grid) as for the whole grid.
fn place_of(grid: &Grid, col: usize, row: usize) -> (i64, i64) {
    let (x, y) = grid.pixel_centre(col, row);
    (
        (x / grid.gt[1].abs()).floor() as i64,
        (y / grid.gt[5].abs()).floor() as i64,
    )
}

impl PixelConfusion<'_> {
    /// The matrix row of class `code`, if it has one.
    fn row_of(&self, code: i32) -> Option<usize> {
        self.codes.iter().position(|&c| c == code)
    }

    /// The class truly drawn in draw `d` for the pixel at `place` (its index in the CRS's own lattice of
    /// pixels, `place_of`) whose class has matrix row `i`.
    fn class_in(&self, d: usize, i: usize, place: (i64, i64)) -> i32 {
        // A uniform number of the seed, draw and place alone (any block order, thread count or shard).
        let key = [
            self.seed,
            0x0070_6978_656c,
            d as u64,
            place.0 as u64,
            place.1 as u64,
        ];
        let h = super::field::hash(&key);
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for (j, &p) in self.shares[d][i].iter().enumerate() {
            acc += p;
            if u < acc {
                return self.codes[j];
            }
        }
        self.codes[i]
    }
}

/// Per pixel: [NPP, NEP, sequestration] x [mean, sd, p05, p50, p95], as written (float32).
pub type PixelStats = [[f32; 5]; 3];

/// What every strip's draws share.
pub struct Strip<'a> {
    pub draws: &'a Draws,
    pub grid: &'a Grid,
    pub fields: &'a Fields,
    pub areas: &'a crate::area::PixelAreas,
    /// A class code's NPP parameter.
    pub param: &'a (dyn Fn(i32) -> Option<usize> + Sync),
    /// g C m-2 to t CO2 ha-1.
    pub to_co2: f64,
    pub confusion: Option<PixelConfusion<'a>>,
    /// Per draw, the drivers' errors (`Draws::driver_errors`).
    pub errs: Vec<[f64; N]>,
    /// Per class code, its errors' parameters where a class parameter is drawn per type (else empty).
    pub class_params: &'a BTreeMap<i32, ErrorParams>,
}

/// A field's parameter, its field and its knots in this strip (None: drawn row by row or pixel by pixel).
type StripField<'a> = Option<(usize, &'a Field, Option<Knots>)>;

/// A row's NPP, Rh (g C m-2) and land-cover classes.
type RowIn<'a> = (&'a [f64], &'a [f64], &'a [i32]);

/// The most knot values (knots x draws) a strip's table may hold: 16 MiB of float64. Beyond (lengths of a few
/// pixels on wide strips), each row draws its own knots.
const MAX_STRIP_KNOT_VALUES: usize = 2 << 20;

impl<'a> Strip<'a> {
    /// A pixel's parameter, NPP and Rh in draw `d` (moved by the draw's drivers' errors): its own, or with
    /// land-cover confusion (`confused`: its class's matrix row and its place, found once per pixel) those of
    /// the class it is drawn to be (that class's means; its own values when it is its own class or the other
    /// class has no pixels in the map).
    #[inline]
    fn as_drawn(
        &self,
        d: usize,
        code: i32,
        confused: Option<(usize, (i64, i64))>,
        (k, npp, rh, sens): (Option<usize>, f64, f64, &Sens),
        errs: &[f64; N],
    ) -> (Option<usize>, f64, f64) {
        let own = || {
            let (n, r) = shifted(npp, rh, sens, errs);
            (k, n, r)
        };
        let (Some(c), Some((i, place))) = (&self.confusion, confused) else {
            return own();
        };
        let t = c.class_in(d, i, place);
        match c.means.get(&t).filter(|_| t != code) {
            Some((npp, rh, sens)) => {
                // The class it is drawn to be takes that class's parameters' errors.
                let mut e = *errs;
                if !self.class_params.is_empty() {
                    self.draws
                        .set_class_errors(d, self.class_params.get(&t), &mut e);
                }
                let (n, r) = shifted(*npp, *rh, sens, &e);
                ((self.param)(t), n, r)
            }
            None => own(),
        }
    }

    /// The draws of rows `row0`.. (full width) of NPP, Rh and land cover: every pixel's statistics and, with
    /// fields, the per-draw class sums (rows in parallel, added in row order: the same sums on any thread count).
    pub fn run(
        &self,
        row0: usize,
        (npp, rh, cls): (&[f64], &[f64], &[i32]),
        sens: Responses,
    ) -> (Vec<PixelStats>, DrawSums) {
        let w = self.grid.width;
        let n = npp.len() / w.max(1);
        let nd = self.draws.n;
        let knots = |f: &'a Option<(usize, Field)>| -> StripField<'a> {
            f.as_ref().map(|(k, f)| {
                let small =
                    !f.is_fine() && f.knot_count(self.grid, row0, n) * nd <= MAX_STRIP_KNOT_VALUES;
                (*k, f, small.then(|| f.knots(self.grid, row0, n, nd)))
            })
        };
        let fields: Vec<StripField> = self.fields.all().map(knots).collect();
        let rows: Vec<(Vec<PixelStats>, DrawSums)> = (0..n)
            .into_par_iter()
            .map(|r| {
                let span = r * w..(r + 1) * w;
                let s = sens.pixels(span.start, w);
                let row = (&npp[span.clone()], &rh[span.clone()], &cls[span]);
                self.row(row0 + r, (row, s), &fields)
            })
            .collect();
        let mut stats = Vec::with_capacity(npp.len());
        let mut sums = DrawSums::new();
        for (s, d) in rows {
            stats.extend(s);
            add_sums(&mut sums, d);
        }
        (stats, sums)
    }

    /// One row's pixels.
    fn row(
        &self,
        row: usize,
        ((npp, rh, cls), sens): (RowIn, Responses),
        fields: &[StripField],
    ) -> (Vec<PixelStats>, DrawSums) {
        const NONE: Sens = [[0.0; 4]; N];
        let nd = self.draws.n;
        let (mut a, mut b) = (Vec::with_capacity(nd), Vec::with_capacity(nd));
        let mut g = vec![0.0; nd];
        // Per field (NPP's, Rh's, the drivers'), the pixel's multipliers in every draw (1 without the field).
        let mut m = vec![vec![1.0; nd]; fields.len()];
        // The pixel's drivers' errors in every draw: the run's, a field's at the pixel where it has one.
        let mut errs = self.errs.clone();
        let mut sums = DrawSums::new();
        let mut out = Vec::with_capacity(npp.len());
        // A field without a strip table: this row's knots (none when knots are finer than pixels).
        let row_knots = |f: &StripField| match f {
            Some((_, field, None)) if !field.is_fine() => Some(field.knots(self.grid, row, 1, nd)),
            _ => None,
        };
        let own: Vec<Option<Knots>> = fields.iter().map(row_knots).collect();
        // The pixel's multipliers of a field in every draw (left at 1 without the field).
        let mut factors = |f: &StripField, own: &Option<Knots>, col: usize, m: &mut [f64]| {
            if let Some((k, field, strip)) = f {
                let s = field.pixel(self.grid, col, row);
                match strip.as_ref().or(own.as_ref()) {
                    Some(knots) => knots.values(&s, &mut g),
                    None => field.values_at(&s, &mut g),
                }
                for d in 0..nd {
                    m[d] = self.draws.field_factor(d, *k, g[d]);
                }
            }
        };
        for col in 0..npp.len() {
            let s = &sens.at(col).unwrap_or(NONE);
            // A pixel without a sensitivity to a declared driver has no draws (counted in the tables' notes).
            if !(npp[col].is_finite() && rh[col].is_finite() && sens_finite(s)) {
                out.push([[f32::NAN; 5]; 3]);
                continue;
            }
            let k = (self.param)(cls[col]);
            let confused = self.confusion.as_ref().and_then(|c| {
                let i = c.row_of(cls[col])?;
                Some((i, place_of(self.grid, col, row)))
            });
            for (i, f) in fields.iter().enumerate() {
                factors(f, &own[i], col, &mut m[i]);
            }
            // A driver's field gives its error at the pixel: the multiplier's departure from 1.
            for (v, f) in fields[2..].iter().enumerate() {
                if f.is_some() {
                    errs.iter_mut()
                        .zip(&m[2 + v])
                        .for_each(|(e, x)| e[v] = x - 1.0);
                }
            }
            // A class parameter's error is its type's.
            if !self.class_params.is_empty() {
                let ps = self.class_params.get(&cls[col]);
                for (d, e) in errs.iter_mut().enumerate() {
                    self.draws.set_class_errors(d, ps, e);
                }
            }
            a.clear();
            b.clear();
            for d in 0..nd {
                let own = (k, npp[col], rh[col], s);
                let (k, npp, rh) = self.as_drawn(d, cls[col], confused, own, &errs[d]);
                let (x, y) = self.draws.pixel_in(d, k, npp, rh, (m[0][d], m[1][d]));
                a.push(x);
                b.push(y);
            }
            if self.fields.any() {
                let e = sums
                    .entry(cls[col])
                    .or_insert_with(|| ClassDraws::zeros(nd));
                let px = (npp[col], rh[col], s, self.areas.at(col, row));
                add_pixel(e, px, (&m[0], &m[1]), &errs);
            }
            let nep = summary(&mut b);
            let mut seq = nep;
            // Sequestration is NEP in other units: a positive factor keeps the order and the spread.
            seq.iter_mut().for_each(|v| *v *= self.to_co2);
            out.push([summary(&mut a), nep, seq].map(|s| s.map(|v| v as f32)));
        }
        (out, sums)
    }
}

/// A pixel's NPP and Rh (g C m-2), sensitivities and area added to its class's sums in every draw, with NPP's
/// and Rh's field multipliers `mn`, `mr` and its drivers' errors `errs`.
fn add_pixel(
    e: &mut ClassDraws,
    (npp, rh, s, area): (f64, f64, &Sens, f64),
    (mn, mr): (&[f64], &[f64]),
    errs: &[[f64; N]],
) {
    for d in 0..mn.len() {
        e.npp[d] += npp * area * mn[d];
        e.rh[d] += rh * area * mr[d];
        let (n, r) = shifted(0.0, 0.0, s, &errs[d]);
        e.npp_moved[d] += n * area * mn[d];
        e.rh_moved[d] += r * area * mr[d];
        // Each driver's own term (`shifted` with the others' errors 0; an entry without an error adds 0).
        let terms = e.alone.iter_mut().zip(s.iter().zip(&errs[d]));
        for ((an, ar), (sv, &ev)) in terms.filter(|(_, (_, &ev))| ev != 0.0) {
            an[d] += (sv[0] + 0.5 * sv[2] * ev) * ev * area;
            ar[d] += (sv[1] + 0.5 * sv[3] * ev) * ev * area;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pixel's place is the same in a shard (a window of the grid) as in the whole grid, and neighbours differ.
    #[test]
    fn a_pixels_place_is_the_same_in_a_shard() {
        let wkt = crate::io::crs_wkt("EPSG:4326").unwrap();
        let whole = Grid {
            crs_wkt: wkt,
            gt: [126.0, 0.0001, 0.0, 37.6, 0.0, -0.0001],
            width: 4096,
            height: 4096,
        };
        let mut shard = whole.clone();
        (shard.gt[0], shard.gt[3]) = (126.0 + 2048.0 * 0.0001, 37.6 - 1024.0 * 0.0001);
        for (c, r) in [(0, 0), (17, 5), (2047, 3071)] {
            assert_eq!(place_of(&shard, c, r), place_of(&whole, 2048 + c, 1024 + r));
        }
        assert_ne!(place_of(&whole, 5, 5), place_of(&whole, 6, 5));
        assert_ne!(place_of(&whole, 5, 5), place_of(&whole, 5, 6));
    }
    use crate::pipeline::npp::draws::{Parameter, UncertaintyFile};

    /// Calibration with a spatial field: in 1,000 trials the truth is one draw of the declared distributions
    /// (NPP's field, sd 0.2, length 500 m, sharing a factor of 0.4 with Rh's run-wide multiplier, sd 0.15) over a
    /// 6 x 2 grid of 300 m pixels; the 90 % interval of 500 draws with another seed covers a pixel's NEP and the
    /// zone's total NEP (all 12 pixels: spatial correlation in play) in 90 % +- 3 % of the trials (896 and 900
    /// with these seeds).
    #[test]
    fn ninety_percent_intervals_of_a_field_cover_the_truth_nine_times_in_ten() {
        let p = |target: &str, sd, km| Parameter {
            target: target.into(),
            vegetation_type: Some("*".into()),
            sector: None,
            sectors: Vec::new(),
            error: None,
            sd,
            length_km: km,
            source: "test".into(),
        };
        let spec = UncertaintyFile {
            name: "t".into(),
            correlation: 0.4,
            parameters: vec![p("npp", 0.2, Some(0.5)), p("rh", 0.15, None)],
        };
        let srs = gdal::spatial_ref::SpatialRef::from_epsg(32630).unwrap();
        let grid = Grid {
            crs_wkt: srs.to_wkt().unwrap(),
            gt: [400_000.0, 300.0, 0.0, 5_600_000.0, 0.0, -300.0],
            width: 6,
            height: 2,
        };
        let (npp, rh) = (|px: usize| 300.0 + 40.0 * px as f64, 180.0);
        // NEP of every draw of `draws` (rows) at every pixel (columns), the field's knots `k`.
        let nep = |draws: &Draws, f: &Field, k: &Knots| -> Vec<Vec<f64>> {
            let mut out = vec![vec![0.0; 12]; draws.n];
            let mut g = vec![0.0; draws.n];
            for px in 0..12 {
                k.values(&f.pixel(&grid, px % 6, px / 6), &mut g);
                for (d, row) in out.iter_mut().enumerate() {
                    let m = draws.field_factor(d, 0, g[d]);
                    row[px] = draws.pixel_in(d, None, npp(px), rh, (m, 1.0)).1;
                }
            }
            out
        };
        let interval = |v: &mut Vec<f64>| {
            let s = summary(v);
            (s[2], s[4])
        };
        let truth = Draws::new(spec.clone(), std::path::Path::new("t"), 1000, 1);
        let tf = Field::new(&grid, 500.0, 1, 0).unwrap();
        let truths = nep(&truth, &tf, &tf.knots(&grid, 0, 2, 1000));
        let (mut pixel_hits, mut zone_hits) = (0, 0);
        for t in 0..1000 {
            let seed = 1000 + t as u64;
            let draws = Draws::new(spec.clone(), std::path::Path::new("t"), 500, seed);
            let f = Field::new(&grid, 500.0, seed, 0).unwrap();
            let k = f.knots(&grid, 0, 2, 500);
            let all = nep(&draws, &f, &k);
            let true_nep = &truths[t];
            let (lo, hi) = interval(&mut all.iter().map(|v| v[7]).collect());
            pixel_hits += usize::from(lo <= true_nep[7] && true_nep[7] <= hi);
            let (lo, hi) = interval(&mut all.iter().map(|v| v.iter().sum()).collect());
            let z: f64 = true_nep.iter().sum();
            zone_hits += usize::from(lo <= z && z <= hi);
        }
        for hits in [pixel_hits, zone_hits] {
            assert!((870..=930).contains(&hits), "{pixel_hits} {zone_hits}");
        }
    }
}
