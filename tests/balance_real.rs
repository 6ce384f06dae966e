//! Regridding the CDIAC 1-degree fossil-fuel CO2 lattice onto a finer grid whose pixels straddle the cell
//! borders, and back, keeps the published yearly global totals (SUMMARY.MASS.DAT).

mod common;

use common::{carbonmap, read_band, write_raster};

#[test]
fn cdiac_totals_survive_regridding_to_a_finer_grid_and_back() {
    let Some(root) = common::real_data() else {
        return;
    };
    let dir = root.join("cdiac-ffco2-1deg");
    let lattice = dir.join("cdiac_ffco2_gridcar_1990_2013_TgC_per_cell.tif");
    // Published totals, Tg C per year (columns: year mingrid maxgrid gridsum).
    let summary = std::fs::read_to_string(dir.join("SUMMARY.MASS.DAT")).unwrap();
    let published: std::collections::BTreeMap<u32, f64> = summary
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match (
                f.first().and_then(|y| y.parse().ok()),
                f.get(3).and_then(|s| s.parse().ok()),
            ) {
                (Some(y), Some(s)) if f.len() == 4 => Some((y, s)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(published[&2013], 9233.63);
    let t = tempfile::tempdir().unwrap();
    // A global grid of 0.4 degree: 1-degree cell borders cut through its pixels (0.8..1.2, ...).
    write_raster(
        &t.path().join("fine.tif"),
        Some(4326),
        [-180.0, 0.4, 0.0, 90.0, 0.0, -0.4],
        (900, 450),
        &[("grid", vec![0u8; 900 * 450])],
        None,
    );
    let fine = t.path().join("fine_gC_m2.tif");
    let back = t.path().join("back_TgC.tif");
    carbonmap()
        .args([
            "regrid",
            "--lattice-unit",
            "Tg C cell-1 yr-1",
            "--unit",
            "g C m-2 yr-1",
            "--lattice",
        ])
        .arg(&lattice)
        .arg("--to")
        .arg(t.path().join("fine.tif"))
        .arg("-o")
        .arg(&fine)
        .assert()
        .success();
    carbonmap()
        .args([
            "regrid",
            "--lattice-unit",
            "g C m-2 yr-1",
            "--unit",
            "Tg C cell-1 yr-1",
            "--lattice",
        ])
        .arg(&fine)
        .arg("--to")
        .arg(&lattice)
        .arg("-o")
        .arg(&back)
        .assert()
        .success();
    for (k, year) in (1990..=2013).enumerate() {
        let (orig, _, _) = read_band(&lattice, k + 1);
        let (v, _, _) = read_band(&back, k + 1);
        let sum: f64 = v.iter().filter(|x| x.is_finite()).sum();
        let sum_orig: f64 = orig.iter().sum();
        let p = published[&year];
        // Published totals have two decimals: the file's own sum is within 1e-6 of them, and regridding
        // there and back changes the sum by rounding only.
        assert!(
            (sum - p).abs() <= 1e-6 * p,
            "{year}: {sum} vs published {p}"
        );
        assert!(
            (sum - sum_orig).abs() <= 1e-9 * sum_orig,
            "{year}: {sum} vs {sum_orig}"
        );
    }
}
