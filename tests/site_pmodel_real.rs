//! `carbonmap site --model pmodel` and MOD17's soil-water scalar at the FR-Pue flux tower (CARBONMAP_REAL_DATA):
//! the CLI reproduces pyrealm 2.0.0's SPLASH soil water and stressed GPP (tests/data/splash_frpue.csv, made by
//! scripts/make-pmodel-vectors.py) from the site CSV it writes, and the calibration closes: leave-one-year-out
//! over 2007-2010 reaches daily R2 >= 0.70 with every held-out year's annual GPP within +-15 %.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::carbonmap;

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut r = csv::Reader::from_reader(body.as_bytes());
    r.deserialize().map(|x| x.unwrap()).collect()
}

fn num(row: &BTreeMap<String, String>, k: &str) -> f64 {
    row[k].parse().unwrap()
}

fn site(root: &Path, dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let drivers = common::fr_pue_drivers(root, dir);
    let out = dir.join(format!("out{}", extra.len()));
    carbonmap()
        .args(["site", "--model", "pmodel", "--years", "2007-2010"])
        .args(["--observed-unit", "g C m-2 d-1", "--drivers"])
        .arg(&drivers)
        .arg("--observed")
        .arg(root.join("fluxtower-fr-pue/FR-Pue_daily_gpp_observed.csv"))
        .args(extra)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    out
}

#[test]
fn site_pmodel_reproduces_pyrealm_with_pyrealm_options() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // pyrealm's options: sunshine fraction 1 - ccov / 100 (the vectors' choice), the site's 432.375 mm bucket.
    let drivers = common::fr_pue_drivers(&root, tmp.path());
    let text = std::fs::read_to_string(&drivers).unwrap().replace(
        "[station.columns]\n",
        "[station.columns]\ncloud_cover = { column = \"ccov\", unit = \"%\" }\n",
    );
    std::fs::write(&drivers, text).unwrap();
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "site",
            "--model",
            "pmodel",
            "--years",
            "2007-2012",
            "--whc",
            "432.375",
            "--drivers",
        ])
        .arg(&drivers)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let got = csv_rows(&out.join("site_daily.csv"));
    let want = csv_rows(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/splash_frpue.csv"));
    assert_eq!(got.len(), want.len());
    let close = |what: &str, g: f64, w: f64| {
        let ok = if w.abs() < 1e-12 {
            g.abs() < 1e-12
        } else {
            ((g - w) / w).abs() <= 1e-6
        };
        assert!(ok, "{what}: carbonmap {g} vs pyrealm {w}");
    };
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g["date"], w["date"]);
        // carbonmap writes the bucket at the start of each day; pyrealm's wn is at its end.
        if i + 1 < got.len() {
            close(
                "soil water",
                num(&got[i + 1], "soil_water_start_mm"),
                num(w, "wn_mm"),
            );
        }
        close("aet", num(g, "aet_mm"), num(w, "aet_mm"));
        close("stress", num(g, "soil_moisture_stress"), num(w, "stress"));
        close(
            "gpp unstressed",
            num(g, "gpp_unstressed_gC_m2_d"),
            num(w, "gpp_unstressed_gc_m2_d"),
        );
        close("gpp", num(g, "gpp_model_gC_m2_d"), num(w, "gpp_gc_m2_d"));
    }
}

#[test]
fn calibration_closes_leave_one_year_out_and_mod17_gains_from_soil_water() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = site(&root, tmp.path(), &["--fit"]);
    let cv = csv_rows(&out.join("site_cross_validation.csv"));
    let pooled = cv.iter().find(|r| r["held_out_year"] == "all").unwrap();
    let r2 = num(pooled, "r2");
    assert!(r2 >= 0.70, "pooled held-out daily R2 {r2}");
    let years: Vec<_> = cv.iter().filter(|r| r["held_out_year"] != "all").collect();
    assert_eq!(years.len(), 4);
    for r in &years {
        let pct = num(r, "annual_bias_percent");
        assert!(
            pct.abs() <= 15.0,
            "{}: annual bias {pct} %",
            r["held_out_year"]
        );
        // The percentage is the held-out sums' ratio.
        let (m, o) = (num(r, "gpp_model_gC_m2"), num(r, "gpp_observed_gC_m2"));
        assert!((100.0 * (m - o) / o - pct).abs() < 1e-9);
    }
    // The fitted set is a parameter set --params reads back, and it gives the all-years fit again.
    let fitted = out.join("pmodel_fitted.toml");
    let again = site(
        &root,
        tmp.path(),
        &["--params", fitted.to_str().unwrap(), "--soil-water", "on"],
    );
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.join("site_comparison.json")).unwrap())
            .unwrap();
    let fit_cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("site_comparison.json")).unwrap())
            .unwrap();
    assert_eq!(cmp["daily"], fit_cmp["daily"]);
    // Ratio of sums: the fitted model's total over the observed days equals the observed total.
    let b = cmp["daily"]["bias"].as_f64().unwrap();
    assert!(b.abs() < 1e-9, "bias {b}");

    // MOD17 (EBF, C5.1) with the soil-water scalar improves on its daily R2 of 0.585 without it.
    let mod17 = |sw: &str, dir: &str| {
        let o = tmp.path().join(dir);
        carbonmap()
            .args([
                "site",
                "--model",
                "mod17",
                "--pft",
                "2",
                "--years",
                "2007-2010",
                "--soil-water",
                sw,
            ])
            .args(["--observed-unit", "g C m-2 d-1", "--drivers"])
            .arg(common::fr_pue_drivers(&root, tmp.path()))
            .arg("--observed")
            .arg(root.join("fluxtower-fr-pue/FR-Pue_daily_gpp_observed.csv"))
            .arg("-o")
            .arg(&o)
            .assert()
            .success();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(o.join("site_comparison.json")).unwrap())
                .unwrap();
        v["daily"]["r2"].as_f64().unwrap()
    };
    let (off, on) = (mod17("off", "m_off"), mod17("on", "m_on"));
    assert!((off - 0.585).abs() < 0.001, "MOD17 alone {off}");
    assert!(on > off + 0.1, "MOD17 with soil water {on} vs {off}");
}

/// The calibration loop at a tower: `calibrate` on site's own daily series with the tower's vegetation type
/// fits sum(observed) / sum(model) (not a mean of daily ratios, which winter days dominate), and `site
/// --corrections` applies it: the bias goes to zero and the RMSE drops. A table with no row for the site is
/// refused.
#[test]
fn calibrate_then_site_corrections_closes_at_fr_pue() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let drivers = common::fr_pue_drivers(&root, tmp.path());
    let observed = root.join("fluxtower-fr-pue/FR-Pue_daily_gpp_observed.csv");
    let run_site = |out: &str, extra: &[&str]| {
        let o = tmp.path().join(out);
        carbonmap()
            .args([
                "site",
                "--pft",
                "2",
                "--years",
                "2007-2010",
                "--observed-unit",
                "g C m-2 d-1",
            ])
            .arg("--drivers")
            .arg(&drivers)
            .arg("--observed")
            .arg(&observed)
            .args(extra)
            .arg("-o")
            .arg(&o)
            .assert()
            .success();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(o.join("site_comparison.json")).unwrap())
                .unwrap();
        (o, v)
    };
    let (site, before) = run_site("site", &[]);
    let cal = tmp.path().join("cal");
    carbonmap()
        .args([
            "calibrate",
            "--observed-field",
            "gpp",
            "--observed-unit",
            "g C m-2 d-1",
        ])
        .arg("--plots")
        .arg(&observed)
        .arg("--model-table")
        .arg(site.join("site_daily.csv"))
        .args([
            "--model-field",
            "gpp_model_gC_m2_d",
            "--model-unit",
            "g C m-2 d-1",
        ])
        .args([
            "--plot-class",
            "evergreen_broadleaf_forest",
            "--applies-to",
            "epsilon_max",
        ])
        .args(["--folds", "0", "-o"])
        .arg(&cal)
        .assert()
        .success();
    let table = cal.join("corrections.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(",evergreen_broadleaf_forest,"))
        .unwrap();
    let factor: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
    // sum(observed) / sum(model) over the observed days, from site's own comparison.
    let (mo, mm) = (
        before["daily"]["mean_observed"].as_f64().unwrap(),
        before["daily"]["mean_model"].as_f64().unwrap(),
    );
    assert!((factor - mo / mm).abs() < 1e-5, "{factor} vs {}", mo / mm);
    assert!(
        factor < 0.8,
        "{factor}: MOD17 overestimates FR-Pue by about 38 %"
    );
    let (_, after) = run_site("site2", &["--corrections", table.to_str().unwrap()]);
    let (b0, b1) = (
        before["daily"]["bias"].as_f64().unwrap(),
        after["daily"]["bias"].as_f64().unwrap(),
    );
    let (r0, r1) = (
        before["daily"]["rmse"].as_f64().unwrap(),
        after["daily"]["rmse"].as_f64().unwrap(),
    );
    assert!(b1.abs() < 1e-3 && b0 > 1.0, "bias {b0} -> {b1}");
    assert!(r1 < 0.7 * r0, "RMSE {r0} -> {r1}");
    // A table for another vegetation type has no row for this site: refused, not silently ignored.
    let other = tmp.path().join("other.csv");
    std::fs::write(
        &other,
        "zone,class,factor,applies_to,se,n,source\n,cropland,1.2,epsilon_max,,,test\n",
    )
    .unwrap();
    let a = carbonmap()
        .args(["site", "--pft", "2", "--years", "2007-2010", "--drivers"])
        .arg(&drivers)
        .arg("--corrections")
        .arg(&other)
        .arg("-o")
        .arg(tmp.path().join("site3"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("has no row for this site"), "{err}");
}
