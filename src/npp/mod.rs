//! Light-use-efficiency models and respiration: `mod17` (daily GPP, annual NPP), `casa` (monthly NPP), `pmodel` (optimality GPP) with
//! `splash` (soil water) and `water` (its physical properties), `rh`
//! (soil heterotrophic respiration), and `fpar` (FPAR and LAI from NDVI).

pub mod casa;
pub mod fpar;
pub mod mod17;
pub mod pmodel;
pub mod rh;
pub mod splash;
pub mod water;
