//! CASA monthly NPP (Potter et al. 1993), parameterised per vegetation type by a table under models/casa/:
//! NPP = APAR x emax x Te1 x Te2 x We, APAR = SOL x FPAR x 0.5 (the table's par_fraction), FPAR from NDVI and
//! the simple ratio.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FparBounds {
    pub fpar_min: f64,
    pub fpar_max: f64,
    pub alpha: f64,
    /// Share of total solar radiation that is PAR: APAR = SOL x FPAR x par_fraction.
    pub par_fraction: f64,
    pub ndvi_min: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureParams {
    pub te1_a: f64,
    pub te1_b: f64,
    pub te1_c: f64,
    pub te1_zero_at_or_below_degc: Option<f64>,
    pub te2_k: f64,
    pub te2_s1: f64,
    pub te2_d1: f64,
    pub te2_s2: f64,
    pub te2_d2: f64,
    pub te2_half_above_degc: Option<f64>,
    pub te2_half_below_degc: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WaterMethod {
    /// Zhou & Zhang (1995) regional EET with Thornthwaite PET: We = base + (1 - base) EET / PET.
    ZhouZhang,
    /// The MOD17 VPD ramp of the type's MOD17 class: We = f(VPD).
    Vpd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaterParams {
    pub method: WaterMethod,
    pub base: f64,
    pub rn_a: f64,
    pub rn_b: f64,
    pub thornthwaite_c_mm: f64,
    pub thornthwaite_heat_exponent: f64,
    pub thornthwaite_a3: f64,
    pub thornthwaite_a2: f64,
    pub thornthwaite_a1: f64,
    pub thornthwaite_a0: f64,
}

/// Parameters of one vegetation type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasaType {
    pub name: String,
    pub emax_gc_per_mj: f64,
    pub ndvi_max: f64,
    pub sr_max: f64,
    /// The type's own NDVI of bare ground, where a published table gives one (else `[fpar] ndvi_min`).
    #[serde(default)]
    pub ndvi_min: Option<f64>,
    /// The type's own SR_min, where a published table gives one independently of NDVI_min (for example
    /// 1.05); else SR at the NDVI minimum, (1 + NDVI_min) / (1 - NDVI_min).
    #[serde(default)]
    pub sr_min: Option<f64>,
}

/// A type whose NPP is zero by definition, with the reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroType {
    pub name: String,
    pub reason: String,
}

/// A CASA parameter table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasaParams {
    pub name: String,
    pub description: String,
    pub citation: String,
    pub fpar: FparBounds,
    pub temperature: TemperatureParams,
    pub water: WaterParams,
    #[serde(rename = "type")]
    pub types: Vec<CasaType>,
    #[serde(default)]
    pub zero: Vec<ZeroType>,
    #[serde(skip)]
    pub source: PathBuf,
}

pub const DEFAULT_CASA: &str = "zhu2007";

/// What the table says about a vegetation type.
#[derive(Debug, Clone, Copy)]
pub enum TypeParams<'a> {
    Vegetated(&'a CasaType),
    Zero(&'a ZeroType),
}

/// Per-pixel, per-month CASA terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CasaMonth {
    pub fpar: f64,
    /// MJ m-2 month-1.
    pub apar: f64,
    pub te1: f64,
    pub te2: f64,
    pub we: f64,
    /// g C m-2 month-1.
    pub npp: f64,
}

impl CasaParams {
    pub fn resolve(name_or_path: &str) -> Result<CasaParams> {
        let (mut p, path): (CasaParams, _) =
            models::resolve_table("CASA parameter table", "casa/", name_or_path)?;
        p.source = path;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        let f = &self.fpar;
        let err = |m: String| Err(Error::config(&self.source, m));
        if !(0.0 <= f.fpar_min && f.fpar_min < f.fpar_max && f.fpar_max <= 1.0) {
            return err("fpar: need 0 <= fpar_min < fpar_max <= 1".into());
        }
        if !(0.0..=1.0).contains(&f.alpha) {
            return err("fpar.alpha must be in [0, 1]".into());
        }
        for t in &self.types {
            let (ndvi_min, sr_min) = (self.ndvi_min(t), self.sr_min(t));
            if !(t.ndvi_max > ndvi_min && t.ndvi_max < 1.0 && ndvi_min > -1.0) {
                return err(format!(
                    "type {}: need -1 < ndvi_min ({ndvi_min}) < ndvi_max ({}) < 1",
                    t.name, t.ndvi_max
                ));
            }
            if !(sr_min > 0.0 && t.sr_max > sr_min) {
                return err(format!(
                    "type {}: need 0 < sr_min ({sr_min:.3}) < sr_max ({})",
                    t.name, t.sr_max
                ));
            }
            if !(t.emax_gc_per_mj > 0.0 && t.emax_gc_per_mj < 5.0) {
                return err(format!(
                    "type {}: emax_gc_per_mj must be in (0, 5) g C MJ-1 (is it in kg C MJ-1?)",
                    t.name
                ));
            }
            if self.zero.iter().any(|z| z.name == t.name) {
                return err(format!(
                    "type {} is both parameterised and listed as zero",
                    t.name
                ));
            }
        }
        Ok(())
    }

    pub fn type_params(&self, name: &str) -> Option<TypeParams<'_>> {
        if let Some(t) = self.types.iter().find(|t| t.name == name) {
            return Some(TypeParams::Vegetated(t));
        }
        self.zero
            .iter()
            .find(|z| z.name == name)
            .map(TypeParams::Zero)
    }

    /// The type's NDVI minimum: its own, or the table's.
    pub fn ndvi_min(&self, t: &CasaType) -> f64 {
        t.ndvi_min.unwrap_or(self.fpar.ndvi_min)
    }

    /// The type's SR minimum: its own, or SR at its NDVI minimum.
    pub fn sr_min(&self, t: &CasaType) -> f64 {
        t.sr_min.unwrap_or_else(|| sr(self.ndvi_min(t)))
    }

    /// FPAR from NDVI: the NDVI and SR scalings, each clamped to [fpar_min, fpar_max], combined with alpha.
    pub fn fpar(&self, t: &CasaType, ndvi: f64) -> f64 {
        let f = &self.fpar;
        if ndvi.is_nan() {
            return f64::NAN;
        }
        let span = f.fpar_max - f.fpar_min;
        let ndvi_min = self.ndvi_min(t);
        let by_ndvi = ((ndvi - ndvi_min) / (t.ndvi_max - ndvi_min) * span + f.fpar_min)
            .clamp(f.fpar_min, f.fpar_max);
        // SR grows without bound as NDVI -> 1 (and past ndvi_max the scaling is at its cap when SR_max is
        // the SR of NDVI_max, as in tables that derive one from the other).
        let sr_min = self.sr_min(t);
        let by_sr = if ndvi >= 1.0 || (t.sr_min.is_none() && ndvi >= t.ndvi_max) {
            f.fpar_max
        } else {
            ((sr(ndvi) - sr_min) / (t.sr_max - sr_min) * span + f.fpar_min)
                .clamp(f.fpar_min, f.fpar_max)
        };
        f.alpha * by_ndvi + (1.0 - f.alpha) * by_sr
    }

    /// Te1 from Topt (and 0 when the month's temperature is at or below the cut-off).
    pub fn te1(&self, t_degc: f64, topt_degc: f64) -> f64 {
        let p = &self.temperature;
        if let Some(cut) = p.te1_zero_at_or_below_degc {
            if t_degc <= cut {
                return 0.0;
            }
        }
        p.te1_a + p.te1_b * topt_degc + p.te1_c * topt_degc * topt_degc
    }

    fn te2_curve(&self, t: f64, topt: f64) -> f64 {
        let p = &self.temperature;
        p.te2_k
            / (1.0 + (p.te2_s1 * (topt - p.te2_d1 - t)).exp())
            / (1.0 + (p.te2_s2 * (-topt - p.te2_d2 + t)).exp())
    }

    /// Te2 for the month's temperature T and Topt, with the half-value rule when configured.
    pub fn te2(&self, t_degc: f64, topt_degc: f64) -> f64 {
        let p = &self.temperature;
        let above = p
            .te2_half_above_degc
            .is_some_and(|d| t_degc - topt_degc > d);
        let below = p
            .te2_half_below_degc
            .is_some_and(|d| topt_degc - t_degc > d);
        if above || below {
            self.te2_curve(topt_degc, topt_degc) / 2.0
        } else {
            self.te2_curve(t_degc, topt_degc)
        }
    }

    /// Thornthwaite heat index I and exponent a from the 12 monthly mean temperatures.
    pub fn thornthwaite_index(&self, monthly_t: &[f64]) -> (f64, f64) {
        let w = &self.water;
        let i: f64 = monthly_t
            .iter()
            .filter(|&&t| t > 0.0)
            .map(|&t| (t / 5.0).powf(w.thornthwaite_heat_exponent))
            .sum();
        let a = w.thornthwaite_a3 * i.powi(3)
            + w.thornthwaite_a2 * i.powi(2)
            + w.thornthwaite_a1 * i
            + w.thornthwaite_a0;
        (i, a)
    }

    /// Thornthwaite potential evapotranspiration Ep0 (mm month-1); 0 at or below 0 C.
    pub fn pet_thornthwaite(&self, t_degc: f64, heat_index: f64, exponent: f64) -> f64 {
        if t_degc <= 0.0 || heat_index <= 0.0 {
            return 0.0;
        }
        self.water.thornthwaite_c_mm * (10.0 * t_degc / heat_index).powf(exponent)
    }

    /// Zhou-Zhang water stress from temperature and precipitation (mm month-1). With no evaporative demand
    /// (Ep0 = 0) there is no water stress (1); with no rain, EET = 0 and We = base.
    pub fn we_zhou_zhang(
        &self,
        t_degc: f64,
        precip_mm: f64,
        heat_index: f64,
        exponent: f64,
    ) -> f64 {
        let w = &self.water;
        let ep0 = self.pet_thornthwaite(t_degc, heat_index, exponent);
        if ep0 <= 0.0 {
            return 1.0;
        }
        let r = precip_mm;
        let eet = if r <= 0.0 {
            0.0
        } else {
            let rn = (ep0 * r).sqrt() * (w.rn_a + w.rn_b * (ep0 / r).sqrt());
            r * rn * (r * r + rn * rn + r * rn) / ((r + rn) * (r * r + rn * rn))
        };
        let pet = (eet + ep0) / 2.0;
        w.base + (1.0 - w.base) * eet / pet
    }

    /// One month: NPP (g C m-2 month-1) from NDVI, SOL (MJ m-2 month-1), temperature, Topt and We.
    pub fn month(
        &self,
        t: &CasaType,
        ndvi: f64,
        sol: f64,
        t_degc: f64,
        topt: f64,
        we: f64,
    ) -> CasaMonth {
        let fpar = self.fpar(t, ndvi);
        let apar = sol * fpar * self.fpar.par_fraction;
        let te1 = self.te1(t_degc, topt);
        let te2 = self.te2(t_degc, topt);
        CasaMonth {
            fpar,
            apar,
            te1,
            te2,
            we,
            npp: apar * t.emax_gc_per_mj * te1 * te2 * we,
        }
    }
}

/// Simple ratio from NDVI: SR = (1 + NDVI) / (1 - NDVI).
pub fn sr(ndvi: f64) -> f64 {
    (1.0 + ndvi) / (1.0 - ndvi)
}

/// Topt: the temperature of the month with the highest NDVI (the first such month on ties; NaN when no month
/// has an NDVI).
pub fn topt(ndvi: &[f64], temps: &[f64]) -> f64 {
    let mut best: Option<(f64, f64)> = None;
    for (&n, &t) in ndvi.iter().zip(temps) {
        if n.is_nan() {
            continue;
        }
        if best.is_none_or(|(bn, _)| n > bn) {
            best = Some((n, t));
        }
    }
    best.map(|b| b.1).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    //! Hand-worked CASA cases (zhu2007 table, grassland: emax 0.542, NDVImax 0.634, SRmax 4.46).
    use super::*;

    fn p() -> CasaParams {
        CasaParams::resolve(DEFAULT_CASA).unwrap()
    }

    fn grass(p: &CasaParams) -> CasaType {
        match p.type_params("grassland").unwrap() {
            TypeParams::Vegetated(t) => t.clone(),
            TypeParams::Zero(_) => unreachable!(),
        }
    }

    #[test]
    fn fpar_by_hand() {
        let p = p();
        let g = grass(&p);
        // NDVI 0.4. FPAR_NDVI = (0.4 - 0.023) / (0.634 - 0.023) x (0.95 - 0.001) + 0.001
        //   = 0.377 / 0.611 x 0.949 + 0.001 = 0.5865532.
        // SR = 1.4 / 0.6 = 2.3333333, SRmin = 1.023 / 0.977 = 1.0470829;
        // FPAR_SR = (2.3333333 - 1.0470829) / (4.46 - 1.0470829) x 0.949 + 0.001 = 0.3586564.
        // FPAR = 0.5 x 0.5865532 + 0.5 x 0.3586564 = 0.4726048.
        assert!((p.fpar(&g, 0.4) - 0.4726048).abs() < 1e-6);
        // Bare soil and dense canopy are clamped to the FPAR bounds.
        assert!((p.fpar(&g, -0.2) - 0.001).abs() < 1e-12);
        assert!((p.fpar(&g, 0.9) - 0.95).abs() < 1e-12);
        assert!((p.fpar(&g, 1.0) - 0.95).abs() < 1e-12);
    }

    #[test]
    fn per_type_bounds_by_hand() {
        // Zhu et al. (2006) give SR_min = 1.05 for every type beside NDVI_min = 0.023 (whose SR is 1.0471);
        // a table that enters both uses each in its own scaling. Grassland, NDVI 0.4:
        //   FPAR_NDVI = (0.4 - 0.023) / (0.634 - 0.023) x 0.949 + 0.001 = 0.5865532 (unchanged);
        //   FPAR_SR = (2.3333333 - 1.05) / (4.46 - 1.05) x 0.949 + 0.001 = 0.3581505;
        //   FPAR = 0.5 x 0.5865532 + 0.5 x 0.3581505 = 0.4723518 (2.5e-4 below the derived-SR_min value).
        let p = p();
        let mut g = grass(&p);
        g.sr_min = Some(1.05);
        assert!(
            (p.fpar(&g, 0.4) - 0.4723518).abs() < 1e-7,
            "{}",
            p.fpar(&g, 0.4)
        );
        // A type's own NDVI_min of 0.05 (and SR_min 1.05): FPAR_NDVI = 0.35 / 0.584 x 0.949 + 0.001 = 0.5697500,
        //   FPAR = 0.5 x 0.5697500 + 0.5 x 0.3581505 = 0.4639503.
        g.ndvi_min = Some(0.05);
        assert!(
            (p.fpar(&g, 0.4) - 0.4639503).abs() < 1e-7,
            "{}",
            p.fpar(&g, 0.4)
        );
        // Past NDVI_max the SR scaling keeps rising to its own cap: NDVI 0.65, SR 4.7142857,
        //   FPAR_SR = (4.7142857 - 1.05) / 3.41 x 0.949 + 0.001 = 1.0207681 -> clamped 0.95.
        assert!((p.fpar(&g, 0.65) - 0.95).abs() < 1e-12);
    }

    #[test]
    fn te1_by_hand() {
        let p = p();
        // Topt 20: 0.8 + 0.02 x 20 - 0.0005 x 400 = 1.0; Topt 25: 0.8 + 0.5 - 0.3125 = 0.9875.
        assert!((p.te1(10.0, 20.0) - 1.0).abs() < 1e-12);
        assert!((p.te1(10.0, 25.0) - 0.9875).abs() < 1e-12);
        // A month at -10 C or colder: 0.
        assert_eq!(p.te1(-10.0, 20.0), 0.0);
    }

    #[test]
    fn te2_by_hand() {
        let p = p();
        // T = Topt = 20: 1.1814 / (1 + e^(0.2 (20 - 10 - 20))) / (1 + e^(0.3 (-20 - 10 + 20)))
        //   = 1.1814 / (1 + e^-2) / (1 + e^-3) = 1.1814 / 1.1353353 / 1.0497871 = 0.9912236.
        assert!((p.te2(20.0, 20.0) - 0.9912236).abs() < 1e-6);
        // T = 25: 1.1814 / (1 + e^-3) / (1 + e^-1.5) = 1.1814 / 1.0497871 / 1.2231302 = 0.9200747.
        assert!((p.te2(25.0, 20.0) - 0.9200747).abs() < 1e-6);
        // T = 6 is 14 C below Topt (> 13): half the value at Topt, 0.9912236 / 2 = 0.4956118
        // (the curve alone would give 0.366).
        assert!((p.te2(6.0, 20.0) - 0.4956118).abs() < 1e-6);
        // T = 31 is 11 C above: also half.
        assert!((p.te2(31.0, 20.0) - 0.4956118).abs() < 1e-6);
    }

    #[test]
    fn water_stress_by_hand() {
        let p = p();
        // Monthly means 4 5 7 9 12 15 17 17 14 11 7 5 C. Heat index I = sum (T/5)^1.514 = 38.325393;
        // a = 6.75e-7 I^3 - 7.71e-5 I^2 + 1.792e-2 I + 0.49239 = 1.1039321.
        let temps = [
            4.0, 5.0, 7.0, 9.0, 12.0, 15.0, 17.0, 17.0, 14.0, 11.0, 7.0, 5.0,
        ];
        let (i, a) = p.thornthwaite_index(&temps);
        assert!(
            (i - 38.325393).abs() < 1e-5 && (a - 1.1039321).abs() < 1e-6,
            "{i} {a}"
        );
        // June, T = 15, r = 60 mm: Ep0 = 16 (150 / 38.325393)^1.1039321 = 72.163111 mm;
        // Rn = sqrt(72.163111 x 60) (0.369 + 0.598 sqrt(72.163111 / 60)) = 65.803476 x 1.0247831 = 67.434151;
        // EET = r Rn (r^2 + Rn^2 + r Rn) / ((r + Rn)(r^2 + Rn^2)) = 47.517488; PET = (47.517488 + 72.163111)/2
        // = 59.840299; We = 0.5 + 0.5 x 47.517488 / 59.840299 = 0.8970358.
        assert!((p.pet_thornthwaite(15.0, i, a) - 72.163111).abs() < 1e-5);
        assert!((p.we_zhou_zhang(15.0, 60.0, i, a) - 0.8970358).abs() < 1e-6);
        // No rain: EET = 0, We = 0.5. Frozen month: no demand, no stress.
        assert!((p.we_zhou_zhang(15.0, 0.0, i, a) - 0.5).abs() < 1e-12);
        assert_eq!(p.we_zhou_zhang(-2.0, 30.0, i, a), 1.0);
    }

    #[test]
    fn full_month_by_hand() {
        let p = p();
        let g = grass(&p);
        // Grassland, NDVI 0.4 (FPAR 0.4726048), SOL 500 MJ m-2 month-1, T 15 C, Topt 17 C, We 0.8970358.
        // APAR = 500 x 0.4726048 x 0.5 = 118.15120 MJ m-2 month-1.
        // Te1 = 0.8 + 0.34 - 0.1445 = 0.9955. Te2 = 1.1814 / (1 + e^(0.2 (17 - 10 - 15))) /
        //   (1 + e^(0.3 (-17 - 10 + 15))) = 1.1814 / 1.2018965 / 1.0273237 = 0.9568031.
        // NPP = 118.15120 x 0.542 x 0.9955 x 0.9568031 x 0.8970358 = 54.71559 g C m-2 month-1.
        let m = p.month(&g, 0.4, 500.0, 15.0, 17.0, 0.8970358);
        assert!((m.apar - 118.15120).abs() < 1e-4);
        assert!((m.te2 - 0.9568031).abs() < 1e-6);
        assert!((m.npp - 54.71559).abs() < 1e-4, "{}", m.npp);
    }

    #[test]
    fn topt_is_the_temperature_of_the_greenest_month() {
        let ndvi = [0.2, f64::NAN, 0.7, 0.6];
        let t = [1.0, 5.0, 18.0, 21.0];
        assert_eq!(topt(&ndvi, &t), 18.0);
        assert!(topt(&[f64::NAN], &[3.0]).is_nan());
    }

    #[test]
    fn builtin_table_covers_every_vegetation_type_but_wetland() {
        let p = p();
        for t in crate::landcover::vegetation_types().unwrap() {
            let has = p.type_params(&t.name).is_some();
            assert_eq!(has, t.name != "wetland", "{}", t.name);
        }
    }
}
