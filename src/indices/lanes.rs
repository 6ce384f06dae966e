//! Index formulas evaluated over whole arrays: the formula is parsed once by `exmex` over `Lanes` (LANES pixels
//! at a time) with the same operators as exmex's float factory, so each operator of the formula is applied to
//! a run of pixels in one loop instead of the expression tree being walked per pixel. Results are bitwise
//! identical to per-pixel evaluation: the same operations in the same order on each lane.
//!
//! A `Lanes` owns its values on the heap, so exmex moves it between operators without copying the values,
//! and each operator works in place on its left operand (the variables are handed over with `eval_vec`, so
//! only a variable used twice in a formula is copied).

use std::fmt::Debug;
use std::str::FromStr;

use exmex::{BinOp, MakeOperators, Operator};

/// Pixels evaluated per walk of the expression tree.
pub const LANES: usize = 1024;

/// One value per pixel of a run of `LANES` pixels (empty only as the placeholder exmex leaves in a variable it
/// has taken).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lanes(pub Vec<f64>);

impl Lanes {
    pub fn splat(v: f64) -> Lanes {
        Lanes(vec![v; LANES])
    }
    // Generic over the function (not a `fn` pointer), so each operator gets its own loop with the arithmetic
    // inlined instead of an indirect call per value.
    #[inline]
    fn map(mut self, f: impl Fn(f64) -> f64) -> Lanes {
        for v in self.0.iter_mut() {
            *v = f(*v);
        }
        self
    }
    #[inline]
    fn zip(mut self, b: Lanes, f: impl Fn(f64, f64) -> f64) -> Lanes {
        for (v, w) in self.0.iter_mut().zip(&b.0) {
            *v = f(*v, *w);
        }
        self
    }
}

/// A numeric literal of a formula, the same in every lane.
impl FromStr for Lanes {
    type Err = std::num::ParseFloatError;
    fn from_str(s: &str) -> Result<Lanes, Self::Err> {
        s.parse::<f64>().map(Lanes::splat)
    }
}

fn bin(
    repr: &'static str,
    prio: i64,
    is_commutative: bool,
    f: fn(Lanes, Lanes) -> Lanes,
) -> Operator<'static, Lanes> {
    Operator::make_bin(
        repr,
        BinOp {
            apply: f,
            prio,
            is_commutative,
        },
    )
}

/// The operators of `exmex::FloatOpsFactory` (same names, priorities and functions), lane by lane.
#[derive(Clone, Debug)]
pub struct LanesOps;

impl MakeOperators<Lanes> for LanesOps {
    fn make<'a>() -> Vec<Operator<'a, Lanes>> {
        use std::f64::consts::{E, PI, TAU};
        let mut ops = vec![
            bin("^", 4, false, |a, b| a.zip(b, f64::powf)),
            bin("*", 2, true, |a, b| a.zip(b, |x, y| x * y)),
            bin("/", 3, false, |a, b| a.zip(b, |x, y| x / y)),
            Operator::make_bin_unary(
                "+",
                BinOp {
                    apply: |a: Lanes, b| a.zip(b, |x, y| x + y),
                    prio: 0,
                    is_commutative: true,
                },
                |a| a,
            ),
            Operator::make_bin_unary(
                "-",
                BinOp {
                    apply: |a: Lanes, b| a.zip(b, |x, y| x - y),
                    prio: 1,
                    is_commutative: false,
                },
                |a| a.map(|x| -x),
            ),
            bin("atan2", 0, false, |a, b| a.zip(b, f64::atan2)),
            bin("min", 0, false, |a, b| a.zip(b, f64::min)),
            bin("max", 0, false, |a, b| a.zip(b, f64::max)),
        ];
        for name in UNARY {
            ops.push(Operator::make_unary(name, unary_of(name)));
        }
        for (name, v) in [
            ("PI", PI),
            ("π", PI),
            ("E", E),
            ("e", E),
            ("TAU", TAU),
            ("τ", TAU),
        ] {
            ops.push(Operator::make_constant(name, Lanes::splat(v)));
        }
        ops
    }
}

// exmex's operators are plain `fn`s, which cannot capture the f64 function: one closure per name.
macro_rules! lane_fns {
    ($($name:literal => $f:path),* $(,)?) => {
        /// Names of the unary operators (functions), as in `exmex::FloatOpsFactory`.
        const UNARY: &[&str] = &[$($name),*];
        fn unary_of(name: &str) -> fn(Lanes) -> Lanes {
            match name {
                $($name => |a: Lanes| a.map($f),)*
                _ => unreachable!("unary operator {name} is listed in UNARY"),
            }
        }
    };
}
lane_fns!(
    "abs" => f64::abs, "signum" => f64::signum, "sin" => f64::sin, "cos" => f64::cos, "tan" => f64::tan,
    "asin" => f64::asin, "acos" => f64::acos, "atan" => f64::atan, "sinh" => f64::sinh, "cosh" => f64::cosh,
    "tanh" => f64::tanh, "asinh" => f64::asinh, "acosh" => f64::acosh, "atanh" => f64::atanh,
    "floor" => f64::floor, "round" => f64::round, "ceil" => f64::ceil, "trunc" => f64::trunc,
    "fract" => f64::fract, "exp" => f64::exp, "sqrt" => f64::sqrt, "cbrt" => f64::cbrt, "ln" => f64::ln,
    "log2" => f64::log2, "log10" => f64::log10, "log" => f64::ln,
);
