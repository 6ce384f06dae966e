//! Region-specific corrections: multiplicative factors per zone x class, applied to the light-use efficiency
//! (epsilon max / LUEmax) or to NPP, looked up in the fallback order zone x class, zone, class, none.
//!
//! Correction tables are CSV (`models/corrections/NAME.csv` or the user's file), leading `#` lines are
//! comments, then the header `zone,class,factor,applies_to,se,n,source`: an empty zone or class is a wildcard,
//! `applies_to` is `epsilon_max` or `npp` (one value for the whole table), `se` and `n` the factor's
//! standard error and sample count (empty for factors not fitted by carbonmap), `source` the citation.
//!
//! `calibrate` fits the factors from plots: per group the ratio of sums r_g = sum(observed) / sum(model) (the
//! ratio estimator: the corrected group total equals the observed total, and large values weigh as much as
//! they matter, unlike a mean of per-plot ratios that many small values dominate), shrunk toward the broader
//! level by empirical-Bayes partial pooling (the normal hierarchical model, Gelman et al. 2013, Bayesian Data
//! Analysis, 3rd ed., ch. 5). The residuals on the ratio scale e_i = (o_i - r_g m_i) / mean(m) give the
//! within-group variance s2 (pooled over groups), so that r_g's sampling variance is s2 / n_g (the classical
//! ratio-estimator variance, Cochran 1977, Sampling Techniques, eq. 6.9); with the between-group variance tau2
//! (method of moments, floored at 0), the factor is w r_g + (1 - w) parent with w = tau2 / (tau2 + s2 / n_g),
//! and its standard error
//! sqrt(w s2 / n_g + (1 - w)^2 se(parent)^2). Classes and zones shrink toward the mean of all plots, zone x
//! class cells toward their zone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::models;
use crate::validate::Metrics;

/// What a correction multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The maximum light-use efficiency (CASA emax, MOD17 LUEmax): GPP and CASA NPP scale with it.
    EpsilonMax,
    /// NPP itself (NEP and sequestration follow).
    Npp,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::EpsilonMax => "epsilon_max",
            Target::Npp => "npp",
        }
    }

    pub fn parse(s: &str) -> std::result::Result<Target, String> {
        match s.trim() {
            "epsilon_max" => Ok(Target::EpsilonMax),
            "npp" => Ok(Target::Npp),
            o => Err(format!("applies_to \"{o}\" must be epsilon_max or npp")),
        }
    }
}

/// Which row of a table a lookup used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    ZoneClass,
    Zone,
    Class,
    None,
}

/// One factor.
#[derive(Debug, Clone, Serialize)]
pub struct Factor {
    pub zone: Option<String>,
    pub class: Option<String>,
    pub factor: f64,
    pub se: Option<f64>,
    pub n: Option<usize>,
    pub source: String,
}

/// (zone, class) of a table row or a calibration group; None = any.
type Key = (Option<String>, Option<String>);

/// A correction table.
#[derive(Debug, Clone)]
pub struct CorrectionTable {
    pub path: PathBuf,
    pub target: Target,
    pub factors: Vec<Factor>,
    index: BTreeMap<Key, usize>,
}

const HEADER: [&str; 7] = ["zone", "class", "factor", "applies_to", "se", "n", "source"];

impl CorrectionTable {
    /// A built-in table by name (`models/corrections/NAME.csv`) or a CSV file.
    pub fn resolve(name_or_path: &str) -> Result<CorrectionTable> {
        if name_or_path.ends_with(".csv") {
            let p = PathBuf::from(name_or_path);
            let text = crate::io::read_text(&p, "a correction table (CSV)")?;
            return Self::parse(&text, &p);
        }
        let rel = format!("corrections/{name_or_path}.csv");
        match models::embedded(&rel) {
            Some(text) => Self::parse(text, &models::embedded_path(&rel)),
            None => Err(Error::Usage(format!(
                "unknown correction table '{name_or_path}'; built-in: {} (or give a .csv file)",
                models::embedded_under("corrections/")
                    .map(|(p, _)| p
                        .trim_start_matches("corrections/")
                        .trim_end_matches(".csv"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<CorrectionTable> {
        let comments = text
            .lines()
            .take_while(|l| l.trim_start().starts_with('#'))
            .count();
        let body: String = text
            .lines()
            .skip(comments)
            .map(|l| format!("{l}\n"))
            .collect();
        let mut r = csv::Reader::from_reader(body.as_bytes());
        let h: Vec<String> = r
            .headers()
            .map_err(|e| Error::input(path, format!("no header line: {e}")))?
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        if h != HEADER {
            return Err(Error::input(
                path,
                format!(
                    "line {}: header must be {} (found {})",
                    comments + 1,
                    HEADER.join(","),
                    h.join(",")
                ),
            ));
        }
        let mut factors = Vec::new();
        let mut index = BTreeMap::new();
        let mut target: Option<Target> = None;
        for rec in r.records() {
            let rec = rec.map_err(|e| Error::input(path, e.to_string()))?;
            let line = comments + rec.position().map(|p| p.line() as usize).unwrap_or(0);
            let bad = |m: String| Error::input(path, format!("line {line}: {m}"));
            let opt = |i: usize| {
                let v = rec.get(i).unwrap_or("").trim();
                (!v.is_empty()).then(|| v.to_string())
            };
            let factor: f64 = rec
                .get(2)
                .unwrap_or("")
                .trim()
                .parse()
                .ok()
                .filter(|f: &f64| f.is_finite() && *f > 0.0)
                .ok_or_else(|| {
                    bad(format!(
                        "factor \"{}\" must be a positive number",
                        rec.get(2).unwrap_or("")
                    ))
                })?;
            let t = Target::parse(rec.get(3).unwrap_or("")).map_err(bad)?;
            match target {
                None => target = Some(t),
                Some(t0) if t0 != t => {
                    return Err(bad(format!(
                        "applies_to {} differs from the table's {} (one table corrects one thing)",
                        t.name(),
                        t0.name()
                    )))
                }
                _ => {}
            }
            let se = match opt(4) {
                None => None,
                Some(s) => Some(
                    s.parse::<f64>()
                        .map_err(|_| bad(format!("se \"{s}\" is not a number")))?,
                ),
            };
            let n = match opt(5) {
                None => None,
                Some(s) => Some(
                    s.parse::<usize>()
                        .map_err(|_| bad(format!("n \"{s}\" is not a count")))?,
                ),
            };
            let source = opt(6)
                .ok_or_else(|| bad("source is empty: cite where the factor comes from".into()))?;
            let key = (opt(0), opt(1));
            if key == (None, None) {
                return Err(bad("zone and class are both empty (a global factor is a zone-less, class-less model change; edit the parameters instead)".into()));
            }
            if index.insert(key.clone(), factors.len()).is_some() {
                return Err(bad(format!(
                    "a second row for zone \"{}\", class \"{}\"",
                    key.0.as_deref().unwrap_or(""),
                    key.1.as_deref().unwrap_or("")
                )));
            }
            factors.push(Factor {
                zone: key.0,
                class: key.1,
                factor,
                se,
                n,
                source,
            });
        }
        let target = target.ok_or_else(|| {
            Error::input(
                path,
                "has no factors (no rows): applying it would change nothing",
            )
        })?;
        Ok(CorrectionTable {
            path: path.to_path_buf(),
            target,
            factors,
            index,
        })
    }

    /// Check the zones and classes the table names against those known; every unknown one is listed.
    /// `zones`: None = no zones given; Some(None) = zones whose names are not known before reading (a raster).
    pub fn check(
        &self,
        zones: Option<Option<&BTreeSet<String>>>,
        classes: &BTreeSet<String>,
    ) -> Result<()> {
        let mut problems = Vec::new();
        if self.factors.is_empty() {
            problems.push(
                "has no rows: applying it would change nothing (calibrate with a class field, a land-cover map or zones)"
                    .to_string(),
            );
        }
        let named: BTreeSet<&str> = self
            .factors
            .iter()
            .filter_map(|f| f.zone.as_deref())
            .collect();
        match zones {
            None if !named.is_empty() => {
                problems.push("names zones, but no zones were given (--zones)".to_string())
            }
            Some(Some(known)) => {
                let unknown: Vec<&str> =
                    named.into_iter().filter(|z| !known.contains(*z)).collect();
                if !unknown.is_empty() {
                    problems.push(format!(
                        "zones not in the zone layer: {} (zone names are the finest level's values)",
                        unknown.join(", ")
                    ));
                }
            }
            _ => {}
        }
        let uc: BTreeSet<&str> = self
            .factors
            .iter()
            .filter_map(|f| f.class.as_deref())
            .filter(|c| !classes.contains(*c))
            .collect();
        if !uc.is_empty() {
            problems.push(format!(
                "unknown classes: {} (known: {})",
                uc.into_iter().collect::<Vec<_>>().join(", "),
                classes.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::input(&self.path, problems.join("; ")))
        }
    }

    /// The factor for a zone and class, in the fallback order zone x class, zone, class, none (1).
    pub fn lookup(&self, zone: Option<&str>, class: Option<&str>) -> (f64, Level) {
        let (z, c) = (zone.map(str::to_string), class.map(str::to_string));
        let candidates = [
            (
                z.clone().zip(c.clone()).map(|(z, c)| (Some(z), Some(c))),
                Level::ZoneClass,
            ),
            (z.map(|z| (Some(z), None)), Level::Zone),
            (c.map(|c| (None, Some(c))), Level::Class),
        ];
        candidates
            .into_iter()
            .find_map(|(key, level)| {
                key.and_then(|k| self.index.get(&k))
                    .map(|&i| (self.factors[i].factor, level))
            })
            .unwrap_or((1.0, Level::None))
    }

    /// The table as CSV (the format `parse` reads; its notes go to a sidecar, see `io::write_table`).
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", HEADER.join(","));
        let q = |v: &str| {
            if v.contains([',', '"']) {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v.to_string()
            }
        };
        for f in &self.factors {
            let _ = writeln!(
                s,
                "{},{},{:.6},{},{},{},{}",
                q(f.zone.as_deref().unwrap_or("")),
                q(f.class.as_deref().unwrap_or("")),
                f.factor,
                self.target.name(),
                f.se.map(|v| format!("{v:.6}")).unwrap_or_default(),
                f.n.map(|v| v.to_string()).unwrap_or_default(),
                q(&f.source)
            );
        }
        s
    }

    /// A table from fitted factors.
    pub fn from_factors(path: &Path, target: Target, factors: Vec<Factor>) -> CorrectionTable {
        let index = factors
            .iter()
            .enumerate()
            .map(|(i, f)| ((f.zone.clone(), f.class.clone()), i))
            .collect();
        CorrectionTable {
            path: path.to_path_buf(),
            target,
            factors,
            index,
        }
    }
}

/// One plot for calibration: its zone, class, site, observation and model value (same unit).
#[derive(Debug, Clone)]
pub struct CalPlot {
    pub zone: Option<String>,
    pub class: Option<String>,
    pub site: String,
    pub observed: f64,
    pub model: f64,
}

/// A fitted factor with what went into it.
#[derive(Debug, Clone, Serialize)]
pub struct Fitted {
    pub zone: Option<String>,
    pub class: Option<String>,
    pub n: usize,
    /// Ratio of sums observed / model of the group's plots (no pooling).
    pub raw: f64,
    /// The pooled factor.
    pub factor: f64,
    pub se: f64,
    /// Weight of the group's own mean (1 = no shrinkage).
    pub weight: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Ratio of sums of (observed, model) pairs.
fn ratio(v: &[(f64, f64)]) -> f64 {
    v.iter().map(|p| p.0).sum::<f64>() / v.iter().map(|p| p.1).sum::<f64>()
}

/// Sum of squared residuals on the ratio scale, (o - r m) / mean(m), around the group's ratio of sums.
fn ratio_ss(v: &[(f64, f64)]) -> f64 {
    let r = ratio(v);
    let mbar = v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
    v.iter().map(|p| ((p.0 - r * p.1) / mbar).powi(2)).sum()
}

/// Pooled within-group variance on the ratio scale (groups of one plot contribute nothing).
fn within_variance(groups: &BTreeMap<Key, Vec<(f64, f64)>>) -> Option<f64> {
    let (mut ss, mut df) = (0.0, 0usize);
    for v in groups.values() {
        ss += ratio_ss(v);
        df += v.len() - 1;
    }
    (df > 0).then(|| ss / df as f64)
}

/// Shrink each group's mean toward its parent (given per group with its standard error).
fn pool(
    groups: &BTreeMap<Key, Vec<(f64, f64)>>,
    parent: impl Fn(&Key) -> (f64, f64),
    fallback_variance: f64,
) -> Vec<Fitted> {
    let s2 = within_variance(groups).unwrap_or(fallback_variance);
    // Method of moments: E[(r_g - parent)^2] = tau2 + s2 / n_g.
    let dev: Vec<f64> = groups
        .iter()
        .map(|(k, v)| (ratio(v) - parent(k).0).powi(2) - s2 / v.len() as f64)
        .collect();
    let tau2 = if dev.is_empty() {
        0.0
    } else {
        mean(&dev).max(0.0)
    };
    groups
        .iter()
        .map(|(k, v)| {
            let n = v.len();
            let raw = ratio(v);
            let (p, p_se) = parent(k);
            let sampling = s2 / n as f64;
            let w = if tau2 + sampling > 0.0 {
                tau2 / (tau2 + sampling)
            } else {
                1.0
            };
            Fitted {
                zone: k.0.clone(),
                class: k.1.clone(),
                n,
                raw,
                factor: w * raw + (1.0 - w) * p,
                se: (w * sampling + (1.0 - w).powi(2) * p_se * p_se).sqrt(),
                weight: w,
            }
        })
        .collect()
}

/// The fit: all plots, and the zone, class and zone x class factors.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Ratio of sums over all plots and its standard error.
    pub overall: Fitted,
    pub factors: Vec<Fitted>,
    /// Plots left out because the model value is not positive (a ratio needs one).
    pub skipped_nonpositive_model: usize,
}

/// Fit factors observed / model with partial pooling. Plots whose model value is not positive are skipped.
pub fn calibrate(plots: &[CalPlot]) -> Calibration {
    let usable: Vec<&CalPlot> = plots
        .iter()
        .filter(|p| p.model > 0.0 && p.model.is_finite() && p.observed.is_finite())
        .collect();
    let pairs: Vec<(f64, f64)> = usable.iter().map(|p| (p.observed, p.model)).collect();
    let n = pairs.len();
    let mu = if n > 0 { ratio(&pairs) } else { f64::NAN };
    let total_var = if n > 1 {
        ratio_ss(&pairs) / (n - 1) as f64
    } else {
        0.0
    };
    let mu_se = (total_var / n as f64).sqrt();
    let group = |f: &dyn Fn(&CalPlot) -> Option<Key>| {
        let mut g: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
        for (p, pr) in usable.iter().zip(&pairs) {
            if let Some(k) = f(p) {
                g.entry(k).or_default().push(*pr);
            }
        }
        g
    };
    let zones = group(&|p| p.zone.clone().map(|z| (Some(z), None)));
    let classes = group(&|p| p.class.clone().map(|c| (None, Some(c))));
    let cells = group(&|p| match (&p.zone, &p.class) {
        (Some(z), Some(c)) => Some((Some(z.clone()), Some(c.clone()))),
        _ => None,
    });
    let zone_fit = pool(&zones, |_| (mu, mu_se), total_var);
    let class_fit = pool(&classes, |_| (mu, mu_se), total_var);
    let zone_of: BTreeMap<Option<String>, (f64, f64)> = zone_fit
        .iter()
        .map(|f| (f.zone.clone(), (f.factor, f.se)))
        .collect();
    let cell_fit = pool(&cells, |k| zone_of[&k.0], total_var);
    let mut factors = cell_fit;
    factors.extend(zone_fit);
    factors.extend(class_fit);
    Calibration {
        overall: Fitted {
            zone: None,
            class: None,
            n,
            raw: mu,
            factor: mu,
            se: mu_se,
            weight: 1.0,
        },
        factors,
        skipped_nonpositive_model: plots.len() - n,
    }
}

impl Calibration {
    /// The correction table of the fitted factors.
    pub fn table(&self, path: &Path, target: Target, source: &str) -> CorrectionTable {
        CorrectionTable::from_factors(
            path,
            target,
            self.factors
                .iter()
                .map(|f| Factor {
                    zone: f.zone.clone(),
                    class: f.class.clone(),
                    factor: f.factor,
                    se: Some(f.se),
                    n: Some(f.n),
                    source: source.to_string(),
                })
                .collect(),
        )
    }
}

/// Folds of a grouped k-fold: whole sites go to one fold. Sites are shuffled with a seeded generator
/// (ChaCha8, reproducible across platforms) and dealt, largest first, to the fold with the fewest plots.
pub fn site_folds(plots: &[CalPlot], k: usize, seed: u64) -> Vec<usize> {
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for p in plots {
        *sizes.entry(p.site.as_str()).or_default() += 1;
    }
    let mut sites: Vec<(&str, usize)> = sizes.into_iter().collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    sites.shuffle(&mut rng);
    // Stable sort: ties keep their shuffled order.
    sites.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut load = vec![0usize; k];
    let mut fold_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (s, n) in sites {
        let f = (0..k).min_by_key(|&f| (load[f], f)).expect("k >= 1");
        load[f] += n;
        fold_of.insert(s, f);
    }
    plots.iter().map(|p| fold_of[p.site.as_str()]).collect()
}

/// Grouped cross-validation: per fold, calibrate on the other folds and correct the held-out plots.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    pub folds: usize,
    pub sites: usize,
    /// Held-out predictions: (observed, model, corrected, class).
    #[serde(skip)]
    pub predictions: Vec<(f64, f64, f64, Option<String>)>,
    /// (scope, group, before, after).
    pub metrics: Vec<(String, String, Metrics, Metrics)>,
}

pub fn cross_validate(
    plots: &[CalPlot],
    k: usize,
    seed: u64,
    target: Target,
) -> Result<CrossValidation> {
    let sites: BTreeSet<&str> = plots.iter().map(|p| p.site.as_str()).collect();
    if sites.len() < k || k < 2 {
        return Err(Error::Usage(format!(
            "grouped {k}-fold cross-validation needs at least {k} sites (k >= 2); the plots come from {} site(s): lower --folds or give --site-field",
            sites.len()
        )));
    }
    let folds = site_folds(plots, k, seed);
    let mut predictions = vec![(f64::NAN, f64::NAN, f64::NAN, None); plots.len()];
    for f in 0..k {
        let train: Vec<CalPlot> = plots
            .iter()
            .zip(&folds)
            .filter(|(_, &g)| g != f)
            .map(|(p, _)| p.clone())
            .collect();
        let table = calibrate(&train).table(Path::new("(fold)"), target, "cross-validation fold");
        for (i, p) in plots.iter().enumerate().filter(|(i, _)| folds[*i] == f) {
            let (factor, _) = table.lookup(p.zone.as_deref(), p.class.as_deref());
            predictions[i] = (p.observed, p.model, p.model * factor, p.class.clone());
        }
    }
    let mut metrics = Vec::new();
    let mut scopes: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, p) in predictions.iter().enumerate() {
        scopes
            .entry(("all".into(), "all".into()))
            .or_default()
            .push(i);
        if let Some(c) = &p.3 {
            scopes
                .entry(("class".into(), c.clone()))
                .or_default()
                .push(i);
        }
    }
    for ((scope, group), idx) in scopes {
        let o: Vec<f64> = idx.iter().map(|&i| predictions[i].0).collect();
        let m: Vec<f64> = idx.iter().map(|&i| predictions[i].1).collect();
        let c: Vec<f64> = idx.iter().map(|&i| predictions[i].2).collect();
        metrics.push((
            scope,
            group,
            Metrics::compute(&o, &m),
            Metrics::compute(&o, &c),
        ));
    }
    Ok(CrossValidation {
        folds: k,
        sites: sites.len(),
        predictions,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(zone: &str, class: &str, site: &str, observed: f64, model: f64) -> CalPlot {
        CalPlot {
            zone: Some(zone.into()),
            class: Some(class.into()),
            site: site.into(),
            observed,
            model,
        }
    }

    #[test]
    fn lookup_falls_back_zone_class_then_zone_then_class() {
        let t = CorrectionTable::parse(
            "# test\nzone,class,factor,applies_to,se,n,source\nA,forest,1.5,npp,,,hand\nA,,1.2,npp,,,hand\n,forest,0.9,npp,,,hand\n",
            Path::new("t.csv"),
        )
        .unwrap();
        assert_eq!(t.lookup(Some("A"), Some("forest")), (1.5, Level::ZoneClass));
        assert_eq!(t.lookup(Some("A"), Some("grassland")), (1.2, Level::Zone));
        assert_eq!(t.lookup(Some("B"), Some("forest")), (0.9, Level::Class));
        assert_eq!(t.lookup(None, Some("forest")), (0.9, Level::Class));
        assert_eq!(t.lookup(Some("B"), Some("grassland")), (1.0, Level::None));
        let known: BTreeSet<String> = ["grassland".to_string()].into();
        let e = t
            .check(Some(Some(&["B".to_string()].into())), &known)
            .unwrap_err()
            .to_string();
        assert!(t
            .check(None, &known)
            .unwrap_err()
            .to_string()
            .contains("no zones were given"));
        assert!(
            e.contains("zones not in the zone layer: A") && e.contains("unknown classes: forest"),
            "{e}"
        );
    }

    #[test]
    fn built_in_tables_parse_and_name_vegetation_types() {
        let types: BTreeSet<String> = crate::landcover::vegetation_types()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mut n = 0;
        for (path, _) in models::embedded_under("corrections/") {
            let name = path
                .trim_start_matches("corrections/")
                .trim_end_matches(".csv");
            let t = CorrectionTable::resolve(name).unwrap();
            t.check(Some(None), &types).unwrap();
            n += 1;
        }
        assert!(n >= 1);
    }

    #[test]
    fn bad_tables_say_which_line() {
        for (body, says) in [
            ("A,forest,-1,npp,,,x", "line 3: factor"),
            ("A,forest,1,gpp,,,x", "line 3: applies_to"),
            ("A,forest,1,npp,,,", "line 3: source is empty"),
            (
                "A,forest,1,npp,,,x\nA,forest,2,npp,,,x",
                "line 4: a second row",
            ),
            (
                "A,forest,1,npp,,,x\nB,forest,2,epsilon_max,,,x",
                "line 4: applies_to epsilon_max differs",
            ),
        ] {
            let text = format!("# c\nzone,class,factor,applies_to,se,n,source\n{body}\n");
            let e = CorrectionTable::parse(&text, Path::new("t.csv"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn ratio_of_sums_not_mean_of_ratios() {
        // Winter-like plots (small model values, large ratios) do not pull the factor: observed 1 and 10
        // against model 0.5 and 20 give sum 11 / 20.5 = 0.536585, where the mean ratio is (2 + 0.5) / 2 = 1.25.
        let p = [
            plot("A", "f", "s1", 1.0, 0.5),
            plot("A", "f", "s2", 10.0, 20.0),
        ];
        let c = calibrate(&p);
        assert!((c.overall.factor - 11.0 / 20.5).abs() < 1e-12);
        // Its standard error: residuals (1 - 0.536585 x 0.5, 10 - 0.536585 x 20) / 10.25 = (0.071386,
        // -0.071386); variance 2 x 0.071386^2 / 1 = 0.0101920; se = sqrt(0.0101920 / 2) = 0.0713865.
        assert!((c.overall.se - 0.0713865).abs() < 1e-6, "{}", c.overall.se);
    }

    #[test]
    fn pooling_by_hand() {
        // Zone A: ratios 1.0, 1.2 (mean 1.1); zone B: ratios 0.8, 1.0 (mean 0.9). All four: mean 1.0,
        // sample variance ((0)^2 + 0.2^2 + 0.2^2 + 0^2) / 3 = 0.08 / 3; se = sqrt(0.08 / 3 / 4) = 0.0816497.
        // Within-zone pooled variance s2 = (0.02 + 0.02) / 2 = 0.02; sampling variance s2 / 2 = 0.01.
        // tau2 = mean((1.1 - 1)^2 - 0.01, (0.9 - 1)^2 - 0.01) = 0 -> full shrinkage: both zones 1.0,
        // se = se(all) = 0.0816497 (up to rounding: 0.1^2 - 0.01 is a few 1e-18 in floating point).
        let p = [
            plot("A", "f", "s1", 1.0, 1.0),
            plot("A", "f", "s2", 1.2, 1.0),
            plot("B", "f", "s3", 0.8, 1.0),
            plot("B", "f", "s4", 1.0, 1.0),
        ];
        let c = calibrate(&p);
        assert!((c.overall.factor - 1.0).abs() < 1e-12);
        assert!((c.overall.se - (0.08f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        let a = c
            .factors
            .iter()
            .find(|f| f.zone.as_deref() == Some("A") && f.class.is_none())
            .unwrap();
        assert!((a.raw - 1.1).abs() < 1e-12 && (a.factor - 1.0).abs() < 1e-9 && a.weight < 1e-9);
        assert!((a.se - c.overall.se).abs() < 1e-9);
        // Zone A: ratios 1.0, 1.2; zone B: 2.0, 2.2. Overall mean 1.6. s2 = 0.02, s2 / n = 0.01;
        // tau2 = mean(0.25 - 0.01, 0.25 - 0.01) = 0.24; w = 0.24 / 0.25 = 0.96;
        // A = 0.96 x 1.1 + 0.04 x 1.6 = 1.12.
        let p = [
            plot("A", "f", "s1", 1.0, 1.0),
            plot("A", "f", "s2", 1.2, 1.0),
            plot("B", "f", "s3", 2.0, 1.0),
            plot("B", "f", "s4", 2.2, 1.0),
        ];
        let c = calibrate(&p);
        let a = c
            .factors
            .iter()
            .find(|f| f.zone.as_deref() == Some("A") && f.class.is_none())
            .unwrap();
        assert!((a.weight - 0.96).abs() < 1e-12, "{}", a.weight);
        assert!((a.factor - 1.12).abs() < 1e-12, "{}", a.factor);
    }

    #[test]
    fn folds_keep_sites_together_and_are_seeded() {
        let p: Vec<CalPlot> = (0..30)
            .map(|i| plot("A", "f", &format!("site{}", i % 7), 1.0, 1.0))
            .collect();
        let f = site_folds(&p, 3, 42);
        for (a, pa) in p.iter().enumerate() {
            for (b, pb) in p.iter().enumerate() {
                if pa.site == pb.site {
                    assert_eq!(f[a], f[b]);
                }
            }
        }
        assert_eq!(f, site_folds(&p, 3, 42));
        assert!((0..3).all(|k| f.contains(&k)));
    }
}
