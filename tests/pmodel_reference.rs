//! carbonmap's P-model, SPLASH and soil-moisture stress against the reference implementation (PyPI pyrealm
//! 2.0.0) on the same drivers. The vectors were made by scripts/make-pmodel-vectors.py with that package: a grid
//! of drivers covering cold, freezing, hot, dry, humid, low and high CO2 and sea level to 5000 m for the C3 and
//! C4 pathways, the Stocker stress on a grid of soil moisture and aridity, and SPLASH's daily water balance and
//! the stressed GPP at FR-Pue 2007-2012 from the site's own drivers.

mod common;

use std::collections::BTreeMap;

use carbonmap::npp::pmodel::{PDrivers, PModelParams, Pathway, DEFAULT_PMODEL};
use carbonmap::npp::splash::{Day, Site, SplashParams};
use chrono::NaiveDate;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn rows(file: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let text = std::fs::read_to_string(format!("{DATA}/{file}")).unwrap();
    let comments: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(String::from)
        .collect();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut r = csv::Reader::from_reader(body.as_bytes());
    (comments, r.deserialize().map(|x| x.unwrap()).collect())
}

fn f(row: &BTreeMap<String, String>, k: &str) -> f64 {
    match row[k].as_str() {
        "nan" => f64::NAN,
        v => v.parse().unwrap(),
    }
}

/// Within 1e-6 relative (absolute 1e-12 around zero); NaN only where the reference is NaN.
fn close(what: &str, got: f64, want: f64) {
    let ok = if want.is_nan() {
        got.is_nan()
    } else if want.abs() < 1e-12 {
        got.abs() < 1e-12
    } else {
        ((got - want) / want).abs() <= 1e-6
    };
    assert!(ok, "{what}: carbonmap {got} vs pyrealm {want}");
}

#[test]
fn pmodel_matches_pyrealm_on_a_grid_covering_every_branch() {
    let p = PModelParams::resolve(DEFAULT_PMODEL).unwrap();
    let (_, grid) = rows("pmodel_grid.csv");
    assert_eq!(grid.len(), 1080);
    let (mut nan, mut zero_kphio) = (0, 0);
    for row in &grid {
        let path = if row["pathway"] == "C3" {
            Pathway::C3
        } else {
            Pathway::C4
        };
        let d = PDrivers {
            tc: f(row, "tc_degc"),
            vpd_pa: f(row, "vpd_pa"),
            co2_ppm: f(row, "co2_ppm"),
            patm_pa: f(row, "patm_pa"),
            fapar: f(row, "fapar"),
            ppfd_umol_m2_s: f(row, "ppfd_umol_m2_s"),
        };
        let t = p.gpp(&d, path);
        let at = format!("{row:?}");
        close(
            &format!("gammastar {at}"),
            t.gammastar_pa,
            f(row, "gammastar_pa"),
        );
        close(&format!("kmm {at}"), t.kmm_pa, f(row, "kmm_pa"));
        close(&format!("ns_star {at}"), t.ns_star, f(row, "ns_star"));
        close(&format!("ca {at}"), t.ca_pa, f(row, "ca_pa"));
        close(&format!("kphio {at}"), t.kphio, f(row, "kphio"));
        close(&format!("chi {at}"), t.chi, f(row, "chi"));
        close(&format!("mj {at}"), t.mj, f(row, "mj"));
        close(&format!("lue {at}"), t.lue_gc_mol, f(row, "lue_gc_mol"));
        close(&format!("gpp {at}"), t.gpp_ugc_m2_s, f(row, "gpp_ugc_m2_s"));
        nan += t.gpp_ugc_m2_s.is_nan() as usize;
        zero_kphio += (t.kphio == 0.0) as usize;
    }
    // The grid reaches the branches: no Jmax solution (mj <= c*, NaN GPP) and a quantum yield clipped at 0.
    assert!(
        nan > 0 && zero_kphio > 0,
        "{nan} NaN, {zero_kphio} zero kphio"
    );
}

#[test]
fn stocker_stress_matches_pyrealm() {
    let s = PModelParams::resolve(DEFAULT_PMODEL)
        .unwrap()
        .soil_moisture_stress;
    for row in rows("pmodel_stress.csv").1 {
        close(
            &format!("{row:?}"),
            s.factor(f(&row, "soilm"), f(&row, "meanalpha")),
            f(&row, "stress"),
        );
    }
}

fn header_value(comments: &[String], key: &str) -> f64 {
    comments[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap()
        .parse()
        .unwrap()
}

/// SPLASH at FR-Pue from the site's forcing (CARBONMAP_REAL_DATA), then the P-model with the Stocker stress.
fn splash_at_fr_pue(file: &str) {
    let Some(root) = common::real_data() else {
        return;
    };
    let (comments, want) = rows(file);
    let bucket = header_value(&comments, "kwm_mm");
    let mut r =
        csv::Reader::from_path(root.join("fluxtower-fr-pue/FR-Pue_daily_forcing.csv")).unwrap();
    let forcing: Vec<BTreeMap<String, String>> = r.deserialize().map(|x| x.unwrap()).collect();
    let days: Vec<Day> = forcing
        .iter()
        .map(|x| Day {
            date: NaiveDate::parse_from_str(&x["date"], "%Y-%m-%d").unwrap(),
            sunshine_fraction: 1.0 - f(x, "ccov") / 100.0,
            tc: f(x, "temp"),
            precip_mm: f(x, "rain") * 86_400.0,
        })
        .collect();
    let p = PModelParams::resolve(DEFAULT_PMODEL).unwrap();
    let sp = SplashParams::builtin().unwrap();
    let site = Site {
        latitude: 43.7413,
        elevation_m: 270.0,
        bucket_mm: bucket,
    };
    let run = sp.run(&p.core, &p.water, &site, &days).unwrap();
    assert!(run.converged);
    close(
        "spun-up bucket",
        run.initial_mm,
        header_value(&comments, "wn_spinup_mm"),
    );
    let alpha = run.mean_alpha();
    close("meanalpha", alpha, header_value(&comments, "meanalpha"));
    assert_eq!(run.days.len(), want.len());
    for (i, (w, row)) in run.days.iter().zip(&want).enumerate() {
        let at = &row["date"];
        close(&format!("wn {at}"), w.wn_mm, f(row, "wn_mm"));
        close(&format!("aet {at}"), w.aet_mm, f(row, "aet_mm"));
        close(&format!("pet {at}"), w.pet_mm, f(row, "pet_mm"));
        close(&format!("cond {at}"), w.cond_mm, f(row, "cond_mm"));
        close(&format!("runoff {at}"), w.runoff_mm, f(row, "runoff_mm"));
        let soilm = run.start_of_day(i) / bucket;
        let stress = p.soil_moisture_stress.factor(soilm, alpha);
        close(&format!("stress {at}"), stress, f(row, "stress"));
        let x = &forcing[i];
        let d = PDrivers {
            tc: f(x, "temp"),
            vpd_pa: f(x, "vpd"),
            co2_ppm: f(x, "co2"),
            patm_pa: f(x, "patm"),
            fapar: f(x, "fapar"),
            ppfd_umol_m2_s: f(x, "ppfd") * 1e6,
        };
        // ug C m-2 s-1 x 86400 s d-1 x 1e-6 g ug-1 = g C m-2 d-1.
        let gpp = p.gpp(&d, Pathway::C3).gpp_ugc_m2_s * 86_400.0 * 1e-6;
        close(&format!("gpp {at}"), gpp, f(row, "gpp_unstressed_gc_m2_d"));
        close(
            &format!("stressed gpp {at}"),
            gpp * stress,
            f(row, "gpp_gc_m2_d"),
        );
    }
}

#[test]
fn splash_and_stressed_gpp_match_pyrealm_at_fr_pue_with_the_site_bucket() {
    splash_at_fr_pue("splash_frpue.csv");
}

#[test]
fn splash_matches_pyrealm_at_fr_pue_with_the_default_bucket() {
    splash_at_fr_pue("splash_frpue_150.csv");
}
