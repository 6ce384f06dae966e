//! `--maps`: a quick-look map (NAME.png, the colours of the run report) beside every raster a command writes,
//! drawn from the verified temporary files before the commit, so the maps are committed with the rasters or
//! not at all.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Result;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Ask for maps (the `--maps` flag).
pub fn set(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Draw a map of every raster staged in the current commit, beside it: of the band its `MAP_BAND` metadata
/// names (a lattice balance's net balance), else of band 1.
pub fn draw_staged() -> Result<()> {
    let max_side = crate::report::quicklook_max_pixels()?;
    for (tmp, target) in crate::commit::staged() {
        if target.extension().is_none_or(|e| e != "tif") {
            continue;
        }
        let shown = crate::io::RasterInfo::read(&tmp)?
            .metadata
            .get(crate::io::MAP_BAND)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        let band = crate::io::read_preview(&tmp, shown, max_side)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::report::quicklook_png(&target.with_extension("png"), &band, &name)?;
    }
    Ok(())
}
