//! MOD17 through `carbonmap site` against the reference implementation (PyPI mod17 1.0.0), read from the CSV
//! files `site` writes, for every PFT: daily GPP and leaf/fine-root respiration, annual GPP, the three
//! maintenance-respiration terms and NPP, on two whole years whose VPD `site` derives from specific humidity
//! and pressure as MOD17 does (MOD17.vpd). Vectors: scripts/make-mod17-vectors.py.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::carbonmap;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.deserialize().map(|x| x.unwrap()).collect()
}

fn num(row: &BTreeMap<String, String>, k: &str) -> f64 {
    row[k].parse().unwrap()
}

fn close(what: &str, got: f64, want: f64) {
    let ok = if want == 0.0 {
        got.abs() < 1e-12
    } else {
        ((got - want) / want).abs() <= 1e-6
    };
    assert!(ok, "{what}: carbonmap {got} vs mod17 {want}");
}

#[test]
fn site_matches_mod17_for_every_pft_from_its_own_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let drivers = tmp.path().join("drivers.toml");
    std::fs::write(
        &drivers,
        format!(
            r#"step = "day"
[station]
file = "{DATA}/mod17_site_drivers.csv"
date = "date"
[station.columns]
fpar = {{ column = "fpar", unit = "1" }}
lai = {{ column = "lai", unit = "m2 m-2" }}
tmin = {{ column = "tmin_degc", unit = "degC" }}
tmean = {{ column = "tmean_degc", unit = "degC" }}
specific_humidity = {{ column = "qv_kg_kg", unit = "kg kg-1" }}
patm = {{ column = "ps_pa", unit = "Pa" }}
par = {{ column = "par_mj_m2_d", unit = "MJ m-2 d-1" }}
[derive]
vpd = "from-specific-humidity"
"#
        ),
    )
    .unwrap();
    let want_daily = rows(&Path::new(DATA).join("mod17_site_daily.csv"));
    let want_annual = rows(&Path::new(DATA).join("mod17_site_annual.csv"));
    let forcing = rows(&Path::new(DATA).join("mod17_site_drivers.csv"));
    let pfts: std::collections::BTreeSet<String> =
        want_annual.iter().map(|r| r["pft"].clone()).collect();
    assert_eq!(pfts.len(), 11);
    for pft in &pfts {
        let out = tmp.path().join(format!("pft{pft}"));
        carbonmap()
            .args(["site", "--pft", pft, "--years", "2001-2002", "--drivers"])
            .arg(&drivers)
            .arg("-o")
            .arg(&out)
            .assert()
            .success();
        let daily = rows(&out.join("site_daily.csv"));
        let want: Vec<_> = want_daily.iter().filter(|r| &r["pft"] == pft).collect();
        assert_eq!(daily.len(), want.len());
        for ((g, w), f) in daily.iter().zip(&want).zip(&forcing) {
            let at = format!("PFT {pft} {}", w["date"]);
            assert_eq!(g["date"], w["date"]);
            close(
                &format!("vpd {at}"),
                num(g, "vpd_Pa"),
                num(f, "vpd_pa_mod17"),
            );
            close(&format!("lai {at}"), num(g, "lai"), num(f, "lai"));
            close(
                &format!("gpp {at}"),
                num(g, "gpp_model_gC_m2_d"),
                num(w, "gpp_gc_m2_d"),
            );
            close(
                &format!("r_leaf {at}"),
                num(g, "r_leaf_gC_m2_d"),
                num(w, "r_leaf_gc_m2_d"),
            );
            close(
                &format!("r_froot {at}"),
                num(g, "r_froot_gC_m2_d"),
                num(w, "r_froot_gc_m2_d"),
            );
        }
        let annual = rows(&out.join("site_annual.csv"));
        for w in want_annual.iter().filter(|r| &r["pft"] == pft) {
            let g = annual.iter().find(|r| r["year"] == w["year"]).unwrap();
            let at = format!("PFT {pft} {}", w["year"]);
            for (mine, theirs) in [
                ("gpp_model_gC_m2_yr", "gpp_gc_m2"),
                ("r_leaf_gC_m2_yr", "r_leaf_gc_m2"),
                ("r_froot_gC_m2_yr", "r_froot_gc_m2"),
                ("r_livewood_gC_m2_yr", "r_livewood_gc_m2"),
                ("npp_model_gC_m2_yr", "npp_gc_m2"),
            ] {
                close(&format!("{mine} {at}"), num(g, mine), num(w, theirs));
            }
        }
    }
}
