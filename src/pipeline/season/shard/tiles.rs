//! Shards from a tiling scheme's layer (MGRS, a national grid, a client's blocks): the analysis grid cut at
//! every tile's west and north edge, each snapped to the 256-px output tile. Any set of cuts partitions the
//! grid, so overlapping tiles (MGRS tiles overlap by 9.8 km) and tiles of several UTM zones still give
//! disjoint shards covering every pixel once; a shard is named after the tile whose north-west corner
//! starts it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Error, Result};
use crate::io::{self, Grid, TILE};

/// Shard windows (COL0, ROW0, NCOLS, NROWS) and, where a tile starts one, the tile's name.
pub fn tile_windows(
    grid: &Grid,
    layer_path: &Path,
    field: Option<&str>,
) -> Result<Vec<([usize; 4], Option<String>)>> {
    let fields: Vec<String> = field.map(str::to_string).into_iter().collect();
    let layer = io::read_vector(layer_path, None, &fields)?;
    let crs = layer.crs_wkt.clone().ok_or_else(|| {
        Error::input(
            layer_path,
            "the tile layer has no CRS (give it one, for example with ogr2ogr -a_srs)",
        )
    })?;
    let mut geoms = Vec::new();
    let mut names = Vec::new();
    for f in &layer.features {
        if let Some(g) = &f.geometry {
            geoms.push(g.clone());
            let name = f.fields.first().cloned().flatten().map(|v| v.text());
            names.push(name.unwrap_or_else(|| format!("fid {}", f.fid)));
        }
    }
    io::reproject_geometries(&mut geoms, &crs, &grid.crs_wkt)?;
    let (mut cols, mut rows) = (
        BTreeSet::from([0, grid.width]),
        BTreeSet::from([0, grid.height]),
    );
    let mut starts: BTreeMap<(usize, usize), String> = BTreeMap::new();
    let [gx0, gy0, gx1, gy1] = grid.bounds();
    for (g, name) in geoms.iter().zip(&names) {
        let e = g.envelope();
        if e.MaxX <= gx0 || e.MinX >= gx1 || e.MaxY <= gy0 || e.MinY >= gy1 {
            continue;
        }
        let c = snap((e.MinX - grid.gt[0]) / grid.gt[1], grid.width);
        let r = snap((e.MaxY - grid.gt[3]) / grid.gt[5], grid.height);
        cols.insert(c);
        rows.insert(r);
        starts.entry((c, r)).or_insert_with(|| name.clone());
    }
    if starts.is_empty() {
        return Err(Error::input(
            layer_path,
            "no tile of this layer overlaps the analysis grid",
        ));
    }
    let (cols, rows): (Vec<usize>, Vec<usize>) =
        (cols.into_iter().collect(), rows.into_iter().collect());
    let mut out = Vec::new();
    for rw in rows.windows(2) {
        for cw in cols.windows(2) {
            let w = [cw[0], rw[0], cw[1] - cw[0], rw[1] - rw[0]];
            out.push((w, starts.get(&(cw[0], rw[0])).cloned()));
        }
    }
    Ok(out)
}

/// A pixel position snapped to the nearest output-tile edge, inside 0..=size.
fn snap(px: f64, size: usize) -> usize {
    let t = TILE as f64;
    (((px / t).round() * t).max(0.0) as usize).min(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_snap_to_output_tiles_inside_the_grid() {
        // 300.4 px is 1.17 tiles: the edge at 256; 400 px is 1.56 tiles: 512, but the grid is 450 wide.
        assert_eq!(snap(300.4, 1000), 256);
        assert_eq!(snap(400.0, 450), 450);
        assert_eq!(snap(-90.0, 450), 0);
    }
}
