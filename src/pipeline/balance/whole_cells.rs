//! Downscaling an emission lattice with a proxy that reaches beyond the sink raster. A coarse cell's
//! emissions belong to the whole cell; when the proxy raster covers every lattice cell the sink touches, each
//! cell's emissions are spread by the proxy over the whole cell (its weight integrated over the cell on the
//! proxy's own grid), and the sink's area keeps only the part the proxy puts inside it. Without that, a city
//! inside a farmland cell would receive the cell's emissions in proportion to its area share alone.

use crate::error::Result;
use crate::io::{self, Grid};
use crate::lattice::overlap::{CellSpace, Overlapper};
use crate::lattice::Lattice;

use super::{ProxyReader, ProxySpec};

/// The proxy's weight integrated over each touched cell (measuring area x weight), or why whole-cell
/// spreading is not possible (the proxy does not cover every touched cell).
pub(super) fn weights(
    spec: &ProxySpec,
    lat: &Lattice,
    space: &CellSpace,
    touched: &[bool],
) -> Result<std::result::Result<Vec<f64>, String>> {
    let Some(window) = window(spec, lat, touched)? else {
        return Ok(Err(format!(
            "the proxy raster {} does not cover every lattice cell the sink touches",
            spec.path.display()
        )));
    };
    let reader = ProxyReader::open(spec, &window)?;
    let ov = Overlapper::new(&window, &lat.grid)?;
    let mut weight = vec![0f64; touched.len()];
    let mut area = vec![0f64; touched.len()];
    let rows = io::TILE;
    let mut row0 = 0;
    while row0 < window.height {
        let nrows = rows.min(window.height - row0);
        let s = ov.strip(row0, nrows)?;
        let w = reader.weights(row0, nrows)?;
        for (i, wi) in w.iter().enumerate() {
            for (c, a) in s.pieces(i) {
                if touched[c] {
                    weight[c] += wi * a;
                    area[c] += a;
                }
            }
        }
        row0 += nrows;
    }
    if let Some(c) = (0..touched.len()).find(|&c| touched[c] && space.coverage(c, area[c]) < 1.0) {
        return Ok(Err(format!(
            "the proxy raster {} covers only {:.1}% of lattice cell {}",
            spec.path.display(),
            100.0 * space.coverage(c, area[c]),
            lat.cell_id(c)
        )));
    }
    Ok(Ok(weight))
}

/// The proxy's own grid cut to the touched cells' bounds (one pixel wider), or None when those bounds reach
/// beyond the proxy raster.
fn window(spec: &ProxySpec, lat: &Lattice, touched: &[bool]) -> Result<Option<Grid>> {
    let proxy = Grid::from_raster(&spec.path)?;
    let g = &lat.grid;
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for c in (0..touched.len()).filter(|&c| touched[c]) {
        let (col, row) = ((c % g.width) as f64, (c / g.width) as f64);
        let (x0, x1) = (g.gt[0] + col * g.gt[1], g.gt[0] + (col + 1.0) * g.gt[1]);
        let (y0, y1) = (g.gt[3] + row * g.gt[5], g.gt[3] + (row + 1.0) * g.gt[5]);
        b = [
            b[0].min(x0.min(x1)),
            b[1].min(y0.min(y1)),
            b[2].max(x0.max(x1)),
            b[3].max(y0.max(y1)),
        ];
    }
    if !b[0].is_finite() {
        return Ok(None);
    }
    let pb = io::transform_bounds(&g.crs_wkt, &proxy.crs_wkt, b)?;
    let (px, py) = (proxy.gt[1], proxy.gt[5]);
    let col0 = ((pb[0] - proxy.gt[0]) / px).floor() as i64 - 1;
    let col1 = ((pb[2] - proxy.gt[0]) / px).ceil() as i64 + 1;
    let row0 = ((pb[3] - proxy.gt[3]) / py).floor() as i64 - 1;
    let row1 = ((pb[1] - proxy.gt[3]) / py).ceil() as i64 + 1;
    // The cells must lie inside the proxy raster (its outermost pixel row may be the one-pixel margin).
    let inside = col0 >= -1
        && row0 >= -1
        && col1 <= proxy.width as i64 + 1
        && row1 <= proxy.height as i64 + 1;
    if !inside {
        return Ok(None);
    }
    let (col0, row0) = (col0.max(0) as usize, row0.max(0) as usize);
    let (col1, row1) = (
        (col1 as usize).min(proxy.width),
        (row1 as usize).min(proxy.height),
    );
    Ok(Some(Grid {
        crs_wkt: proxy.crs_wkt.clone(),
        gt: [
            proxy.gt[0] + col0 as f64 * px,
            px,
            0.0,
            proxy.gt[3] + row0 as f64 * py,
            0.0,
            py,
        ],
        width: col1 - col0,
        height: row1 - row0,
    }))
}
