//! Random forest and single decision tree classifiers built from linfa-trees CART trees, reproducible across
//! processes and thread counts.
//!
//! linfa-trees 0.8 keeps class weights in a `std::collections::HashMap`, whose iteration order is random per
//! process. With three or more classes the Gini sums run in that order (so mathematically tied splits are
//! decided by rounding that changes from run to run) and a leaf whose classes tie takes whichever comes last.
//! carbonmap therefore trains *binary* trees, one-vs-rest per class: with two classes the sums have two terms
//! (floating-point addition is commutative, so their order cannot matter), and the negative class weighs
//! `1 + NEGATIVE_WEIGHT_OFFSET` so that no leaf can tie. Each tree is converted into plain nodes whose leaves
//! hold the fraction of the tree's training samples of the class; a pixel's class is the class with the
//! highest mean fraction over its trees (ties go to the first class), and that mean is reported as the
//! classifier's confidence.
//!
//! A forest bags: tree `t` of every class is trained on the same bootstrap sample and the same random feature
//! subset, both drawn from a ChaCha8 stream `t` of the seed, so the result does not depend on the order in
//! which rayon runs the trees.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use ndarray::{Array1, Array2};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The negative class's sample weight is 1 + this (2^-10): a leaf's weighted class totals a (positives) and
/// b (1 + 2^-10) (negatives) are then never equal for b < 1024, so linfa-trees never has to break a tie.
const NEGATIVE_WEIGHT_OFFSET: f32 = 1.0 / 1024.0;

/// How many features each tree sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFeatures {
    /// The square root of the number of features, rounded up (Breiman 2001's usual choice).
    Sqrt,
    All,
    Count(usize),
}

impl MaxFeatures {
    pub fn parse(s: &str) -> Result<MaxFeatures> {
        match s.trim() {
            "sqrt" => Ok(MaxFeatures::Sqrt),
            "all" => Ok(MaxFeatures::All),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(MaxFeatures::Count)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--max-features {s}: expected sqrt, all or a positive number"
                    ))
                }),
        }
    }

    fn resolve(self, p: usize) -> usize {
        match self {
            MaxFeatures::Sqrt => (p as f64).sqrt().ceil() as usize,
            MaxFeatures::All => p,
            MaxFeatures::Count(n) => n,
        }
        .clamp(1, p)
    }
}

/// Hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    /// Trees per class; a single decision tree (per class) is `trees = 1, bootstrap = false, max_features = All`.
    pub trees: usize,
    pub bootstrap: bool,
    pub max_features: MaxFeatures,
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub seed: u64,
}

impl ForestParams {
    /// A single decision tree (one binary tree per class on every sample and feature).
    pub fn single_tree(
        max_depth: Option<usize>,
        min_samples_split: usize,
        min_samples_leaf: usize,
        seed: u64,
    ) -> ForestParams {
        ForestParams {
            trees: 1,
            bootstrap: false,
            max_features: MaxFeatures::All,
            max_depth,
            min_samples_split,
            min_samples_leaf,
            seed,
        }
    }
}

/// A tree node: a split on `feature` (x < threshold goes left), or a leaf (`feature` = -1) with the fraction
/// `p` of its training samples that belong to the tree's class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: i32,
    pub threshold: f64,
    pub left: u32,
    pub right: u32,
    pub p: f32,
}

/// A binary (one class against the rest) tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryTree {
    pub class: usize,
    pub nodes: Vec<Node>,
}

impl BinaryTree {
    /// Probability of the tree's class for one feature vector.
    #[inline]
    pub fn prob(&self, x: &[f32]) -> f32 {
        self.nodes[self.leaf_of(x)].p
    }

    #[inline]
    fn leaf_of(&self, x: &[f32]) -> usize {
        let mut i = 0usize;
        while self.nodes[i].feature >= 0 {
            let n = &self.nodes[i];
            i = if (x[n.feature as usize] as f64) < n.threshold {
                n.left as usize
            } else {
                n.right as usize
            };
        }
        i
    }
}

/// A trained classifier: `trees_per_class` binary trees for each of `n_classes` classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub n_features: usize,
    pub n_classes: usize,
    pub params: ForestParams,
    pub trees: Vec<BinaryTree>,
}

/// Training samples: `x` row-major (`n` rows of `p` finite features), `y` class indices `0..n_classes`.
pub struct Samples<'a> {
    pub x: &'a [f32],
    pub p: usize,
    pub y: &'a [usize],
    pub n_classes: usize,
}

impl Forest {
    pub fn train(s: &Samples, params: &ForestParams) -> Result<Forest> {
        Self::train_with_progress(s, params, &|| {})
    }

    /// `train`, calling `tree_done` once per fitted tree (one-vs-rest: classes x trees calls, from the worker
    /// threads), so a progress bar can count trees.
    pub fn train_with_progress(
        s: &Samples,
        params: &ForestParams,
        tree_done: &(dyn Fn() + Sync),
    ) -> Result<Forest> {
        let n = s.y.len();
        if n == 0 || s.p == 0 || s.x.len() != n * s.p {
            return Err(Error::Usage("no training samples or no features".into()));
        }
        if params.trees == 0 {
            return Err(Error::Usage("--trees must be at least 1".into()));
        }
        let m = params.max_features.resolve(s.p);
        // Bags: tree t's rows and features from ChaCha8 stream t.
        let bags: Vec<(Vec<usize>, Vec<usize>)> = (0..params.trees)
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
                rng.set_stream(t as u64);
                let rows: Vec<usize> = if params.bootstrap {
                    (0..n).map(|_| rng.gen_range(0..n)).collect()
                } else {
                    (0..n).collect()
                };
                let mut feats = if m == s.p {
                    (0..s.p).collect()
                } else {
                    sample(&mut rng, s.p, m).into_vec()
                };
                feats.sort_unstable();
                (rows, feats)
            })
            .collect();
        let jobs: Vec<(usize, usize)> = (0..s.n_classes)
            .flat_map(|k| (0..params.trees).map(move |t| (k, t)))
            .collect();
        let trees = jobs
            .par_iter()
            .map(|&(k, t)| {
                let tree = fit_binary(s, k, &bags[t].0, &bags[t].1, params);
                tree_done();
                tree
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Forest {
            n_features: s.p,
            n_classes: s.n_classes,
            params: params.clone(),
            trees,
        })
    }

    /// Classify `x` (row-major, `n_features` per row): the class index with the highest mean probability
    /// over its trees (ties go to the lower index) into `class`, that probability into `confidence`. Rows
    /// with a non-finite feature get `usize::MAX` and NaN. Trees are walked one at a time over all rows, so
    /// a tree's nodes stay in cache; each row's sums still run in tree order, so results do not depend on
    /// how rows are batched.
    pub fn predict_rows(&self, x: &[f32], class: &mut [usize], confidence: &mut [f32]) {
        let (p, k) = (self.n_features, self.n_classes);
        let n = class.len();
        let mut probs = vec![0f32; n * k];
        let valid: Vec<bool> = x
            .chunks(p)
            .map(|r| r.iter().all(|v| v.is_finite()))
            .collect();
        for t in &self.trees {
            for i in 0..n {
                if valid[i] {
                    probs[i * k + t.class] += t.prob(&x[i * p..(i + 1) * p]);
                }
            }
        }
        let per_class = (self.trees.len() / k.max(1)) as f32;
        for i in 0..n {
            if !valid[i] {
                class[i] = usize::MAX;
                confidence[i] = f32::NAN;
                continue;
            }
            let pr = &probs[i * k..(i + 1) * k];
            let mut best = 0;
            for c in 1..k {
                if pr[c] > pr[best] {
                    best = c;
                }
            }
            class[i] = best;
            confidence[i] = pr[best] / per_class;
        }
    }

    /// Check the structure after loading (indices in range, leaves reachable), so that a damaged file is an
    /// error and never a panic or a wrong map.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.n_classes == 0 || self.trees.is_empty() || self.trees.len() % self.n_classes != 0 {
            return Err("tree count is not a multiple of the class count".into());
        }
        for (ti, t) in self.trees.iter().enumerate() {
            if t.class >= self.n_classes || t.nodes.is_empty() {
                return Err(format!("tree {ti}: bad class or no nodes"));
            }
            for (i, n) in t.nodes.iter().enumerate() {
                let bad_child = |c: u32| c as usize <= i || c as usize >= t.nodes.len();
                if n.feature >= 0
                    && (n.feature as usize >= self.n_features
                        || bad_child(n.left)
                        || bad_child(n.right)
                        || !n.threshold.is_finite())
                {
                    return Err(format!("tree {ti} node {i}: bad split"));
                }
                if n.feature < 0 && !(0.0..=1.0).contains(&n.p) {
                    return Err(format!("tree {ti} node {i}: bad leaf probability"));
                }
            }
        }
        Ok(())
    }
}

/// Fit one binary tree (class `k` against the rest) on `rows` (with repeats) and `feats` (sorted).
fn fit_binary(
    s: &Samples,
    k: usize,
    rows: &[usize],
    feats: &[usize],
    params: &ForestParams,
) -> Result<BinaryTree> {
    let mut records = Array2::<f64>::zeros((rows.len(), feats.len()));
    for (i, &r) in rows.iter().enumerate() {
        for (j, &f) in feats.iter().enumerate() {
            records[[i, j]] = s.x[r * s.p + f] as f64;
        }
    }
    let targets: Array1<usize> = rows.iter().map(|&r| (s.y[r] == k) as usize).collect();
    let weights: Array1<f32> = targets
        .iter()
        .map(|&t| {
            if t == 1 {
                1.0
            } else {
                1.0 + NEGATIVE_WEIGHT_OFFSET
            }
        })
        .collect();
    let data = Dataset::new(records, targets).with_weights(weights);
    let tree = DecisionTree::params()
        .split_quality(SplitQuality::Gini)
        .max_depth(params.max_depth)
        .min_weight_split(params.min_samples_split as f32)
        .min_weight_leaf(params.min_samples_leaf as f32)
        .fit(&data)
        .map_err(|e| Error::Processing(format!("decision tree training failed: {e}")))?;
    let mut nodes = Vec::new();
    flatten(tree.root_node(), feats, &mut nodes);
    let mut t = BinaryTree { class: k, nodes };
    // Leaf probabilities: the fraction of the tree's own training rows of class k in each leaf.
    let mut pos = vec![0u32; t.nodes.len()];
    let mut tot = vec![0u32; t.nodes.len()];
    let mut x = vec![0f32; s.p];
    for &r in rows {
        x.copy_from_slice(&s.x[r * s.p..(r + 1) * s.p]);
        let leaf = t.leaf_of(&x);
        tot[leaf] += 1;
        pos[leaf] += (s.y[r] == k) as u32;
    }
    for (i, n) in t.nodes.iter_mut().enumerate() {
        if n.feature < 0 && tot[i] > 0 {
            n.p = pos[i] as f32 / tot[i] as f32;
        }
    }
    Ok(t)
}

/// Depth-first copy of a linfa tree; children always come after their parent. A leaf starts with linfa's
/// prediction (0 or 1) as its probability, replaced by the sample fraction when training rows reach it.
fn flatten(node: &TreeNode<f64, usize>, feats: &[usize], out: &mut Vec<Node>) -> u32 {
    let me = out.len();
    out.push(Node {
        feature: -1,
        threshold: 0.0,
        left: 0,
        right: 0,
        p: node.prediction().unwrap_or(0) as f32,
    });
    if !node.is_leaf() {
        let (f, thr, _) = node.split();
        let ch = node.children();
        if let (Some(l), Some(r)) = (ch[0].as_deref(), ch[1].as_deref()) {
            let li = flatten(l, feats, out);
            let ri = flatten(r, feats, out);
            out[me] = Node {
                feature: feats[f] as i32,
                threshold: thr,
                left: li,
                right: ri,
                p: 0.0,
            };
        }
    }
    me as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three classes on a 2-D plane: class = which third of x the point is in, y is noise.
    fn thirds(n: usize) -> (Vec<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a: f32 = rng.gen_range(0.0..3.0);
            let b: f32 = rng.gen_range(0.0..1.0);
            x.extend([a, b]);
            y.push(a as usize);
        }
        (x, y)
    }

    #[test]
    fn separable_classes_are_learned_exactly() {
        let (x, y) = thirds(300);
        let s = Samples {
            x: &x,
            p: 2,
            y: &y,
            n_classes: 3,
        };
        let f = Forest::train(&s, &ForestParams::single_tree(None, 2, 1, 1)).unwrap();
        f.validate().unwrap();
        // Points well inside each third, whatever the noise feature.
        for (a, want) in [(0.2f32, 0), (1.5, 1), (2.8, 2)] {
            for b in [0.05f32, 0.5, 0.95] {
                let (mut c, mut p) = ([0usize], [0f32]);
                f.predict_rows(&[a, b], &mut c, &mut p);
                assert_eq!((c[0], p[0]), (want, 1.0));
            }
        }
    }

    #[test]
    fn same_seed_same_forest_other_seed_other_bags() {
        let (x, y) = thirds(200);
        let s = Samples {
            x: &x,
            p: 2,
            y: &y,
            n_classes: 3,
        };
        let p = ForestParams {
            trees: 5,
            bootstrap: true,
            max_features: MaxFeatures::Sqrt,
            max_depth: Some(6),
            min_samples_split: 2,
            min_samples_leaf: 1,
            seed: 3,
        };
        let a = Forest::train(&s, &p).unwrap();
        let b = Forest::train(&s, &p).unwrap();
        assert_eq!(a, b);
        let c = Forest::train(&s, &ForestParams { seed: 4, ..p }).unwrap();
        assert_ne!(a, c);
        assert_eq!(a.trees.len(), 15);
    }

    #[test]
    fn damaged_models_are_refused() {
        let (x, y) = thirds(60);
        let s = Samples {
            x: &x,
            p: 2,
            y: &y,
            n_classes: 3,
        };
        let f = Forest::train(&s, &ForestParams::single_tree(Some(3), 2, 1, 1)).unwrap();
        let mut g = f.clone();
        g.trees[0].nodes[0].left = 0;
        assert!(g.validate().is_err());
        let mut g = f.clone();
        g.trees.pop();
        assert!(g.validate().is_err());
        let mut g = f;
        g.trees[1].nodes[0].feature = 9;
        assert!(g.validate().is_err());
    }
}
