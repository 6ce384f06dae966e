//! The streaming engine. `run` is the executor: a stage gives a reader, a pure kernel and its writers, and the
//! executor walks the strips or blocks, reads ahead (or, `run_local`, reads on the calling thread), writes every
//! output on its own worker and folds side results in order. Every stage that writes rasters runs on it:
//! `indices`, `npp` (and its `--draws` rasters), landcover prediction, `balance` (both passes and its `--draws`
//! raster), `regrid` (its passes both ways), the scenario's land cover, differences and substitutions, and the
//! gridded drivers' step rasters; passes that only sum (balance's first, regrid's) run with no writers, and
//! `features` is the reader of prediction's strips. What is left outside: rasters of one lattice cell per pixel
//! written whole from tables (`balance`'s lattice raster, `regrid`'s coarse output) and the sample generator
//! (`synth`). The shared parts: how output tiles are compressed (`codec`), how a strip of every output is
//! written and compressed on all cores in a byte-reproducible order (`write`), how tall a strip may be for a
//! memory budget (`strips`), the allocator's arenas (`memory`), slices of planes handed to workers (`parts`),
//! and the maps drawn beside the outputs on request (`maps`).

pub mod codec;
pub mod maps;
pub mod memory;
pub mod parts;
pub mod run;
pub mod strips;
pub mod write;
