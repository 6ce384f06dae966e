//! Writing a strip of every output: each output file is written and flushed by one worker (so its tiles reach
//! the file in row order whatever the thread count: byte-identical outputs), different outputs on different
//! cores at once, so compression runs on all cores; GDAL's own compression threads (`NUM_THREADS`) help a
//! stage with few outputs.

use rayon::prelude::*;

use crate::error::Result;
use crate::io::{PendingOutput, RasterWriter};

/// Finish every writer (the file closed and verified, its style written) in parallel, each by one worker:
/// the files are independent. On an error, every other writer's temporary file is removed as well.
pub fn finish_all(writers: Vec<RasterWriter>) -> Result<Vec<PendingOutput>> {
    writers.into_par_iter().map(RasterWriter::finish).collect()
}

/// Run `f` for every output in parallel, each output by one worker; results in the outputs' order.
/// `f` computes the output's strip, writes it (`RasterWriter::write_rows`) and flushes it.
pub fn each_output<W, R, F>(writers: &mut [W], f: F) -> Result<Vec<R>>
where
    W: AsMut<RasterWriter> + Send,
    R: Send,
    F: Fn(usize, &mut RasterWriter) -> Result<R> + Sync,
{
    each_output_with(writers, 0..usize::MAX, f)
}

/// `each_output` handing each output its own item, moved: `f(item i, writer i)` for as many outputs as there
/// are items (the items of a strip's planes, one list per writer).
pub fn each_output_with<W, T, R, F>(
    writers: &mut [W],
    items: impl IntoParallelIterator<Item = T, Iter: IndexedParallelIterator>,
    f: F,
) -> Result<Vec<R>>
where
    W: AsMut<RasterWriter> + Send,
    T: Send,
    R: Send,
    F: Fn(T, &mut RasterWriter) -> Result<R> + Sync,
{
    writers
        .par_iter_mut()
        .zip(items)
        .map(|(w, item)| f(item, w.as_mut()))
        .collect()
}

impl AsMut<RasterWriter> for RasterWriter {
    fn as_mut(&mut self) -> &mut RasterWriter {
        self
    }
}
