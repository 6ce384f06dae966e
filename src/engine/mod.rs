//! The streaming engine. `run` is the strip executor: a stage gives a reader, a pure kernel and its writers, and
//! the executor walks the strips, reads ahead, writes every output on its own worker and folds side results in
//! order (`npp`, prediction, `npp --draws`' percentile rasters, `regrid`'s coarse-to-fine writing, the
//! scenario's land cover, differences and substitutions run on it; `indices`, `balance` and `features` still drive their own block loops with the parts below). The shared parts: how output tiles are compressed (`codec`), how a strip of every output
//! is written and compressed on all cores in a byte-reproducible order (`write`), and how tall a strip may be
//! for a memory budget (`strips`), the allocator's arenas (`memory`), and the maps drawn beside the outputs on request (`maps`). Stages declare their outputs (`io::RasterWriter`), read their inputs by
//! strip (`io::GridReader`), compute with pure kernels, and hand each strip to `write::each_output`.

pub mod codec;
pub mod maps;
pub mod memory;
pub mod parts;
pub mod run;
pub mod strips;
pub mod write;
