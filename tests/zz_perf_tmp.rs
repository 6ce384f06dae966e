use carbonmap::landcover::forest::*;
use rand::{Rng, SeedableRng};
#[test]
fn perf() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (n, p, k) = (5000usize, 12usize, 5usize);
    let mut x = vec![0f32; n * p];
    let mut y = vec![0usize; n];
    for i in 0..n { y[i] = rng.gen_range(0..k); for j in 0..p { x[i*p+j] = y[i] as f32 * 0.3 * (j as f32 % 3.0) + rng.gen_range(0.0..1.0); } }
    let s = Samples { x: &x, p, y: &y, n_classes: k };
    let t = std::time::Instant::now();
    let f = Forest::train(&s, &ForestParams { trees: 50, bootstrap: true, max_features: MaxFeatures::Sqrt, max_depth: None, min_samples_split: 2, min_samples_leaf: 1, seed: 1 }).unwrap();
    let nodes: usize = f.trees.iter().map(|t| t.nodes.len()).sum();
    eprintln!("train {:?} nodes {}", t.elapsed(), nodes);
}
