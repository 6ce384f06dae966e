//! carbonmap's MOD17 engine against the reference implementation (PyPI mod17 1.0.0) on the same drivers, for
//! every plant functional type. The vectors were made by scripts/make-mod17-vectors.py with that package.

use std::collections::BTreeMap;

use carbonmap::npp::mod17::{Bplut, Mod17Constants, Mod17Year, DEFAULT_BPLUT};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn rel_close(got: f64, want: f64) -> bool {
    if want == 0.0 {
        got == 0.0
    } else {
        ((got - want) / want).abs() <= 1e-6
    }
}

fn rows(file: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(format!("{DATA}/{file}")).unwrap();
    r.deserialize().map(|x| x.unwrap()).collect()
}

fn f(row: &BTreeMap<String, String>, k: &str) -> f64 {
    row[k].parse().unwrap()
}

#[test]
fn daily_gpp_and_respiration_match_mod17_1_0_0_for_every_pft() {
    let b = Bplut::resolve(DEFAULT_BPLUT).unwrap();
    let k = Mod17Constants::builtin().unwrap();
    let daily = rows("mod17_daily.csv");
    let mut pfts = std::collections::BTreeSet::new();
    for row in &daily {
        let pft: u8 = row["pft"].parse().unwrap();
        pfts.insert(pft);
        let c = b.class(pft).unwrap();
        let gpp = c.daily_gpp(
            f(row, "fpar"),
            f(row, "tmin_degc"),
            f(row, "vpd_pa"),
            f(row, "par_mj_m2_d"),
        );
        let (rl, rf) = c.daily_respiration(&k, f(row, "lai"), f(row, "tmean_degc"));
        for (name, got, col) in [
            ("GPP", gpp, "gpp_gc_m2_d"),
            ("leaf MR", rl, "r_leaf_gc_m2_d"),
            ("fine-root MR", rf, "r_froot_gc_m2_d"),
        ] {
            assert!(
                rel_close(got, f(row, col)),
                "PFT {pft} {} day {}: {name} {got} vs reference {}",
                row["year"],
                row["day"],
                row[col]
            );
        }
    }
    assert_eq!(pfts.len(), 11, "every MOD17 PFT is covered");
}

#[test]
fn annual_npp_matches_mod17_1_0_0_for_every_pft() {
    let b = Bplut::resolve(DEFAULT_BPLUT).unwrap();
    let k = Mod17Constants::builtin().unwrap();
    let mut years: BTreeMap<(u8, u32), Mod17Year> = BTreeMap::new();
    for row in rows("mod17_daily.csv") {
        let pft: u8 = row["pft"].parse().unwrap();
        let year: u32 = row["year"].parse().unwrap();
        years.entry((pft, year)).or_default().add_days(
            b.class(pft).unwrap(),
            &k,
            f(&row, "fpar"),
            f(&row, "tmin_degc"),
            f(&row, "vpd_pa"),
            f(&row, "par_mj_m2_d"),
            f(&row, "lai"),
            f(&row, "tmean_degc"),
            1,
        );
    }
    let annual = rows("mod17_annual.csv");
    assert_eq!(annual.len(), 22);
    let mut positive = 0;
    for row in &annual {
        let pft: u8 = row["pft"].parse().unwrap();
        let year: u32 = row["year"].parse().unwrap();
        let a = years[&(pft, year)].finish(b.class(pft).unwrap(), &k);
        for (name, got, col) in [
            ("GPP", a.gpp, "gpp_gc_m2"),
            ("leaf MR", a.r_leaf, "r_leaf_gc_m2"),
            ("fine-root MR", a.r_froot, "r_froot_gc_m2"),
            ("live-wood MR", a.r_livewood, "r_livewood_gc_m2"),
            ("NPP", a.npp, "npp_gc_m2"),
        ] {
            assert!(
                rel_close(got, f(row, col)),
                "PFT {pft} {year}: {name} {got} vs reference {}",
                row[col]
            );
        }
        positive += (a.npp > 0.0) as usize;
    }
    // Both branches of NPP = max(0, 0.8 (GPP - Rm)) are exercised.
    assert!(positive > 10 && positive < 22, "{positive}");
}
