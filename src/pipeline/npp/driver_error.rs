//! Climate driver errors by variable (`target = "temperature"`, `"precipitation"` or `"radiation"` in an
//! uncertainty file): a systematic error of the run's drivers, the same in every month of the model year and at
//! every pixel (a station some way off, a gridded product's bias), drawn once per run like any parameter.
//!
//! A driver's error moves NPP and Rh together, so it cannot be a multiplier of either. The model is run twice
//! more per declared driver, with the driver moved by +sd and by -sd; the parabola through f(-sd), f(0) and
//! f(+sd) gives each pixel's slope S = (f(+sd) - f(-sd)) / (2 sd) and curvature C = (f(+sd) - 2 f(0) +
//! f(-sd)) / sd^2 of NPP and of Rh, written as `driver_sensitivity_PERIOD.tif`. In draw d, with the driver's
//! error e_d = m_d - 1 (K for temperature, a relative change for precipitation and radiation; m_d the
//! one-factor multiplier of `draws.rs`), a pixel's NPP is NPP + sum_v (S_npp,v e_v,d + C_npp,v e_v,d^2 / 2) and
//! its Rh likewise, before the NPP and Rh multipliers: second order in each driver's error (the skew a
//! non-linear response gives; exact where the model is quadratic or linear over +-1 sd, as CASA's NPP in
//! radiation), without the drivers' cross terms, and the same e_v,d in NPP and Rh (the covariance a driver's
//! error makes).
//!
//! The same holds for the coefficients of the heterotrophic-respiration model that enter it non-linearly
//! (`target = "rh.b"`, the temperature coefficient of exp(b T), and `"rh.c"`, the precipitation coefficient;
//! `models/rh/`): one value for the whole run, drawn once like a driver's error, as a relative change. Its
//! linear coefficient (`a`, and the fitted `fraction`) is the `rh` multiplier. These are `model:` terms in the
//! attribution, the drivers `driver:` terms.
//!
//! A class's model parameter (`target = "mod17.lue_max"` with a `vegetation_type`, MOD17's LUEmax; and the
//! stress ramps' ends, `mod17.tmin_min`/`tmin_max` in K and `mod17.vpd_min`/`vpd_max` relative) is drawn once
//! per run per vegetation type, like an `npp` parameter: MOD17's NPP is GPP less respiration, so it moves by
//! more than its share of LUEmax and a multiplier of NPP cannot stand for it. One pair of runs moves every class's
//! parameter by its own type's sd at once (a pixel reads its class's parameters only), and a pixel's response is
//! per unit relative change of its own type's parameter.

use std::borrow::Cow;

use crate::drivers::{Plane, Var};
use crate::npp::rh::RhModel;

/// A driver (or model coefficient) whose error can be drawn: its name in an uncertainty file, whether its error
/// adds to the value (in `unit`) or multiplies it (relative), and what it moves.
pub struct Driver {
    pub name: &'static str,
    pub additive: bool,
    /// The unit of the error (and of `sd`): K, or "1" for a relative change.
    pub unit: &'static str,
    pub moves: Moves,
}

/// What a driver's error moves in the model's run.
pub enum Moves {
    /// These driver variables, in every month of the model year.
    Vars(&'static [Var]),
    /// A coefficient of the heterotrophic-respiration model.
    Rh(RhCoef),
    /// A parameter of each class's model, moved by its vegetation type's own sd.
    Class(ClassCoef),
}

/// A parameter of a class's model.
#[derive(Clone, Copy)]
pub enum ClassCoef {
    /// MOD17's maximum light-use efficiency (kg C MJ-1).
    LueMax,
    /// MOD17's minimum-temperature ramp: the scalar is 0 at or below `tmin_min`, 1 at or above `tmin_max` (deg C).
    TminMin,
    TminMax,
    /// MOD17's VPD ramp: the scalar is 1 at or below `vpd_min`, 0 at or above `vpd_max` (Pa).
    VpdMin,
    VpdMax,
}

/// A coefficient of `RhModel`.
#[derive(Clone, Copy)]
pub enum RhCoef {
    /// The temperature coefficient b (exp(b T)).
    B,
    /// The precipitation coefficient c (ln(c R + 1); Raich's half-saturation K).
    C,
}

impl Driver {
    /// "driver" for a climate driver, "model" for a model coefficient (the attribution's prefix).
    pub fn kind(&self) -> &'static str {
        match self.moves {
            Moves::Vars(_) => "driver",
            Moves::Rh(_) | Moves::Class(_) => "model",
        }
    }

    /// Whether its error is drawn per vegetation type (a class's parameter) rather than once for the run.
    pub fn per_class(&self) -> bool {
        matches!(self.moves, Moves::Class(_))
    }
}

/// How many drivers and model coefficients can be drawn (`DRIVERS`).
pub const N: usize = 10;

/// The drivers and model coefficients whose errors can be drawn, in the order of the response raster's bands.
pub const DRIVERS: [Driver; N] = [
    Driver {
        name: "temperature",
        additive: true,
        unit: "K",
        // The day's mean and minimum (MOD17's scalar) move together; VPD is a driver of its own.
        moves: Moves::Vars(&[Var::Tmean, Var::Tmin, Var::Tmax]),
    },
    Driver {
        name: "precipitation",
        additive: false,
        unit: "1",
        moves: Moves::Vars(&[Var::Precip]),
    },
    Driver {
        name: "radiation",
        additive: false,
        unit: "1",
        moves: Moves::Vars(&[Var::Srad, Var::Par]),
    },
    Driver {
        name: "rh.b",
        additive: false,
        unit: "1",
        moves: Moves::Rh(RhCoef::B),
    },
    Driver {
        name: "rh.c",
        additive: false,
        unit: "1",
        moves: Moves::Rh(RhCoef::C),
    },
    Driver {
        name: "mod17.lue_max",
        additive: false,
        unit: "1",
        moves: Moves::Class(ClassCoef::LueMax),
    },
    Driver {
        name: "mod17.tmin_min",
        additive: true,
        unit: "K",
        moves: Moves::Class(ClassCoef::TminMin),
    },
    Driver {
        name: "mod17.tmin_max",
        additive: true,
        unit: "K",
        moves: Moves::Class(ClassCoef::TminMax),
    },
    Driver {
        name: "mod17.vpd_min",
        additive: false,
        unit: "1",
        moves: Moves::Class(ClassCoef::VpdMin),
    },
    Driver {
        name: "mod17.vpd_max",
        additive: false,
        unit: "1",
        moves: Moves::Class(ClassCoef::VpdMax),
    },
];

/// The names of `DRIVERS`, in order.
pub const NAMES: [&str; N] = {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = DRIVERS[i].name;
        i += 1;
    }
    out
};

/// The index in `DRIVERS` of a target, if it is a driver.
pub fn driver_of(target: &str) -> Option<usize> {
    DRIVERS.iter().position(|d| d.name == target)
}

/// One driver moved by `delta` (K, or a relative change) in a model run.
#[derive(Debug, Clone, Copy)]
pub struct Perturb {
    pub driver: usize,
    pub delta: f64,
}

impl Perturb {
    /// A plane of variable `var` as this run sees it.
    pub fn plane(self, var: Var, plane: Plane) -> Plane {
        let d = &DRIVERS[self.driver];
        if !matches!(d.moves, Moves::Vars(vars) if vars.contains(&var)) {
            return plane;
        }
        let (add, mul) = if d.additive {
            (self.delta, 1.0)
        } else {
            (0.0, 1.0 + self.delta)
        };
        match plane {
            Plane::Uniform(v) => Plane::Uniform(v * mul + add),
            Plane::Grid(g) => Plane::Grid(
                g.into_iter()
                    .map(|v| (v as f64 * mul + add) as f32)
                    .collect(),
            ),
        }
    }

    /// Planes of `var` as this run sees them (unchanged without a perturbation).
    pub fn planes(p: Option<Perturb>, var: Var, planes: Vec<Plane>) -> Vec<Plane> {
        match p {
            Some(p) => planes.into_iter().map(|pl| p.plane(var, pl)).collect(),
            None => planes,
        }
    }

    /// The Rh model as run `p` sees it (a coefficient moved by its relative change, or the model itself).
    pub fn rh(p: Option<Perturb>, m: &RhModel) -> Cow<'_, RhModel> {
        let Some((coef, delta)) = p.and_then(|p| match DRIVERS[p.driver].moves {
            Moves::Rh(c) => Some((c, p.delta)),
            Moves::Vars(_) | Moves::Class(_) => None,
        }) else {
            return Cow::Borrowed(m);
        };
        let mut moved = m.clone();
        match coef {
            RhCoef::B => moved.b *= 1.0 + delta,
            RhCoef::C => moved.c *= 1.0 + delta,
        }
        Cow::Owned(moved)
    }

    /// A plane of `var` as run `p` sees it.
    pub fn one(p: Option<Perturb>, var: Var, plane: Plane) -> Plane {
        match p {
            Some(p) => p.plane(var, plane),
            None => plane,
        }
    }
}

/// The declared drivers of a run (index in `DRIVERS`, sd), in `DRIVERS` order; a driver with sd 0 moves nothing.
/// A class's parameter is declared once whatever its types (sd 0 here: each type's own sd moves it).
pub fn declared(file: &super::draws::UncertaintyFile) -> Vec<(usize, f64)> {
    let mut out: Vec<(usize, f64)> = file
        .parameters
        .iter()
        .filter_map(|p| driver_of(&p.target).map(|v| (v, p.sd)))
        .filter(|(_, sd)| *sd > 0.0)
        .map(|(v, sd)| (v, if DRIVERS[v].per_class() { 0.0 } else { sd }))
        .collect();
    out.sort_by_key(|(v, _)| *v);
    out.dedup();
    out
}

/// A class's model with parameter `coef` moved by `delta` (K for the temperature ramp, a relative change for
/// the others; other models unchanged).
fn moved_class(m: &super::ClassModel, coef: ClassCoef, delta: f64) -> super::ClassModel {
    let mut out = m.clone();
    if let super::ClassModel::Mod17(c) = &mut out {
        match coef {
            ClassCoef::LueMax => c.lue_max_kgc_per_mj *= 1.0 + delta,
            ClassCoef::TminMin => c.tmin_min_degc += delta,
            ClassCoef::TminMax => c.tmin_max_degc += delta,
            ClassCoef::VpdMin => c.vpd_min_pa *= 1.0 + delta,
            ClassCoef::VpdMax => c.vpd_max_pa *= 1.0 + delta,
        }
    }
    out
}

/// A declared class parameter's runs: each legend class's sd (its type's entry, else "*"; 0 without one) and
/// the class models with the parameter at (1 + sd) and (1 - sd) of itself.
pub(super) struct ClassMove {
    pub driver: usize,
    /// Per legend class (legend order), the relative sd that moves it.
    pub sd: Vec<f64>,
    /// The class models moved up and down, per legend class (None: the class has no model).
    pub moved: [Vec<Option<super::ClassModel>>; 2],
}

/// The runs of each class parameter `file` declares, for the classes of `legend`.
pub(super) fn class_moves(
    file: &super::draws::UncertaintyFile,
    legend: &crate::landcover::Legend,
    models: &std::collections::BTreeMap<i64, super::ClassModel>,
) -> Vec<ClassMove> {
    let declared = declared(file);
    let per_class = declared.iter().filter(|(v, _)| DRIVERS[*v].per_class());
    per_class
        .map(|&(v, _)| {
            let Moves::Class(coef) = DRIVERS[v].moves else {
                unreachable!("per_class")
            };
            let sd: Vec<f64> = (legend.classes.iter())
                .map(|c| {
                    let k = file.class_param(DRIVERS[v].name, &c.vegetation_type);
                    k.map_or(0.0, |k| file.parameters[k].sd)
                })
                .collect();
            let moved = [1.0, -1.0].map(|sign| {
                (legend.classes.iter().zip(&sd))
                    .map(|(c, s)| models.get(&c.code).map(|m| moved_class(m, coef, sign * s)))
                    .collect()
            });
            ClassMove {
                driver: v,
                sd,
                moved,
            }
        })
        .collect()
}

/// A pixel's slope from its results with the driver at +sd and -sd: the secant slope (the parabola's through
/// the three results at 0), or the one side that has a result when the other has none (NaN when neither has).
pub fn slope(plus: f64, base: f64, minus: f64, sd: f64) -> f64 {
    match (plus.is_finite(), minus.is_finite()) {
        (true, true) => (plus - minus) / (2.0 * sd),
        (true, false) => (plus - base) / sd,
        (false, true) => (base - minus) / sd,
        (false, false) => f64::NAN,
    }
}

/// A pixel's curvature (second derivative) from its results with the driver at +sd, 0 and -sd: that of the
/// parabola through the three, (f(+sd) - 2 f(0) + f(-sd)) / sd^2; 0 when a side has no result (the slope is then
/// one-sided: linear).
pub fn curvature(plus: f64, base: f64, minus: f64, sd: f64) -> f64 {
    if plus.is_finite() && minus.is_finite() {
        (plus - 2.0 * base + minus) / (sd * sd)
    } else {
        0.0
    }
}

/// The response raster's band descriptions and units: per declared driver, NPP's and Rh's slopes per unit of the
/// driver's error, then their curvatures per unit squared (`flux_unit`: the outputs' unit, e.g. "g C m-2 yr-1").
pub fn bands(declared: &[(usize, f64)], flux_unit: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for &(v, sd) in declared {
        let d = &DRIVERS[v];
        let (step, per, per2) = if d.per_class() && d.additive {
            ("+- its type's sd (K)".to_string(), "K-1", "K-2")
        } else if d.per_class() {
            (
                "+- its type's sd (relative)".to_string(),
                "per unit relative change (1 = +100 %)",
                "per unit relative change squared",
            )
        } else if d.additive {
            (format!("+-{sd} K"), "K-1", "K-2")
        } else {
            (
                format!("+-{sd} (relative)"),
                "per unit relative change (1 = +100 %)",
                "per unit relative change squared",
            )
        };
        for q in ["NPP", "Rh"] {
            out.push((
                format!("d{q}/d{}: slope through {step}", d.name),
                format!("{flux_unit} {per}"),
            ));
        }
        for q in ["NPP", "Rh"] {
            out.push((
                format!("d2{q}/d{}2: curvature through {step}", d.name),
                format!("{flux_unit} {per2}"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perturbation_moves_its_drivers_variables_only() {
        let t = Perturb {
            driver: 0,
            delta: 0.5,
        };
        assert_eq!(t.plane(Var::Tmean, Plane::Uniform(10.0)).at(0), 10.5);
        assert_eq!(t.plane(Var::Tmin, Plane::Uniform(2.0)).at(0), 2.5);
        assert_eq!(t.plane(Var::Precip, Plane::Uniform(80.0)).at(0), 80.0);
        let p = Perturb {
            driver: 1,
            delta: -0.1,
        };
        // 80 mm x 0.9 = 72 mm.
        assert!((p.plane(Var::Precip, Plane::Grid(vec![80.0])).at(0) - 72.0).abs() < 1e-5);
        assert_eq!(p.plane(Var::Srad, Plane::Uniform(15.0)).at(0), 15.0);
    }

    #[test]
    fn a_coefficients_perturbation_moves_the_rh_model_only() {
        let m = RhModel::resolve("pei2009").unwrap();
        let b = Perturb {
            driver: 3,
            delta: 0.1,
        };
        // b x 1.1 = 0.0912 x 1.1 = 0.10032; c unchanged; the drivers unchanged.
        let moved = Perturb::rh(Some(b), &m);
        assert!((moved.b - 0.10032).abs() < 1e-12 && moved.c == m.c);
        assert_eq!(b.plane(Var::Tmean, Plane::Uniform(10.0)).at(0), 10.0);
        let c = Perturb {
            driver: 4,
            delta: -0.2,
        };
        // c x 0.8 = 0.3145 x 0.8 = 0.2516.
        assert!((Perturb::rh(Some(c), &m).c - 0.2516).abs() < 1e-12);
        let t = Perturb {
            driver: 0,
            delta: 1.0,
        };
        assert!(matches!(Perturb::rh(Some(t), &m), Cow::Borrowed(_)));
    }

    #[test]
    fn the_curvature_is_the_parabolas() {
        // f = x^2 at x = 3 with sd 1: (16 - 18 + 4) / 1 = 2, f'' exactly; with sd 0.5: (12.25 - 18 + 6.25) / 0.25.
        assert_eq!(curvature(16.0, 9.0, 4.0, 1.0), 2.0);
        assert_eq!(curvature(12.25, 9.0, 6.25, 0.5), 2.0);
        assert_eq!(curvature(16.0, 9.0, f64::NAN, 1.0), 0.0);
    }

    #[test]
    fn the_slope_is_the_secant_or_the_side_with_a_result() {
        // f = x^2 at x = 3 with sd 1: (16 - 4) / 2 = 6, the derivative (a parabola's secant is exact).
        assert_eq!(slope(16.0, 9.0, 4.0, 1.0), 6.0);
        assert_eq!(slope(16.0, 9.0, f64::NAN, 1.0), 7.0);
        assert_eq!(slope(f64::NAN, 9.0, 4.0, 1.0), 5.0);
        assert!(slope(f64::NAN, 9.0, f64::NAN, 1.0).is_nan());
    }
}
