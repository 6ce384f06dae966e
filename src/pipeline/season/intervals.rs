//! Intervals in the report's tables: a result table and the Monte Carlo table of the same totals (long format:
//! key, quantity, unit, mean, sd, p05, p50, p95) are shown as one: each total the draws cover gets its 90 %
//! interval (p05 to p95) in brackets in its own cell. A draws row names its table row by its first column (zone,
//! cell_id, code; a zone below the top level by its path, "parent/name") and its column by quantity and unit: quantity `net_balance` in `t CO2 yr-1` is the column
//! `net_balance_tCO2_yr`, quantity `NPP` in `t C` the column `NPP_*_tC`.

use std::path::Path;

use crate::error::{Error, Result};

/// A table's header and rows (comment lines skipped).
pub type Rows = (Vec<String>, Vec<Vec<String>>);

/// Every row of a CSV table, the header first, without comment lines.
pub fn read_rows(path: &Path) -> Result<Rows> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::input(path, format!("cannot read table: {e}")))?;
    let mut rows = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| Error::input(path, format!("cannot read table: {e}")))?;
        if r.get(0).is_some_and(|c| c.starts_with('#')) {
            continue;
        }
        rows.push(r.iter().map(str::to_string).collect::<Vec<_>>());
    }
    let mut it = rows.into_iter();
    Ok((it.next().unwrap_or_default(), it.collect()))
}

/// The draws table of result table `rel` among a stage's outputs: `NAME_draws.csv` beside `NAME.csv`, or
/// `draws_PERIOD.csv` beside a model's `*_summary_PERIOD.csv`.
pub fn draws_table_of<'a>(rel: &str, outputs: &[&'a str]) -> Option<&'a str> {
    let stem = rel.strip_suffix(".csv")?;
    let mut want = vec![format!("{stem}_draws.csv")];
    if let Some((dir_model, period)) = stem.rsplit_once("_summary_") {
        let dir = Path::new(dir_model).parent().unwrap_or(Path::new(""));
        want.push(
            dir.join(format!("draws_{period}.csv"))
                .display()
                .to_string(),
        );
    }
    outputs
        .iter()
        .copied()
        .find(|o| want.iter().any(|w| w == o))
}

/// The column of `header` holding quantity `q` in `unit`: named `q_..._SUFFIX` where SUFFIX is the unit without
/// spaces, " yr-1" as "_yr" (`t CO2 yr-1` -> `tCO2_yr`).
fn column_of(header: &[String], q: &str, unit: &str) -> Option<usize> {
    let suffix = match unit.strip_suffix(" yr-1") {
        Some(u) => format!("_{}_yr", u.replace(' ', "")),
        None => format!("_{}", unit.replace(' ', "")),
    };
    let prefix = format!("{q}_");
    let mut hits = header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.starts_with(&prefix) && h.ends_with(&suffix));
    match (hits.next(), hits.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// `x` with as many decimals as `like` has.
fn like(x: f64, like: &str) -> String {
    let decimals = like.split_once('.').map_or(0, |(_, d)| d.len());
    format!("{x:.decimals$}")
}

/// The result table with each total the draws cover followed by its 90 % interval, "value [p05, p95]", and how
/// many cells got one. A draws row whose key matches no row, or more than one, or whose column is not found,
/// is left out (the draws table itself is in the output folder).
pub fn annotate((header, mut rows): Rows, (dh, drows): &Rows) -> (Rows, usize) {
    let col = |name: &str| dh.iter().position(|h| h == name);
    let (Some(q), Some(u), Some(p05), Some(p95)) =
        (col("quantity"), col("unit"), col("p05"), col("p95"))
    else {
        return ((header, rows), 0);
    };
    let key = dh.first().and_then(|k| header.iter().position(|h| h == k));
    let Some(key) = key else {
        return ((header, rows), 0);
    };
    // A zone below the top level is named by its path in the draws table (its parent, "/", its name).
    let parent = header.iter().position(|h| h == "parent");
    let row_key = |r: &Vec<String>| {
        let k = r.get(key)?;
        Some(
            match parent.and_then(|p| r.get(p)).filter(|p| !p.is_empty()) {
                Some(p) => format!("{p}/{k}"),
                None => k.clone(),
            },
        )
    };
    let mut n = 0;
    for d in drows {
        let (Some(c), Some(lo), Some(hi)) = (
            column_of(&header, &d[q], &d[u]),
            d.get(p05).and_then(|v| v.parse::<f64>().ok()),
            d.get(p95).and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let mut matching = rows.iter_mut().filter(|r| row_key(r).as_ref() == d.first());
        if let (Some(r), None) = (matching.next(), matching.next()) {
            if let Some(cell) = r.get_mut(c) {
                *cell = format!("{cell} [{}, {}]", like(lo, cell), like(hi, cell));
                n += 1;
            }
        }
    }
    ((header, rows), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(csv: &str) -> Rows {
        let mut it = csv
            .lines()
            .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
        (it.next().unwrap(), it.collect())
    }

    #[test]
    fn each_total_gets_its_interval_in_its_own_cell() {
        let main = rows(
            "level,zone,parent,net_balance_tCO2_yr,net_balance_tCO2_ha_yr,sequestration_tCO2_yr\n\
             all,all,,6874.29,18.63,2679.04\ntown,Sampleton,,6874.29,18.63,2679.04\n\
             district,east,Sampleton,2316.09,12.56,1469.69",
        );
        let draws = rows(
            "zone,quantity,unit,mean,sd,p05,p50,p95\n\
             all,net_balance,t CO2 yr-1,6748.8,4574.3,-316.657743,6503.6,14277.009392\n\
             all,sequestration,t CO2 yr-1,2709.4,862.4,1289.158086,2778.6,4033.345130\n\
             nowhere,net_balance,t CO2 yr-1,1,1,0,1,2\n\
             Sampleton/east,net_balance,t CO2 yr-1,2300,900,800.123,2300,3900.987",
        );
        let ((h, r), n) = annotate(main, &draws);
        assert_eq!(n, 3);
        assert_eq!(h[3], "net_balance_tCO2_yr");
        assert_eq!(r[0][3], "6874.29 [-316.66, 14277.01]");
        // Per hectare is another column (its unit is not the draws'): untouched.
        assert_eq!(r[0][4], "18.63");
        assert_eq!(r[0][5], "2679.04 [1289.16, 4033.35]");
        assert_eq!(r[1][3], "6874.29");
        assert_eq!(r[2][3], "2316.09 [800.12, 3900.99]");
    }

    #[test]
    fn a_models_summary_takes_the_draws_of_its_period() {
        let outs = [
            "npp/casa_summary_2024.csv",
            "npp/draws_2024.csv",
            "npp/draws_variance_2024.csv",
        ];
        assert_eq!(
            draws_table_of("npp/casa_summary_2024.csv", &outs),
            Some("npp/draws_2024.csv")
        );
        let outs = ["b/zones_balance.csv", "b/zones_balance_draws.csv"];
        assert_eq!(
            draws_table_of("b/zones_balance.csv", &outs),
            Some("b/zones_balance_draws.csv")
        );
        assert_eq!(draws_table_of("b/zones_balance_draws.csv", &outs), None);
        let h: Vec<String> = ["NPP_mean_gC_m2", "NPP_total_tC", "sequestration_total_tCO2"]
            .map(String::from)
            .to_vec();
        assert_eq!(column_of(&h, "NPP", "t C"), Some(1));
        assert_eq!(column_of(&h, "sequestration", "t CO2"), Some(2));
        assert_eq!(column_of(&h, "Rh", "t C"), None);
    }
}
