//! carbonmap: satellite imagery to vegetation indices, carbon-sink maps and net carbon balance maps.
//!
//! Modules follow the data: `io` (every GDAL call), `scene` (sensors, masks, stacks), `indices` (the index
//! table), `landcover` (legends, class checks and areas), `composite` (temporal compositing), `climate`
//! (climate-driver unit conversions), `units` (declared carbon units), `lattice` (emission lattices and exact
//! area-weighted overlaps), `zones` (zone hierarchies), `report` (maps), `engine` (codec, strip sizes, parallel ordered writing), `pipeline` (stage drivers), `progress` (reporting), `scratch` (TMPDIR folders a
//! killed run does not leave behind), `synth`
//! (synthetic test and sample rasters).

pub mod area;
pub mod cli;
pub mod climate;
pub mod commit;
pub mod composite;
pub mod correction;
pub mod drivers;
pub mod engine;
pub mod envvars;
pub mod error;
pub mod fault;
pub mod indices;
pub mod io;
pub mod landcover;
pub mod lattice;
pub mod models;
pub mod npp;
pub mod pipeline;
pub mod plots;
pub mod progress;
pub mod qml;
pub mod report;
pub mod scene;
pub mod scratch;
pub mod stac;
pub mod store;
pub mod synth;
pub mod units;
pub mod validate;
pub mod zones;

pub use error::{Error, Result};

/// carbonmap's version, written into every output's metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
