//! The last fallback of the space-for-time substitution: a monthly NDVI profile of the new class's vegetation
//! type from a table (models/ndvi-climatology.toml, or the scenario's own `[substitution] climatology`), for a
//! month in which no pixel of the class anywhere in the scene has an NDVI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

const BUILTIN: &str = "ndvi-climatology.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    citation: String,
    region: String,
    profile: BTreeMap<String, Profile>,
}

/// Per calendar month, January first; NaN where the table has no observation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    median: [f64; 12],
    p25: [f64; 12],
    p75: [f64; 12],
    count: [u64; 12],
}

/// A table of profiles and where it came from.
pub struct Climatology {
    path: PathBuf,
    file: File,
}

/// One month of a profile.
pub struct MonthProfile {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub count: u64,
}

impl Climatology {
    /// The scenario's table, else the built-in one.
    pub fn load(path: Option<&Path>) -> Result<Climatology> {
        let (path, file) = match path {
            Some(p) => (p.to_path_buf(), crate::models::read_toml(p)?),
            None => {
                let text = crate::models::embedded(BUILTIN).ok_or_else(|| {
                    Error::Processing(format!("models/{BUILTIN} is not built in"))
                })?;
                let p = crate::models::embedded_path(BUILTIN);
                let f: File = crate::models::parse_toml(text, &p)?;
                (p, f)
            }
        };
        Ok(Climatology { path, file })
    }

    /// `vegetation_type`'s NDVI in calendar month `month` (1-12), when the table has one.
    pub fn month(&self, vegetation_type: &str, month: u32) -> Option<MonthProfile> {
        let p = self.file.profile.get(vegetation_type)?;
        let i = (month as usize).checked_sub(1).filter(|i| *i < 12)?;
        p.median[i].is_finite().then(|| MonthProfile {
            median: p.median[i],
            p25: p.p25[i],
            p75: p.p75[i],
            count: p.count[i],
        })
    }

    /// "models/ndvi-climatology.toml (REGION)", for scopes and warnings.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.path.display(), self.file.region)
    }

    pub fn citation(&self) -> &str {
        &self.file.citation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_reads_and_names_its_region() {
        let c = Climatology::load(None).unwrap();
        // scripts/make-ndvi-climatology.py: the forest class of the Ljubljana patch in June.
        let june = c.month("mixed_forest", 6).unwrap();
        assert_eq!(june.median, 0.6826);
        assert!(june.p25 < june.median && june.median < june.p75 && june.count > 1000);
        assert!(c.month("evergreen_needleleaf_forest", 6).is_none());
        assert!(c.month("mixed_forest", 13).is_none());
        assert!(c.describe().contains("Slovenia") && c.citation().contains("eo-learn"));
    }
}
