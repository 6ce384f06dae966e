//! Climate-driver unit conversions, each constant from models/climate.toml with its source: radiation
//! (W m-2 to MJ m-2 d-1, PPFD to PAR energy), sunshine hours to global radiation (Angstrom-Prescott with the
//! FAO-56 extraterrestrial radiation), and vapour-pressure deficit from relative humidity, dew point or specific humidity.

use serde::Deserialize;

use crate::error::Result;
use crate::models;

#[derive(Debug, Clone, Deserialize)]
pub struct RadiationConstants {
    pub w_m2_to_mj_m2_d: f64,
    pub umol_per_joule_par: f64,
    pub solar_constant_mj_m2_min: f64,
    pub angstrom_a: f64,
    pub angstrom_b: f64,
    pub citation: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VapourConstants {
    pub tetens_a_kpa: f64,
    pub tetens_b: f64,
    pub tetens_c_degc: f64,
    pub citation: String,
}

/// The constants of models/climate.toml.
#[derive(Debug, Clone, Deserialize)]
pub struct ClimateConstants {
    pub radiation: RadiationConstants,
    pub vapour: VapourConstants,
    pub humidity: HumidityConstants,
}

/// VPD from specific humidity and pressure, as MOD17 computes it (models/climate.toml [humidity]).
#[derive(Debug, Clone, Deserialize)]
pub struct HumidityConstants {
    pub epsilon: f64,
    pub q_coefficient: f64,
    pub svp_a_pa: f64,
    pub svp_b: f64,
    pub svp_c_degc: f64,
    pub citation: String,
}

impl ClimateConstants {
    pub fn builtin() -> Result<ClimateConstants> {
        models::parse_toml(
            models::embedded("climate.toml").expect("embedded"),
            &models::embedded_path("climate.toml"),
        )
    }

    /// Daily mean irradiance (W m-2) to daily radiation (MJ m-2 d-1).
    pub fn w_m2_to_mj_m2_d(&self, w_m2: f64) -> f64 {
        w_m2 * self.radiation.w_m2_to_mj_m2_d
    }

    /// Daily mean photosynthetic photon flux density (umol m-2 s-1) to daily PAR energy (MJ m-2 d-1).
    pub fn ppfd_to_par_mj_m2_d(&self, ppfd_umol_m2_s: f64) -> f64 {
        ppfd_umol_m2_s / self.radiation.umol_per_joule_par * 86_400.0 / 1e6
    }

    /// Extraterrestrial radiation Ra (MJ m-2 d-1) and daylight hours N for a latitude (degrees, south
    /// negative) and day of year (FAO-56 eqs. 21-25, 34). Polar day and night are handled by clamping the
    /// sunset hour angle to [0, pi].
    pub fn extraterrestrial(&self, lat_deg: f64, day_of_year: u32) -> (f64, f64) {
        use std::f64::consts::PI;
        let j = day_of_year as f64;
        let phi = lat_deg.to_radians();
        let dr = 1.0 + 0.033 * (2.0 * PI / 365.0 * j).cos();
        let delta = 0.409 * (2.0 * PI / 365.0 * j - 1.39).sin();
        let ws = (-phi.tan() * delta.tan()).clamp(-1.0, 1.0).acos();
        let ra = 24.0 * 60.0 / PI
            * self.radiation.solar_constant_mj_m2_min
            * dr
            * (ws * phi.sin() * delta.sin() + phi.cos() * delta.cos() * ws.sin());
        (ra, 24.0 / PI * ws)
    }

    /// Global radiation from sunshine hours n (Angstrom-Prescott, FAO-56 eq. 35): Rs = (a + b n / N) Ra,
    /// MJ m-2 d-1.
    pub fn sunshine_to_radiation(
        &self,
        lat_deg: f64,
        day_of_year: u32,
        sunshine_hours: f64,
    ) -> f64 {
        let (ra, n_max) = self.extraterrestrial(lat_deg, day_of_year);
        let frac = if n_max > 0.0 {
            (sunshine_hours / n_max).min(1.0)
        } else {
            0.0
        };
        (self.radiation.angstrom_a + self.radiation.angstrom_b * frac) * ra
    }

    /// Saturation vapour pressure (kPa) at T (deg C), FAO-56 eq. 11.
    pub fn saturation_vp_kpa(&self, t_degc: f64) -> f64 {
        let v = &self.vapour;
        v.tetens_a_kpa * (v.tetens_b * t_degc / (t_degc + v.tetens_c_degc)).exp()
    }

    /// Vapour-pressure deficit (kPa) from air temperature and relative humidity (%).
    pub fn vpd_from_rh_kpa(&self, t_degc: f64, rh_percent: f64) -> f64 {
        let es = self.saturation_vp_kpa(t_degc);
        es - es * rh_percent / 100.0
    }

    /// Vapour-pressure deficit (Pa) from air temperature (C), specific humidity (kg kg-1) and pressure (Pa), as
    /// MOD17 computes it from MERRA-2 (mod17 1.0.0 MOD17.vpd): e = q p / (eps + k q), es = a exp(b T / (c + T)).
    pub fn vpd_from_specific_humidity_pa(&self, t_degc: f64, q: f64, p_pa: f64) -> f64 {
        let h = &self.humidity;
        let e = q * p_pa / (h.epsilon + h.q_coefficient * q);
        let es = h.svp_a_pa * (h.svp_b * t_degc / (h.svp_c_degc + t_degc)).exp();
        es - e
    }

    /// Vapour-pressure deficit (kPa) from air temperature and dew point (FAO-56 eq. 14 and 48).
    pub fn vpd_from_dewpoint_kpa(&self, t_degc: f64, dewpoint_degc: f64) -> f64 {
        self.saturation_vp_kpa(t_degc) - self.saturation_vp_kpa(dewpoint_degc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> ClimateConstants {
        ClimateConstants::builtin().unwrap()
    }

    #[test]
    fn fao56_example_8_extraterrestrial_radiation() {
        // FAO-56 Example 8: 3 September (day 246) at 20 S: Ra = 32.2 MJ m-2 d-1.
        let (ra, _) = c().extraterrestrial(-20.0, 246);
        assert!((ra - 32.2).abs() < 0.05, "{ra}");
    }

    #[test]
    fn fao56_example_10_sunshine_to_radiation() {
        // FAO-56 Example 10: Rio de Janeiro (22 54' S), May (day 135), n = 7.1 h: Ra = 25.1, N = 10.9 h,
        // Rs = (0.25 + 0.50 x 7.1 / 10.9) x 25.1 = 14.5 MJ m-2 d-1.
        let lat = -(22.0 + 54.0 / 60.0);
        let (ra, n) = c().extraterrestrial(lat, 135);
        assert!(
            (ra - 25.1).abs() < 0.05 && (n - 10.9).abs() < 0.05,
            "{ra} {n}"
        );
        let rs = c().sunshine_to_radiation(lat, 135, 7.1);
        assert!((rs - 14.5).abs() < 0.05, "{rs}");
    }

    #[test]
    fn fao56_examples_3_and_5_vapour_pressure() {
        // Example 3: Tmax 24.5, Tmin 15 C: es = (3.075 + 1.705) / 2 = 2.39 kPa.
        let es = (c().saturation_vp_kpa(24.5) + c().saturation_vp_kpa(15.0)) / 2.0;
        assert!((es - 2.39).abs() < 0.005, "{es}");
        // Example 5: dew point 17.0 C: ea = 1.94 kPa; so at T = 24.5 C, VPD = 3.075 - 1.938 = 1.137 kPa.
        assert!((c().saturation_vp_kpa(17.0) - 1.94).abs() < 0.005);
        let vpd = c().vpd_from_dewpoint_kpa(24.5, 17.0);
        assert!((vpd - (c().saturation_vp_kpa(24.5) - 1.9377)).abs() < 1e-3);
        // RH 100 % means no deficit; RH 50 % at 20 C: 0.5 x 2.338 = 1.169 kPa.
        assert_eq!(c().vpd_from_rh_kpa(20.0, 100.0), 0.0);
        assert!((c().vpd_from_rh_kpa(20.0, 50.0) - 1.169).abs() < 0.002);
    }

    #[test]
    fn radiation_units_by_hand() {
        // 200 W m-2 all day = 200 x 86400 J = 17.28 MJ m-2 d-1.
        assert!((c().w_m2_to_mj_m2_d(200.0) - 17.28).abs() < 1e-12);
        // 1000 umol m-2 s-1 / 4.57 umol J-1 = 218.8 W m-2 = 18.906 MJ m-2 d-1.
        assert!((c().ppfd_to_par_mj_m2_d(1000.0) - 1000.0 / 4.57 * 0.0864).abs() < 1e-9);
    }

    #[test]
    fn polar_night_gives_no_radiation() {
        // 80 N in late December: the sun does not rise.
        let (ra, n) = c().extraterrestrial(80.0, 355);
        assert!(ra.abs() < 1e-9 && n.abs() < 1e-9, "{ra} {n}");
    }
}
