//! The streaming engine's shared parts: how output tiles are compressed (`codec`), how a strip of every output
//! is written and compressed on all cores in a byte-reproducible order (`write`), and how tall a strip may be
//! for a memory budget (`strips`), the allocator's arenas (`memory`), and the maps drawn beside the outputs on request (`maps`). Stages declare their outputs (`io::RasterWriter`), read their inputs by
//! strip (`io::GridReader`), compute with pure kernels, and hand each strip to `write::each_output`.

pub mod codec;
pub mod maps;
pub mod memory;
pub mod parts;
pub mod strips;
pub mod write;
