//! The built-in uncertainty file `models/uncertainty/carbonmap-validation.toml`: every sd recomputed from the
//! source its `source` names (the correction table in models/, the README's validation tables, and the
//! emission-lattice comparison run on the real data through the binary, the inventory uncertainty table in
//! models/), and the file used by name.

mod common;

use std::path::Path;

use carbonmap::pipeline::npp::draws::UncertaintyFile;

fn sd_of(target: &str) -> f64 {
    let (f, path) = UncertaintyFile::resolve(Path::new("carbonmap-validation")).unwrap();
    assert!(
        path.ends_with("models/uncertainty/carbonmap-validation.toml"),
        "{path:?}"
    );
    let p: Vec<_> = f
        .parameters
        .iter()
        .filter(|p| p.target == target && (target != "emissions" || p.error_kind() == "allocation"))
        .collect();
    assert_eq!(p.len(), 1, "{target}");
    assert!(!p[0].source.trim().is_empty());
    p[0].sd
}

/// The standard output of `scripts/NAME` run with `args` on the real data at `root` (which must succeed).
fn script(name: &str, args: &[&str], root: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(&path)
        .args(args)
        .env("CARBONMAP_REAL_DATA", root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {text}{err}");
    text
}

/// The number in `line` after `before` and up to `end`.
fn number_between(line: &str, before: &str, end: char) -> f64 {
    line.split(before)
        .nth(1)
        .and_then(|s| s.split(end).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{before}' in: {line}"))
}

/// Sample standard deviation (n - 1).
fn sample_sd(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

#[test]
fn npp_rh_and_sink_sds_are_their_sources_numbers() {
    // NPP: the factors of the ecozone correction table, read from the file itself.
    let table = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/corrections/forc-na-casa-enf-by-ecozone.csv"),
    )
    .unwrap();
    let factors: Vec<f64> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("zone,"))
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(factors.len(), 5);
    let mean = factors.iter().sum::<f64>() / 5.0;
    // By hand: mean 0.99913, sd 0.28586, 0.2861 of the mean.
    assert!((mean - 0.99913).abs() < 1e-5 && (sample_sd(&factors) - 0.28586).abs() < 1e-5);
    assert_eq!(
        sd_of("npp"),
        (sample_sd(&factors) / mean * 100.0).round() / 100.0
    );
    // Rh: the default's per-ecozone bias (README "Soil heterotrophic respiration", ecozones with >= 10
    // records): sd 18.04 %.
    let bias = [2.0, 32.0, -23.0, -7.0, 17.0, 12.0, 16.0];
    assert!((sample_sd(&bias) - 18.04).abs() < 0.01);
    assert_eq!(sd_of("rh"), (sample_sd(&bias)).round() / 100.0);
    // The sink: the default NEP's bias over ForC's NEP/NEE records, 83 of 289 (README).
    assert_eq!(
        sd_of("sequestration"),
        (83.0f64 / 289.0 * 100.0).round() / 100.0
    );
}

#[test]
fn the_emission_sd_is_the_inventories_disagreement_on_the_real_lattices() {
    let Some(root) = common::real_data() else {
        return;
    };
    let text = script(
        "emission-lattice-spread.py",
        &[env!("CARGO_BIN_EXE_carbonmap")],
        &root,
    );
    // Edge neighbours' disagreement correlates by 0.103 (README): errors a degree apart are nearly independent.
    let pairs = text
        .lines()
        .find(|l| l.contains("pairs of edge neighbours"))
        .unwrap();
    let r = number_between(pairs, "ln(ratio) ", ' ');
    assert!(
        pairs.starts_with("35 pairs") && (r - 0.103).abs() < 0.0005,
        "{pairs}"
    );
    let last = text.lines().last().unwrap();
    // "28 cells; ... median |ratio - 1| = 0.298 (normal sd 0.442); ..."
    assert!(last.starts_with("28 cells"), "{last}");
    let sd = number_between(last, "normal sd ", ')');
    assert!((sd - 0.442).abs() < 0.0005, "{last}");
    assert_eq!(sd_of("emissions"), (sd * 100.0).round() / 100.0);
}

/// The UK inventory errors per sector: each entry's sd is the wider 95 % half-width / 1.96 of the GBR row of
/// Solazzo et al. 2021's table for the IPCC category its source names, and the entries cover every sector of
/// the real ukghg lattice but domcom (IPCC 1.A.4, which the table lacks), each sector once.
#[test]
fn the_inventory_sds_are_the_uk_rows_of_the_solazzo_table() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/uncertainty");
    let table = std::fs::read_to_string(models.join("solazzo2021-co2-2015.csv")).unwrap();
    let gbr = |code: &str| -> f64 {
        let row: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with(&format!("GBR,{code},")))
            .unwrap_or_else(|| panic!("GBR {code}"))
            .split(',')
            .collect();
        let (lo, hi): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
        lo.max(hi) / 1.96
    };
    // By hand from the table: 1.A.1 0.0483733 / 1.96 = 0.02468; waste 0.3540030 / 1.96 = 0.18061.
    assert!((gbr("1.A.1") - 0.02468).abs() < 1e-5 && (gbr("4") - 0.18061).abs() < 1e-5);
    let (f, _) = UncertaintyFile::resolve(Path::new("carbonmap-validation")).unwrap();
    let mut covered: Vec<String> = Vec::new();
    for p in f
        .parameters
        .iter()
        .filter(|p| p.target == "emissions" && p.error_kind() == "inventory")
    {
        let code = p
            .source
            .split("IPCC ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(p.sd, (gbr(code) * 1e4).round() / 1e4, "{code}");
        covered.extend(p.named_sectors().iter().map(|s| s.to_string()));
    }
    covered.sort();
    let mut expected = [
        "agric",
        "energyprod",
        "indcom",
        "indproc",
        "offshore",
        "othertrans",
        "roadtrans",
        "solvents",
        "waste",
    ];
    expected.sort();
    assert_eq!(covered, expected);
    if let Some(root) = common::real_data() {
        let lattice = root.join("uk-emissions-20km/co2BySector_OSGB_20km.tif");
        let info = carbonmap::io::RasterInfo::read(&lattice).unwrap();
        let mut bands: Vec<String> = info.bands.iter().map(|b| b.description.clone()).collect();
        bands.retain(|b| b != "domcom");
        bands.sort();
        assert_eq!(bands, expected);
    }
}

/// The built-in drivers' errors of a June-July station run: each sd is the RMS the script measures on the real
/// station pair (temperature 1.1145 K, precipitation 0.4349 and radiation 0.0501 relative, 36 years).
#[test]
fn the_station_driver_sds_are_the_station_pairs_disagreement() {
    let Some(root) = common::real_data() else {
        return;
    };
    let text = script(
        "station-driver-spread.py",
        &[root.to_str().unwrap(), "6-7"],
        &root,
    );
    assert!(text.starts_with("stations 209 km apart"), "{text}");
    let (f, _) = UncertaintyFile::resolve(Path::new("uk-station-drivers-jun-jul")).unwrap();
    for (target, want) in [
        ("temperature", 1.1145),
        ("precipitation", 0.4349),
        ("radiation", 0.0501),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(": {target} ")))
            .unwrap();
        let rms = number_between(line, "rms ", ' ');
        assert!(
            (rms - want).abs() < 0.00005 && line.ends_with("over 36 years"),
            "{line}"
        );
        let p = f.parameters.iter().find(|p| p.target == target).unwrap();
        assert_eq!(p.sd, (rms * 100.0).round() / 100.0, "{target}");
    }
}

/// The built-in `mod17-prior-lue`: every vegetation type with a MOD17 class has sd = sigma / mu (3 decimals) of
/// the LUE_max prior of the MOD17 reference implementation (real data: mod17-bplut/bplut/
/// MOD17_BPLUT_prior_20221223.json, arrays indexed by the UMD class), and no other entry.
#[test]
fn the_mod17_lue_sds_are_the_reference_priors() {
    let Some(root) = common::real_data() else {
        return;
    };
    let json = root.join("mod17-bplut/bplut/MOD17_BPLUT_prior_20221223.json");
    let prior: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let lue = &prior["LUE_max"];
    let (f, _) = UncertaintyFile::resolve(Path::new("mod17-prior-lue")).unwrap();
    let types = carbonmap::landcover::vegetation_types().unwrap();
    let with_class: Vec<_> = types.iter().filter(|t| t.mod17_umd.is_some()).collect();
    assert_eq!(f.parameters.len(), with_class.len());
    for t in with_class {
        let umd = t.mod17_umd.unwrap() as usize;
        let (mu, sigma) = (
            lue["mu"][umd].as_f64().unwrap(),
            lue["sigma"][umd].as_f64().unwrap(),
        );
        let p = f
            .parameters
            .iter()
            .find(|p| p.vegetation_type.as_deref() == Some(t.name.as_str()))
            .unwrap_or_else(|| panic!("{}", t.name));
        assert_eq!(p.target, "mod17.lue_max");
        assert_eq!(p.sd, (sigma / mu * 1000.0).round() / 1000.0, "{}", t.name);
    }
}
