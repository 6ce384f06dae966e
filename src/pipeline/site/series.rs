//! A site's daily drivers over a range of years, read once from a drivers file's station table: every
//! variable the model needs (all missing ones named at once) and every optional one that is available.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::drivers::{Drivers, Step, Var};
use crate::error::{Error, Result};
use crate::io::Window;

pub struct Series {
    pub source: PathBuf,
    pub latitude: Option<f64>,
    pub elevation: Option<f64>,
    pub dates: Vec<NaiveDate>,
    /// Index of the first day of each year.
    pub year_starts: Vec<(i32, usize)>,
    values: BTreeMap<Var, Vec<f64>>,
}

impl Series {
    /// Days of `years` (inclusive). `required` are (variable, why) pairs; `optional` are read when available.
    pub fn load(
        path: &Path,
        years: (i32, i32),
        required: &[(Var, &str)],
        optional: &[Var],
    ) -> Result<Series> {
        let mut s = Series {
            source: path.to_path_buf(),
            latitude: None,
            elevation: None,
            dates: vec![],
            year_starts: vec![],
            values: BTreeMap::new(),
        };
        for year in years.0..=years.1 {
            let d = Drivers::load(path, year)?;
            if d.step != Step::Day {
                return Err(Error::config(
                    &d.source,
                    "the site models are daily: step = \"day\"",
                ));
            }
            d.check_available(required)?;
            s.latitude = d.latitude;
            s.elevation = d.elevation;
            s.year_starts.push((year, s.dates.len()));
            let vars: std::collections::BTreeSet<Var> = required
                .iter()
                .map(|r| r.0)
                .chain(optional.iter().copied().filter(|&v| d.available(v)))
                .collect();
            for (i, st) in d.steps.iter().enumerate() {
                s.dates
                    .push(NaiveDate::from_yo_opt(year, st.doy).expect("valid day"));
                for &v in &vars {
                    let x = d.read(v, i, &Window::rows(0, 1, 1))?.at(0);
                    s.values.entry(v).or_default().push(x);
                }
            }
        }
        // An optional variable available in some years only is not used (a partial column would be
        // misaligned with the dates).
        let n = s.dates.len();
        s.values.retain(|_, v| v.len() == n);
        Ok(s)
    }

    pub fn get(&self, v: Var) -> Option<&[f64]> {
        self.values.get(&v).map(|x| x.as_slice())
    }

    /// A required variable (checked available when loading).
    pub fn req(&self, v: Var) -> &[f64] {
        self.get(v)
            .unwrap_or_else(|| panic!("{} was checked available", v.name()))
    }

    /// Calendar year of day `i`.
    pub fn year_of(&self, i: usize) -> i32 {
        self.year_starts
            .iter()
            .rev()
            .find(|(_, start)| *start <= i)
            .expect("day within the series")
            .0
    }
}
