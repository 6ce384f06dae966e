//! Sub-daily station tables (hourly or half-hourly rows, such as NSRDB): rows are aggregated to days by each
//! column's rule (`aggregate` = mean, sum, min or max; by default precipitation sums, tmin takes the minimum,
//! tmax the maximum and every other variable the mean), and days to months as the mean of the daily values
//! (sum for sums), before the usual unit conversion. VPD asked of `[derive] vpd = "from-rh"` is derived at
//! each row and then averaged (the mean of VPD, not VPD of the mean). Days are calendar days of the table's
//! own clock. A day with fewer rows than the table's full days, or with an empty or non-numeric value, is an
//! error naming it: nothing is filled.

use std::collections::BTreeMap;
use std::path::Path;

use crate::climate::ClimateConstants;
use crate::error::{Error, Result};

use super::{Step, Var};

/// How a column aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Mean,
    Sum,
    Min,
    Max,
    /// A running total since the start of the day (ERA5-Land's accumulations): the day's total is its last
    /// sample.
    Accumulated,
}

impl Agg {
    /// The declared rule, or the default: a unit that is a total per time stamp (precipitation in mm, radiation
    /// in MJ m-2) sums, tmin takes the minimum, tmax the maximum, every other variable the mean. Summing a rate
    /// or a state, or averaging a total, is refused.
    pub fn parse(s: Option<&str>, var: Var, total: bool) -> std::result::Result<Agg, String> {
        let agg = match s {
            None if total => Agg::Sum,
            None => match var {
                Var::Tmin => Agg::Min,
                Var::Tmax => Agg::Max,
                _ => Agg::Mean,
            },
            Some("mean") => Agg::Mean,
            Some("sum") => Agg::Sum,
            Some("min") => Agg::Min,
            Some("max") => Agg::Max,
            Some("accumulated") => Agg::Accumulated,
            Some(o) => {
                return Err(format!(
                    "aggregate \"{o}\": one of mean, sum, min, max, accumulated"
                ))
            }
        };
        match (agg, total) {
            (Agg::Accumulated, false) => Err(
                "aggregate = \"accumulated\" reads running totals (declare the unit as a total, such as \"m\" or \
                 \"J m-2\")"
                    .into(),
            ),
            (Agg::Sum, false) => Err(
                "aggregate = \"sum\" adds up values that are not totals (declare the unit as a total per time \
                 stamp, such as \"mm\" or \"J m-2\", or aggregate by mean)"
                    .into(),
            ),
            (Agg::Mean | Agg::Min | Agg::Max, true) => Err(format!(
                "aggregate = \"{}\" on a unit that is a total per time stamp (only \"sum\" keeps its meaning)",
                agg.name()
            )),
            _ => Ok(agg),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Mean => "mean",
            Agg::Sum => "sum",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Accumulated => "accumulated",
        }
    }

    fn fold(self, v: &[f64]) -> f64 {
        match self {
            Agg::Mean => v.iter().sum::<f64>() / v.len() as f64,
            Agg::Sum => v.iter().sum(),
            Agg::Min => v.iter().cloned().fold(f64::INFINITY, f64::min),
            Agg::Max => v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            Agg::Accumulated => v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// Days of this rule add up to a step (totals), rather than average.
    pub fn adds_days(self) -> bool {
        matches!(self, Agg::Sum | Agg::Accumulated)
    }

    /// Days to a month: sums add up, every other rule averages the daily values.
    fn over_days(self, v: &[f64]) -> f64 {
        match self.adds_days() {
            true => v.iter().sum(),
            false => v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// One output column: its variable, the input column(s) and the rule.
pub struct Column {
    pub var: Var,
    /// Input column index (for a per-row VPD: temperature and relative humidity in %).
    pub source: Source,
    pub agg: Agg,
}

pub enum Source {
    Col(usize),
    /// VPD (Pa) from temperature (C) and relative humidity (%) columns, per row (FAO-56 eqs. 11 and 17 via
    /// models/climate.toml).
    VpdFromRh {
        t: usize,
        rh: usize,
        rh_factor: f64,
    },
}

type Day = (i32, u32, u32);

/// Each day's aggregated value of every column (errors for bad values and incomplete days, all at once).
fn daily_values(
    path: &Path,
    text: &str,
    time: [usize; 4],
    columns: &[Column],
    climate: &ClimateConstants,
) -> Result<BTreeMap<Day, Vec<f64>>> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    // Per day: the rows' values of each column.
    let mut days: BTreeMap<(i32, u32, u32), Vec<Vec<f64>>> = BTreeMap::new();
    let mut rows: BTreeMap<(i32, u32, u32), usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (li, rec) in rdr.records().enumerate() {
        let line = li + 2;
        let rec = rec.map_err(|e| Error::input(path, format!("line {line}: {e}")))?;
        let num = |i: usize| {
            rec.get(i)
                .unwrap_or("")
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
        };
        let (Some(y), Some(m), Some(d)) = (num(time[0]), num(time[1]), num(time[2])) else {
            problems.push(format!("line {line}: year, month or day is not a number"));
            continue;
        };
        let key = (y as i32, m as u32, d as u32);
        *rows.entry(key).or_default() += 1;
        let e = days
            .entry(key)
            .or_insert_with(|| vec![Vec::new(); columns.len()]);
        for (k, c) in columns.iter().enumerate() {
            let v = match c.source {
                Source::Col(i) => num(i),
                Source::VpdFromRh { t, rh, rh_factor } => match (num(t), num(rh)) {
                    (Some(t), Some(rh)) => {
                        Some(climate.vpd_from_rh_kpa(t, rh * rh_factor) * 1000.0)
                    }
                    _ => None,
                },
            };
            match v {
                Some(v) => e[k].push(v),
                None => problems.push(format!(
                    "line {line}: the value for {} is empty or not a number",
                    c.var.name()
                )),
            }
        }
    }
    let full = rows.values().copied().max().unwrap_or(0);
    let short: Vec<String> = rows
        .iter()
        .filter(|(_, n)| **n < full)
        .map(|((y, m, d), n)| format!("{y}-{m:02}-{d:02} ({n} of {full} rows)"))
        .collect();
    if !short.is_empty() {
        problems.push(format!(
            "{} incomplete day(s), which would bias their means: {}",
            short.len(),
            short
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(20);
        if n > 20 {
            problems.push(format!("... and {} more", n - 20));
        }
        return Err(Error::input(
            path,
            format!("sub-daily rows: {}", problems.join("; ")),
        ));
    }
    Ok(days
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                columns.iter().zip(&v).map(|(c, x)| c.agg.fold(x)).collect(),
            )
        })
        .collect())
}

/// Aggregate the rows to the step: a CSV text with `date` (YYYY-MM-DD or YYYY-MM) and one column per variable
/// (named by the variable), in the declared units (means of means, sums of sums).
pub fn aggregate(
    path: &Path,
    text: &str,
    time: [usize; 4],
    columns: &[Column],
    step: Step,
    climate: &ClimateConstants,
) -> Result<String> {
    let daily = daily_values(path, text, time, columns, climate)?;
    let mut out = String::from("date");
    for c in columns {
        out.push(',');
        out.push_str(c.var.name());
    }
    out.push('\n');
    let rows: Vec<(String, Vec<f64>)> = match step {
        Step::Day => daily
            .into_iter()
            .map(|((y, m, d), v)| (format!("{y}-{m:02}-{d:02}"), v))
            .collect(),
        Step::Month => monthly_values(path, &daily, columns)?,
    };
    for (date, vals) in rows {
        out.push_str(&date);
        for v in vals {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    Ok(out)
}

/// Months from complete days: the mean of the daily values (the sum for sums); a month missing a day is refused.
fn monthly_values(
    path: &Path,
    daily: &BTreeMap<Day, Vec<f64>>,
    columns: &[Column],
) -> Result<Vec<(String, Vec<f64>)>> {
    let mut months: BTreeMap<(i32, u32), Vec<&Vec<f64>>> = BTreeMap::new();
    for ((y, m, _), v) in daily {
        months.entry((*y, *m)).or_default().push(v);
    }
    let incomplete: Vec<String> = months
        .iter()
        .filter(|((y, m), ds)| {
            let first = chrono::NaiveDate::from_ymd_opt(*y, *m, 1).expect("valid month");
            let next = first
                .checked_add_months(chrono::Months::new(1))
                .expect("in range");
            ds.len() as i64 != (next - first).num_days()
        })
        .map(|((y, m), ds)| format!("{y}-{m:02} ({} days)", ds.len()))
        .collect();
    if !incomplete.is_empty() {
        return Err(Error::input(
            path,
            format!(
                "sub-daily rows: month(s) without every day, whose means would be biased: {}",
                incomplete.join(", ")
            ),
        ));
    }
    Ok(months
        .iter()
        .map(|((y, m), ds)| {
            let vals = columns
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    c.agg
                        .over_days(&ds.iter().map(|d| d[k]).collect::<Vec<_>>())
                })
                .collect();
            (format!("{y}-{m:02}"), vals)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_to_days_and_months_by_hand() {
        let c = ClimateConstants::builtin().unwrap();
        let cols = [
            Column {
                var: Var::Tmean,
                source: Source::Col(4),
                agg: Agg::Mean,
            },
            Column {
                var: Var::Tmin,
                source: Source::Col(4),
                agg: Agg::Min,
            },
            Column {
                var: Var::Precip,
                source: Source::Col(5),
                agg: Agg::Sum,
            },
        ];
        let text =
            "y,m,d,h,t,p\n2023,1,1,0,2,1\n2023,1,1,12,6,0.5\n2023,1,2,0,-2,0\n2023,1,2,12,4,2\n";
        // Day 1: mean 4, min 2, sum 1.5; day 2: mean 1, min -2, sum 2.
        let day = aggregate(Path::new("t.csv"), text, [0, 1, 2, 3], &cols, Step::Day, &c).unwrap();
        assert_eq!(
            day,
            "date,tmean,tmin,precip\n2023-01-01,4,2,1.5\n2023-01-02,1,-2,2\n"
        );
        // A month of those two days alone is refused (its mean would stand for 31 days).
        let e = aggregate(
            Path::new("t.csv"),
            text,
            [0, 1, 2, 3],
            &cols,
            Step::Month,
            &c,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2023-01 (2 days)"), "{e}");
        // February 2023 complete, days alternating: means of the daily values, precipitation summed.
        let mut feb = String::from("y,m,d,h,t,p\n");
        for d in 1..=28 {
            let (t, p) = if d % 2 == 0 { (4.0, 1.0) } else { (0.0, 0.0) };
            feb.push_str(&format!("2023,2,{d},0,{t},{p}\n2023,2,{d},12,{t},{p}\n"));
        }
        let month = aggregate(
            Path::new("t.csv"),
            &feb,
            [0, 1, 2, 3],
            &cols,
            Step::Month,
            &c,
        )
        .unwrap();
        // tmean: 14 days of 4 and 14 of 0 = 2; tmin likewise 2; precip 14 days x 2 rows x 1 = 28.
        assert_eq!(month, "date,tmean,tmin,precip\n2023-02,2,2,28\n");
        // A day with a row missing, and an empty value: errors naming them, nothing filled.
        let bad = "y,m,d,h,t,p\n2023,1,1,0,2,1\n2023,1,1,12,,0.5\n2023,1,2,0,-2,0\n";
        let e = aggregate(Path::new("t.csv"), bad, [0, 1, 2, 3], &cols, Step::Day, &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3: the value for tmean is empty"), "{e}");
        assert!(e.contains("2023-01-02 (1 of 2 rows)"), "{e}");
    }
}
