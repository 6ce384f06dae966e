//! One raster from the same file of every shard: GDAL's VRT mosaic of the shards' files (their windows tile
//! the analysis grid without overlap, so every pixel comes from exactly one shard, unchanged), written as a
//! tiled GeoTIFF (or COG) with the first shard's descriptions, units, metadata and colour tables.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use gdal::{Dataset, Metadata};

use crate::error::{Error, Result};
use crate::io;

/// Write the mosaic of `parts` (the shards' copies of one file) to `target`, verified; `cog` writes a
/// Cloud-Optimised GeoTIFF with overviews (average for floating-point bands, nearest otherwise). Metadata
/// naming a shard's folder (`relocate`: from, to) names the season's instead, where the mosaics are.
pub fn mosaic(
    parts: &[PathBuf],
    target: &Path,
    cog: bool,
    relocate: &[(String, String)],
) -> Result<()> {
    io::init();
    let sources = parts
        .iter()
        .map(|p| io::open(p))
        .collect::<Result<Vec<Dataset>>>()?;
    let mut vrt = gdal::programs::raster::build_vrt(None, &sources, None)
        .map_err(|e| Error::gdal(target, "building the shards' mosaic", e))?;
    copy_descriptions(&sources[0], &mut vrt, target, relocate)?;
    let is_float = (1..=vrt.raster_count()).all(|i| {
        vrt.rasterband(i)
            .map(|b| b.band_type().is_floating())
            .unwrap_or(false)
    });
    let args = translate_args(cog, is_float);
    let tmp = PathBuf::from(format!("{}.merge-partial", target.display()));
    let written = io::translate_output(&vrt, &tmp, &args, target)
        .and_then(|out| {
            io::gdal_checked(target, "closing the mosaic failed (disk full?)", || {
                out.close()
            })
        })
        .and_then(|()| io::verify_geotiff(&tmp, target))
        .and_then(|()| {
            std::fs::rename(&tmp, target)
                .map_err(|e| Error::io(target, "cannot rename into place", e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn translate_args(cog: bool, is_float: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["-of".into(), if cog { "COG" } else { "GTiff" }.into()];
    let mut co = |k: &str, v: &str| args.extend(["-co".to_string(), format!("{k}={v}")]);
    let tile = io::TILE.to_string();
    let threads = rayon::current_num_threads().max(1).to_string();
    if cog {
        co("BLOCKSIZE", &tile);
        co("RESAMPLING", if is_float { "AVERAGE" } else { "NEAREST" });
    } else {
        co("TILED", "YES");
        co("BLOCKXSIZE", &tile);
        co("BLOCKYSIZE", &tile);
        co("INTERLEAVE", "BAND");
    }
    co("BIGTIFF", "IF_SAFER");
    co("NUM_THREADS", &threads);
    for (k, v) in crate::engine::codec::current().creation_options(is_float) {
        // The COG driver picks the predictor itself (integers only) and names the level LEVEL.
        match (cog, k) {
            (true, "PREDICTOR") => co(k, "YES"),
            (true, "ZLEVEL" | "ZSTD_LEVEL") => co("LEVEL", &v),
            _ => co(k, &v),
        }
    }
    args
}

/// Dataset metadata, band descriptions, units, band metadata, offsets, scales and colour tables of `from`
/// onto the mosaic (GDAL's VRT builder keeps only nodata).
fn copy_descriptions(
    from: &Dataset,
    to: &mut Dataset,
    target: &Path,
    relocate: &[(String, String)],
) -> Result<()> {
    let err = |what: &str, e| Error::gdal(target, format!("mosaic: cannot copy {what}"), e);
    for (k, v) in pairs(from.metadata_domain("")) {
        let v = relocate.iter().fold(v, |v, (a, b)| v.replace(a, b));
        to.set_metadata_item(&k, &v, "")
            .map_err(|e| err("metadata", e))?;
    }
    for i in 1..=from.raster_count() {
        let src = from.rasterband(i).map_err(|e| err("a band", e))?;
        let mut dst = to.rasterband(i).map_err(|e| err("a band", e))?;
        dst.set_description(&src.description().unwrap_or_default())
            .map_err(|e| err("a band description", e))?;
        for (k, v) in pairs(src.metadata_domain("")) {
            dst.set_metadata_item(&k, &v, "")
                .map_err(|e| err("band metadata", e))?;
        }
        if let Some(o) = src.offset() {
            dst.set_offset(o).map_err(|e| err("an offset", e))?;
        }
        if let Some(s) = src.scale() {
            dst.set_scale(s).map_err(|e| err("a scale", e))?;
        }
        if let Some(ct) = src.color_table() {
            dst.set_color_table(&ct);
        }
        let unit = CString::new(src.unit()).map_err(|e| Error::Usage(e.to_string()))?;
        // SAFETY: the band belongs to `to`, alive for the call; GDAL copies the string.
        unsafe { gdal_sys::GDALSetRasterUnitType(dst.c_rasterband(), unit.as_ptr()) };
    }
    Ok(())
}

fn pairs(items: Option<Vec<String>>) -> Vec<(String, String)> {
    items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}
