//! Accuracy assessment of a classification: confusion matrix, overall accuracy, Cohen's kappa and per-class
//! precision (user's accuracy), recall (producer's accuracy) and F1; and spatial blocking, so that held-out
//! samples never share a block with training samples (neighbouring pixels are not independent).

use serde::Serialize;

/// Square confusion matrix: `counts[predicted][reference]`, classes in `labels` order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

/// Per-class figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub label: String,
    /// Reference samples of the class.
    pub support: u64,
    /// User's accuracy: correct / predicted as the class (NaN when nothing was predicted as it).
    pub precision: f64,
    /// Producer's accuracy: correct / reference samples of the class (NaN without reference samples).
    pub recall: f64,
    pub f1: f64,
}

/// The whole assessment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub n: u64,
    pub overall_accuracy: f64,
    pub kappa: f64,
    pub classes: Vec<ClassAccuracy>,
    pub confusion: ConfusionMatrix,
}

impl ConfusionMatrix {
    /// Build from (predicted, reference) class indices into `labels`.
    pub fn from_pairs(
        labels: Vec<String>,
        pairs: impl IntoIterator<Item = (usize, usize)>,
    ) -> Self {
        let k = labels.len();
        let mut counts = vec![vec![0u64; k]; k];
        for (p, r) in pairs {
            counts[p][r] += 1;
        }
        ConfusionMatrix { labels, counts }
    }

    /// Overall accuracy, Cohen's kappa (Cohen 1960; Congalton 1991) and per-class figures.
    pub fn assess(&self) -> Assessment {
        let k = self.labels.len();
        let n: u64 = self.counts.iter().flatten().sum();
        let diag: u64 = (0..k).map(|i| self.counts[i][i]).sum();
        let row: Vec<u64> = (0..k).map(|i| self.counts[i].iter().sum()).collect();
        let col: Vec<u64> = (0..k)
            .map(|j| (0..k).map(|i| self.counts[i][j]).sum())
            .collect();
        let nf = n as f64;
        let po = diag as f64 / nf;
        let pe = (0..k).map(|i| row[i] as f64 * col[i] as f64).sum::<f64>() / (nf * nf);
        let classes = (0..k)
            .map(|i| {
                let c = self.counts[i][i] as f64;
                let precision = c / row[i] as f64;
                let recall = c / col[i] as f64;
                ClassAccuracy {
                    label: self.labels[i].clone(),
                    support: col[i],
                    precision,
                    recall,
                    f1: 2.0 * precision * recall / (precision + recall),
                }
            })
            .collect();
        Assessment {
            n,
            overall_accuracy: po,
            kappa: (po - pe) / (1.0 - pe),
            classes,
            confusion: self.clone(),
        }
    }
}

impl Assessment {
    /// Per-class table as CSV.
    pub fn classes_csv(&self) -> String {
        let mut s = String::from(
            "class,support_samples,precision_users_accuracy,recall_producers_accuracy,f1\n",
        );
        for c in &self.classes {
            s.push_str(&format!(
                "\"{}\",{},{:.4},{:.4},{:.4}\n",
                c.label, c.support, c.precision, c.recall, c.f1
            ));
        }
        s
    }

    /// Confusion matrix as CSV (rows predicted, columns reference).
    pub fn confusion_csv(&self) -> String {
        let mut s = String::from("predicted\\reference");
        for l in &self.confusion.labels {
            s.push_str(&format!(",\"{l}\""));
        }
        s.push('\n');
        for (l, row) in self.confusion.labels.iter().zip(&self.confusion.counts) {
            s.push_str(&format!("\"{l}\""));
            for c in row {
                s.push_str(&format!(",{c}"));
            }
            s.push('\n');
        }
        s
    }

    /// A plain-text report for the terminal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "samples {}  overall accuracy {:.4}  kappa {:.4}\n",
            self.n, self.overall_accuracy, self.kappa
        );
        s.push_str(&format!(
            "{:<28} {:>8} {:>9} {:>7} {:>7}\n",
            "class", "support", "precision", "recall", "F1"
        ));
        for c in &self.classes {
            s.push_str(&format!(
                "{:<28} {:>8} {:>9.4} {:>7.4} {:>7.4}\n",
                c.label, c.support, c.precision, c.recall, c.f1
            ));
        }
        s
    }
}

/// Fold (0..n_folds) of the square block of `block_px` pixels holding pixel (col, row). Blocks, not pixels,
/// are assigned to folds by a seeded hash, so every pixel of a block lands in the same fold.
pub fn block_fold(col: usize, row: usize, block_px: usize, n_folds: usize, seed: u64) -> usize {
    let (bx, by) = (
        (col / block_px.max(1)) as u64,
        (row / block_px.max(1)) as u64,
    );
    // SplitMix64 finaliser over the block coordinates and the seed.
    let mut z =
        seed ^ bx.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ by.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n_folds.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congalton_1991_error_matrix() {
        // Congalton, R.G. (1991). A review of assessing the accuracy of classifications of remotely sensed
        // data. Remote Sensing of Environment 37, 35-46, Table 1 (rows map D, C, BA, SB; columns reference).
        // n = 434, diagonal 321: OA = 321 / 434 = 0.7396; chance agreement
        // pe = (115*75 + 100*103 + 115*115 + 104*141) / 434^2 = 0.24854; kappa = (0.7396 - 0.24854) / (1 - 0.24854)
        // = 0.6535 (the paper: KHAT = 0.65). User's accuracy of D = 65 / 115 = 0.5652, producer's = 65 / 75 = 0.8667.
        let m = ConfusionMatrix {
            labels: ["D", "C", "BA", "SB"].map(String::from).to_vec(),
            counts: vec![
                vec![65, 4, 22, 24],
                vec![6, 81, 5, 8],
                vec![0, 11, 85, 19],
                vec![4, 7, 3, 90],
            ],
        };
        let a = m.assess();
        assert_eq!(a.n, 434);
        assert!((a.overall_accuracy - 321.0 / 434.0).abs() < 1e-12);
        assert!((a.kappa - 0.653516).abs() < 1e-6);
        assert!((a.classes[0].precision - 65.0 / 115.0).abs() < 1e-12);
        assert!((a.classes[0].recall - 65.0 / 75.0).abs() < 1e-12);
        let (p, r) = (65.0 / 115.0, 65.0 / 75.0);
        assert!((a.classes[0].f1 - 2.0 * p * r / (p + r)).abs() < 1e-12);
        assert_eq!(a.classes[0].support, 75);
    }

    #[test]
    fn blocks_keep_their_pixels_together_and_spread_over_folds() {
        let f = |c, r| block_fold(c, r, 16, 5, 42);
        assert_eq!(f(0, 0), f(15, 15));
        assert_eq!(f(16, 0), f(31, 5));
        let mut seen = [0usize; 5];
        for by in 0..40 {
            for bx in 0..40 {
                seen[f(bx * 16, by * 16)] += 1;
            }
        }
        // 1600 blocks over 5 folds: each fold gets a fair share (binomial sd ~ 16).
        assert!(seen.iter().all(|&n| (250..=390).contains(&n)), "{seen:?}");
        assert_ne!(block_fold(0, 0, 16, 1000, 1), block_fold(0, 0, 16, 1000, 2));
    }
}
