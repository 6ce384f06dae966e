//! Vegetation and spectral indices. Each index is one entry of `models/indices.toml` (formula, band letters,
//! constants, citation); the formula is compiled once with `exmex`, for one pixel (`eval`) and for runs of
//! pixels (`eval_run`, see `lanes.rs`), which stages use.

mod lanes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exmex::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models;

/// One entry of the index table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    pub name: String,
    pub long_name: String,
    /// Formula over band letters and constants (`**` is accepted for powers).
    pub formula: String,
    /// Band letters the formula needs.
    pub bands: Vec<String>,
    /// Default constants.
    #[serde(default)]
    pub constants: BTreeMap<String, f64>,
    pub unit: String,
    pub citation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    index: Vec<IndexDef>,
}

/// The index table.
#[derive(Debug, Clone)]
pub struct IndexTable {
    pub defs: Vec<IndexDef>,
    pub source: PathBuf,
}

impl IndexTable {
    /// The built-in table (models/indices.toml).
    pub fn builtin() -> Result<IndexTable> {
        let path = models::embedded_path("indices.toml");
        let text = models::embedded("indices.toml").expect("models/indices.toml is embedded");
        let f: IndexFile = models::parse_toml(text, &path)?;
        Self::from_defs(f.index, path)
    }

    /// A user's table file, used instead of the built-in one.
    pub fn from_file(path: &Path) -> Result<IndexTable> {
        let f: IndexFile = models::read_toml(path)?;
        Self::from_defs(f.index, path.to_path_buf())
    }

    fn from_defs(defs: Vec<IndexDef>, source: PathBuf) -> Result<IndexTable> {
        let t = IndexTable { defs, source };
        for d in &t.defs {
            // Compiling checks the formula against its declared bands and constants.
            CompiledIndex::new(d, &BTreeMap::new()).map_err(|e| match e {
                Error::Usage(m) => Error::config(&t.source, m),
                other => other,
            })?;
        }
        Ok(t)
    }

    pub fn get(&self, name: &str) -> Option<&IndexDef> {
        self.defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
    }

    pub fn names(&self) -> Vec<&str> {
        self.defs.iter().map(|d| d.name.as_str()).collect()
    }

    /// Resolve a list of names ("all" for every index) into definitions; unknown names are an error
    /// listing the known ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<IndexDef>> {
        if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
            return Ok(self.defs.clone());
        }
        let mut out = Vec::new();
        for n in names {
            match self.get(n) {
                Some(d) => {
                    if !out.iter().any(|o: &IndexDef| o.name == d.name) {
                        out.push(d.clone())
                    }
                }
                None => {
                    return Err(Error::Usage(format!(
                        "unknown index '{n}'; known indices: {}",
                        self.names().join(", ")
                    )))
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Usage("no index selected".into()));
        }
        Ok(out)
    }
}

/// Constant overrides given by the user: `NAME=value` applies to every index with that constant,
/// `INDEX.NAME=value` to one index.
#[derive(Debug, Clone, Default)]
pub struct ConstOverrides(pub Vec<(Option<String>, String, f64)>);

impl ConstOverrides {
    pub fn parse(items: &[String]) -> Result<ConstOverrides> {
        let mut v = Vec::new();
        for it in items {
            let (k, val) = it.split_once('=').ok_or_else(|| {
                Error::Usage(format!(
                    "--const {it}: expected NAME=VALUE or INDEX.NAME=VALUE"
                ))
            })?;
            let val: f64 = val
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    Error::Usage(format!("--const {it}: '{val}' is not a finite number"))
                })?;
            let (idx, name) = match k.split_once('.') {
                Some((i, n)) => (Some(i.trim().to_string()), n.trim().to_string()),
                None => (None, k.trim().to_string()),
            };
            v.push((idx, name, val));
        }
        Ok(ConstOverrides(v))
    }

    /// Constants for `def` after overrides.
    pub fn for_index(&self, def: &IndexDef) -> BTreeMap<String, f64> {
        let mut c = def.constants.clone();
        for (idx, name, val) in &self.0 {
            let applies = idx
                .as_ref()
                .is_none_or(|i| i.eq_ignore_ascii_case(&def.name));
            if applies && c.contains_key(name) {
                c.insert(name.clone(), *val);
            }
        }
        c
    }

    /// Check that every override names a known index and a constant that index has.
    pub fn check(&self, defs: &[IndexDef]) -> Result<()> {
        for (idx, name, _) in &self.0 {
            let hit = defs
                .iter()
                .filter(|d| idx.as_ref().is_none_or(|i| i.eq_ignore_ascii_case(&d.name)))
                .any(|d| d.constants.contains_key(name));
            if !hit {
                let target = idx.clone().unwrap_or_else(|| "any selected index".into());
                return Err(Error::Usage(format!(
                    "--const: constant '{name}' is not used by {target}"
                )));
            }
        }
        Ok(())
    }
}

/// Where a formula variable takes its value from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Band(usize),
    Const(f64),
}

/// An index formula compiled for evaluation.
pub struct CompiledIndex {
    pub def: IndexDef,
    pub constants: BTreeMap<String, f64>,
    expr: FlatEx<f64>,
    /// The same formula over runs of `lanes::LANES` pixels (the same variable order as `expr`).
    lanes: FlatEx<lanes::Lanes, lanes::LanesOps>,
    slots: Vec<Slot>,
    /// The bands the formula reads (indices into `def.bands`), for the NaN check of `eval_run`.
    band_slots: Vec<usize>,
}

impl CompiledIndex {
    /// Compile `def` with its default constants updated by `constants`. Band values are passed to `eval`
    /// in the order of `def.bands`.
    pub fn new(def: &IndexDef, overrides: &BTreeMap<String, f64>) -> Result<CompiledIndex> {
        let mut constants = def.constants.clone();
        for (k, v) in overrides {
            constants.insert(k.clone(), *v);
        }
        // A NaN or infinite constant would make every pixel NaN without a word.
        if let Some((k, v)) = constants.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Usage(format!(
                "index {}: constant {k} = {v} is not a finite number",
                def.name
            )));
        }
        let formula = def.formula.replace("**", "^");
        let expr = FlatEx::<f64>::parse(&formula).map_err(|e| {
            Error::Usage(format!(
                "index {}: formula '{}' does not parse: {e}",
                def.name, def.formula
            ))
        })?;
        let mut slots = Vec::new();
        for var in expr.var_names() {
            if let Some(k) = def.bands.iter().position(|b| b == var) {
                slots.push(Slot::Band(k));
            } else if let Some(v) = constants.get(var) {
                slots.push(Slot::Const(*v));
            } else {
                return Err(Error::Usage(format!("index {}: formula uses '{var}', which is neither one of its bands {:?} nor one of its constants", def.name, def.bands)));
            }
        }
        for b in &def.bands {
            if !expr.var_names().iter().any(|v| v == b) {
                return Err(Error::Usage(format!(
                    "index {}: band {b} is declared but the formula does not use it",
                    def.name
                )));
            }
        }
        let lanes = FlatEx::<lanes::Lanes, lanes::LanesOps>::parse(&formula).map_err(|e| {
            Error::Usage(format!(
                "index {}: formula '{}' does not parse: {e}",
                def.name, def.formula
            ))
        })?;
        debug_assert_eq!(lanes.var_names(), expr.var_names());
        let band_slots = slots
            .iter()
            .filter_map(|s| match *s {
                Slot::Band(k) => Some(k),
                Slot::Const(_) => None,
            })
            .collect();
        Ok(CompiledIndex {
            def: def.clone(),
            constants,
            expr,
            lanes,
            slots,
            band_slots,
        })
    }

    /// Evaluate on reflectances given in the order of `def.bands`. Returns NaN when an input is NaN or the
    /// result is not finite (for example 0/0 over no-data or perfectly dark pixels).
    #[inline]
    pub fn eval(&self, bands: &[f64], scratch: &mut Vec<f64>) -> f64 {
        scratch.clear();
        for s in &self.slots {
            let v = match *s {
                Slot::Band(k) => bands[k],
                Slot::Const(c) => c,
            };
            if v.is_nan() {
                return f64::NAN;
            }
            scratch.push(v);
        }
        match self.expr.eval(scratch) {
            Ok(v) if v.is_finite() => v,
            _ => f64::NAN,
        }
    }
}

impl CompiledIndex {
    /// Evaluate over a run of pixels: `bands[k][px]` are the reflectances of `def.bands[k]`; `out[px]` gets the
    /// value, identical to `eval` on that pixel (NaN where an input is NaN or the result is not finite).
    pub fn eval_run(&self, bands: &[&[f64]], out: &mut [f32]) {
        use lanes::{Lanes, LANES};
        let n = out.len();
        let mut start = 0;
        while start < n {
            let len = LANES.min(n - start);
            let vars: Vec<Lanes> = self
                .slots
                .iter()
                .map(|s| match *s {
                    Slot::Band(k) => {
                        let mut v = vec![f64::NAN; LANES];
                        v[..len].copy_from_slice(&bands[k][start..start + len]);
                        Lanes(v)
                    }
                    Slot::Const(c) => Lanes::splat(c),
                })
                .collect();
            // The variables move into the evaluation (no copy of their values).
            let result = self.lanes.eval_vec(vars).ok();
            let run = &mut out[start..start + len];
            match &result {
                Some(r) => {
                    for (o, &v) in run.iter_mut().zip(&r.0) {
                        *o = if v.is_finite() { v as f32 } else { f32::NAN };
                    }
                    // A NaN input gives NaN even where the formula would not (NaN^0 = 1, min, max).
                    for &k in &self.band_slots {
                        for (o, &b) in run.iter_mut().zip(&bands[k][start..start + len]) {
                            if b.is_nan() {
                                *o = f32::NAN;
                            }
                        }
                    }
                }
                None => run.fill(f32::NAN),
            }
            start += len;
        }
    }
}

// Sharing a compiled index between rayon workers: FlatEx holds plain data and function pointers.
const _: fn() = || {
    fn assert_sync<T: Sync + Send>() {}
    assert_sync::<CompiledIndex>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(name: &str, bands: &[f64]) -> f64 {
        let t = IndexTable::builtin().unwrap();
        let c = CompiledIndex::new(t.get(name).unwrap(), &BTreeMap::new()).unwrap();
        c.eval(bands, &mut Vec::new())
    }

    #[test]
    fn runs_of_pixels_equal_pixel_by_pixel_for_every_builtin_index() {
        // Bitwise: the same operations in the same order, lane by lane; includes NaN inputs, zero sums and a
        // run that is not a multiple of the lane count.
        let mut t = IndexTable::builtin().unwrap();
        // NaN^0 = 1 in IEEE arithmetic: the NaN input must still give NaN.
        let mut pow0 = t.defs[0].clone();
        pow0.formula = "N ^ 0.0 + R - R".into();
        t.defs.push(pow0);
        let n = 2500;
        let value = |k: usize, px: usize| -> f64 {
            match (px * 7 + k * 13) % 97 {
                0 => f64::NAN,
                1 => 0.0,
                r => (r as f64 * 0.37 + k as f64 * 0.11).sin() * 0.6 + 0.3,
            }
        };
        for d in &t.defs {
            let c = CompiledIndex::new(d, &BTreeMap::new()).unwrap();
            let planes: Vec<Vec<f64>> = (0..d.bands.len())
                .map(|k| (0..n).map(|px| value(k, px)).collect())
                .collect();
            let refs: Vec<&[f64]> = planes.iter().map(|p| p.as_slice()).collect();
            let mut out = vec![0f32; n];
            c.eval_run(&refs, &mut out);
            if d.formula.starts_with("N ^ 0.0") {
                // IEEE: NaN^0 = 1 and R - R = 0, so the formula alone gives 1 where N is NaN.
                let px = (0..n).find(|&px| planes[0][px].is_nan()).unwrap();
                assert!(out[px].is_nan(), "NaN input must give NaN, got {}", out[px]);
            }
            for (px, o) in out.iter().enumerate() {
                let b: Vec<f64> = planes.iter().map(|p| p[px]).collect();
                let one = c.eval(&b, &mut Vec::new()) as f32;
                assert_eq!(o.to_bits(), one.to_bits(), "{} pixel {px}", d.name);
            }
        }
    }

    #[test]
    fn non_finite_constants_are_refused() {
        for bad in ["L=nan", "L=inf", "SAVI.L=-inf"] {
            let e = ConstOverrides::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.to_string().contains("not a finite number"), "{bad}: {e}");
        }
        let t = IndexTable::builtin().unwrap();
        let over = BTreeMap::from([("L".to_string(), f64::NAN)]);
        let Err(e) = CompiledIndex::new(t.get("SAVI").unwrap(), &over) else {
            panic!("a NaN constant compiled")
        };
        assert!(e.to_string().contains("constant L = NaN"), "{e}");
    }

    #[test]
    fn kndvi_by_hand() {
        // N = 0.4, R = 0.1: NDVI = 0.3 / 0.5 = 0.6; kNDVI = tanh(0.6^2) = tanh(0.36) = 0.345214034...
        // (Camps-Valls et al. 2021 with sigma = 0.5 (N + R): (1 - k) / (1 + k), k = exp(-(N-R)^2 / (2 sigma^2))
        //  = exp(-0.72) = 0.486752, gives (1 - 0.486752) / (1 + 0.486752) = 0.345214, the same.)
        assert!((eval("kNDVI", &[0.4, 0.1]) - 0.345_214_034).abs() < 1e-8);
    }

    #[test]
    fn savi_default_l_is_one_half() {
        // (1 + 0.5) (0.4 - 0.1) / (0.4 + 0.1 + 0.5) = 0.45
        assert!((eval("SAVI", &[0.4, 0.1]) - 0.45).abs() < 1e-12);
    }

    #[test]
    fn nodata_and_zero_division_give_nan() {
        assert!(eval("NDVI", &[f64::NAN, 0.1]).is_nan());
        assert!(eval("NDVI", &[0.0, 0.0]).is_nan());
    }

    #[test]
    fn overrides_apply_per_index_or_globally() {
        let t = IndexTable::builtin().unwrap();
        let o = ConstOverrides::parse(&["SAVI.L=1".into()]).unwrap();
        assert_eq!(o.for_index(t.get("SAVI").unwrap())["L"], 1.0);
        assert_eq!(o.for_index(t.get("EVI").unwrap())["L"], 1.0); // EVI's own default is also 1
        let o = ConstOverrides::parse(&["L=0.3".into()]).unwrap();
        assert_eq!(o.for_index(t.get("EVI").unwrap())["L"], 0.3);
        assert!(ConstOverrides::parse(&["Q=1".into()])
            .unwrap()
            .check(&t.defs)
            .is_err());
    }
}
