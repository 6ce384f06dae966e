//! Agreement statistics between modelled and observed values.

use serde::Serialize;

/// Agreement of `model` with `observed` over the pairs where both are finite.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Metrics {
    pub n: usize,
    pub mean_observed: f64,
    pub mean_model: f64,
    /// mean(model - observed).
    pub bias: f64,
    pub rmse: f64,
    pub mae: f64,
    /// Squared Pearson correlation of model and observed.
    pub r2: f64,
    /// Nash-Sutcliffe efficiency, 1 - SS(model - observed) / SS(observed - mean): 1 is perfect, 0 is no
    /// better than the observed mean.
    pub nse: f64,
    /// Ordinary least squares of model on observed: model = intercept + slope x observed.
    pub slope: f64,
    pub intercept: f64,
}

impl Metrics {
    pub fn compute(observed: &[f64], model: &[f64]) -> Metrics {
        let pairs: Vec<(f64, f64)> = observed
            .iter()
            .zip(model)
            .filter(|(o, m)| o.is_finite() && m.is_finite())
            .map(|(o, m)| (*o, *m))
            .collect();
        let n = pairs.len();
        let nf = n as f64;
        let mo = pairs.iter().map(|p| p.0).sum::<f64>() / nf;
        let mm = pairs.iter().map(|p| p.1).sum::<f64>() / nf;
        let (mut sxx, mut syy, mut sxy, mut sse, mut sae) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(o, m) in &pairs {
            sxx += (o - mo) * (o - mo);
            syy += (m - mm) * (m - mm);
            sxy += (o - mo) * (m - mm);
            sse += (m - o) * (m - o);
            sae += (m - o).abs();
        }
        let slope = sxy / sxx;
        Metrics {
            n,
            mean_observed: mo,
            mean_model: mm,
            bias: mm - mo,
            rmse: (sse / nf).sqrt(),
            mae: sae / nf,
            r2: sxy * sxy / (sxx * syy),
            nse: 1.0 - sse / sxx,
            slope,
            intercept: mm - slope * mo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // observed 1 2 3 4, model 2 2 4 4 (plus a NaN pair that is skipped).
        // means 2.5 and 3; bias 0.5; errors 1 0 1 0: RMSE sqrt(2/4) = 0.7071068, MAE 0.5.
        // Sxx = 5, Syy = 4, Sxy = 4: r2 = 16 / 20 = 0.8; slope 0.8, intercept 3 - 0.8 x 2.5 = 1;
        // NSE = 1 - 2 / 5 = 0.6.
        let m = Metrics::compute(&[1.0, 2.0, 3.0, 4.0, f64::NAN], &[2.0, 2.0, 4.0, 4.0, 1.0]);
        assert_eq!(m.n, 4);
        assert!((m.bias - 0.5).abs() < 1e-12);
        assert!((m.rmse - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((m.mae - 0.5).abs() < 1e-12);
        assert!((m.r2 - 0.8).abs() < 1e-12);
        assert!((m.slope - 0.8).abs() < 1e-12 && (m.intercept - 1.0).abs() < 1e-12);
        assert!((m.nse - 0.6).abs() < 1e-12);
    }
}
