//! Carbon and CO2 quantities with declared units (models/units.toml): mass per cell per time (CDIAC's
//! "Tg C cell-1 yr-1") or flux density ("t CO2 km-2 yr-1", "g C m-2 yr-1"). Units are parsed from what the user
//! or the file declares, never guessed, and everything is converted to t CO2 yr-1 (per cell or per area).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models;

#[derive(Debug, Deserialize)]
struct UnitTables {
    mass_t: BTreeMap<String, toml::Value>,
    area_m2: BTreeMap<String, toml::Value>,
    per_year: BTreeMap<String, toml::Value>,
    species: Species,
}

#[derive(Debug, Deserialize)]
struct Species {
    co2_per_c: f64,
    carbon_g_per_mol: f64,
}

fn tables() -> &'static UnitTables {
    static T: OnceLock<UnitTables> = OnceLock::new();
    T.get_or_init(|| {
        models::parse_toml(
            models::embedded("units.toml").expect("models/units.toml is embedded"),
            &models::embedded_path("units.toml"),
        )
        .expect("models/units.toml is valid (checked by the test suite)")
    })
}

/// Numeric entries of one table (citations are strings and skipped).
fn lookup(table: &BTreeMap<String, toml::Value>, key: &str) -> Option<f64> {
    match table.get(key)? {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn names(table: &BTreeMap<String, toml::Value>) -> String {
    table
        .iter()
        .filter(|(_, v)| !v.is_str())
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mass of CO2 per mass of carbon (44/12, models/units.toml).
pub fn co2_per_c() -> f64 {
    tables().species.co2_per_c
}

/// Grams of carbon per mole (models/units.toml).
pub fn carbon_g_per_mol() -> f64 {
    tables().species.carbon_g_per_mol
}

/// Seconds per day: the year's seconds over its days (models/units.toml's per_year table).
pub fn seconds_per_day() -> f64 {
    lookup(&tables().per_year, "s").expect("s") / lookup(&tables().per_year, "d").expect("d")
}

/// What a value is per: one lattice cell (a mass), or an area (a flux density).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    PerCell,
    /// Per this many square metres.
    PerArea(f64),
}

/// A declared carbon unit: mass (in tonnes), species (C or CO2), basis, time.
#[derive(Debug, Clone, PartialEq)]
pub struct CarbonUnit {
    pub text: String,
    tonnes: f64,
    co2: bool,
    pub basis: Basis,
    per_year: f64,
}

impl CarbonUnit {
    /// Parse "<mass> <C|CO2> <cell-1|m-2|ha-1|km-2> <yr-1|a-1|d-1|s-1>", for example "Tg C cell-1 yr-1".
    pub fn parse(text: &str) -> std::result::Result<CarbonUnit, String> {
        let t = tables();
        let toks: Vec<&str> = text.split_whitespace().collect();
        let form = "expected \"<mass> <C|CO2> <cell-1|m-2|ha-1|km-2> <yr-1|d-1|s-1>\", for example \"Tg C cell-1 yr-1\" or \"t CO2 km-2 yr-1\"";
        if toks.len() != 4 {
            return Err(format!("unit \"{text}\": {form}"));
        }
        let tonnes = lookup(&t.mass_t, toks[0]).ok_or_else(|| {
            format!(
                "unit \"{text}\": unknown mass unit \"{}\" (known: {})",
                toks[0],
                names(&t.mass_t)
            )
        })?;
        let co2 = match toks[1] {
            "C" => false,
            "CO2" => true,
            s => return Err(format!("unit \"{text}\": species \"{s}\" must be C or CO2")),
        };
        let basis = if toks[2] == "cell-1" {
            Basis::PerCell
        } else {
            let (name, power) = toks[2]
                .rsplit_once('-')
                .ok_or_else(|| format!("unit \"{text}\": \"{}\": {form}", toks[2]))?;
            let key = match (name, power) {
                ("m", "2") => "m2",
                ("km", "2") => "km2",
                ("ha", "1") => "ha",
                _ => {
                    return Err(format!(
                        "unit \"{text}\": area \"{}\" must be cell-1, m-2, ha-1 or km-2",
                        toks[2]
                    ))
                }
            };
            Basis::PerArea(lookup(&t.area_m2, key).expect("models/units.toml has m2, ha, km2"))
        };
        let per_year = toks[3]
            .strip_suffix("-1")
            .and_then(|k| lookup(&t.per_year, k))
            .ok_or_else(|| {
                format!(
                    "unit \"{text}\": time \"{}\" must be one of {} with -1 (per year, per day ...)",
                    toks[3],
                    names(&t.per_year)
                )
            })?;
        Ok(CarbonUnit {
            text: text.to_string(),
            tonnes,
            co2,
            basis,
            per_year,
        })
    }

    /// Parse, with an error naming the file the unit was declared for.
    pub fn parse_for(text: &str, path: &std::path::Path) -> Result<CarbonUnit> {
        CarbonUnit::parse(text).map_err(|e| Error::input(path, e))
    }

    fn tco2_factor(&self) -> f64 {
        self.tonnes * if self.co2 { 1.0 } else { co2_per_c() } * self.per_year
    }

    /// A value in this unit as t CO2 yr-1 over an area of `area_m2` (the cell's or pixel's true area).
    pub fn to_tco2_yr(&self, v: f64, area_m2: f64) -> f64 {
        match self.basis {
            Basis::PerCell => v * self.tco2_factor(),
            Basis::PerArea(m2) => v * self.tco2_factor() * area_m2 / m2,
        }
    }

    /// t CO2 yr-1 over an area of `area_m2` expressed in this unit (the inverse of `to_tco2_yr`).
    pub fn from_tco2_yr(&self, mass: f64, area_m2: f64) -> f64 {
        match self.basis {
            Basis::PerCell => mass / self.tco2_factor(),
            Basis::PerArea(m2) => mass / self.tco2_factor() / area_m2 * m2,
        }
    }
}

impl CarbonUnit {
    /// The factor that converts a value in this unit to `other` (both flux densities, or both per cell).
    pub fn factor_to(&self, other: &CarbonUnit) -> std::result::Result<f64, String> {
        match (self.basis, other.basis) {
            // Exactly 1 for the same unit (the general formula may round to 1 +- 1 ulp).
            _ if self == other => Ok(1.0),
            (Basis::PerArea(a), Basis::PerArea(b)) => {
                Ok(self.tco2_factor() / a * b / other.tco2_factor())
            }
            (Basis::PerCell, Basis::PerCell) => Ok(self.tco2_factor() / other.tco2_factor()),
            _ => Err(format!(
                "\"{}\" and \"{}\" cannot be converted: one is per area, the other per cell",
                self.text, other.text
            )),
        }
    }
}

/// The unit every fine-grid output uses: t CO2 ha-1 yr-1.
pub const DENSITY_OUT: &str = "t CO2 ha-1 yr-1";
/// The unit of per-cell and per-zone totals: t CO2 yr-1.
pub const MASS_OUT: &str = "t CO2 yr-1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_by_hand() {
        // 1 Tg C cell-1 yr-1 = 1e6 t C = 1e6 x 44/12 t CO2 = 3.6667e6 t CO2 yr-1, whatever the cell area.
        let u = CarbonUnit::parse("Tg C cell-1 yr-1").unwrap();
        assert!((u.to_tco2_yr(1.0, 123.0) - 1e6 * 44.0 / 12.0).abs() < 1e-6);
        // UK lattice: 0.00149 Tg CO2 km-2 yr-1 over a 20 km cell (4e8 m2 = 400 km2) = 596 000 t CO2 yr-1.
        let u = CarbonUnit::parse("Tg CO2 km-2 yr-1").unwrap();
        assert!((u.to_tco2_yr(0.00149, 4e8) - 596_000.0).abs() < 1e-6);
        // 100 g C m-2 yr-1 over 1 ha = 1e6 g C = 1 t C = 44/12 t CO2.
        let u = CarbonUnit::parse("g C m-2 yr-1").unwrap();
        assert!((u.to_tco2_yr(100.0, 1e4) - 44.0 / 12.0).abs() < 1e-12);
        // 1e-9 kg CO2 m-2 s-1 over 1 km2 = 1e-3 kg s-1 x 31 557 600 s = 31.5576 t CO2 yr-1.
        let u = CarbonUnit::parse("kg CO2 m-2 s-1").unwrap();
        assert!((u.to_tco2_yr(1e-9, 1e6) - 31.5576).abs() < 1e-9);
        // ForC's 1 Mg C ha-1 yr-1 = 1e6 g C / 1e4 m2 = 100 g C m-2 yr-1; 1 g C m-2 d-1 = 365.25 g C m-2 yr-1.
        let forc = CarbonUnit::parse("Mg C ha-1 yr-1").unwrap();
        let gm2 = CarbonUnit::parse("g C m-2 yr-1").unwrap();
        assert!((forc.factor_to(&gm2).unwrap() - 100.0).abs() < 1e-9);
        let daily = CarbonUnit::parse("g C m-2 d-1").unwrap();
        assert!((daily.factor_to(&gm2).unwrap() - 365.25).abs() < 1e-9);
        assert!(CarbonUnit::parse("Tg C cell-1 yr-1")
            .unwrap()
            .factor_to(&gm2)
            .is_err());
        // Tower GPP: 1 umol CO2 m-2 s-1 = 1e-6 mol x 86400 s d-1 x 12.011 g C mol-1 = 1.0377504 g C m-2 d-1.
        assert!((1e-6 * seconds_per_day() * carbon_g_per_mol() - 1.0377504).abs() < 1e-9);
        // Round trip.
        let u = CarbonUnit::parse("t CO2 ha-1 yr-1").unwrap();
        assert!((u.from_tco2_yr(u.to_tco2_yr(2.5, 900.0), 900.0) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn bad_units_say_why() {
        for (text, says) in [
            ("Tg C per cell", "expected"),
            ("Zg C cell-1 yr-1", "unknown mass unit"),
            ("t CH4 ha-1 yr-1", "must be C or CO2"),
            ("t C acre-1 yr-1", "must be cell-1"),
            ("t C ha-1 fortnight-1", "time"),
        ] {
            let e = CarbonUnit::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
