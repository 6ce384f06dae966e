//! Strip heights: whole tile rows within a memory budget, and small enough that the tiles one output holds
//! between writing and flushing a strip never press on GDAL's block cache (which would write another
//! output's tiles early, from another thread, in an order that depends on timing).

use crate::io::{Window, GDAL_CACHE_BYTES, TILE};

/// Rows per strip for a raster `width` x `height`: `work_bytes_per_px` is the stage's working memory per pixel
/// of a strip, `out_bytes_per_px` what one output holds per pixel (all its bands), `budget_mb` the budget.
/// Always whole tile rows (each tile is complete when flushed, so written once), at least one.
pub fn rows(
    width: usize,
    height: usize,
    work_bytes_per_px: usize,
    out_bytes_per_px: usize,
    budget_mb: usize,
) -> usize {
    let budget = budget_mb.max(1) * 1024 * 1024;
    let by_budget = budget / (work_bytes_per_px * width).max(1);
    // Outputs are written by up to `threads` workers at once; together they stay under a quarter of the cache.
    let threads = rayon::current_num_threads().max(1);
    let by_cache = GDAL_CACHE_BYTES / 4 / threads / (out_bytes_per_px * width).max(1);
    let rows = (by_budget.min(by_cache) / TILE).max(1) * TILE;
    rows.min(height.max(1))
}

/// Rows per strip for a stage that walks full-width rows and holds about `bytes_per_px` per strip pixel: whole
/// tile rows when `budget_mb` allows, else the largest power-of-two part of a tile (down to 8 rows, the step of
/// the lattice's corner mesh, so the mesh's knots stay in place) that fits, so that memory does not grow with
/// the raster's width. A writer still flushes whole tile rows only (`is_tile_end`).
pub fn sub_tile_rows(width: usize, bytes_per_px: usize, budget_mb: usize) -> usize {
    let budget = budget_mb.max(1) * 1024 * 1024;
    let mut rows = TILE;
    while rows > 8 && rows * width * bytes_per_px > budget {
        rows /= 2;
    }
    rows
}

/// Whether a strip ending at row `end` completes a tile row of a raster `height` rows high (or the raster).
pub fn is_tile_end(end: usize, height: usize) -> bool {
    end % TILE == 0 || end == height
}

/// Block size (rows, columns) for a raster `width` x `height`: whole tile rows as `rows` gives, and when even
/// one tile row of the full width exceeds the budget (wide rasters), fewer columns (whole tiles), so that
/// memory does not grow with the raster's size.
pub fn block(
    width: usize,
    height: usize,
    work_bytes_per_px: usize,
    out_bytes_per_px: usize,
    budget_mb: usize,
) -> (usize, usize) {
    let r = rows(
        width,
        height,
        work_bytes_per_px,
        out_bytes_per_px,
        budget_mb,
    );
    let budget = budget_mb.max(1) * 1024 * 1024;
    let threads = rayon::current_num_threads().max(1);
    let by_budget = budget / (work_bytes_per_px * r).max(1);
    let by_cache = GDAL_CACHE_BYTES / 4 / threads / (out_bytes_per_px * r).max(1);
    let cols = (by_budget.min(by_cache) / TILE).max(1) * TILE;
    (r, cols.min(width.max(1)))
}

/// The blocks of a `width` x `height` grid in row-major order (blocks of `rows` x `cols`; the last ones in each
/// direction may be smaller): the order their tiles are written in.
pub fn blocks(width: usize, height: usize, rows: usize, cols: usize) -> Vec<Window> {
    let mut out = Vec::new();
    for row0 in (0..height).step_by(rows.max(1)) {
        for col0 in (0..width).step_by(cols.max(1)) {
            out.push(Window {
                col0,
                row0,
                ncols: cols.min(width - col0),
                nrows: rows.min(height - row0),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_cover_the_grid_once_in_row_major_order() {
        let b = super::blocks(600, 300, 256, 256);
        assert_eq!(b.len(), 6);
        assert_eq!(b.iter().map(|w| w.len()).sum::<usize>(), 600 * 300);
        assert_eq!(
            (b[2].col0, b[2].ncols, b[3].row0, b[3].nrows),
            (512, 88, 256, 44)
        );
        // A wide raster gets whole-tile columns within the budget; a narrow one the whole width.
        let (r, c) = super::block(100_000, 1000, 800, 4, 64);
        assert!(r == crate::io::TILE && c % crate::io::TILE == 0 && c < 100_000);
        assert_eq!(super::block(500, 1000, 100, 4, 64).1, 500);
    }

    #[test]
    fn sub_tile_rows_halve_for_wide_rasters_down_to_eight() {
        assert_eq!(super::sub_tile_rows(2048, 128, 64), 256);
        assert_eq!(super::sub_tile_rows(4096, 128, 64), 128);
        assert_eq!(super::sub_tile_rows(10_000_000, 128, 64), 8);
        assert!(super::is_tile_end(512, 1000) && super::is_tile_end(1000, 1000));
        assert!(!super::is_tile_end(640, 1000));
    }

    #[test]
    fn whole_tile_rows_at_least_one_at_most_the_height() {
        assert_eq!(super::rows(100, 50, 8, 4, 192), 50);
        let r = super::rows(4096, 100_000, 800, 16, 192);
        assert!(r % crate::io::TILE == 0 && r >= crate::io::TILE);
        assert_eq!(super::rows(1_000_000, 100_000, 800, 16, 1), crate::io::TILE);
    }
}
