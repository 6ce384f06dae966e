//! `carbonmap calibrate`: fit correction factors (sum observed / sum modelled) per zone x class, zone and class from
//! field plots, with partial pooling toward the broader level, write them as a correction table that
//! `carbonmap npp --corrections` applies, and cross-validate with folds grouped by site.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::correction::{self, CalPlot, Target};
use crate::error::{Error, Result};
use crate::io;
use crate::pipeline::validate::{collect, metrics_csv, GroupMetrics, SampleJob};
use crate::progress::Progress;

/// What `carbonmap calibrate` does.
#[derive(Debug, Clone)]
pub struct CalibrateJob {
    pub inputs: SampleJob,
    pub target: Target,
    /// Cross-validation folds (0 = none).
    pub folds: usize,
    pub seed: u64,
    /// The correction table to write.
    pub table: PathBuf,
    /// Folder for the fit report and cross-validation tables.
    pub out_dir: PathBuf,
}

/// Run the calibration; returns the printable report.
pub fn run_calibrate(job: &CalibrateJob, progress: &dyn Progress) -> Result<String> {
    let s = collect(&job.inputs, progress)?;
    let plots: Vec<CalPlot> = s
        .ok()
        .map(|x| CalPlot {
            zone: x.zone.last().cloned(),
            class: x.class.clone(),
            // Without a site column every plot is its own site.
            site: x.plot.site.clone().unwrap_or_else(|| x.plot.id.clone()),
            observed: x.observed,
            model: x.model,
        })
        .collect();
    let fit = correction::calibrate(&plots);
    if fit.overall.n < 2 {
        return Err(Error::input(
            &s.plots_path,
            format!(
                "{} plot(s) with a positive model value: a calibration needs at least 2",
                fit.overall.n
            ),
        ));
    }
    if fit.factors.is_empty() {
        return Err(Error::input(
            &s.plots_path,
            "no group to fit a correction factor for: give the plots' class (a class field, or --landcover with \
             --legend) and/or their zones (--zones or --plot-zone-field); a table without rows would change nothing",
        ));
    }
    let cv = if job.folds > 0 {
        Some(correction::cross_validate(
            &plots, job.folds, job.seed, job.target,
        )?)
    } else {
        None
    };
    crate::commit::prepare_folder(&job.out_dir)?;
    let source = format!(
        "carbonmap {} calibrate: {} plots of {} (ratio of sums observed / model, partial pooling)",
        crate::VERSION,
        fit.overall.n,
        s.plots_path.display()
    );
    let table = fit.table(&job.table, job.target, &source);
    let comments = vec![
        format!("Correction factors fitted by carbonmap {} calibrate", crate::VERSION),
        format!("plots: {}; model unit {}", s.plots_path.display(), s.unit.text),
        format!(
            "factor = sum(observed) / sum(model) per group, shrunk toward the broader level (zone x class -> zone -> all; class -> all); se = its standard error; n = plots; all plots: {:.6} (se {:.6}, n {})",
            fit.overall.factor, fit.overall.se, fit.overall.n
        ),
        format!("applies_to {}: fallback order zone x class, zone, class, none", job.target.name()),
    ];
    io::write_table(&job.table, table.to_csv().as_bytes(), &comments)?;

    let mut report = factors_report(&fit, &job.table);
    let unit = s.unit.text.clone();
    if let Some(cv) = &cv {
        cross_validation_outputs(cv, &unit, &job.out_dir, &mut report)?;
    }
    let json = serde_json::json!({
        "carbonmap_version": crate::VERSION,
        "plots": s.plots_path,
        "unit": unit,
        "applies_to": job.target,
        "table": job.table,
        "method": "per group ratio of sums observed / model (ratio estimator; se from residuals on the ratio scale, Cochran 1977 eq. 6.9); group ratios shrunk toward the broader level with weight tau2 / (tau2 + s2 / n) (empirical-Bayes normal hierarchical model, tau2 by the method of moments)",
        "calibration": fit,
        "cross_validation": cv.as_ref().map(|c| serde_json::json!({
            "folds": c.folds,
            "sites": c.sites,
            "seed": job.seed,
            "metrics": c.metrics.iter().map(|(scope, group, b, a)| serde_json::json!({
                "scope": scope, "group": group, "before": b, "after": a
            })).collect::<Vec<_>>(),
        })),
        "warnings": s.warnings,
    });
    io::write_atomic(
        &job.out_dir.join("calibration.json"),
        serde_json::to_string_pretty(&json)
            .expect("serialisable")
            .as_bytes(),
    )?;
    Ok(report)
}

/// The fitted factors as a printable table.
fn factors_report(fit: &correction::Calibration, table: &std::path::Path) -> String {
    let mut report = format!(
        "calibration from {} plots ({} skipped: model value not positive); all plots: factor {:.4} +- {:.4}\n",
        fit.overall.n, fit.skipped_nonpositive_model, fit.overall.factor, fit.overall.se
    );
    let _ = writeln!(
        report,
        "{:<24} {:<28} {:>5} {:>9} {:>9} {:>9} {:>7}",
        "zone", "class", "n", "raw", "factor", "se", "weight"
    );
    for f in &fit.factors {
        let _ = writeln!(
            report,
            "{:<24} {:<28} {:>5} {:>9.4} {:>9.4} {:>9.4} {:>7.3}",
            f.zone.as_deref().unwrap_or("*"),
            f.class.as_deref().unwrap_or("*"),
            f.n,
            f.raw,
            f.factor,
            f.se,
            f.weight
        );
    }
    let _ = writeln!(report, "wrote {}", table.display());
    report
}

/// `calibration_cv.csv` (held-out metrics before and after the correction) and its printable table.
fn cross_validation_outputs(
    cv: &correction::CrossValidation,
    unit: &str,
    out_dir: &std::path::Path,
    report: &mut String,
) -> Result<()> {
    let rows = |after: bool| -> Vec<GroupMetrics> {
        cv.metrics
            .iter()
            .map(|(scope, group, b, a)| GroupMetrics {
                scope: scope.clone(),
                group: group.clone(),
                metrics: if after { *a } else { *b },
            })
            .collect()
    };
    let (before, after) = (rows(false), rows(true));
    let csv = metrics_csv(&[(Some("before"), &before), (Some("after"), &after)], unit);
    io::write_atomic(&out_dir.join("calibration_cv.csv"), csv.as_bytes())?;
    let _ = writeln!(
        report,
        "\ngrouped {}-fold cross-validation ({} sites; a site's plots never in both training and testing), held-out plots ({unit}):",
        cv.folds, cv.sites
    );
    let _ = writeln!(
        report,
        "{:<8} {:<28} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "scope", "group", "n", "RMSE", "RMSE corr", "bias", "bias corr", "R2", "R2 corr"
    );
    for (scope, group, b, a) in &cv.metrics {
        let _ = writeln!(
            report,
            "{:<8} {:<28} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>8.3} {:>8.3}",
            scope, group, b.n, b.rmse, a.rmse, b.bias, a.bias, b.r2, a.r2
        );
    }
    Ok(())
}
