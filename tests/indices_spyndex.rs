//! Index formulas against an independent implementation: the spyndex package (Awesome Spectral Indices),
//! whose values for 120 real Landsat 8 C2 L2 spectra are in $CARBONMAP_REAL_DATA/landsat8-spectra.
//! spyndex was run with its defaults L = 1.0, g = 2.5, C1 = 6, C2 = 7.5 (so SAVI uses L = 1.0 there).

mod common;

use std::collections::BTreeMap;

use carbonmap::indices::{CompiledIndex, IndexTable};

/// Reflectance rows (letter -> value) and the reference table (index -> values), by row.
fn load(
    dir: &std::path::Path,
) -> (
    Vec<BTreeMap<String, f64>>,
    Vec<String>,
    Vec<BTreeMap<String, f64>>,
) {
    let letters = [
        ("SR_B1", "A"),
        ("SR_B2", "B"),
        ("SR_B3", "G"),
        ("SR_B4", "R"),
        ("SR_B5", "N"),
        ("SR_B6", "S1"),
        ("SR_B7", "S2"),
    ];
    let mut rd = csv::Reader::from_path(dir.join("spectral_landsat8_c2l2_samples.csv")).unwrap();
    let hdr = rd.headers().unwrap().clone();
    let spectra: Vec<BTreeMap<String, f64>> = rd
        .records()
        .map(|r| {
            let r = r.unwrap();
            letters
                .iter()
                .map(|(col, l)| {
                    (
                        l.to_string(),
                        r[hdr.iter().position(|h| h == *col).unwrap()]
                            .parse()
                            .unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    let mut rd =
        csv::Reader::from_path(dir.join("spectral_indices_spyndex_reference.csv")).unwrap();
    let hdr = rd.headers().unwrap().clone();
    let names: Vec<String> = hdr.iter().skip(2).map(String::from).collect();
    let reference = rd
        .records()
        .map(|r| {
            let r = r.unwrap();
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), r[i + 2].parse().unwrap()))
                .collect()
        })
        .collect();
    (spectra, names, reference)
}

#[test]
fn every_index_in_the_spyndex_reference_agrees_within_1e_6() {
    let Some(root) = common::real_data() else {
        return;
    };
    let (spectra, names, reference) = load(&root.join("landsat8-spectra"));
    assert_eq!(spectra.len(), 120);
    let table = IndexTable::builtin().unwrap();
    let spyndex_constants: BTreeMap<String, f64> =
        [("L", 1.0), ("g", 2.5), ("C1", 6.0), ("C2", 7.5)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    for name in &names {
        let def = table
            .get(name)
            .unwrap_or_else(|| panic!("spyndex index {name} is missing from models/indices.toml"));
        let consts = def
            .constants
            .keys()
            .map(|k| (k.clone(), spyndex_constants[k]))
            .collect();
        let idx = CompiledIndex::new(def, &consts).unwrap();
        let mut scratch = Vec::new();
        for (row, (s, r)) in spectra.iter().zip(&reference).enumerate() {
            let bands: Vec<f64> = def.bands.iter().map(|b| s[b]).collect();
            let got = idx.eval(&bands, &mut scratch);
            let want = r[name];
            assert!(
                (got - want).abs() <= 1e-6,
                "{name} row {row}: carbonmap {got} vs spyndex {want}"
            );
        }
    }
}

/// The same check through the real binary: the spectra written as a 120 x 1 Float32 raster with the generic
/// sensor profile, indices written per date, read back.
#[test]
fn binary_reproduces_spyndex_on_a_raster_of_the_spectra() {
    let Some(root) = common::real_data() else {
        return;
    };
    let (spectra, names, reference) = load(&root.join("landsat8-spectra"));
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("spectra.tif");
    let band_names = [
        ("A", "coastal"),
        ("B", "blue"),
        ("G", "green"),
        ("R", "red"),
        ("N", "nir"),
        ("S1", "swir1"),
        ("S2", "swir2"),
    ];
    let bands: Vec<(&str, Vec<f64>)> = band_names
        .iter()
        .map(|(l, n)| (*n, spectra.iter().map(|s| s[*l]).collect()))
        .collect();
    common::write_raster(
        &img,
        Some(32613),
        [500000.0, 30.0, 0.0, 4500000.0, 0.0, -30.0],
        (spectra.len(), 1),
        &bands,
        None,
    );
    std::fs::write(
        tmp.path().join("stack.toml"),
        "sensor = \"generic\"\n[[scene]]\ndate = \"2020-01-01\"\nfile = \"spectra.tif\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    common::carbonmap()
        .args([
            "indices",
            "--period",
            "date",
            "--index",
            &names.join(","),
            "--const",
            "L=1.0",
            "--stack",
        ])
        .arg(tmp.path().join("stack.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    for name in &names {
        let (v, w, h) = common::read_band(&out.join(format!("{name}_2020-01-01.tif")), 1);
        assert_eq!((w, h), (120, 1));
        for (row, r) in reference.iter().enumerate() {
            // Output rasters are Float32: allow its rounding (relative 6e-8) on top of 1e-6.
            assert!(
                (v[row] - r[name]).abs() <= 1e-6,
                "{name} row {row}: raster {} vs spyndex {}",
                v[row],
                r[name]
            );
        }
    }
}
