//! Sub-daily station tables (CARBONMAP_REAL_DATA): NSRDB's half-hourly 2023 table at a Colorado point,
//! aggregated by the drivers to months (daily mean, minimum and maximum temperature, GHI as W m-2 means, VPD
//! from relative humidity at each half hour), matches the table's own monthly summary
//! (monthly_summary_2023_derived.csv, made from the same rows as its SOURCE.txt describes).

mod common;

use std::collections::BTreeMap;

use carbonmap::drivers::{Drivers, Var};
use carbonmap::io::Window;

#[test]
fn nsrdb_half_hourly_rows_aggregate_to_the_monthly_summary() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let drivers = tmp.path().join("drivers.toml");
    std::fs::write(
        &drivers,
        r#"step = "month"
[station]
file = "${CARBONMAP_REAL_DATA}/climate-colorado-nsrdb/test_psm4_2023.csv"
latitude = 40.5137
year = "Year"
month = "Month"
day = "Day"
hour = "Hour"
minute = "Minute"
[station.columns]
tmean = { column = "Temperature", unit = "degC" }
tmin = { column = "Temperature", unit = "degC", aggregate = "min" }
tmax = { column = "Temperature", unit = "degC", aggregate = "max" }
srad = { column = "GHI", unit = "W m-2" }
rh = { column = "Relative Humidity", unit = "%" }
[derive]
vpd = "from-rh"
"#,
    )
    .unwrap();
    let d = Drivers::load(&drivers, 2023).unwrap();
    assert_eq!(d.steps.len(), 12);
    let mut r = csv::Reader::from_path(
        root.join("climate-colorado-nsrdb/monthly_summary_2023_derived.csv"),
    )
    .unwrap();
    let summary: Vec<BTreeMap<String, String>> = r.deserialize().map(|x| x.unwrap()).collect();
    let w = Window::rows(0, 1, 1);
    for (i, row) in summary.iter().enumerate() {
        let want = |k: &str| row[k].parse::<f64>().unwrap();
        let got = |v: Var| d.read(v, i, &w).unwrap().at(0);
        // The summary is rounded to 3 decimals.
        let close = |what: &str, g: f64, w: f64, tol: f64| {
            assert!(
                (g - w).abs() <= tol,
                "month {}: {what} {g} vs summary {w}",
                i + 1
            )
        };
        close("tmean", got(Var::Tmean), want("tmean_C"), 0.0006);
        close("tmin", got(Var::Tmin), want("tmin_mean_C"), 0.0006);
        close("tmax", got(Var::Tmax), want("tmax_mean_C"), 0.0006);
        close("srad", got(Var::Srad), want("ghi_MJ_m2_d_mean"), 0.0006);
        close(
            "vpd",
            got(Var::Vpd),
            want("vpd_mean_Pa"),
            0.006 * want("vpd_mean_Pa").max(1.0),
        );
    }
    // The provenance says the rows were aggregated (the station table is the sub-daily one).
    assert!(d.provenance(Var::Tmean).contains("station"));
    // Running totals are read by a day's last sample, which table rows (in any order) do not define.
    let text = std::fs::read_to_string(&drivers).unwrap().replace(
        "srad = { column = \"GHI\", unit = \"W m-2\" }",
        "srad = { column = \"GHI\", unit = \"J m-2\", aggregate = \"accumulated\" }",
    );
    std::fs::write(&drivers, text).unwrap();
    let Err(err) = Drivers::load(&drivers, 2023) else {
        panic!("accumulated table rows accepted");
    };
    let err = err.to_string();
    assert!(
        err.contains("station.columns.srad") && err.contains("not to table rows"),
        "{err}"
    );
    // The one problem: the table's sub-daily rows are not read again as a table of months.
    assert!(
        err.contains("1 problem(s)") || !err.contains("problem(s)"),
        "{err}"
    );
}
