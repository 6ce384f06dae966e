//! Climate drivers for the NPP models: monthly (CASA) or daily (MOD17) temperature, precipitation, radiation
//! or PAR, and VPD, from rasters on any CRS and resolution (warped bilinear onto the analysis grid, checked to
//! cover it) or from a station table applied uniformly. Units are declared for every variable, converted to
//! the canonical units below, and values outside plausible ranges (models/drivers.toml) are refused with a
//! message that names the likely unit mistake. Derived variables (mean temperature, radiation from sunshine
//! hours, VPD from humidity or dew point) are computed only when the drivers file asks for them.
//!
//! Canonical units: temperatures deg C, precipitation mm per step, shortwave radiation and PAR MJ m-2 d-1
//! (the step's daily mean), VPD Pa, sunshine hours per day (the step's daily mean), relative humidity %,
//! FPAR 0-1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;
use serde::Deserialize;

mod cftime;
mod coarse;
mod gridded;
mod subdaily;

/// Aggregates of gridded archives kept for a second NPP job on the same grid (a scenario's).
pub use gridded::Reuse as ReuseAggregates;

use crate::climate::ClimateConstants;
use crate::error::{Error, Problems, Result};
use crate::io::{self, BandRequest, Grid, GridReader, RasterInfo, Resampling};
use crate::models;

/// Time step of a drivers file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Month,
    Day,
}

/// A driver variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Var {
    Tmean,
    Tmin,
    Tmax,
    Dewpoint,
    Precip,
    Srad,
    Par,
    Vpd,
    Rh,
    Sunshine,
    /// Relative sunshine duration n/N (fraction of the day length with bright sunshine).
    SunshineFraction,
    Fpar,
    /// Atmospheric CO2 mole fraction.
    Co2,
    /// Surface air pressure.
    Patm,
    /// Total cloud cover.
    CloudCover,
    /// Leaf area index (one-sided).
    Lai,
    /// Specific humidity (mass of vapour per mass of moist air).
    SpecificHumidity,
}

/// How a declared unit converts to the canonical one: canonical = value x factor + offset, where the factor
/// may depend on the step length in days.
#[derive(Debug, Clone, Copy)]
enum Conv {
    Linear(f64, f64),
    /// value x factor x days in the step (a daily rate summed over the step).
    PerDayTimesDays(f64),
    /// value x factor / days in the step (a step total spread over its days).
    TotalOverDays(f64),
}

struct UnitDef {
    var: Var,
    unit: &'static str,
    conv: Conv,
}

/// Every accepted (variable, unit) pair. Factors are unit definitions (1 W = 1 J s-1, 86400 s d-1 ...);
/// PAR photon-energy conversions use models/climate.toml and are applied separately.
#[rustfmt::skip]
const UNITS: &[UnitDef] = &[
    UnitDef {
        var: Var::Tmean,
        unit: "degC",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Tmean,
        unit: "K",
        conv: Conv::Linear(1.0, -273.15),
    },
    UnitDef {
        var: Var::Tmin,
        unit: "degC",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Tmin,
        unit: "K",
        conv: Conv::Linear(1.0, -273.15),
    },
    UnitDef {
        var: Var::Tmax,
        unit: "degC",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Tmax,
        unit: "K",
        conv: Conv::Linear(1.0, -273.15),
    },
    UnitDef {
        var: Var::Dewpoint,
        unit: "degC",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Dewpoint,
        unit: "K",
        conv: Conv::Linear(1.0, -273.15),
    },
    UnitDef {
        var: Var::Precip,
        unit: "mm",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Precip,
        unit: "m",
        conv: Conv::Linear(1000.0, 0.0),
    },
    UnitDef {
        var: Var::Precip,
        unit: "mm d-1",
        conv: Conv::PerDayTimesDays(1.0),
    },
    UnitDef {
        var: Var::Precip,
        unit: "mm s-1",
        conv: Conv::PerDayTimesDays(86_400.0),
    },
    UnitDef {
        var: Var::Precip,
        unit: "kg m-2 s-1",
        conv: Conv::PerDayTimesDays(86_400.0),
    },
    UnitDef {
        var: Var::Srad,
        unit: "MJ m-2 d-1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Srad,
        unit: "kJ m-2 d-1",
        conv: Conv::Linear(1e-3, 0.0),
    },
    UnitDef {
        var: Var::Srad,
        unit: "W m-2",
        conv: Conv::Linear(0.0864, 0.0),
    },
    UnitDef {
        var: Var::Srad,
        unit: "MJ m-2",
        conv: Conv::TotalOverDays(1.0),
    },
    UnitDef {
        var: Var::Srad,
        unit: "J m-2",
        conv: Conv::TotalOverDays(1e-6),
    },
    UnitDef {
        var: Var::Srad,
        unit: "J m-2 d-1",
        conv: Conv::Linear(1e-6, 0.0),
    },
    UnitDef {
        var: Var::Par,
        unit: "MJ m-2 d-1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Par,
        unit: "W m-2",
        conv: Conv::Linear(0.0864, 0.0),
    },
    UnitDef {
        var: Var::Par,
        unit: "MJ m-2",
        conv: Conv::TotalOverDays(1.0),
    },
    UnitDef {
        var: Var::Par,
        unit: "J m-2",
        conv: Conv::TotalOverDays(1e-6),
    },
    UnitDef {
        var: Var::Vpd,
        unit: "Pa",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Vpd,
        unit: "hPa",
        conv: Conv::Linear(100.0, 0.0),
    },
    UnitDef {
        var: Var::Vpd,
        unit: "kPa",
        conv: Conv::Linear(1000.0, 0.0),
    },
    UnitDef {
        var: Var::Rh,
        unit: "%",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Rh,
        unit: "1",
        conv: Conv::Linear(100.0, 0.0),
    },
    UnitDef {
        var: Var::Sunshine,
        unit: "h d-1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Sunshine,
        unit: "h",
        conv: Conv::TotalOverDays(1.0),
    },
    UnitDef {
        var: Var::SunshineFraction,
        unit: "1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::SunshineFraction,
        unit: "%",
        conv: Conv::Linear(0.01, 0.0),
    },
    UnitDef {
        var: Var::Fpar,
        unit: "1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Fpar,
        unit: "%",
        conv: Conv::Linear(0.01, 0.0),
    },
    UnitDef {
        var: Var::Co2,
        unit: "ppm",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Co2,
        unit: "umol mol-1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Patm,
        unit: "Pa",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::Patm,
        unit: "hPa",
        conv: Conv::Linear(100.0, 0.0),
    },
    UnitDef {
        var: Var::Patm,
        unit: "kPa",
        conv: Conv::Linear(1000.0, 0.0),
    },
    UnitDef {
        var: Var::CloudCover,
        unit: "%",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::CloudCover,
        unit: "1",
        conv: Conv::Linear(100.0, 0.0),
    },
    UnitDef {
        var: Var::Lai,
        unit: "m2 m-2",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::SpecificHumidity,
        unit: "kg kg-1",
        conv: Conv::Linear(1.0, 0.0),
    },
    UnitDef {
        var: Var::SpecificHumidity,
        unit: "g kg-1",
        conv: Conv::Linear(1e-3, 0.0),
    },
];

/// PAR given as a photon flux; converted with models/climate.toml's umol J-1.
const PHOTON_UNITS: &[(&str, f64)] = &[
    // (unit, factor to umol m-2 s-1 as a daily mean)
    ("umol m-2 s-1", 1.0),
    ("mol m-2 s-1", 1e6),
    ("mol m-2 d-1", 1e6 / 86_400.0),
];

impl Var {
    pub const ALL: [Var; 17] = [
        Var::Tmean,
        Var::Tmin,
        Var::Tmax,
        Var::Dewpoint,
        Var::Precip,
        Var::Srad,
        Var::Par,
        Var::Vpd,
        Var::Rh,
        Var::Sunshine,
        Var::SunshineFraction,
        Var::Fpar,
        Var::Co2,
        Var::Patm,
        Var::CloudCover,
        Var::Lai,
        Var::SpecificHumidity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Var::Tmean => "tmean",
            Var::Tmin => "tmin",
            Var::Tmax => "tmax",
            Var::Dewpoint => "dewpoint",
            Var::Precip => "precip",
            Var::Srad => "srad",
            Var::Par => "par",
            Var::Vpd => "vpd",
            Var::Rh => "rh",
            Var::Sunshine => "sunshine",
            Var::SunshineFraction => "sunshine_fraction",
            Var::Fpar => "fpar",
            Var::Co2 => "co2",
            Var::Patm => "patm",
            Var::CloudCover => "cloud_cover",
            Var::Lai => "lai",
            Var::SpecificHumidity => "specific_humidity",
        }
    }

    /// Canonical unit, as written in messages and output metadata.
    pub fn unit(self) -> &'static str {
        match self {
            Var::Tmean | Var::Tmin | Var::Tmax | Var::Dewpoint => "degC",
            Var::Precip => "mm per step",
            Var::Srad | Var::Par => "MJ m-2 d-1",
            Var::Vpd => "Pa",
            Var::Rh => "%",
            Var::Sunshine => "h d-1",
            Var::SunshineFraction => "1",
            Var::Fpar => "1",
            Var::Co2 => "ppm",
            Var::Patm => "Pa",
            Var::CloudCover => "%",
            Var::Lai => "m2 m-2",
            Var::SpecificHumidity => "kg kg-1",
        }
    }

    /// Key of models/drivers.toml holding the plausible range.
    fn range_key(self) -> &'static str {
        match self {
            Var::Tmean => "tmean_degc",
            Var::Tmin => "tmin_degc",
            Var::Tmax => "tmax_degc",
            Var::Dewpoint => "dewpoint_degc",
            Var::Precip => "precip_mm_per_day",
            Var::Srad => "srad_mj_m2_d",
            Var::Par => "par_mj_m2_d",
            Var::Vpd => "vpd_pa",
            Var::Rh => "rh_percent",
            Var::Sunshine => "sunshine_h_per_day",
            Var::SunshineFraction => "sunshine_fraction",
            Var::Fpar => "fpar",
            Var::Co2 => "co2_ppm",
            Var::Patm => "patm_pa",
            Var::CloudCover => "cloud_cover_percent",
            Var::Lai => "lai_m2_m2",
            Var::SpecificHumidity => "specific_humidity_kg_kg",
        }
    }

    fn parse(s: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == s)
    }

    fn units(self) -> Vec<&'static str> {
        let mut u: Vec<_> = UNITS
            .iter()
            .filter(|d| d.var == self)
            .map(|d| d.unit)
            .collect();
        if self == Var::Par {
            u.extend(PHOTON_UNITS.iter().map(|p| p.0));
        }
        u
    }

    /// A hint for a value outside the plausible range.
    fn unit_hint(self, lo: f64, hi: f64) -> &'static str {
        match self {
            Var::Tmean | Var::Tmin | Var::Tmax | Var::Dewpoint if hi > 150.0 => {
                " (values look like Kelvin: declare unit = \"K\")"
            }
            Var::Srad | Var::Par if hi > 48.0 => {
                " (values look like W m-2 or a monthly total, not a daily MJ m-2 d-1 mean)"
            }
            Var::Precip if lo < 0.0 => " (precipitation cannot be negative)",
            Var::Precip => " (is a monthly total declared as a daily rate, or m declared as mm?)",
            Var::Rh if hi > 100.0 => " (relative humidity above 100 %)",
            _ => "",
        }
    }
}

/// How a missing variable may be derived (declared in the drivers file's [derive] table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// tmean = (tmax + tmin) / 2.
    MeanOfTmaxTmin,
    /// srad from sunshine hours, Angstrom-Prescott with FAO-56 extraterrestrial radiation.
    AngstromPrescott,
    /// The same from relative sunshine n/N.
    AngstromPrescottFraction,
    /// vpd = (e0(tmax) + e0(tmin)) / 2 - e0(tmin): the minimum temperature as dew point (FAO-56 eqs. 12, 48).
    TminAsDewpoint,
    /// vpd = e0(tmean) (1 - rh / 100).
    FromRh,
    /// vpd = e0(tmean) - e0(dewpoint).
    FromDewpoint,
    /// vpd = e0(tmean) - q p / (0.622 + 0.379 q), with MOD17's saturation curve (mod17 1.0.0 MOD17.vpd,
    /// as MOD17 derives VPD from MERRA-2 QV10M and PS).
    FromSpecificHumidity,
}

impl Rule {
    const ALL: [(Var, &'static str, Rule); 7] = [
        (Var::Tmean, "mean-of-tmax-tmin", Rule::MeanOfTmaxTmin),
        (Var::Srad, "angstrom-prescott", Rule::AngstromPrescott),
        (
            Var::Srad,
            "angstrom-prescott-fraction",
            Rule::AngstromPrescottFraction,
        ),
        (Var::Vpd, "tmin-as-dewpoint", Rule::TminAsDewpoint),
        (Var::Vpd, "from-rh", Rule::FromRh),
        (Var::Vpd, "from-dewpoint", Rule::FromDewpoint),
        (
            Var::Vpd,
            "from-specific-humidity",
            Rule::FromSpecificHumidity,
        ),
    ];

    fn inputs(self) -> &'static [Var] {
        match self {
            Rule::MeanOfTmaxTmin => &[Var::Tmax, Var::Tmin],
            Rule::AngstromPrescott => &[Var::Sunshine],
            Rule::AngstromPrescottFraction => &[Var::SunshineFraction],
            Rule::TminAsDewpoint => &[Var::Tmax, Var::Tmin],
            Rule::FromRh => &[Var::Tmean, Var::Rh],
            Rule::FromDewpoint => &[Var::Tmean, Var::Dewpoint],
            Rule::FromSpecificHumidity => &[Var::Tmean, Var::SpecificHumidity, Var::Patm],
        }
    }

    pub fn name(self) -> &'static str {
        Rule::ALL.iter().find(|r| r.2 == self).unwrap().1
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    column: String,
    unit: String,
    /// Sub-daily tables: how rows aggregate to a day (mean, sum, min, max; see subdaily.rs).
    aggregate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StationSpec {
    file: PathBuf,
    /// Station latitude (degrees north), needed for radiation from sunshine hours.
    latitude: Option<f64>,
    /// Station elevation (m above sea level), for the soil-water balance (SPLASH) and pressure from height.
    elevation: Option<f64>,
    /// A date column (YYYY-MM-DD, or YYYY-MM for monthly steps) ...
    date: Option<String>,
    /// ... or year / month (/ day) columns; a month column alone makes a monthly climatology (12 rows that
    /// stand for any year).
    year: Option<String>,
    month: Option<String>,
    day: Option<String>,
    /// Sub-daily rows (hourly, half-hourly): the hour column (and optionally the minute column); rows are
    /// aggregated to the drivers' step (subdaily.rs). Needs year, month and day columns.
    hour: Option<String>,
    minute: Option<String>,
    /// "standard" (default) or "noleap" (365-day years, as data that drop 29 February).
    #[serde(default)]
    calendar: Option<String>,
    /// "climatology": months of the year missing from the table take the mean of the same month over the
    /// table's other years (monthly steps only; listed in every output's metadata).
    fill_missing_months: Option<String>,
    columns: BTreeMap<String, ColumnSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RasterSpec {
    file: PathBuf,
    unit: String,
    /// Band holding the first step of the year (default 1); step i is band first_band + i.
    first_band: Option<usize>,
    /// "coordinate": each step's samples by the file's time coordinate (NetCDF, Zarr), instead of by number;
    /// several samples in a step (hourly, daily) are aggregated (see drivers/gridded.rs).
    time: Option<String>,
    /// With `time = "coordinate"`: how a day's samples aggregate (mean, sum, min, max; default by variable
    /// and unit, as station tables).
    aggregate: Option<String>,
    /// With `time = "coordinate"`: hours added to every time stamp before it is placed in a day (-1 for
    /// accumulations stamped at the end of their hour, as ERA5's).
    time_shift_hours: Option<f64>,
    /// With `time = "coordinate"`: the CRS of a file that carries none (such as "EPSG:4326").
    crs: Option<String>,
    /// Multiplier and offset applied to the stored values before unit conversion (default: the band's own
    /// GDAL scale and offset, else 1 and 0).
    scale: Option<f64>,
    offset: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriversFile {
    step: Step,
    station: Option<StationSpec>,
    #[serde(default)]
    raster: BTreeMap<String, RasterSpec>,
    #[serde(default)]
    derive: BTreeMap<String, String>,
    /// Variables constant over the year and the area, each with its source (such as the year's CO2).
    #[serde(default)]
    constant: BTreeMap<String, ConstantSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstantSpec {
    value: f64,
    unit: String,
    /// Where the value comes from (required: a constant is a claim about the world).
    source: String,
}

/// One time step of the year.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub month: u32,
    pub days: u32,
    /// Day of year used for astronomical quantities (mid-month, FAO-56: the 15th).
    pub doy: u32,
}

/// Values of one variable at one step over a strip: one value for the whole area, or one per pixel.
#[derive(Debug, Clone)]
pub enum Plane {
    Uniform(f64),
    Grid(Vec<f32>),
}

impl Plane {
    #[inline]
    pub fn at(&self, px: usize) -> f64 {
        match self {
            Plane::Uniform(v) => *v,
            Plane::Grid(g) => g[px] as f64,
        }
    }
}

struct RasterDriver {
    path: PathBuf,
    /// The raster's own grid (for the coverage check).
    grid: Grid,
    unit: String,
    /// The band of each step of the year.
    bands: Vec<usize>,
    scale: f64,
    offset: f64,
    nodata: Option<f64>,
    /// Behind a lock: the variables of a strip are read in parallel, each reader by one thread at a time.
    reader: Option<std::sync::Mutex<GridReader>>,
    /// Or, for a coarse raster, its values over the grid in memory, interpolated in the kernel.
    coarse: Option<coarse::Coarse>,
    /// Aggregated samples (time = "coordinate" with several samples a step): the scratch folder holding
    /// `path`, and how the steps were made.
    _scratch: Option<std::sync::Arc<crate::scratch::Scratch>>,
    aggregation: Option<String>,
    /// Samples planned, not yet aggregated (`Drivers::inspect`): no bands to read until `Drivers::aggregate`.
    planned: Option<Box<gridded::Planned>>,
}

impl RasterDriver {
    /// A stored value in the canonical unit (NaN for nodata): scale and offset, then the unit conversion.
    #[inline]
    fn value(&self, conv: Resolved, stored: f32, days: f64, climate: &ClimateConstants) -> f32 {
        let raw = stored as f64;
        if self.nodata == Some(raw) || stored.is_nan() {
            f32::NAN
        } else {
            conv.apply(raw * self.scale + self.offset, days, climate) as f32
        }
    }

    /// The conversion of this raster's unit (checked when the drivers file was read).
    fn conversion(&self, var: Var) -> Resolved {
        Resolved::of(var, &self.unit).expect("unit checked when the drivers were read")
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct Range {
    min: f64,
    max: f64,
}

/// The climate drivers of one year.
pub struct Drivers {
    pub source: PathBuf,
    pub step: Step,
    pub year: i32,
    pub steps: Vec<StepInfo>,
    pub latitude: Option<f64>,
    /// Station elevation, m above sea level (station.elevation).
    pub elevation: Option<f64>,
    /// Months filled from the station's climatology (fill_missing_months = "climatology").
    pub filled_months: Vec<String>,
    /// The station table is a monthly climatology (a month column, no year): its 12 rows stand for any year.
    pub climatology_table: bool,
    station: BTreeMap<Var, Vec<f64>>,
    /// Constants (`[constant]`), with their sources; read like station columns.
    constants: BTreeMap<Var, String>,
    rasters: BTreeMap<Var, RasterDriver>,
    derive: BTreeMap<Var, Rule>,
    climate: ClimateConstants,
    ranges: BTreeMap<String, Range>,
    /// The analysis grid, for per-pixel latitudes (radiation from sunshine without a station latitude).
    grid: Option<Grid>,
    /// The last interpolation stencil of a coarse raster, shared by the variables on the same source grid.
    stencils: coarse::StencilCache,
}

/// One `[raster.NAME]` entry of a drivers file: its variable, unit, file and bands checked.
fn raster_driver(
    k: &str,
    spec: &RasterSpec,
    path: &Path,
    (steps, step, year): (&[StepInfo], Step, i32),
) -> Result<(Var, RasterDriver)> {
    let Some(var) = Var::parse(k) else {
        return Err(Error::config(path, format!("raster.{k}: unknown variable")));
    };
    check_unit(var, &spec.unit, path, &format!("raster.{k}"))?;
    let p = io::join_source(
        path.parent().unwrap_or(Path::new(".")),
        &spec.file.to_string_lossy(),
    );
    if let Some(t) = &spec.time {
        let at = (steps, step, year);
        return timed_driver((k, var, spec, t), (&p, path), at);
    }
    for (set, what) in [
        (spec.aggregate.is_some(), "aggregate"),
        (spec.time_shift_hours.is_some(), "time_shift_hours"),
        (spec.crs.is_some(), "crs"),
    ] {
        if set {
            return Err(Error::config(
                path,
                format!("raster.{k}: {what} applies only with time = \"coordinate\""),
            ));
        }
    }
    let info = RasterInfo::read(&p)?;
    let own_grid = info.grid()?;
    let first = spec.first_band.unwrap_or(1);
    let last = first + steps.len() - 1;
    if first == 0 || last > info.bands.len() {
        return Err(Error::input(
            &p,
            format!(
                "{k}: needs bands {first}..{last} for the {} {}s of {year}, but the file has {} band(s)",
                steps.len(),
                if step == Step::Month { "month" } else { "day" },
                info.bands.len()
            ),
        ));
    }
    let b = &info.bands[first - 1];
    Ok((
        var,
        RasterDriver {
            path: p,
            grid: own_grid,
            unit: spec.unit.clone(),
            bands: (first..=last).collect(),
            scale: spec.scale.or(b.scale).unwrap_or(1.0),
            offset: spec.offset.or(b.offset).unwrap_or(0.0),
            nodata: b.nodata,
            reader: None,
            coarse: None,
            _scratch: None,
            aggregation: None,
            planned: None,
        },
    ))
}

/// A `[raster.NAME]` entry with `time = "coordinate"`: its steps by the file's time coordinate, aggregated
/// when the file has several samples a step.
fn timed_driver(
    (k, var, spec, t): (&str, Var, &RasterSpec, &str),
    (p, path): (&Path, &Path),
    (steps, step, year): (&[StepInfo], Step, i32),
) -> Result<(Var, RasterDriver)> {
    if t != "coordinate" {
        return Err(Error::config(
            path,
            format!("raster.{k}: time = \"{t}\": only \"coordinate\" (bands by the file's time coordinate)"),
        ));
    }
    if spec.first_band.is_some() {
        return Err(Error::config(
            path,
            format!("raster.{k}: time = \"coordinate\" and first_band exclude each other"),
        ));
    }
    let agg = subdaily::Agg::parse(
        spec.aggregate.as_deref(),
        var,
        unit_is_total(var, &spec.unit),
    )
    .map_err(|e| Error::config(path, format!("raster.{k}: {e}")))?;
    let s = gridded::select(&gridded::Request {
        path: p,
        name: k,
        steps,
        step,
        year,
        agg,
        shift_hours: spec.time_shift_hours.unwrap_or(0.0),
        crs: spec.crs.as_deref(),
        scale: spec.scale,
        offset: spec.offset,
    })?;
    Ok((
        var,
        RasterDriver {
            path: s.path,
            grid: s.grid,
            unit: spec.unit.clone(),
            bands: s.bands,
            scale: s.scale,
            offset: s.offset,
            nodata: s.nodata,
            reader: None,
            coarse: None,
            _scratch: s.scratch,
            aggregation: s.note.map(|n| format!("{n}, from {}", p.display())),
            planned: s.planned.map(Box::new),
        },
    ))
}

/// `[constant]` entries as station series (one value for every step), each with its source for provenance;
/// problems (unknown variable, unit, empty source, also a station column) are collected.
fn add_constants(
    spec: &BTreeMap<String, ConstantSpec>,
    path: &Path,
    steps: &[StepInfo],
    climate: &ClimateConstants,
    station: &mut BTreeMap<Var, Vec<f64>>,
    problems: &mut Problems,
) -> BTreeMap<Var, String> {
    let mut constants = BTreeMap::new();
    for (k, c) in spec {
        let Some(var) = Var::parse(k) else {
            problems.push(Error::config(
                path,
                format!("constant.{k}: unknown variable"),
            ));
            continue;
        };
        if let Err(e) = check_unit(var, &c.unit, path, &format!("constant.{k}")) {
            problems.push(e);
            continue;
        }
        if c.source.trim().is_empty() {
            problems.push(Error::config(
                path,
                format!("constant.{k}: source is empty (say where the value comes from)"),
            ));
            continue;
        }
        if station.contains_key(&var) {
            problems.push(Error::config(
                path,
                format!("{k} is given both as a station column and as a constant"),
            ));
            continue;
        }
        let vals = steps
            .iter()
            .map(|s| convert(var, &c.unit, c.value, s.days as f64, climate).expect("unit checked"))
            .collect();
        station.insert(var, vals);
        constants.insert(
            var,
            format!("constant {} {} ({})", c.value, c.unit, c.source),
        );
    }
    constants
}

/// The `[derive]` rules of a drivers file (unknown variables and rules are problems).
fn derive_rules(
    rules: &BTreeMap<String, String>,
    path: &Path,
    problems: &mut Problems,
) -> BTreeMap<Var, Rule> {
    let mut derive = BTreeMap::new();
    for (k, rule) in rules {
        let Some(var) = Var::parse(k) else {
            problems.push(Error::config(path, format!("derive.{k}: unknown variable")));
            continue;
        };
        match Rule::ALL.iter().find(|r| r.0 == var && r.1 == rule) {
            Some(r) => {
                derive.insert(var, r.2);
            }
            None => problems.push(Error::config(
                path,
                format!(
                    "derive.{k} = \"{rule}\": not a known rule for {k} (known: {})",
                    Rule::ALL
                        .iter()
                        .filter(|r| r.0 == var)
                        .map(|r| r.1)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    derive
}

fn ranges() -> Result<BTreeMap<String, Range>> {
    let mut r: BTreeMap<String, Range> = models::parse_toml(
        models::embedded("drivers.toml").expect("embedded"),
        &models::embedded_path("drivers.toml"),
    )?;
    r.insert("fpar".into(), Range { min: 0.0, max: 1.0 });
    Ok(r)
}

/// A (variable, unit) pair's conversion to the canonical unit, found once (not per pixel).
#[derive(Debug, Clone, Copy)]
enum Resolved {
    Conv(Conv),
    /// PAR as photon flux: factor to umol m-2 s-1, then models/climate.toml's conversion.
    Photon(f64),
}

impl Resolved {
    fn of(var: Var, unit: &str) -> Option<Resolved> {
        if let Some(d) = UNITS.iter().find(|d| d.var == var && d.unit == unit) {
            return Some(Resolved::Conv(d.conv));
        }
        if var == Var::Par {
            if let Some((_, f)) = PHOTON_UNITS.iter().find(|p| p.0 == unit) {
                return Some(Resolved::Photon(*f));
            }
        }
        None
    }

    #[inline]
    fn apply(self, v: f64, days: f64, climate: &ClimateConstants) -> f64 {
        match self {
            Resolved::Conv(Conv::Linear(f, o)) => v * f + o,
            Resolved::Conv(Conv::PerDayTimesDays(f)) => v * f * days,
            Resolved::Conv(Conv::TotalOverDays(f)) => v * f / days,
            Resolved::Photon(f) => climate.ppfd_to_par_mj_m2_d(v * f),
        }
    }
}

/// Whether a value in `unit` is a total over its time stamp's interval (precipitation in mm, radiation in
/// MJ m-2): such values add up when samples are aggregated to a step; every other unit is a rate or a state.
fn unit_is_total(var: Var, unit: &str) -> bool {
    matches!(
        Resolved::of(var, unit),
        Some(Resolved::Conv(Conv::TotalOverDays(_)))
    ) || (var == Var::Precip
        && matches!(
            Resolved::of(var, unit),
            Some(Resolved::Conv(Conv::Linear(..)))
        ))
}

/// Convert a value in `unit` to the canonical unit of `var` for a step of `days` days.
fn convert(var: Var, unit: &str, v: f64, days: f64, climate: &ClimateConstants) -> Option<f64> {
    Resolved::of(var, unit).map(|r| r.apply(v, days, climate))
}

fn check_unit(var: Var, unit: &str, origin: &Path, what: &str) -> Result<()> {
    let ok = var.units();
    if ok.contains(&unit) {
        Ok(())
    } else {
        Err(Error::config(
            origin,
            format!(
                "{what}: unit \"{unit}\" is not accepted for {} (accepted: {})",
                var.name(),
                ok.join(", ")
            ),
        ))
    }
}

/// The steps of a year.
pub fn year_steps(step: Step, year: i32, noleap: bool) -> Vec<StepInfo> {
    match step {
        Step::Month => (1..=12)
            .map(|m| {
                let first = NaiveDate::from_ymd_opt(year, m, 1).unwrap();
                let next = if m == 12 {
                    NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap()
                } else {
                    NaiveDate::from_ymd_opt(year, m + 1, 1).unwrap()
                };
                let mut days = (next - first).num_days() as u32;
                if noleap && m == 2 {
                    days = 28;
                }
                StepInfo {
                    month: m,
                    days,
                    doy: first.ordinal() + 14,
                }
            })
            .collect(),
        Step::Day => {
            let mut d = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            let mut v = Vec::new();
            while d.year() == year {
                if !(noleap && d.month() == 2 && d.day() == 29) {
                    v.push(StepInfo {
                        month: d.month(),
                        days: 1,
                        doy: d.ordinal(),
                    });
                }
                d = d.succ_opt().unwrap();
            }
            v
        }
    }
}

impl Drivers {
    /// Read a drivers file for one year: units and derivations are checked, the station table (if any) is
    /// read and every step of the year must be present and plausible. Rasters are opened by `check`.
    pub fn load(path: &Path, year: i32) -> Result<Drivers> {
        let mut d = Drivers::inspect(path, year)?;
        d.aggregate(None)?;
        Ok(d)
    }

    /// `load` without aggregating gridded archives: their samples are only planned (every day of every step
    /// present with its full number of samples). `carbonmap check` stops here; a stage calls `aggregate`
    /// once every other input is checked, so a year of hourly fields is read once, and only to compute.
    pub fn inspect(path: &Path, year: i32) -> Result<Drivers> {
        let file: DriversFile = models::read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let climate = ClimateConstants::builtin()?;
        let ranges = ranges()?;
        let mut problems = Problems::new();
        let noleap = match file.station.as_ref().and_then(|s| s.calendar.as_deref()) {
            None | Some("standard") => false,
            Some("noleap") => true,
            Some(other) => {
                return Err(Error::config(
                    path,
                    format!("station.calendar \"{other}\": use \"standard\" or \"noleap\""),
                ))
            }
        };
        let steps = year_steps(file.step, year, noleap);

        let mut derive = derive_rules(&file.derive, path, &mut problems);
        let mut rasters = BTreeMap::new();
        for (k, spec) in &file.raster {
            match raster_driver(k, spec, path, (&steps, file.step, year)) {
                Ok((var, r)) => {
                    rasters.insert(var, r);
                }
                Err(e) => problems.push(e),
            }
        }

        let latitude = file.station.as_ref().and_then(|s| s.latitude);
        let (mut station, filled) = match &file.station {
            Some(s) => {
                let ctx = StationCtx {
                    path,
                    base,
                    step: file.step,
                    year,
                    steps: &steps,
                    noleap,
                    climate: &climate,
                };
                station_series(s, &ctx, &mut derive, &mut problems)
            }
            None => (BTreeMap::new(), Vec::new()),
        };
        let constants = add_constants(
            &file.constant,
            path,
            &steps,
            &climate,
            &mut station,
            &mut problems,
        );
        for v in station.keys() {
            if rasters.contains_key(v) {
                problems.push(Error::config(
                    path,
                    format!(
                        "{} is given both as a station column and as a raster",
                        v.name()
                    ),
                ));
            }
        }
        problems.finish()?;
        let d = Drivers {
            source: path.to_path_buf(),
            step: file.step,
            year,
            steps,
            latitude,
            elevation: file.station.as_ref().and_then(|s| s.elevation),
            filled_months: filled,
            climatology_table: file
                .station
                .as_ref()
                .is_some_and(|s| is_climatology_table(s, file.step)),
            station,
            constants,
            rasters,
            derive,
            climate,
            ranges,
            grid: None,
            stencils: Default::default(),
        };
        d.check_station_ranges()?;
        Ok(d)
    }

    fn range(&self, v: Var) -> Range {
        self.ranges[v.range_key()]
    }

    fn out_of_range(&self, var: Var, lo: f64, hi: f64, days: f64) -> Option<String> {
        let r = self.range(var);
        // Precipitation ranges are daily; compare the step's daily mean.
        let (lo_d, hi_d) = if var == Var::Precip {
            (lo / days, hi / days)
        } else {
            (lo, hi)
        };
        if lo_d < r.min || hi_d > r.max {
            Some(format!(
                "{} values {lo:.4}..{hi:.4} {} are outside the plausible range {}..{}{}{}",
                var.name(),
                var.unit(),
                r.min,
                r.max,
                if var == Var::Precip {
                    " mm d-1 (as a daily mean)"
                } else {
                    ""
                },
                var.unit_hint(lo_d, hi_d)
            ))
        } else {
            None
        }
    }

    fn check_station_ranges(&self) -> Result<()> {
        let mut problems = Vec::new();
        for (v, vals) in &self.station {
            for (i, (x, s)) in vals.iter().zip(&self.steps).enumerate() {
                if let Some(msg) = self.out_of_range(*v, *x, *x, s.days as f64) {
                    problems.push(format!(
                        "{}: {}: {msg}",
                        self.source.display(),
                        self.step_label(i)
                    ));
                    break;
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }

    pub fn step_label(&self, i: usize) -> String {
        let s = &self.steps[i];
        match self.step {
            Step::Month => format!("{}-{:02}", self.year, s.month),
            Step::Day => format!("{} day {}", self.year, s.doy),
        }
    }

    /// Is `var` given directly (not derived)?
    pub fn given(&self, var: Var) -> bool {
        self.station.contains_key(&var) || self.rasters.contains_key(&var)
    }

    /// Is `var` available, directly or through a declared derivation whose inputs are available?
    pub fn available(&self, var: Var) -> bool {
        self.given(var)
            || self
                .derive
                .get(&var)
                .is_some_and(|r| r.inputs().iter().all(|&i| self.available(i)))
    }

    /// How `var` is obtained, for metadata ("station column", "raster FILE", "derived: RULE").
    pub fn provenance(&self, var: Var) -> String {
        if let Some(c) = self.constants.get(&var) {
            c.clone()
        } else if self.station.contains_key(&var) {
            if self.climatology_table {
                "station table, a monthly climatology (no year column): the same 12 months for every year".into()
            } else if self.filled_months.is_empty() {
                "station table".into()
            } else {
                format!(
                    "station table; {} filled with the station's monthly climatology",
                    self.filled_months.join(", ")
                )
            }
        } else if let Some(r) = self.rasters.get(&var) {
            match &r.aggregation {
                Some(a) => format!("raster, {a} ({})", r.unit),
                None => format!("raster {} ({})", r.path.display(), r.unit),
            }
        } else if let Some(r) = self.derive.get(&var) {
            format!("derived: {}", r.name())
        } else {
            "not given".into()
        }
    }

    /// Check that every needed variable is available, and that driver rasters cover the grid and hold
    /// plausible values; all problems are reported together.
    pub fn check(&self, grid: &Grid, needs: &[(Var, &str)]) -> Result<()> {
        let mut problems = Problems::new();
        problems.take(self.check_available(needs));
        self.check_rasters(grid, &mut problems);
        problems.finish()
    }

    /// Every needed variable given or derivable (no grid needed: `carbonmap check` runs it before the
    /// stages that make the grid).
    pub fn check_available(&self, needs: &[(Var, &str)]) -> Result<()> {
        let mut problems = Problems::new();
        for &(v, why) in needs {
            if !self.available(v) {
                let rules: Vec<_> = Rule::ALL.iter().filter(|r| r.0 == v).collect();
                let how = if rules.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", or derive it: [derive] {} = {}",
                        v.name(),
                        rules
                            .iter()
                            .map(|r| format!(
                                "\"{}\" (needs {})",
                                r.1,
                                r.2.inputs()
                                    .iter()
                                    .map(|i| i.name())
                                    .collect::<Vec<_>>()
                                    .join(" and ")
                            ))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )
                };
                problems.push(Error::config(
                    &self.source,
                    format!(
                        "{} ({why}) is missing: give it as a station column or a raster{how}",
                        v.name()
                    ),
                ));
            }
        }
        problems.finish()
    }

    /// Each driver raster's path and own grid.
    pub fn raster_grids(&self) -> Vec<(PathBuf, Grid)> {
        let rasters = self.rasters.values();
        rasters.map(|r| (r.path.clone(), r.grid.clone())).collect()
    }

    /// Aggregate the gridded archives `inspect` planned, over the source cells under `within` (the analysis
    /// grid: an ERA5 file of a continent for a county's grid, a shard's part; None: every cell), then check
    /// the aggregates' values (`check` could not: they did not exist).
    pub fn aggregate(&mut self, within: Option<&Grid>) -> Result<()> {
        let mut problems = Problems::new();
        let mut made = Vec::new();
        for (v, r) in self.rasters.iter_mut() {
            let Some(p) = r.planned.take() else {
                continue;
            };
            let s = gridded::aggregate_planned(&p, within)?;
            r.aggregation = s.note.map(|n| format!("{n}, from {}", r.path.display()));
            (r.path, r.grid, r.bands) = (s.path, s.grid, s.bands);
            (r.scale, r.offset, r.nodata) = (s.scale, s.offset, s.nodata);
            r._scratch = s.scratch;
            made.push(*v);
        }
        for (v, r) in self.rasters.iter().filter(|(v, _)| made.contains(v)) {
            self.check_raster_values(*v, r, &mut problems);
        }
        problems.finish()
    }

    /// Driver rasters cover the grid and hold plausible values (the values of rasters whose samples are only
    /// planned are checked by `aggregate` once aggregated).
    fn check_rasters(&self, grid: &Grid, problems: &mut Problems) {
        if self.derive.get(&Var::Srad) == Some(&Rule::AngstromPrescott)
            && !self.given(Var::Srad)
            && self.rasters.contains_key(&Var::Sunshine)
        {
            problems.push(Error::config(
                &self.source,
                "radiation from sunshine hours is supported for station tables only; give srad rasters",
            ));
        }
        for (v, r) in &self.rasters {
            // A gridded archive with longitudes 0..360 is aggregated over a window placed at -180..180.
            let covered = match r.planned.is_some() {
                true => io::coverage_fraction_wrapped(grid, &r.grid),
                false => io::coverage_fraction(grid, &r.grid),
            };
            match covered {
                Ok(f) if f < 0.999 => problems.push(Error::input(
                    &r.path,
                    format!(
                        "{} driver does not cover the analysis grid (covers {:.1} % of its extent){}",
                        v.name(),
                        f * 100.0,
                        match io::longitudes_past_180(&r.grid) && !io::wraps_globe(&r.grid) {
                            true => "; its longitudes run 0..360 but not round the globe, so a grid that \
                                     crosses 0 degrees lies at both of its ends: give the global file (joined \
                                     across 0 degrees) or shift the file to -180..180 first (cdo \
                                     sellonlatbox,-180,180,-90,90 in.nc out.nc)",
                            false => "",
                        }
                    ),
                )),
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
            if r.planned.is_none() {
                self.check_raster_values(*v, r, problems);
            }
        }
    }

    /// One raster's values in the plausible range of its variable, step by step (the first bad step said).
    fn check_raster_values(&self, v: Var, r: &RasterDriver, problems: &mut Problems) {
        let bands = r.bands.clone();
        let ranges = match io::bands_min_max(&r.path, &bands) {
            Ok(x) => x,
            Err(e) => {
                problems.push(e);
                return;
            }
        };
        for (i, (s, mm)) in self.steps.iter().zip(ranges).enumerate() {
            let band = bands[i];
            let Some((lo, hi)) = mm else {
                problems.push(Error::band(
                    &r.path,
                    band.to_string(),
                    format!(
                        "{}: {} band has no valid value",
                        self.step_label(i),
                        v.name()
                    ),
                ));
                continue;
            };
            let c = |x: f64| {
                convert(
                    v,
                    &r.unit,
                    x * r.scale + r.offset,
                    s.days as f64,
                    &self.climate,
                )
                .unwrap()
            };
            let (a, b) = (c(lo), c(hi));
            if let Some(msg) = self.out_of_range(v, a.min(b), a.max(b), s.days as f64) {
                problems.push(Error::band(
                    &r.path,
                    band.to_string(),
                    format!("{}: {msg}", self.step_label(i)),
                ));
                break;
            }
        }
    }

    /// Open the driver rasters on the grid (call on the thread that reads).
    pub fn open(&mut self, grid: &Grid) -> Result<()> {
        self.grid = Some(grid.clone());
        let n = self.steps.len();
        for (v, r) in self.rasters.iter_mut() {
            let numbers = r.bands.clone();
            r.coarse = coarse::Coarse::load(&r.path, &r.grid, &numbers, r.nodata, grid)?;
            if r.coarse.is_some() {
                continue;
            }
            let bands: Vec<BandRequest> = (0..n)
                .map(|i| BandRequest {
                    index: r.bands[i],
                    name: format!("{} step {}", v.name(), i + 1),
                })
                .collect();
            r.reader = Some(std::sync::Mutex::new(GridReader::new(
                &r.path,
                &bands,
                grid,
                Resampling::Bilinear,
                None,
                f64::NAN,
            )?));
        }
        Ok(())
    }

    /// `read` for the steps `steps` of `var`: a raster variable's steps are read in one call (its file warped
    /// once per chunk for all of them); other variables step by step.
    pub fn read_steps(&self, var: Var, steps: &[usize], w: &io::Window) -> Result<Vec<Plane>> {
        let Some(r) = self
            .rasters
            .get(&var)
            .filter(|_| !self.station.contains_key(&var))
        else {
            return steps.iter().map(|&i| self.read(var, i, w)).collect();
        };
        let mut planes = vec![vec![0f32; w.len()]; steps.len()];
        let mut outs: Vec<&mut [f32]> = planes.iter_mut().map(|p| &mut p[..]).collect();
        self.stored(r, steps, w, &mut outs)?;
        // Units converted in parallel (each value on its own).
        let conv = r.conversion(var);
        planes
            .par_iter_mut()
            .zip(steps.par_iter())
            .for_each(|(plane, &i)| {
                let days = self.steps[i].days as f64;
                for x in plane.iter_mut() {
                    *x = r.value(conv, *x, days, &self.climate);
                }
            });
        Ok(planes.into_iter().map(Plane::Grid).collect())
    }

    /// Stored values of `steps` of raster driver `r` over `w`, one plane per step: interpolated in the kernel
    /// (coarse rasters) or warped by GDAL.
    fn stored(
        &self,
        r: &RasterDriver,
        steps: &[usize],
        w: &io::Window,
        planes: &mut [&mut [f32]],
    ) -> Result<()> {
        if let Some(c) = &r.coarse {
            let grid = self.grid.as_ref().expect("Drivers::open was called");
            let stencil = self.stencils.get(c, grid, w)?;
            c.sample(steps, &stencil, planes);
            return Ok(());
        }
        let reader = r.reader.as_ref().expect("Drivers::open was called");
        let reader = reader.lock().expect("driver reader lock");
        if let [one] = planes {
            return reader.read_window::<f32>(steps[0], w, one);
        }
        let mut buf = vec![0f32; w.len() * steps.len()];
        reader.read_bands(steps, w, &mut buf)?;
        for (plane, part) in planes.iter_mut().zip(buf.chunks_exact(w.len().max(1))) {
            plane.copy_from_slice(part);
        }
        Ok(())
    }

    /// Values of `var` at step `i` over the window `w` of the grid, derivations applied.
    pub fn read(&self, var: Var, i: usize, w: &io::Window) -> Result<Plane> {
        if let Some(v) = self.station.get(&var) {
            return Ok(Plane::Uniform(v[i]));
        }
        let days = self.steps[i].days as f64;
        if let Some(r) = self.rasters.get(&var) {
            let mut buf = vec![0f32; w.len()];
            self.stored(r, &[i], w, &mut [&mut buf[..]])?;
            let conv = r.conversion(var);
            for x in buf.iter_mut() {
                *x = r.value(conv, *x, days, &self.climate);
            }
            return Ok(Plane::Grid(buf));
        }
        let rule = *self
            .derive
            .get(&var)
            .unwrap_or_else(|| panic!("{} checked available", var.name()));
        let ins = rule
            .inputs()
            .iter()
            .map(|&v| self.read(v, i, w))
            .collect::<Result<Vec<_>>>()?;
        let c = &self.climate;
        let doy = self.steps[i].doy;
        // Latitude of each pixel (radiation rules without a station latitude), else None.
        let lats = match (rule, self.latitude) {
            (Rule::AngstromPrescott | Rule::AngstromPrescottFraction, None) => {
                let grid = self.grid.as_ref().ok_or_else(|| {
                    Error::config(
                        &self.source,
                        "radiation from sunshine needs the station's latitude (station.latitude)",
                    )
                })?;
                Some(io::window_latitudes(grid, w)?)
            }
            _ => None,
        };
        let f = |x: &[f64], px: usize| -> f64 {
            let lat = || {
                lats.as_ref()
                    .map(|l| l[px])
                    .or(self.latitude)
                    .expect("latitude")
            };
            match rule {
                Rule::MeanOfTmaxTmin => (x[0] + x[1]) / 2.0,
                Rule::AngstromPrescott => c.sunshine_to_radiation(lat(), doy, x[0]),
                Rule::AngstromPrescottFraction => {
                    let (_, n_max) = c.extraterrestrial(lat(), doy);
                    c.sunshine_to_radiation(lat(), doy, x[0] * n_max)
                }
                Rule::TminAsDewpoint => {
                    let es = (c.saturation_vp_kpa(x[0]) + c.saturation_vp_kpa(x[1])) / 2.0;
                    (es - c.saturation_vp_kpa(x[1])) * 1000.0
                }
                Rule::FromRh => c.vpd_from_rh_kpa(x[0], x[1]) * 1000.0,
                Rule::FromDewpoint => c.vpd_from_dewpoint_kpa(x[0], x[1]) * 1000.0,
                Rule::FromSpecificHumidity => c.vpd_from_specific_humidity_pa(x[0], x[1], x[2]),
            }
        };
        if lats.is_none() && ins.iter().all(|p| matches!(p, Plane::Uniform(_))) {
            let x: Vec<f64> = ins.iter().map(|p| p.at(0)).collect();
            return Ok(Plane::Uniform(f(&x, 0)));
        }
        let mut out = vec![0f32; w.len()];
        let mut x = vec![0.0; ins.len()];
        for (px, o) in out.iter_mut().enumerate() {
            for (k, p) in ins.iter().enumerate() {
                x[k] = p.at(px);
            }
            *o = f(&x, px) as f32;
        }
        Ok(Plane::Grid(out))
    }
}

/// What reading a station table needs to know of its drivers file.
struct StationCtx<'a> {
    path: &'a Path,
    base: &'a Path,
    step: Step,
    year: i32,
    steps: &'a [StepInfo],
    noleap: bool,
    climate: &'a ClimateConstants,
}

/// The station table's series of the year (sub-daily rows aggregated first; a VPD derived per row replaces
/// the `[derive]` rule) and the months filled from its climatology; problems collected.
fn station_series(
    s: &StationSpec,
    c: &StationCtx,
    derive: &mut BTreeMap<Var, Rule>,
    problems: &mut Problems,
) -> (BTreeMap<Var, Vec<f64>>, Vec<String>) {
    let path = c.path;
    if let Some(lat) = s.latitude {
        if !(-90.0..=90.0).contains(&lat) {
            problems.push(Error::config(
                path,
                format!("station.latitude {lat} is not in -90..90"),
            ));
        }
    }
    if let Some(z) = s.elevation {
        // The Dead Sea shore (-430 m) to the summit of Everest (8849 m).
        if !(-500.0..=9000.0).contains(&z) {
            problems.push(Error::config(
                path,
                format!("station.elevation {z} is not in -500..9000 m"),
            ));
        }
    }
    let agg = match s.hour {
        Some(_) => match subdaily_table(path, c.base, s, c.step, derive, c.climate) {
            Ok((spec, text, vpd_per_row)) => {
                if vpd_per_row {
                    derive.remove(&Var::Vpd);
                }
                Some((spec, text))
            }
            // Not read again as a table of steps: its sub-daily rows would add false problems.
            Err(e) => {
                problems.push(e);
                return (BTreeMap::new(), Vec::new());
            }
        },
        None => None,
    };
    let (spec, text) = match &agg {
        Some((spec, text)) => (spec, Some(text.as_str())),
        None => (s, None),
    };
    match read_station(
        path, c.base, spec, c.step, c.year, c.steps, c.noleap, c.climate, text,
    ) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e);
            (BTreeMap::new(), Vec::new())
        }
    }
}

/// The station table's columns: each a known variable with an accepted unit.
fn station_columns<'a>(s: &'a StationSpec, origin: &Path) -> Result<Vec<(Var, &'a ColumnSpec)>> {
    let mut vars = Vec::new();
    for (k, c) in &s.columns {
        let var = Var::parse(k).ok_or_else(|| {
            Error::config(
                origin,
                format!(
                    "station.columns.{k}: unknown variable (known: {})",
                    Var::ALL
                        .iter()
                        .map(|v| v.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        check_unit(var, &c.unit, origin, &format!("station.columns.{k}"))?;
        vars.push((var, c));
    }
    Ok(vars)
}

/// A monthly table with a month column and no year or date column: a climatology valid for any year.
fn is_climatology_table(s: &StationSpec, step: Step) -> bool {
    s.date.is_none() && s.year.is_none() && s.month.is_some() && step == Step::Month
}

/// The (year, month, day) of a station row, from its date column or its year / month (/ day) columns; rows of
/// a climatology table (no year column) belong to `year`.
fn row_date(
    rec: &csv::StringRecord,
    time_cols: &[Option<usize>],
    (line, year): (usize, i32),
    path: &Path,
) -> Result<(i32, u32, u32)> {
    let field = |i: usize| rec.get(i).unwrap_or("").trim();
    let parse_int = |i: usize, what: &str| -> Result<i64> {
        field(i).parse::<i64>().map_err(|_| {
            Error::input(
                path,
                format!("line {line}: {what} \"{}\" is not a whole number", field(i)),
            )
        })
    };
    if let Some(dc) = time_cols[0] {
        let t = field(dc);
        let parsed = NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(&format!("{t}-01"), "%Y-%m-%d"));
        let date = parsed.map_err(|_| {
            Error::input(
                path,
                format!("line {line}: date \"{t}\" is not YYYY-MM-DD or YYYY-MM"),
            )
        })?;
        return Ok((date.year(), date.month(), date.day()));
    }
    let y = match time_cols[1] {
        Some(c) => parse_int(c, "year")? as i32,
        None => year,
    };
    let m = parse_int(time_cols[2].unwrap(), "month")?;
    let d = match time_cols[3] {
        Some(c) => parse_int(c, "day")?,
        None => 1,
    };
    if !(1..=12).contains(&m) {
        return Err(Error::input(
            path,
            format!("line {line}: month {m} is not 1..12"),
        ));
    }
    Ok((y, m as u32, d as u32))
}

/// The date of a row of the simulated year and its step's index (month, or day of a standard or 365-day year).
fn step_index(
    (y, m, d): (i32, u32, u32),
    step: Step,
    noleap: bool,
    line: usize,
    path: &Path,
) -> Result<(NaiveDate, usize)> {
    let Some(date) = NaiveDate::from_ymd_opt(y, m, d) else {
        return Err(Error::input(
            path,
            format!("line {line}: {y}-{m}-{d} is not a date"),
        ));
    };
    if noleap && m == 2 && d == 29 {
        return Err(Error::input(
            path,
            format!("line {line}: 29 February in a table declared calendar = \"noleap\""),
        ));
    }
    let leap_shift = u32::from(noleap && date.leap_year() && m > 2);
    let idx = match step {
        Step::Month => (m - 1) as usize,
        Step::Day => (date.ordinal() - leap_shift - 1) as usize,
    };
    Ok((date, idx))
}

/// Months of the year without a row take the mean of the same month over the table's other years (when
/// every variable has one); returns the months filled.
fn fill_from_climatology(
    out: &mut BTreeMap<Var, Vec<f64>>,
    seen: &mut [bool],
    clim: &BTreeMap<(Var, u32), (f64, usize)>,
    steps: &[StepInfo],
    year: i32,
) -> Vec<String> {
    let mut filled = Vec::new();
    for (i, st) in steps.iter().enumerate() {
        if seen[i] {
            continue;
        }
        let mut complete = true;
        for (v, plane) in out.iter_mut() {
            match clim.get(&(*v, st.month)) {
                Some((sum, n)) if *n > 0 => plane[i] = sum / *n as f64,
                _ => complete = false,
            }
        }
        if complete {
            seen[i] = true;
            filled.push(format!("{year}-{:02}", st.month));
        }
    }
    filled
}

/// The problem naming the steps of the year the table has no row for (None when it has them all).
fn missing_steps(
    seen: &[bool],
    steps: &[StepInfo],
    step: Step,
    year: i32,
    path: &Path,
) -> Option<String> {
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| match step {
            Step::Month => format!("{year}-{:02}", steps[i].month),
            Step::Day => format!("day {}", steps[i].doy),
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let n = missing.len();
    let shown: Vec<_> = missing.into_iter().take(12).collect();
    Some(format!(
        "{}: {n} {} of {year} missing: {}{}",
        path.display(),
        if step == Step::Month {
            "month(s)"
        } else {
            "day(s)"
        },
        shown.join(", "),
        if n > shown.len() { ", ..." } else { "" }
    ))
}

/// A sub-daily station table aggregated to the step: the equivalent table's spec (a `date` column, one column
/// per variable named by it), its CSV text, and whether VPD was derived per row (from `[derive] vpd =
/// "from-rh"` with tmean and rh columns).
fn subdaily_table(
    origin: &Path,
    base: &Path,
    s: &StationSpec,
    step: Step,
    derive: &BTreeMap<Var, Rule>,
    climate: &ClimateConstants,
) -> Result<(StationSpec, String, bool)> {
    use subdaily::{Agg, Column, Source};
    let path = base.join(&s.file);
    let (Some(yc), Some(mc), Some(dc)) = (&s.year, &s.month, &s.day) else {
        return Err(Error::config(
            origin,
            "station.hour (sub-daily rows) needs year, month and day columns",
        ));
    };
    let text = crate::io::read_text(&path, "a station table (CSV)")?;
    let headers: Vec<String> = text
        .lines()
        .next()
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            Error::input(
                &path,
                format!("has no column \"{name}\" (columns: {})", headers.join(", ")),
            )
        })
    };
    let time = [
        col(yc)?,
        col(mc)?,
        col(dc)?,
        col(s.hour.as_deref().expect("sub-daily"))?,
    ];
    if let Some(mn) = &s.minute {
        col(mn)?;
    }
    let mut columns = Vec::new();
    let mut spec_cols = BTreeMap::new();
    for (var, c) in station_columns(s, origin)? {
        let agg = Agg::parse(c.aggregate.as_deref(), var, unit_is_total(var, &c.unit))
            .and_then(|a| match a {
                // A table's rows need not be in time order: a day's "last" row is not defined by them.
                Agg::Accumulated => Err(
                    "aggregate = \"accumulated\" applies to gridded archives (time = \"coordinate\"), not \
                     to table rows"
                        .to_string(),
                ),
                a => Ok(a),
            })
            .map_err(|e| Error::config(origin, format!("station.columns.{}: {e}", var.name())))?;
        columns.push(Column {
            var,
            source: Source::Col(col(&c.column)?),
            agg,
        });
        spec_cols.insert(
            var.name().to_string(),
            ColumnSpec {
                column: var.name().to_string(),
                unit: c.unit.clone(),
                aggregate: None,
            },
        );
    }
    let given = |v: Var| s.columns.contains_key(v.name());
    let vpd_per_row = derive.get(&Var::Vpd) == Some(&Rule::FromRh)
        && !given(Var::Vpd)
        && given(Var::Tmean)
        && given(Var::Rh);
    if vpd_per_row {
        let (t, rh) = (&s.columns["tmean"], &s.columns["rh"]);
        if t.unit != "degC" {
            return Err(Error::config(
                origin,
                "sub-daily VPD from rh needs tmean in degC",
            ));
        }
        let rh_factor = if rh.unit == "1" { 100.0 } else { 1.0 };
        columns.push(Column {
            var: Var::Vpd,
            source: Source::VpdFromRh {
                t: col(&t.column)?,
                rh: col(&rh.column)?,
                rh_factor,
            },
            agg: Agg::Mean,
        });
        spec_cols.insert(
            "vpd".into(),
            ColumnSpec {
                column: "vpd".into(),
                unit: "Pa".into(),
                aggregate: None,
            },
        );
    }
    let table = subdaily::aggregate(&path, &text, time, &columns, step, climate)?;
    let spec = StationSpec {
        file: s.file.clone(),
        latitude: s.latitude,
        elevation: s.elevation,
        date: Some("date".into()),
        year: None,
        month: None,
        day: None,
        hour: None,
        minute: None,
        calendar: s.calendar.clone(),
        fill_missing_months: s.fill_missing_months.clone(),
        columns: spec_cols,
    };
    Ok((spec, table, vpd_per_row))
}

/// Where a station table's date parts (date, year, month, day) and variables are: column indices, each
/// variable with its unit.
#[allow(clippy::type_complexity)]
fn station_layout<'a>(
    path: &Path,
    headers: &csv::StringRecord,
    s: &StationSpec,
    vars: &[(Var, &'a ColumnSpec)],
) -> Result<(Vec<Option<usize>>, Vec<(Var, usize, &'a str)>)> {
    let col = |name: &str| -> Result<usize> {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                Error::input(
                    path,
                    format!(
                        "has no column \"{name}\" (columns: {})",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    };
    let time_cols = [&s.date, &s.year, &s.month, &s.day]
        .iter()
        .map(|c| c.as_ref().map(|n| col(n)).transpose())
        .collect::<Result<_>>()?;
    let var_cols = vars
        .iter()
        .map(|(v, c)| Ok((*v, col(&c.column)?, c.unit.as_str())))
        .collect::<Result<_>>()?;
    Ok((time_cols, var_cols))
}

/// `station.fill_missing_months = "climatology"` (monthly steps only).
fn fills_from_climatology(s: &StationSpec, step: Step, origin: &Path) -> Result<bool> {
    match s.fill_missing_months.as_deref() {
        None => Ok(false),
        Some("climatology") if step == Step::Month => Ok(true),
        Some(other) => Err(Error::config(
            origin,
            format!("station.fill_missing_months = \"{other}\": only \"climatology\" with step = \"month\""),
        )),
    }
}

/// Read a station table's rows for `year` into canonical per-step series (`aggregated`: the text of a
/// sub-daily table already aggregated to the step, instead of the file).
#[allow(clippy::too_many_arguments)]
fn read_station(
    origin: &Path,
    base: &Path,
    s: &StationSpec,
    step: Step,
    year: i32,
    steps: &[StepInfo],
    noleap: bool,
    climate: &ClimateConstants,
    aggregated: Option<&str>,
) -> Result<(BTreeMap<Var, Vec<f64>>, Vec<String>)> {
    let path = base.join(&s.file);
    let vars = station_columns(s, origin)?;
    if s.date.is_none()
        && !is_climatology_table(s, step)
        && (s.year.is_none() || s.month.is_none() || (step == Step::Day && s.day.is_none()))
    {
        return Err(Error::config(
            origin,
            "station: name a `date` column, or `year` and `month` (and `day` for daily steps) columns, or only `month` for a monthly climatology",
        ));
    }
    let text = match aggregated {
        Some(t) => t.to_string(),
        None => crate::io::read_text(&path, "a station table (CSV)")?,
    };
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| Error::input(&path, format!("cannot read the header line: {e}")))?
        .clone();
    let (time_cols, var_cols) = station_layout(&path, &headers, s, &vars)?;
    let mut out: BTreeMap<Var, Vec<f64>> = var_cols
        .iter()
        .map(|(v, _, _)| (*v, vec![f64::NAN; steps.len()]))
        .collect();
    let mut seen = vec![false; steps.len()];
    let fill = fills_from_climatology(s, step, origin)?;
    let mut clim: BTreeMap<(Var, u32), (f64, usize)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (li, rec) in rdr.records().enumerate() {
        let line = li + 2;
        let rec = rec.map_err(|e| Error::input(&path, format!("line {line}: {e}")))?;
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        let (y, m, d) = row_date(&rec, &time_cols, (line, year), &path)?;
        if y != year {
            if fill && (1..=12).contains(&m) {
                for (v, c, unit) in &var_cols {
                    if let Ok(x) = field(*c).parse::<f64>() {
                        if x.is_finite() {
                            // Converted with the target year's month length.
                            let days = steps[(m - 1) as usize].days as f64;
                            let e = clim.entry((*v, m)).or_insert((0.0, 0usize));
                            e.0 += convert(*v, unit, x, days, climate).unwrap();
                            e.1 += 1;
                        }
                    }
                }
            }
            continue;
        }
        let (date, idx) = step_index((y, m, d), step, noleap, line, &path)?;
        if seen[idx] {
            return Err(Error::input(
                &path,
                format!(
                    "line {line}: a second row for {} (each {} once)",
                    if step == Step::Month {
                        format!("{y}-{m:02}")
                    } else {
                        date.to_string()
                    },
                    if step == Step::Month { "month" } else { "day" }
                ),
            ));
        }
        seen[idx] = true;
        let days = steps[idx].days as f64;
        for (v, c, unit) in &var_cols {
            let t = field(*c);
            match t.parse::<f64>() {
                Ok(x) if x.is_finite() => {
                    out.get_mut(v).unwrap()[idx] = convert(*v, unit, x, days, climate).unwrap();
                }
                _ => problems.push(format!(
                    "{}: line {line}: {} column \"{}\" is {}",
                    path.display(),
                    v.name(),
                    headers.get(*c).unwrap_or(""),
                    if t.is_empty() {
                        "empty (missing value)".to_string()
                    } else {
                        format!("\"{t}\", not a number")
                    }
                )),
            }
        }
    }
    let filled = if fill {
        fill_from_climatology(&mut out, &mut seen, &clim, steps, year)
    } else {
        Vec::new()
    };
    if let Some(p) = missing_steps(&seen, steps, step, year, &path) {
        problems.insert(0, p);
    }
    if problems.len() > 20 {
        let n = problems.len();
        problems.truncate(20);
        problems.push(format!("... and {} more", n - 20));
    }
    if problems.is_empty() {
        Ok((out, filled))
    } else {
        Err(Error::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> ClimateConstants {
        ClimateConstants::builtin().unwrap()
    }

    #[test]
    fn unit_conversions_by_hand() {
        let c = c();
        // 290.15 K = 17 C; 3 mm d-1 over a 30-day month = 90 mm; 2.5e-5 mm s-1 for one day = 2.16 mm;
        // 250 W m-2 = 21.6 MJ m-2 d-1; 620 MJ m-2 in a 31-day month = 20 MJ m-2 d-1; 1.2 kPa = 1200 Pa;
        // 186 sunshine hours in 31 days = 6 h d-1; PPFD 4e-4 mol m-2 s-1 = 400 umol m-2 s-1
        // = 400 / 4.57 x 0.0864 = 7.5623 MJ m-2 d-1.
        assert!((convert(Var::Tmean, "K", 290.15, 30.0, &c).unwrap() - 17.0).abs() < 1e-9);
        assert_eq!(convert(Var::Precip, "mm d-1", 3.0, 30.0, &c), Some(90.0));
        assert!((convert(Var::Precip, "mm s-1", 2.5e-5, 1.0, &c).unwrap() - 2.16).abs() < 1e-12);
        assert!((convert(Var::Srad, "W m-2", 250.0, 1.0, &c).unwrap() - 21.6).abs() < 1e-12);
        assert_eq!(convert(Var::Srad, "MJ m-2", 620.0, 31.0, &c), Some(20.0));
        assert_eq!(convert(Var::Vpd, "kPa", 1.2, 1.0, &c), Some(1200.0));
        assert_eq!(convert(Var::Sunshine, "h", 186.0, 31.0, &c), Some(6.0));
        let par = convert(Var::Par, "mol m-2 s-1", 4e-4, 1.0, &c).unwrap();
        assert!((par - 400.0 / 4.57 * 0.0864).abs() < 1e-9, "{par}");
        assert_eq!(convert(Var::Vpd, "bar", 1.0, 1.0, &c), None);
    }

    /// FAO-56 Example 10 (Rio de Janeiro, 22 deg 54' S, 15 May): n = 7.1 h of N = 10.9 h, Ra = 25.1 MJ m-2 d-1,
    /// Rs = (0.25 + 0.50 x 7.1 / 10.9) x 25.1 = 14.5 MJ m-2 d-1. Given as relative sunshine n/N = 0.6514 on a
    /// geographic grid without a station latitude (the pixel's latitude is used).
    #[test]
    fn radiation_from_relative_sunshine_at_each_pixel_latitude() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("year,month,t,p,nn\n");
        for m in 1..=12 {
            csv.push_str(&format!("2021,{m},20,50,{}\n", 7.1 / 10.9));
        }
        std::fs::write(dir.path().join("st.csv"), csv).unwrap();
        std::fs::write(
            dir.path().join("d.toml"),
            "step = \"month\"\n[station]\nfile = \"st.csv\"\nyear = \"year\"\nmonth = \"month\"\n[station.columns]\ntmean = { column = \"t\", unit = \"degC\" }\nsunshine_fraction = { column = \"nn\", unit = \"1\" }\n[derive]\nsrad = \"angstrom-prescott-fraction\"\n",
        )
        .unwrap();
        let mut d = Drivers::load(&dir.path().join("d.toml"), 2021).unwrap();
        // Two rows: pixel centres at 22.9 S and 60 S.
        let grid = Grid::from_spec("EPSG:4326", 0.2, [-43.3, -60.1, -43.1, -22.8]).unwrap();
        let grid = Grid {
            // Rows 37.1 degrees high from 4.35 S: centres at 22.9 S and 60.0 S.
            gt: [-43.3, 0.2, 0.0, -4.35, 0.0, -37.1],
            height: 2,
            ..grid
        };
        d.open(&grid).unwrap();
        let may = d
            .read(Var::Srad, 4, &io::Window::rows(0, 2, grid.width))
            .unwrap();
        assert!((may.at(0) - 14.5).abs() < 0.1, "{}", may.at(0));
        // Further south in May the sun is lower: less radiation.
        assert!(may.at(grid.width) < 0.5 * may.at(0));
    }

    #[test]
    fn steps_of_a_year() {
        let m = year_steps(Step::Month, 2024, false);
        assert_eq!(m.iter().map(|s| s.days).sum::<u32>(), 366);
        assert_eq!(m[1].days, 29);
        // FAO-56 takes the 15th as the month's representative day: 15 January = day 15, 15 March 2024 = 75.
        assert_eq!((m[0].doy, m[2].doy), (15, 75));
        assert_eq!(year_steps(Step::Day, 2024, false).len(), 366);
        assert_eq!(year_steps(Step::Day, 2024, true).len(), 365);
    }
}
