//! Index rasters are float64 arithmetic rounded once: on real Exeter Sentinel-2 L2A and HLS S30 scenes, every
//! built-in index that four bands (B, G, R, N) allow agrees with the index computed here in float64 from the
//! raw DNs within 1e-6 relative, EVI where its denominator is near zero included. The formulas below are
//! written from the papers (as in the spyndex catalogue), not taken from carbonmap's table.

mod common;

use std::path::Path;

use common::{carbonmap, read_band};

/// (name, formula on reflectance B, G, R, N) with carbonmap's default constants: EVI g = 2.5, C1 = 6,
/// C2 = 7.5, L = 1 (Huete et al. 2002); EVI2 g = 2.5, L = 1 (Jiang et al. 2008); SAVI L = 0.5 (Huete 1988);
/// MSAVI (Qi et al. 1994); NIRv = NDVI x N (Badgley et al. 2017); kNDVI = tanh(NDVI^2) (Camps-Valls et al.
/// 2021); GNDVI (Gitelson et al. 1996); NDWI = (G - N) / (G + N) (McFeeters 1996); SR = N / R (Jordan 1969).
type Formula = fn(f64, f64, f64, f64) -> f64;
const INDICES: [(&str, Formula); 10] = [
    ("NDVI", |_, _, r, n| (n - r) / (n + r)),
    ("EVI", |b, _, r, n| {
        2.5 * (n - r) / (n + 6.0 * r - 7.5 * b + 1.0)
    }),
    ("EVI2", |_, _, r, n| 2.5 * (n - r) / (n + 2.4 * r + 1.0)),
    ("SAVI", |_, _, r, n| 1.5 * (n - r) / (n + r + 0.5)),
    ("MSAVI", |_, _, r, n| {
        0.5 * (2.0 * n + 1.0 - ((2.0 * n + 1.0).powi(2) - 8.0 * (n - r)).sqrt())
    }),
    ("NIRv", |_, _, r, n| (n - r) / (n + r) * n),
    ("kNDVI", |_, _, r, n| ((n - r) / (n + r)).powi(2).tanh()),
    ("GNDVI", |_, g, _, n| (n - g) / (n + g)),
    ("NDWI", |_, g, _, n| (g - n) / (g + n)),
    ("SR", |_, _, r, n| n / r),
];

/// Run every index on one scene on its own grid and compare pixel by pixel. `refl` turns a DN into
/// reflectance. Returns the number of pixels compared and the largest EVI relative error among the pixels
/// whose EVI denominator is below 0.2 in magnitude.
fn compare(
    root: &Path,
    sensor: &str,
    file: &str,
    date: &str,
    refl: fn(f64) -> f64,
) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let scene = root.join(file);
    let manifest = tmp.path().join("stack.toml");
    std::fs::write(
        &manifest,
        format!(
            "sensor = \"{sensor}\"\n[[scene]]\ndate = \"{date}\"\nfile = {:?}\n",
            scene.to_string_lossy()
        ),
    )
    .unwrap();
    let names: Vec<&str> = INDICES.iter().map(|(n, _)| *n).collect();
    let out = tmp.path().join("out");
    carbonmap()
        .args([
            "indices",
            "--period",
            "date",
            "--index",
            &names.join(","),
            "--stack",
        ])
        .arg(&manifest)
        .arg("--grid-from")
        .arg(&scene)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let band = |k| read_band(&scene, k).0;
    let (b, g, r, n) = (band(1), band(2), band(3), band(4));
    let (mut compared, mut near_pole) = (0, 0);
    for (name, f) in INDICES {
        let (got, _, _) = read_band(&out.join(format!("{name}_{date}.tif")), 1);
        for i in 0..got.len() {
            if got[i].is_nan() {
                continue;
            }
            let (bb, gg, rr, nn) = (refl(b[i]), refl(g[i]), refl(r[i]), refl(n[i]));
            let want = f(bb, gg, rr, nn);
            let rel = (got[i] - want).abs() / want.abs().max(1e-30);
            assert!(
                rel <= 1e-6 || (got[i] - want).abs() < 1e-12,
                "{file} {name} pixel {i}: {} vs float64 {want} (relative {rel:.2e})",
                got[i]
            );
            if name == "EVI" && (nn + 6.0 * rr - 7.5 * bb + 1.0).abs() < 0.2 {
                near_pole += 1;
            }
            compared += 1;
        }
    }
    (compared, near_pole)
}

#[test]
fn every_four_band_index_is_float64_arithmetic_rounded_once_on_real_scenes() {
    let Some(root) = common::real_data() else {
        return;
    };
    // Sentinel-2 L2A after baseline 04.00: reflectance = (DN - 1000) / 10000.
    let (n_s2, pole_s2) = compare(
        &root,
        "sentinel2-l2a",
        "exeter-s2-hls/s2_l2a/exe_2024-08-26_12-21-11.tif",
        "2024-08-26",
        |dn| (dn - 1000.0) / 10000.0,
    );
    // HLS S30 v2.0: reflectance = DN x 0.0001.
    let (n_hls, pole_hls) = compare(
        &root,
        "hls-s30",
        "exeter-s2-hls/hls_s30/hls_exe_2021-06-08_12-27-08.tif",
        "2021-06-08",
        |dn| dn * 0.0001,
    );
    assert!(
        n_s2 > 300_000 && n_hls > 100_000,
        "compared {n_s2} S2 and {n_hls} HLS pixel values"
    );
    eprintln!("EVI pixels with |denominator| < 0.2: S2 {pole_s2}, HLS {pole_hls}");
}
