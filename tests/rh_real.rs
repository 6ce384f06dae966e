//! Soil heterotrophic respiration against ForC's R_het_soil records (CARBONMAP_REAL_DATA) with `validate-rh`:
//! every built-in model is tabulated per FAO ecozone; the default model's absolute bias over all records is
//! under 25 %; the default's factor is reproduced by `--fit` from the published global model; and NEP =
//! NPP - Rh is compared with the NEP and NEE records of plots that have NPP.

mod common;

use std::collections::BTreeMap;

use common::carbonmap;

fn rows(path: &std::path::Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.deserialize().map(|x| x.unwrap()).collect()
}

#[test]
fn rh_models_against_forc() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "validate-rh",
            "--fit",
            "--nep",
            "--value-unit",
            "Mg C ha-1 yr-1",
            "--plots",
        ])
        .arg(root.join("forc-field-plots/ForC_simplified_2018-08-27.csv"))
        .arg("--temperature")
        .arg(root.join("climate-north-america/temp_NA.tif"))
        .arg("--precipitation")
        .arg(root.join("climate-north-america/prec_NA.tif"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let table = rows(&out.join("rh_validation.csv"));
    let all = |m: &str| {
        table
            .iter()
            .find(|r| r["model"] == m && r["group"] == "all")
            .unwrap_or_else(|| panic!("{m}"))
            .clone()
    };
    let num = |r: &BTreeMap<String, String>, k: &str| r[k].parse::<f64>().unwrap();
    let default = all(carbonmap::npp::rh::DEFAULT_RH);
    assert!(num(&default, "n") >= 240.0);
    assert!(num(&default, "bias_percent").abs() < 25.0, "{default:?}");
    // The published models as the README's table gives them.
    assert!((num(&all("pei2009"), "bias_percent") + 49.3).abs() < 0.1);
    assert!((num(&all("raich2002-bl2004"), "bias_percent") + 27.9).abs() < 0.1);
    // Every ecozone of the records has a row per model.
    assert!(table.iter().filter(|r| r["model"] == "pei2009").count() >= 10);
    // The default's factor is the ratio of sums --fit gives for the published global model.
    let fitted = std::fs::read_to_string(out.join("rh_fitted_raich2002-bl2004.toml")).unwrap();
    let builtin = carbonmap::npp::rh::RhModel::resolve(carbonmap::npp::rh::DEFAULT_RH).unwrap();
    let v: toml::Table = fitted.parse().unwrap();
    let f = v["fraction"].as_float().unwrap();
    assert!(
        (f - builtin.fraction).abs() < 1e-9,
        "{f} vs {}",
        builtin.fraction
    );
    assert!(v["calibration"]["cross_validation"]
        .as_str()
        .unwrap()
        .contains("leave one site out"));
    // NEP = the plot's NPP_1 - modelled Rh against ForC's NEP and -NEE records of the same plots.
    let nep = rows(&out.join("nep_validation.csv"));
    let all_nep = |m: &str| {
        nep.iter()
            .find(|r| r["model"] == m && r["group"] == "all")
            .unwrap_or_else(|| panic!("{m}"))
            .clone()
    };
    for m in [
        "pei2009",
        "raich2002-bl2004",
        carbonmap::npp::rh::DEFAULT_RH,
    ] {
        let r = all_nep(m);
        assert!(num(&r, "n") >= 300.0, "{r:?}");
        // The observed mean is the same for every model (ForC NEP, and NEE with its sign turned).
        assert!(
            (num(&r, "mean_observed_NEP_gC_m2_yr") - 289.0).abs() < 1.0,
            "{r:?}"
        );
    }
    // NEP falls as Rh rises.
    let nep_of = |m: &str| num(&all_nep(m), "mean_model_NEP_gC_m2_yr");
    assert!(nep_of("pei2009") > nep_of("raich2002-bl2004"));
    assert!(nep_of("raich2002-bl2004") > nep_of(carbonmap::npp::rh::DEFAULT_RH));
}
