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
//!
//! A climate driver's error (`temperature`, `precipitation`, `radiation`) is drawn the same way and moves NPP
//! and Rh together through each pixel's sensitivities (`driver_error.rs`). The draws' outputs are written by
//! `draws_out.rs`.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Deserialize;

use super::driver_error::{DRIVERS, N, NAMES};
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
    /// Each run-wide driver's parameter (`driver_error::DRIVERS` order), if declared with an sd above 0.
    drivers: [Option<usize>; N],
    /// Which of `driver_error::DRIVERS` are a class's parameter declared per type (`class_params`).
    per_class: [bool; N],
}

/// For each of `driver_error::DRIVERS`, the parameter that gives a class's error (None: no error).
pub type ErrorParams = [Option<usize>; N];

/// A pixel's (or a class's summed) response of NPP and Rh to each driver (`driver_error::DRIVERS` order; 0 for a
/// driver not declared): the slopes of NPP and Rh per unit of the driver's error, then their curvatures (second
/// derivatives) per unit squared.
pub type Sens = [[f64; 4]; N];

/// Pixels' responses as read from the response raster: float32, per pixel four values (NPP's and Rh's slopes,
/// then curvatures) per declared entry (`declared`: indices in `driver_error::DRIVERS`), pixel after pixel.
#[derive(Clone, Copy)]
pub struct Responses<'a> {
    pub declared: &'a [usize],
    pub vals: &'a [f32],
}

impl<'a> Responses<'a> {
    /// Pixels `start..start + len`.
    pub fn pixels(&self, start: usize, len: usize) -> Responses<'a> {
        let k = 4 * self.declared.len();
        Responses {
            declared: self.declared,
            vals: self.vals.get(k * start..k * (start + len)).unwrap_or(&[]),
        }
    }

    /// Pixel `px`'s responses in float64, 0 for the entries not declared (None without responses).
    #[inline]
    pub fn at(&self, px: usize) -> Option<Sens> {
        let k = 4 * self.declared.len();
        let p = self.vals.get(k * px..k * (px + 1)).filter(|_| k > 0)?;
        let mut s = [[0.0; 4]; N];
        for (&v, r) in self.declared.iter().zip(p.chunks_exact(4)) {
            for (o, x) in s[v].iter_mut().zip(r) {
                *o = f64::from(*x);
            }
        }
        Some(s)
    }
}

/// NPP and Rh moved by the drivers' errors `e` (K or relative) through responses `s`: NPP + sum_v (S_v e_v +
/// C_v e_v^2 / 2), the same for Rh (each driver's quadratic through the model's values at -sd, 0 and +sd).
#[inline]
pub fn shifted(npp: f64, rh: f64, s: &Sens, e: &[f64; N]) -> (f64, f64) {
    let (mut n, mut r) = (npp, rh);
    // An entry without an error adds exactly 0 (finite responses): skipped.
    for (sv, &ev) in s.iter().zip(e).filter(|(_, &ev)| ev != 0.0) {
        n += (sv[0] + 0.5 * sv[2] * ev) * ev;
        r += (sv[1] + 0.5 * sv[3] * ev) * ev;
    }
    (n, r)
}

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
                    "{what}: target must be npp, rh, emissions, sequestration, or a driver's or model coefficient's error: {}",
                    NAMES.join(", ")
                ));
            }
            let entry = super::driver_error::driver_of(&p.target).map(|v| &DRIVERS[v]);
            let relative = entry.is_some_and(|d| !d.additive);
            if relative && p.sd >= 1.0 {
                problems.push(format!(
                    "{what}: a relative driver error's sd must be below 1 (the model runs again with the driver at 1 - sd of its value)"
                ));
            }
            let per_class = entry.is_some_and(|d| d.per_class());
            if let Some(d) = entry.filter(|_| !per_class) {
                if p.vegetation_type.is_some() || p.sector.is_some() {
                    let of = if d.kind() == "model" {
                        "an Rh coefficient's"
                    } else {
                        "a driver's"
                    };
                    problems.push(format!(
                        "{what}: {of} error applies to every pixel: no vegetation_type or sector"
                    ));
                }
            }
            if per_class && p.vegetation_type.is_none() {
                problems.push(format!(
                    "{what}: a class's model parameter is drawn per type: name the vegetation_type (or \"*\")"
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
        // A driver's error is either run-wide or a field, not both; a class's parameter has one entry per type.
        for (v, t) in NAMES.iter().enumerate() {
            let entries: Vec<_> = f.parameters.iter().filter(|p| p.target == *t).collect();
            let mut types: Vec<_> = entries.iter().map(|p| &p.vegetation_type).collect();
            types.sort();
            types.dedup();
            let per_class = super::driver_error::DRIVERS[v].per_class();
            if entries.len() > if per_class { types.len() } else { 1 } {
                let of = if per_class {
                    " per vegetation_type"
                } else {
                    ""
                };
                problems.push(format!("at most one {t} parameter{of}"));
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

impl UncertaintyFile {
    /// The entry of class parameter `target` for a vegetation type: the type's own, else "*" (sd above 0).
    pub fn class_param(&self, target: &str, vegetation_type: &str) -> Option<usize> {
        self.type_entry(target, vegetation_type, |p| p.sd > 0.0)
    }

    /// The entry of `target` for a vegetation type that passes `keep`: the type's own, else "*".
    fn type_entry(
        &self,
        target: &str,
        t: &str,
        keep: impl Fn(&Parameter) -> bool,
    ) -> Option<usize> {
        let find = |t: &str| {
            self.parameters.iter().position(|p| {
                p.target == target && p.vegetation_type.as_deref() == Some(t) && keep(p)
            })
        };
        find(t).or_else(|| find("*"))
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
        if super::driver_error::driver_of(&self.target)
            .is_some_and(|v| super::driver_error::DRIVERS[v].kind() == "model")
        {
            return Some(
                "a model coefficient is one value for the run (or per type): no length_km".into(),
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
        let (mut drivers, mut per_class) = ([None; N], [false; N]);
        for (k, p) in spec.parameters.iter().enumerate() {
            if let Some(v) = super::driver_error::driver_of(&p.target).filter(|_| p.sd > 0.0) {
                if super::driver_error::DRIVERS[v].per_class() {
                    per_class[v] = true;
                } else {
                    drivers[v] = Some(k);
                }
            }
        }
        Draws {
            spec,
            path: path.to_path_buf(),
            n,
            m,
            rh,
            drivers,
            per_class,
        }
    }

    /// The NPP parameter of a vegetation type (its own entry, else "*"), if any.
    pub fn npp_param(&self, vegetation_type: &str) -> Option<usize> {
        (self.spec).type_entry("npp", vegetation_type, |p| p.length_km.is_none())
    }

    pub fn rh_param(&self) -> Option<usize> {
        self.rh
    }

    /// Whether the file declares a driver's error (with an sd above 0).
    pub fn has_drivers(&self) -> bool {
        self.drivers.iter().any(Option::is_some) || self.has_per_class()
    }

    /// Whether the file declares a class's model parameter (`driver_error::Driver::per_class`).
    pub fn has_per_class(&self) -> bool {
        self.per_class.iter().any(|&x| x)
    }

    /// The parameters of a vegetation type's errors: the run-wide drivers', and each class parameter's entry for
    /// the type (else its "*" entry; None without either).
    pub fn error_params(&self, vegetation_type: &str) -> ErrorParams {
        let mut out = self.drivers;
        for (v, o) in out
            .iter_mut()
            .enumerate()
            .filter(|(v, _)| self.per_class[*v])
        {
            *o = self.spec.class_param(NAMES[v], vegetation_type);
        }
        out
    }

    /// The run-wide errors' parameters (a class without a vegetation type: no class parameter).
    pub fn run_wide(&self) -> ErrorParams {
        self.drivers
    }

    /// The errors in draw `d` of parameters `ps` (K for temperature, relative for the others; 0 where None).
    pub fn errors(&self, d: usize, ps: &ErrorParams) -> [f64; N] {
        ps.map(|k| k.map_or(0.0, |k| self.m[d][k] - 1.0))
    }

    /// The run-wide drivers' errors in draw `d` (class parameters 0).
    pub fn driver_errors(&self, d: usize) -> [f64; N] {
        self.errors(d, &self.drivers)
    }

    /// Error `v` alone in draw `d` of parameters `ps`, the others 0.
    pub fn error_alone(&self, d: usize, v: usize, ps: &ErrorParams) -> [f64; N] {
        let mut e = [0.0; N];
        e[v] = ps[v].map_or(0.0, |k| self.m[d][k] - 1.0);
        e
    }

    /// The class parameters' errors of `ps` in draw `d` written into `e` (the run-wide entries left as they are).
    #[inline]
    pub fn set_class_errors(&self, d: usize, ps: Option<&ErrorParams>, e: &mut [f64; N]) {
        for v in (0..N).filter(|&v| self.per_class[v]) {
            e[v] = ps.and_then(|p| p[v]).map_or(0.0, |k| self.m[d][k] - 1.0);
        }
    }

    /// Driver `v`'s field length (km), if its error is a spatial field.
    pub fn driver_length_km(&self, v: usize) -> Option<f64> {
        self.drivers[v].and_then(|k| self.spec.parameters[k].length_km)
    }

    /// The declared drivers (index in `driver_error::DRIVERS`).
    pub fn declared_drivers(&self) -> Vec<usize> {
        (0..N)
            .filter(|&v| self.drivers[v].is_some() || self.per_class[v])
            .collect()
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

/// Whether a pixel's sensitivities are all numbers.
pub fn sens_finite(s: &Sens) -> bool {
    s.iter().flatten().all(|v| v.is_finite())
}
