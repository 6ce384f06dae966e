//! Stage drivers, one module per stage: the data flows from `indices` (scenes to index composites) and
//! `classify` (land cover) through `npp` (productivity, respiration, sequestration), `validate` and
//! `calibrate` (plots and towers) to `balance` (emission lattices), `scenario`, and `season` (the whole chain
//! from one config, sharded or not).

pub mod balance;
pub mod calibrate;
pub mod classify;
pub mod features;
mod indices;
pub mod npp;
pub mod rh_check;
pub mod scenario;
pub mod season;
pub mod site;
pub mod validate;

pub(crate) use indices::{bands_of, clear_then_fill, composite_strip, strip_index_values};
pub use indices::{run_indices, GridChoice, IndicesJob, IndicesSummary, OutputRecord};
