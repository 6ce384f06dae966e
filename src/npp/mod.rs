//! Light-use-efficiency models and respiration: `mod17` (daily GPP, annual NPP), `casa` (monthly NPP), `rh`
//! (soil heterotrophic respiration), and `fpar` (FPAR and LAI from NDVI).

pub mod casa;
pub mod fpar;
pub mod mod17;
pub mod rh;
