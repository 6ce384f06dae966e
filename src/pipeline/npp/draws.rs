//! Monte Carlo over multiplicative parameter uncertainty (`npp --draws N --uncertainty FILE`): a parameter
//! multiplies NPP (CASA's emax or a correction factor: NPP is proportional to both) of the classes of one
//! vegetation type, or Rh. Each draw draws every parameter once for the whole run (one draw per class per run,
//! not per pixel), as a one-factor model: m_i = 1 + sd_i (sqrt(rho) z_0 + sqrt(1 - rho) z_i) with z standard
//! normal (z_0 shared by every parameter of the file), so any two parameters covary by rho sd_i sd_j.
//!
//! The model runs once; the draws share its outputs: draw d of a pixel is NPP m_d(type) - Rh r_d, exactly what
//! running the model with the drawn parameters gives. Per pixel: mean, standard deviation and the 5th, 50th
//! and 95th percentiles (exact, from the sorted draws). Totals (the whole area and each class) are computed per
//! draw from per-type sums, so the correlation between pixels sharing a parameter is honoured.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Deserialize;

use super::confusion::Confusion;
use crate::error::{Error, Result};

/// An uncertainty file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UncertaintyFile {
    pub name: String,
    /// Correlation of every pair of parameters (the shared factor's share of the variance), 0..1.
    #[serde(default)]
    pub correlation: f64,
    #[serde(rename = "parameter")]
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// "npp" (a multiplier of NPP), "rh" (of Rh), "emissions" (of a lattice sector's emissions, in
    /// `balance`) or "sequestration" (of the sink, in `balance`).
    pub target: String,
    /// For "npp": the vegetation type whose classes it multiplies ("*": every type without its own entry).
    pub vegetation_type: Option<String>,
    /// For "emissions": the sector ("*" or absent: every sector without its own entry).
    pub sector: Option<String>,
    /// For "emissions", instead of `sector`: sectors sharing one multiplier (one inventory category whose
    /// activity data and emission factors they share).
    #[serde(default)]
    pub sectors: Vec<String>,
    /// For "emissions": what the error is of, "inventory" (absent: the sector's total, activity data times
    /// emission factor) or "allocation" (where the lattice puts that total). A sector's multiplier is its
    /// inventory parameter's times its allocation parameter's (`balance/sector_params.rs`).
    pub error: Option<String>,
    /// Relative standard deviation of the multiplier (normal with mean 1).
    pub sd: f64,
    /// For "npp" (every vegetation type: "*") and "rh": an input error that varies in space, correlated over
    /// this length (km): a field per draw (`field.rs`) instead of one number per run.
    pub length_km: Option<f64>,
    /// Where the value comes from (required: a distribution is a claim about the world).
    pub source: String,
}

/// The multipliers of every draw: per draw, one per parameter.
pub struct Draws {
    pub spec: UncertaintyFile,
    pub path: PathBuf,
    pub n: usize,
    /// draws[d][i]: parameter i's multiplier in draw d.
    pub m: Vec<Vec<f64>>,
    /// The run-wide Rh parameter (`rh_param`), found once: `pixel_in` runs per pixel and draw.
    rh: Option<usize>,
    /// Each driver's parameter (`driver_error::DRIVERS` order), if declared with an sd above 0.
    drivers: [Option<usize>; 3],
}

/// A pixel's (or a class's summed) sensitivity of NPP and Rh to each driver (`driver_error::DRIVERS` order; 0
/// for a driver not declared), per unit of the driver's error.
pub type Sens = [[f64; 2]; 3];

/// NPP and Rh moved by the drivers' errors `e` (K or relative) through sensitivities `s`.
#[inline]
pub fn shifted(npp: f64, rh: f64, s: &Sens, e: &[f64; 3]) -> (f64, f64) {
    let (mut n, mut r) = (npp, rh);
    for v in 0..3 {
        n += s[v][0] * e[v];
        r += s[v][1] * e[v];
    }
    (n, r)
}

/// The drivers whose errors a file may declare (`driver_error::DRIVERS`).
const DRIVER_NAMES: [&str; 3] = {
    let d = &super::driver_error::DRIVERS;
    [d[0].name, d[1].name, d[2].name]
};

/// Built-in uncertainty files (`models/uncertainty/NAME.toml`), by name.
pub const UNCERTAINTY_DIR: &str = "uncertainty/";

impl UncertaintyFile {
    /// A user's file (a path ending in .toml) or a built-in one by name (`models/uncertainty/`), checked;
    /// with the file it came from.
    pub fn resolve(name_or_path: &Path) -> Result<(UncertaintyFile, PathBuf)> {
        let text = name_or_path.to_string_lossy();
        let (f, path): (UncertaintyFile, PathBuf) =
            crate::models::resolve_table("uncertainty file", UNCERTAINTY_DIR, &text)?;
        Ok((f.checked(&path)?, path))
    }

    /// A user's file (or a built-in name), checked.
    pub fn load(path: &Path) -> Result<UncertaintyFile> {
        Self::resolve(path).map(|(f, _)| f)
    }

    /// Every problem of a file at once.
    fn checked(self, path: &Path) -> Result<UncertaintyFile> {
        let f = self;
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&f.correlation) {
            problems.push(format!("correlation {} is not within 0..1", f.correlation));
        }
        let types: Vec<String> = crate::landcover::vegetation_types()?
            .into_iter()
            .map(|t| t.name)
            .collect();
        for (i, p) in f.parameters.iter().enumerate() {
            let what = format!("parameter {} ({})", i + 1, p.target);
            if let Some(t) = p.vegetation_type.as_deref().filter(|t| *t != "*") {
                if !types.iter().any(|k| k == t) {
                    problems.push(format!(
                        "{what}: vegetation_type \"{t}\" is not one of carbonmap's types ({}; or \"*\")",
                        types.join(", ")
                    ));
                }
            }
            let driver = super::driver_error::driver_of(&p.target).is_some();
            if !["npp", "rh", "emissions", "sequestration"].contains(&p.target.as_str()) && !driver
            {
                problems.push(format!(
                    "{what}: target must be npp, rh, emissions, sequestration, or a driver's error: {}",
                    DRIVER_NAMES.join(", ")
                ));
            }
            if driver && (p.vegetation_type.is_some() || p.sector.is_some()) {
                problems.push(format!(
                    "{what}: a driver's error applies to every pixel: no vegetation_type or sector"
                ));
            }
            if p.target == "npp" && p.vegetation_type.is_none() {
                problems.push(format!("{what}: name the vegetation_type (or \"*\")"));
            }
            if !(p.sd.is_finite() && p.sd >= 0.0) {
                problems.push(format!("{what}: sd must be a number >= 0"));
            }
            problems.extend(p.field_problem().map(|e| format!("{what}: {e}")));
            problems.extend(p.emissions_problem().map(|e| format!("{what}: {e}")));
            if p.source.trim().is_empty() {
                problems.push(format!("{what}: give its source"));
            }
        }
        for t in ["rh", "sequestration"] {
            let run_wide = |p: &&Parameter| p.target == t && p.length_km.is_none();
            if f.parameters.iter().filter(run_wide).count() > 1 {
                problems.push(format!("at most one {t} parameter"));
            }
        }
        // A driver's error is either run-wide or a field, not both.
        for t in DRIVER_NAMES {
            if f.parameters.iter().filter(|p| p.target == t).count() > 1 {
                problems.push(format!("at most one {t} parameter"));
            }
        }
        for t in ["npp", "rh", "emissions"] {
            let field = |p: &&Parameter| p.target == t && p.length_km.is_some();
            if f.parameters.iter().filter(field).count() > 1 {
                problems.push(format!("at most one {t} parameter with a length_km"));
            }
        }
        problems.extend(crate::pipeline::balance::sector_params::overlaps(
            &f.parameters,
        ));
        if problems.is_empty() {
            Ok(f)
        } else {
            Err(Error::Invalid(
                problems
                    .into_iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect(),
            ))
        }
    }
}

impl Parameter {
    /// What is wrong with a parameter's `length_km`, if anything.
    fn field_problem(&self) -> Option<String> {
        let l = self.length_km?;
        let allocation = self.target == "emissions" && self.error_kind() == "allocation";
        let driver = super::driver_error::driver_of(&self.target).is_some();
        if !["npp", "rh"].contains(&self.target.as_str()) && !allocation && !driver {
            return Some(
                "length_km (a spatially correlated error) is for npp, rh, a driver's error and an emissions allocation error only"
                    .into(),
            );
        }
        if self.target == "npp" && self.vegetation_type.as_deref() != Some("*") {
            return Some("a length_km applies to every pixel: give vegetation_type = \"*\"".into());
        }
        (!(l.is_finite() && l > 0.0)).then(|| format!("length_km {l} must be a number > 0"))
    }
}

impl Draws {
    /// `n` draws with `seed` (ChaCha8: the same seed gives the same draws on every machine and thread count).
    pub fn new(spec: UncertaintyFile, path: &Path, n: usize, seed: u64) -> Draws {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (a, b) = (spec.correlation.sqrt(), (1.0 - spec.correlation).sqrt());
        let m = (0..n)
            .map(|_| {
                let z0: f64 = StandardNormal.sample(&mut rng);
                spec.parameters
                    .iter()
                    .map(|p| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        // A field's own part is drawn in space (`field_factor`); here its shared part only.
                        let own = if p.length_km.is_some() { 0.0 } else { b * z };
                        1.0 + p.sd * (a * z0 + own)
                    })
                    .collect()
            })
            .collect();
        let rh = spec
            .parameters
            .iter()
            .position(|p| p.target == "rh" && p.length_km.is_none());
        let mut drivers = [None; 3];
        for (k, p) in spec.parameters.iter().enumerate() {
            if let Some(v) = super::driver_error::driver_of(&p.target).filter(|_| p.sd > 0.0) {
                drivers[v] = Some(k);
            }
        }
        Draws {
            spec,
            path: path.to_path_buf(),
            n,
            m,
            rh,
            drivers,
        }
    }

    /// The NPP parameter of a vegetation type (its own entry, else "*"), if any.
    pub fn npp_param(&self, vegetation_type: &str) -> Option<usize> {
        let find = |t: &str| {
            self.spec.parameters.iter().position(|p| {
                p.target == "npp"
                    && p.vegetation_type.as_deref() == Some(t)
                    && p.length_km.is_none()
            })
        };
        find(vegetation_type).or_else(|| find("*"))
    }

    pub fn rh_param(&self) -> Option<usize> {
        self.rh
    }

    /// Whether the file declares a driver's error (with an sd above 0).
    pub fn has_drivers(&self) -> bool {
        self.drivers.iter().any(Option::is_some)
    }

    /// The drivers' errors in draw `d` (K for temperature, relative for the others; 0 where not declared).
    pub fn driver_errors(&self, d: usize) -> [f64; 3] {
        self.drivers.map(|k| k.map_or(0.0, |k| self.m[d][k] - 1.0))
    }

    /// Driver `v`'s error alone in draw `d`, the others 0.
    pub fn driver_error_alone(&self, d: usize, v: usize) -> [f64; 3] {
        let mut e = [0.0; 3];
        e[v] = self.driver_errors(d)[v];
        e
    }

    /// Driver `v`'s field length (km), if its error is a spatial field.
    pub fn driver_length_km(&self, v: usize) -> Option<f64> {
        self.drivers[v].and_then(|k| self.spec.parameters[k].length_km)
    }

    /// The declared drivers (index in `driver_error::DRIVERS`).
    pub fn declared_drivers(&self) -> Vec<usize> {
        (0..3).filter(|&v| self.drivers[v].is_some()).collect()
    }

    /// The spatially correlated parameter of "npp" or "rh", if any.
    pub fn field_param(&self, target: &str) -> Option<usize> {
        self.spec
            .parameters
            .iter()
            .position(|p| p.target == target && p.length_km.is_some())
    }

    /// A field parameter `k`'s multiplier in draw `d` where its field is `g`: 1 + sd (sqrt(rho) z_0 +
    /// sqrt(1 - rho) g), the one-factor model with the field in place of the parameter's own normal.
    #[inline]
    pub fn field_factor(&self, d: usize, k: usize, g: f64) -> f64 {
        let p = &self.spec.parameters[k];
        self.m[d][k] + p.sd * (1.0 - self.spec.correlation).sqrt() * g
    }

    pub fn sequestration_param(&self) -> Option<usize> {
        self.spec
            .parameters
            .iter()
            .position(|p| p.target == "sequestration")
    }

    /// Multiplier `k` (1 for none) in draw `d`.
    #[inline]
    pub fn at(&self, d: usize, k: Option<usize>) -> f64 {
        k.map_or(1.0, |k| self.m[d][k])
    }

    /// Draw `d` of a pixel with NPP `npp` and Rh `rh` whose type has NPP parameter `k`: (NPP, NEP).
    #[inline]
    pub fn pixel(&self, d: usize, k: Option<usize>, npp: f64, rh: f64) -> (f64, f64) {
        self.pixel_in(d, k, npp, rh, (1.0, 1.0))
    }

    /// As `pixel`, with the pixel's field multipliers of NPP and Rh in this draw (`field_factor`; 1: none).
    #[inline]
    pub fn pixel_in(
        &self,
        d: usize,
        k: Option<usize>,
        npp: f64,
        rh: f64,
        (fn_, fr): (f64, f64),
    ) -> (f64, f64) {
        let m = k.map_or(1.0, |k| self.m[d][k]);
        let r = self.rh.map_or(1.0, |k| self.m[d][k]);
        let npp_d = npp * m * fn_;
        (npp_d, npp_d - rh * r * fr)
    }
}

/// Mean, standard deviation (n - 1) and the 5th, 50th and 95th percentiles (linear between order statistics)
/// of values, sorted in place.
pub fn summary(v: &mut [f64]) -> [f64; 5] {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return [f64::NAN; 5];
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    // The order statistics the percentiles need, each put in its sorted place by selection (the values a full
    // sort would put there; a sort was a third of `npp --draws 100`'s time).
    let probs = [0.05, 0.5, 0.95];
    let last = (v.len() - 1) as f64;
    let h = |p: f64| last * p;
    let mut ks: Vec<usize> = probs
        .iter()
        .flat_map(|&p| [h(p).floor() as usize, h(p).ceil() as usize])
        .collect();
    ks.sort_unstable();
    ks.dedup();
    let mut start = 0;
    for &k in &ks {
        v[start..].select_nth_unstable_by(k - start, f64::total_cmp);
        start = k + 1;
    }
    let q = |p: f64| {
        let (lo, hi) = (h(p).floor() as usize, h(p).ceil() as usize);
        v[lo] + (h(p) - lo as f64) * (v[hi] - v[lo])
    };
    [mean, sd, q(probs[0]), q(probs[1]), q(probs[2])]
}

pub const STATS: [&str; 5] = ["mean", "sd", "p05", "p50", "p95"];

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sd: [f64; 2], rho: f64) -> UncertaintyFile {
        let p = |t: &str, sd: f64| Parameter {
            target: "npp".into(),
            vegetation_type: Some(t.into()),
            sector: None,
            sectors: Vec::new(),
            error: None,
            sd,
            length_km: None,
            source: "test".into(),
        };
        UncertaintyFile {
            name: "t".into(),
            correlation: rho,
            parameters: vec![p("a", sd[0]), p("b", sd[1])],
        }
    }

    /// Hand-worked: a zone holds X = 300 g C of type a and Y = 500 of type b, multipliers normal with sd 0.1
    /// and 0.2 and correlation 0.5. Total T = a X + b Y; Var T = X^2 sa^2 + Y^2 sb^2 + 2 X Y rho sa sb
    /// = 900 + 10000 + 2 x 300 x 500 x 0.5 x 0.1 x 0.2 = 900 + 10000 + 3000 = 13900 (sd 117.898). The
    /// Monte Carlo variance of 40,000 draws has a relative standard error of sqrt(2 / 40,000) = 0.7 %.
    #[test]
    fn a_zone_totals_variance_matches_the_hand_calculation_covariance_included() {
        let d = Draws::new(spec([0.1, 0.2], 0.5), Path::new("t"), 40_000, 7);
        let mut totals: Vec<f64> = (0..d.n)
            .map(|i| d.m[i][0] * 300.0 + d.m[i][1] * 500.0)
            .collect();
        let s = summary(&mut totals);
        let var = s[1] * s[1];
        assert!(
            (var / 13_900.0 - 1.0).abs() < 4.0 * (2.0f64 / 40_000.0).sqrt(),
            "{var}"
        );
        assert!((s[0] - 800.0).abs() < 4.0 * 117.898 / 200.0, "{}", s[0]);
        // Without the correlation the covariance term is gone: 10900.
        let d = Draws::new(spec([0.1, 0.2], 0.0), Path::new("t"), 40_000, 7);
        let mut totals: Vec<f64> = (0..d.n)
            .map(|i| d.m[i][0] * 300.0 + d.m[i][1] * 500.0)
            .collect();
        let var = summary(&mut totals)[1].powi(2);
        assert!(
            (var / 10_900.0 - 1.0).abs() < 4.0 * (2.0f64 / 40_000.0).sqrt(),
            "{var}"
        );
    }

    /// Calibration: in 1,000 trials the truth is a pixel (and a zone of both types) with parameters drawn from
    /// the declared distribution; the 90 % interval of 500 draws (another seed) covers it in 90 % +- 3 % of
    /// the trials.
    #[test]
    fn ninety_percent_intervals_cover_the_truth_nine_times_in_ten() {
        let s = spec([0.15, 0.3], 0.4);
        let truth = Draws::new(s.clone(), Path::new("t"), 1000, 1);
        let (mut pixel_hits, mut zone_hits) = (0, 0);
        for t in 0..1000 {
            let d = Draws::new(s.clone(), Path::new("t"), 500, 1000 + t as u64);
            let (npp_a, rh, x, y) = (420.0, 250.0, 300.0, 500.0);
            let mut px: Vec<f64> = (0..d.n).map(|i| d.pixel(i, Some(0), npp_a, rh).1).collect();
            let ps = summary(&mut px);
            let true_px = npp_a * truth.m[t][0] - rh;
            pixel_hits += usize::from(ps[2] <= true_px && true_px <= ps[4]);
            let mut z: Vec<f64> = (0..d.n).map(|i| d.m[i][0] * x + d.m[i][1] * y).collect();
            let zs = summary(&mut z);
            let true_z = truth.m[t][0] * x + truth.m[t][1] * y;
            zone_hits += usize::from(zs[2] <= true_z && true_z <= zs[4]);
        }
        for hits in [pixel_hits, zone_hits] {
            assert!((870..=930).contains(&hits), "{pixel_hits} {zone_hits}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let a = Draws::new(spec([0.1, 0.2], 0.3), Path::new("t"), 10, 42);
        let b = Draws::new(spec([0.1, 0.2], 0.3), Path::new("t"), 10, 42);
        assert_eq!(a.m, b.m);
        // R: quantile(c(1, 2, 3, 4, 5), c(.05, .5, .95)) = 1.2 3.0 4.8; sd = 1.5811388
        let s = summary(&mut [5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s[0], 3.0);
        assert!((s[1] - 1.5811388300841898).abs() < 1e-15);
        assert!((s[2] - 1.2).abs() < 1e-12 && s[3] == 3.0 && (s[4] - 4.8).abs() < 1e-12);
    }

    /// The percentiles by selection are those of a full sort, bit for bit, at any number of draws (ties,
    /// signed zeros and two draws included).
    #[test]
    fn percentiles_by_selection_are_those_of_a_sort() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [1usize, 2, 3, 7, 20, 100, 101, 257] {
            let mut v: Vec<f64> = (0..n)
                .map(|_| (rng.gen::<f64>() * 20.0).round() - 10.0)
                .collect();
            if n > 3 {
                (v[0], v[1]) = (0.0, -0.0);
            }
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let q = |p: f64| {
                let h = (n - 1) as f64 * p;
                let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
                sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
            };
            let s = summary(&mut v);
            assert_eq!(
                [s[2].to_bits(), s[3].to_bits(), s[4].to_bits()],
                [q(0.05).to_bits(), q(0.5).to_bits(), q(0.95).to_bits()],
                "{n} draws"
            );
        }
    }
}

/// `npp --draws`: the number of draws, the seed and the uncertainty file.
#[derive(Debug, Clone)]
pub struct DrawSpec {
    pub file: PathBuf,
    pub n: usize,
    pub seed: u64,
    /// The classifier's confusion matrix (`npp --confusion`): land-cover confusion in the totals.
    pub confusion: Option<PathBuf>,
}

/// Per class: its code, NPP parameter, area (m2) and the sums of NPP x area and Rh x area (g C) over its
/// pixels with a result, and of their sensitivities to the drivers x area (pixels with one).
#[derive(Default, Clone, Copy)]
struct ClassSums {
    code: i32,
    k: Option<usize>,
    area: f64,
    npp: f64,
    rh: f64,
    sens: Sens,
}

/// What a total is drawn with: the confusion rows' shares (None: as mapped), the draw of NPP's and Rh's
/// spatial fields (None: at their mean), and the drivers' errors.
#[derive(Clone, Copy)]
struct Drawn<'a> {
    shares: Option<&'a [Vec<f64>]>,
    field: (Option<usize>, Option<usize>),
    drivers: DriversIn,
}

/// The drivers' errors in a total: at their mean (0), every driver as in draw d, or driver v alone in draw d.
#[derive(Clone, Copy)]
enum DriversIn {
    Mean,
    Draw(usize),
    Alone(usize, usize),
}

/// Totals of sets of mapped classes in a draw: with a confusion matrix, each mapped class's area taken as the
/// classes it truly is (drawn shares), each at that class's mean NPP and Rh per area; without, as mapped.
struct Totals<'a> {
    sums: &'a std::collections::BTreeMap<i32, ClassSums>,
    /// Whether NPP and Rh have spatial fields, and then each class's sums per draw.
    field: (bool, bool),
    draw_sums: &'a super::pixel_draws::DrawSums,
    confusion: Option<&'a Confusion>,
    /// Per draw, per confusion row, the shares of each reference class.
    shares: Vec<Vec<Vec<f64>>>,
    /// The rows' own proportions (land cover held at its mean while a parameter varies).
    mean: Vec<Vec<f64>>,
    /// Pixels with a result but no sensitivity to a declared driver.
    without_sensitivity: u64,
    draws: &'a Draws,
    /// Per driver, whether its error is a spatial field (its part of a total is then summed draw by draw).
    driver_field: [bool; 3],
}

impl Totals<'_> {
    /// NPP and Rh (g C) of `set` drawn as `drawn` says, with NPP multipliers `m` and Rh's `r`.
    fn npp_rh(
        &self,
        set: &[ClassSums],
        drawn: Drawn,
        m: &dyn Fn(Option<usize>) -> f64,
        r: f64,
    ) -> (f64, f64) {
        let (mut npp, mut rh) = (0.0, 0.0);
        let (shares, fd) = (drawn.shares, drawn.field);
        let in_draw = |s: &ClassSums| {
            let sums = self.draw_sums.get(&s.code);
            let n = fd.0.zip(sums).map_or(s.npp, |(d, v)| v.npp[d]);
            let r = fd.1.zip(sums).map_or(s.rh, |(d, v)| v.rh[d]);
            let (dn, dr) = self.drivers_part(s, sums, drawn.drivers);
            (n + dn, r + dr)
        };
        for s in set {
            let (s_npp, s_rh) = in_draw(s);
            let row = self.confusion.zip(shares).and_then(|(c, sh)| {
                let i = c.codes.iter().position(|&x| x == s.code)?;
                Some((c, &sh[i]))
            });
            let Some((c, row)) = row.filter(|_| s.area > 0.0) else {
                npp += s_npp * m(s.k);
                rh += s_rh * r;
                continue;
            };
            for (&code, &p) in c.codes.iter().zip(row) {
                // A reference class without pixels in the map has no mean: that share keeps the mapped class.
                let t = self.sums.get(&code).filter(|t| t.area > 0.0).unwrap_or(s);
                let (t_npp, t_rh) = in_draw(t);
                npp += p * s.area * t_npp / t.area * m(t.k);
                rh += p * s.area * t_rh / t.area * r;
            }
        }
        (npp, rh)
    }

    /// The drivers' part of a class's NPP and Rh (g C): from the pixels' per-draw sums where they hold it (a
    /// spatial field in the run: each pixel's own errors), else the class's summed sensitivities times the run's
    /// errors.
    fn drivers_part(
        &self,
        s: &ClassSums,
        sums: Option<&super::pixel_draws::ClassDraws>,
        how: DriversIn,
    ) -> (f64, f64) {
        let d = self.draws;
        match (how, sums) {
            (DriversIn::Mean, _) => (0.0, 0.0),
            (DriversIn::Draw(i), Some(v)) => (v.npp_moved[i], v.rh_moved[i]),
            (DriversIn::Draw(i), None) => shifted(0.0, 0.0, &s.sens, &d.driver_errors(i)),
            (DriversIn::Alone(v, i), Some(c)) if self.driver_field[v] => {
                (c.alone[v].0[i], c.alone[v].1[i])
            }
            (DriversIn::Alone(v, i), _) => shifted(0.0, 0.0, &s.sens, &d.driver_error_alone(i, v)),
        }
    }

    fn shares(&self, d: usize) -> Option<&[Vec<f64>]> {
        self.confusion.map(|_| self.shares[d].as_slice())
    }

    /// Draw `d` of every source: the confusion shares, the fields' draw and the drivers' errors.
    fn drawn(&self, d: usize) -> Drawn<'_> {
        let f = |on: bool| on.then_some(d);
        Drawn {
            shares: self.shares(d),
            field: (f(self.field.0), f(self.field.1)),
            drivers: DriversIn::Draw(d),
        }
    }

    /// Every source at its mean: land cover at the rows' proportions, fields and drivers at 0.
    fn at_mean(&self) -> Drawn<'_> {
        Drawn {
            shares: self.confusion.map(|_| self.mean.as_slice()),
            field: (None, None),
            drivers: DriversIn::Mean,
        }
    }
}

/// The draws' rasters (NPP, NEP and sequestration: mean, sd, p05, p50, p95), in the deterministic outputs' units
/// (per year for a calendar year, else over the period).
fn draws_writers(
    job: &super::NppJob,
    draws: &Draws,
    (grid, npp): (&crate::io::Grid, &Path),
    period: &str,
    seed: u64,
) -> Result<Vec<crate::io::RasterWriter>> {
    use crate::io::{OutBand, RasterWriter};
    use std::collections::BTreeMap;
    // The deterministic outputs' units (per year for a calendar year, else over the period).
    let unit = crate::io::RasterInfo::read(npp)?.bands[0].unit.clone();
    let per_year = if unit.ends_with("yr-1") { " yr-1" } else { "" };
    let seq_unit = format!("t CO2 ha-1{per_year}");
    let names = [
        ("NPP", unit.as_str()),
        ("NEP", unit.as_str()),
        ("sequestration", seq_unit.as_str()),
    ];
    let mut md = BTreeMap::new();
    md.insert("UNCERTAINTY".to_string(), draws.path.display().to_string());
    md.insert(
        "DRAWS".to_string(),
        format!("{} draws, seed {seed}", draws.n),
    );
    md.insert(
        "PERIOD".to_string(),
        format!("{period} (totals over the period)"),
    );
    names
        .iter()
        .map(|(q, unit)| {
            let stem = if *q == "sequestration" {
                "sequestration_tCO2_ha"
            } else if *q == "NPP" {
                "NPP_gC_m2"
            } else {
                "NEP_gC_m2"
            };
            let bands: Vec<OutBand> = STATS
                .iter()
                .map(|s| OutBand {
                    description: format!("{q} {s} of {} draws, {period}", draws.n),
                    unit: unit.to_string(),
                })
                .collect();
            RasterWriter::create::<f32>(
                &job.out_dir.join(format!("{stem}_{period}_draws.tif")),
                grid,
                &bands,
                None,
                &md,
                &job.write,
            )
        })
        .collect()
}

/// The draws' rasters (NPP, NEP and sequestration: mean, sd, p05, p50, p95) and totals table, from the run's
/// NPP and Rh over the period.
pub fn write(
    job: &super::NppJob,
    legend: &crate::landcover::Legend,
    (npp_path, rh_path, sens_path): (&Path, &Path, Option<&Path>),
    period: &str,
    draws: &Draws,
    (seed, confusion): (u64, Option<&Confusion>),
) -> Result<Vec<PathBuf>> {
    use crate::io::Grid;
    use std::collections::BTreeMap;
    let (npp_r, rh_r) = (
        crate::commit::readable(npp_path),
        crate::commit::readable(rh_path),
    );
    let grid = Grid::from_raster(&npp_r)?;
    let (nr, rr, lc) = strip_readers(job, (&npp_r, &rh_r), &grid)?;
    let sens_r = sens_path
        .map(|p| SensReader::open(&crate::commit::readable(p), &grid, draws))
        .transpose()?;
    let param = |code: i32| {
        legend
            .class(code as i64)
            .and_then(|c| draws.npp_param(&c.vegetation_type))
    };
    let mut writers = draws_writers(job, draws, (&grid, &npp_r), period, seed)?;
    let areas = crate::area::PixelAreas::of(&grid)?;
    let mut sums: BTreeMap<i32, ClassSums> = BTreeMap::new();
    let rows = crate::engine::strips::rows(
        grid.width,
        grid.height,
        16 + 16 * draws.n.min(64) + if draws.has_drivers() { 56 } else { 0 },
        60,
        job.memory_mb,
    );
    let read = |row0: usize, n: usize| -> Result<Strip3> {
        let len = n * grid.width;
        let (mut npp, mut rh, mut cls) = (vec![0f64; len], vec![0f64; len], vec![0i32; len]);
        nr.read_rows(0, row0, n, &mut npp)?;
        rr.read_rows(0, row0, n, &mut rh)?;
        lc.read_rows(0, row0, n, &mut cls)?;
        let sens = match &sens_r {
            Some(r) => r.read(row0, n)?,
            None => Vec::new(),
        };
        Ok((npp, rh, cls, sens))
    };
    let add = |sums: &mut BTreeMap<i32, ClassSums>, row0: usize, data: &Strip3| {
        add_strip(sums, (&areas, grid.width, row0), data, &param)
    };
    // With land-cover confusion the pixels need every class's mean first: a pass of its own (reads only).
    if confusion.is_some() {
        for row0 in (0..grid.height).step_by(rows) {
            add(&mut sums, row0, &read(row0, rows.min(grid.height - row0))?);
        }
    }
    let shares = confusion.map_or_else(Vec::new, |c| c.draw_shares(draws.n, seed));
    let fields = super::pixel_draws::Fields::new(draws, &grid, seed)?;
    let strip = super::pixel_draws::Strip {
        draws,
        grid: &grid,
        fields: &fields,
        areas: &areas,
        param: &param,
        to_co2: super::gc_m2_to_tco2_ha(1.0),
        errs: (0..draws.n).map(|d| draws.driver_errors(d)).collect(),
        confusion: confusion.map(|c| super::pixel_draws::PixelConfusion {
            codes: &c.codes,
            shares: &shares,
            means: sums
                .iter()
                .filter(|(_, s)| s.area > 0.0)
                .map(|(&code, s)| {
                    let sens = s.sens.map(|x| x.map(|v| v / s.area));
                    (code, (s.npp / s.area, s.rh / s.area, sens))
                })
                .collect(),
            seed,
        }),
    };
    let mut draw_sums = super::pixel_draws::DrawSums::new();
    let mut strip_sums = BTreeMap::new();
    let mut without_sensitivity = 0;
    for row0 in (0..grid.height).step_by(rows) {
        let data = read(row0, rows.min(grid.height - row0))?;
        let (stats, field_sums) = strip.run(row0, (&data.0, &data.1, &data.2), &data.3);
        super::pixel_draws::add_sums(&mut draw_sums, field_sums);
        without_sensitivity += add(&mut strip_sums, row0, &data);
        for (q, w) in writers.iter_mut().enumerate() {
            for (b, _) in STATS.iter().enumerate() {
                w.write_rows(b, row0, stats.iter().map(|s| s[q][b]).collect())?;
            }
            w.flush()?;
        }
    }
    if confusion.is_none() {
        sums = strip_sums;
    }
    let mut outputs = Vec::new();
    for w in writers {
        outputs.push(w.finish()?.commit()?);
    }
    let table = job.out_dir.join(format!("draws_{period}.csv"));
    let totals = Totals {
        sums: &sums,
        field: (fields.npp.is_some(), fields.rh.is_some()),
        draw_sums: &draw_sums,
        confusion,
        shares,
        mean: confusion.map_or_else(Vec::new, Confusion::mean_shares),
        without_sensitivity,
        draws,
        driver_field: fields.drivers.each_ref().map(Option::is_some),
    };
    io_table(&table, legend, &totals, draws, period, seed)?;
    outputs.push(table);
    let shares = job.out_dir.join(format!("draws_variance_{period}.csv"));
    variance_table(&shares, legend, &totals, draws, seed)?;
    outputs.push(shares);
    Ok(outputs)
}

/// Adds a strip's pixels with a result (`row0`.. of a grid `width` wide) to their classes' sums; returns how
/// many of them have no sensitivity to a declared driver (their drivers' errors are not drawn).
fn add_strip(
    sums: &mut std::collections::BTreeMap<i32, ClassSums>,
    (areas, width, row0): (&crate::area::PixelAreas, usize, usize),
    (npp, rh, cls, sens): &Strip3,
    param: &dyn Fn(i32) -> Option<usize>,
) -> u64 {
    let mut without = 0;
    for (px, c) in cls.iter().enumerate() {
        if !(npp[px].is_finite() && rh[px].is_finite()) {
            continue;
        }
        let a = areas.at(px % width, row0 + px / width);
        let s = sums.entry(*c).or_insert(ClassSums {
            code: *c,
            k: param(*c),
            ..Default::default()
        });
        s.area += a;
        s.npp += npp[px] * a;
        s.rh += rh[px] * a;
        match sens.get(px) {
            Some(x) if sens_finite(x) => {
                for v in 0..3 {
                    s.sens[v][0] += x[v][0] * a;
                    s.sens[v][1] += x[v][1] * a;
                }
            }
            Some(_) => without += 1,
            None => {}
        }
    }
    without
}

/// Readers of the run's NPP and Rh (g C m-2 over the period) and of the land cover, on the NPP's grid.
fn strip_readers(
    job: &super::NppJob,
    (npp, rh): (&Path, &Path),
    grid: &crate::io::Grid,
) -> Result<(
    crate::io::GridReader,
    crate::io::GridReader,
    crate::io::GridReader,
)> {
    use crate::io::{BandRequest, GridReader, Resampling};
    let reader = |p: &Path, band: usize, fill: f64| {
        let request = BandRequest {
            index: band,
            name: p.display().to_string(),
        };
        GridReader::new(p, &[request], grid, Resampling::Nearest, None, fill)
    };
    Ok((
        reader(npp, 1, f64::NAN)?,
        reader(rh, 1, f64::NAN)?,
        reader(&job.landcover, job.landcover_band, super::LC_FILL)?,
    ))
}

/// A strip's NPP, Rh (g C m-2), land-cover class and (with drivers' errors) sensitivities per pixel.
type Strip3 = (Vec<f64>, Vec<f64>, Vec<i32>, Vec<Sens>);

/// Whether a pixel's sensitivities are all numbers.
pub fn sens_finite(s: &Sens) -> bool {
    s.iter().flatten().all(|v| v.is_finite())
}

/// The sensitivity raster of a run (`driver_error.rs`): two bands (NPP, Rh) per declared driver, in order.
struct SensReader {
    reader: crate::io::GridReader,
    width: usize,
    drivers: Vec<usize>,
}

impl SensReader {
    fn open(path: &Path, grid: &crate::io::Grid, draws: &Draws) -> Result<SensReader> {
        use crate::io::{BandRequest, GridReader, Resampling};
        let drivers = draws.declared_drivers();
        let bands: Vec<BandRequest> = (0..2 * drivers.len())
            .map(|b| BandRequest {
                index: b + 1,
                name: format!("{} band {}", path.display(), b + 1),
            })
            .collect();
        let reader = GridReader::new(path, &bands, grid, Resampling::Nearest, None, f64::NAN)?;
        Ok(SensReader {
            reader,
            width: grid.width,
            drivers,
        })
    }

    /// Rows `row0`.. (`n` of them, full width): each pixel's sensitivities.
    fn read(&self, row0: usize, n: usize) -> Result<Vec<Sens>> {
        let len = n * self.width;
        let mut out = vec![[[0.0; 2]; 3]; len];
        let mut buf = vec![0f64; len];
        for (i, &v) in self.drivers.iter().enumerate() {
            for q in 0..2 {
                self.reader.read_rows(2 * i + q, row0, n, &mut buf)?;
                out.iter_mut().zip(&buf).for_each(|(o, x)| o[v][q] = *x);
            }
        }
        Ok(out)
    }
}

/// `row(code, name, sums)` for all classes together, then for each class.
fn for_classes(
    legend: &crate::landcover::Legend,
    sums: &std::collections::BTreeMap<i32, ClassSums>,
    mut row: impl FnMut(&str, &str, &[ClassSums]),
) {
    let all: Vec<ClassSums> = sums.values().copied().collect();
    row("all", "all classes", &all);
    for (code, s) in sums {
        let name = legend
            .class(*code as i64)
            .map_or("(not in the legend)", |c| c.name.as_str());
        row(&code.to_string(), name, std::slice::from_ref(s));
    }
}

fn variance(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)
}

/// One-at-a-time attribution of a total's uncertainty: the total is the sum of the sources' per-draw terms;
/// for each source, the sd of its term alone, its variance over the total's (NaN when the total does not vary)
/// and whether it is the largest. With independent parameters the shares add up to 1 within sampling error.
pub fn attribution(terms: &[(String, Vec<f64>)]) -> Vec<(String, f64, f64, bool)> {
    let n = terms.first().map_or(0, |t| t.1.len());
    let total: Vec<f64> = (0..n).map(|d| terms.iter().map(|t| t.1[d]).sum()).collect();
    attribution_of(&total, terms)
}

/// As `attribution`, against a total that need not be the terms' sum (a source that scales others, such as
/// land cover moving area between classes): each term is the total with that source alone drawn.
pub fn attribution_of(
    total: &[f64],
    terms: &[(String, Vec<f64>)],
) -> Vec<(String, f64, f64, bool)> {
    let vt = variance(total);
    let vars: Vec<f64> = terms.iter().map(|t| variance(&t.1)).collect();
    let top = vars
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    terms
        .iter()
        .zip(&vars)
        .enumerate()
        .map(|(i, ((name, _), v))| {
            let share = if vt > 0.0 { v / vt } else { f64::NAN };
            (name.clone(), v.sqrt(), share, vt > 0.0 && top == Some(i))
        })
        .collect()
}

/// draws_variance_PERIOD.csv: per class and for all classes, each source's share of the NEP's variance (t C
/// over the period): every NPP parameter (its multiplier times the NPP of the classes it multiplies) and Rh's.
fn variance_table(
    target: &Path,
    legend: &crate::landcover::Legend,
    totals: &Totals,
    draws: &Draws,
    seed: u64,
) -> Result<()> {
    let mut out = String::from("code,class,source,sd_tC,share_of_NEP_variance,dominant\n");
    let mut params: Vec<Option<usize>> = totals.sums.values().map(|s| s.k).collect();
    params.sort_unstable();
    params.dedup();
    let row = |code: &str, name: &str, set: &[ClassSums]| {
        let nep = |drawn: Drawn, m: &dyn Fn(Option<usize>) -> f64, r: f64| {
            let (n, h) = totals.npp_rh(set, drawn, m, r);
            (n - h) / 1e6
        };
        let at_mean = totals.at_mean();
        // Every source alone (the others at their means: multipliers 1, land cover at the rows' proportions).
        let mut terms: Vec<(String, Vec<f64>)> = Vec::new();
        for &k in &params {
            let label = k.map_or_else(
                || "NPP without a parameter".to_string(),
                |k| {
                    let p = &draws.spec.parameters[k];
                    format!("npp:{}", p.vegetation_type.as_deref().unwrap_or("*"))
                },
            );
            let v: Vec<f64> = (0..draws.n)
                .map(|d| {
                    nep(
                        at_mean,
                        &|kk| if kk == k { draws.at(d, k) } else { 0.0 },
                        0.0,
                    )
                })
                .collect();
            if v.iter().any(|x| *x != 0.0) {
                terms.push((label, v));
            }
        }
        let rk = draws.rh_param();
        let rh = (0..draws.n)
            .map(|d| nep(at_mean, &|_| 0.0, draws.at(d, rk)))
            .collect();
        terms.push(("rh".into(), rh));
        // A spatial field alone (with its shared part), the other sources at their means.
        for (on, target, fd) in [
            (totals.field.0, "npp", (true, false)),
            (totals.field.1, "rh", (false, true)),
        ] {
            if let Some(k) = draws.field_param(target).filter(|_| on) {
                let km = draws.spec.parameters[k].length_km.unwrap_or(f64::NAN);
                let v = (0..draws.n)
                    .map(|d| {
                        let field = (fd.0.then_some(d), fd.1.then_some(d));
                        nep(Drawn { field, ..at_mean }, &|_| 1.0, 1.0)
                    })
                    .collect();
                terms.push((format!("{target}:field {km} km"), v));
            }
        }
        // A driver's error alone: its sensitivities' term in NPP and in Rh together.
        for v in draws.declared_drivers() {
            let drv = &super::driver_error::DRIVERS[v];
            let t = (0..draws.n)
                .map(|d| {
                    let drivers = DriversIn::Alone(v, d);
                    nep(Drawn { drivers, ..at_mean }, &|_| 1.0, 1.0)
                })
                .collect();
            let field = draws
                .driver_length_km(v)
                .map_or_else(String::new, |l| format!(" (field {l} km)"));
            terms.push((format!("driver:{}{field}", drv.name), t));
        }
        if totals.confusion.is_some() {
            let lc = (0..draws.n)
                .map(|d| {
                    let shares = totals.shares(d);
                    nep(Drawn { shares, ..at_mean }, &|_| 1.0, 1.0)
                })
                .collect();
            terms.push(("landcover".into(), lc));
        }
        let total: Vec<f64> = (0..draws.n)
            .map(|d| nep(totals.drawn(d), &|k| draws.at(d, k), draws.at(d, rk)))
            .collect();
        for (source, sd, share, top) in attribution_of(&total, &terms) {
            // No share where the NEP has no variance (a class without NPP and Rh): empty, not NaN.
            let share = if share.is_finite() {
                format!("{share:.6}")
            } else {
                String::new()
            };
            out += &format!("{code},\"{name}\",\"{source}\",{sd:.6},{share},{top}\n");
        }
    };
    for_classes(legend, totals.sums, row);
    let mut notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of {} ({})", draws.n, draws.spec.name, draws.path.display()),
        "one-at-a-time attribution: a source's share is the variance of the NEP with that source alone drawn (the others at their means: multipliers 1, land cover at the confusion rows' proportions) over the variance of the NEP with all drawn; with correlated parameters the shares need not add up to 1; no share where the NEP has no variance (classes without NPP and Rh)".into(),
    ];
    notes.extend(confusion_notes(totals));
    crate::io::write_table(target, out.as_bytes(), &notes)
}

/// draws_PERIOD.csv: per class and for all classes, NPP, Rh, NEP (t C) and sequestration (t CO2) over the
/// period, each total computed per draw.
fn io_table(
    target: &Path,
    legend: &crate::landcover::Legend,
    totals: &Totals,
    draws: &Draws,
    period: &str,
    seed: u64,
) -> Result<()> {
    let co2 = crate::units::co2_per_c();
    let mut out = String::from("code,class,quantity,unit,mean,sd,p05,p50,p95\n");
    let row = |code: &str, name: &str, set: &[ClassSums]| {
        let (mut npp, mut rh, mut nep) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..draws.n {
            let r = draws.at(d, draws.rh_param());
            let (n, h) = totals.npp_rh(set, totals.drawn(d), &|k| draws.at(d, k), r);
            let (n, h) = (n / 1e6, h / 1e6);
            npp.push(n);
            rh.push(h);
            nep.push(n - h);
        }
        let mut seq: Vec<f64> = nep.iter().map(|v| v * co2).collect();
        for (q, unit, v) in [
            ("NPP", "t C", &mut npp),
            ("Rh", "t C", &mut rh),
            ("NEP", "t C", &mut nep),
            ("sequestration", "t CO2", &mut seq),
        ] {
            let s = summary(v);
            out += &format!(
                "{code},\"{name}\",{q},{unit},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
                s[0], s[1], s[2], s[3], s[4]
            );
        }
    };
    for_classes(legend, totals.sums, row);
    let mut notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of the parameters of {} ({}); totals over the period {period}, not per year", draws.n, draws.spec.name, draws.path.display()),
        "each total is computed per draw (pixels sharing a parameter move together); mean, sd (n - 1), and the 5th, 50th and 95th percentiles of the draws".into(),
        format!("sources: {}", draws.spec.parameters.iter().map(|p| format!("{} {} sd {}: {}", p.target, p.vegetation_type.as_deref().unwrap_or(""), p.sd, p.source)).collect::<Vec<_>>().join("; ")),
    ];
    notes.extend(driver_notes(draws, totals.without_sensitivity));
    notes.extend(confusion_notes(totals));
    crate::io::write_table(target, out.as_bytes(), &notes)
}

/// The table notes of the drivers' errors: how they are drawn, and the pixels without a sensitivity.
fn driver_notes(draws: &Draws, without: u64) -> Vec<String> {
    if !draws.has_drivers() {
        return Vec::new();
    }
    let names: Vec<String> = draws
        .declared_drivers()
        .iter()
        .map(|&v| {
            let d = &super::driver_error::DRIVERS[v];
            let unit = if d.additive { " (K)" } else { " (relative)" };
            format!("{}{unit}", d.name)
        })
        .collect();
    let mut notes = vec![format!(
        "drivers' errors ({}): one error per draw for every month, the same at every pixel (or a spatial field where the parameter has a length_km), through each pixel's sensitivities of NPP and Rh (driver_sensitivity_PERIOD.tif, the secant slope over +-1 sd), first order in the error",
        names.join(", ")
    )];
    if without > 0 {
        notes.push(format!(
            "{without} pixels with a result have no sensitivity (the model has no result with the driver moved either way): their drivers' errors are not drawn, and their draws in the rasters are nodata"
        ));
    }
    notes
}

/// The table notes of a confusion matrix: its file, the estimator, and reference classes without pixels in the
/// map (their shares keep the mapped class's values).
fn confusion_notes(totals: &Totals) -> Vec<String> {
    let Some(c) = totals.confusion else {
        return Vec::new();
    };
    let mut notes = vec![format!(
        "land-cover confusion from {}: each mapped class's area is what the matrix's row says it truly is (Dirichlet draws of the row's counts), each true class at its mean NPP and Rh per area over the map (Olofsson et al. 2014's stratified estimator with its sampling uncertainty); in the per-pixel rasters each pixel is drawn to be a reference class with the row's drawn shares, as another class at that class's mean NPP and Rh per area",
        c.path.display()
    )];
    let mut absent: Vec<String> = Vec::new();
    for (j, &code) in c.codes.iter().enumerate() {
        let n: u64 = c.counts.iter().map(|row| row[j]).sum();
        let present = totals.sums.get(&code).is_some_and(|t| t.area > 0.0);
        if n > 0 && !present {
            absent.push(format!("{code} ({n} reference samples)"));
        }
    }
    if !absent.is_empty() {
        notes.push(format!(
            "reference classes without pixels in the map keep the mapped class's values: {}",
            absent.join(", ")
        ));
    }
    notes
}
