//! Space-for-time substitution: a pixel whose class a change sets has no observed NDVI for its new class, so
//! each month it takes the median NDVI of the donors: pixels of the new class that no change touched, with an
//! NDVI that month, inside the changed pixels' bounding box widened by `distance_m`. With fewer than
//! `min_pixels` donors there, the donors are the whole scene's pixels of the class (a warning says so); with
//! none at all, the class's vegetation type's profile of the climatology table (warned, scope "climatology"),
//! else the month is left without a value and the NPP job fills it as it fills any gap (counted).
//! The median and quartiles are exact over at most `MAX_DONORS` donors (beyond that, every k-th donor in raster
//! order). Every other pixel keeps its observed value, bit for bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::run::StripOut;
use crate::error::{Error, Result};
use crate::io::{self, BandRequest, Grid, GridReader, OutBand, RasterWriter, Resampling, Window};
use crate::progress::Silent;

use super::landcover::LandCover;
use super::Scenario;

/// Donor values kept per group and month (memory bound: 4 bytes each).
const MAX_DONORS: u64 = 1 << 20;

/// One group (a change and its new class) in one month.
#[derive(Debug, Clone)]
pub struct Row {
    pub change: String,
    pub class: i64,
    pub month: String,
    /// "within N m" or "whole scene" (too few donors near the change) or "none".
    pub scope: String,
    pub donors: u64,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
}

pub struct Substitution {
    /// The scenario's composites (scratch), named as the base's.
    pub ndvi_dir: PathBuf,
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
    /// The climatology table's citation, when a group took its profile.
    pub climatology_citation: Option<String>,
}

/// The monthly composites INDEX_YYYY-MM.tif of a folder, sorted.
pub fn composites(dir: &Path, index: &str) -> Result<Vec<PathBuf>> {
    let re = regex::Regex::new(&format!(r"^{}_\d{{4}}-\d{{2}}\.tif$", regex::escape(index)))
        .expect("valid pattern");
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list the composites", e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| re.is_match(&n.to_string_lossy()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A group: (change, 1-based; new class).
type Group = (i32, i32);

/// The groups of the scenario and each one's donor window (col0, row0, col1, row1, inclusive).
fn groups(lc: &LandCover, grid: &Grid, distance_m: f64) -> Result<BTreeMap<Group, [usize; 4]>> {
    let (mx, my) = metres_per_pixel(grid)?;
    let (dc, dr) = (
        (distance_m / mx).ceil() as usize,
        (distance_m / my).ceil() as usize,
    );
    let mut out = BTreeMap::new();
    for (k, st) in lc.changes.iter().enumerate() {
        let Some(bb) = st.bbox else { continue };
        let window = [
            bb[0].saturating_sub(dc),
            bb[1].saturating_sub(dr),
            (bb[2] + dc).min(grid.width - 1),
            (bb[3] + dr).min(grid.height - 1),
        ];
        for &(_, to) in st.transitions.keys() {
            out.insert((k as i32 + 1, to as i32), window);
        }
    }
    Ok(out)
}

/// Pixel width and height in metres at the grid's centre.
fn metres_per_pixel(grid: &Grid) -> Result<(f64, f64)> {
    let srs = grid.spatial_ref()?;
    if srs.is_geographic() {
        let m_per_deg = io::earth_radius_m()? * std::f64::consts::PI / 180.0;
        let lat = io::grid_centre_latitude(grid)?.to_radians();
        return Ok((
            grid.gt[1].abs() * m_per_deg * lat.cos(),
            grid.gt[5].abs() * m_per_deg,
        ));
    }
    let unit = srs.linear_units();
    Ok((grid.gt[1].abs() * unit, grid.gt[5].abs() * unit))
}

pub fn run(s: &Scenario, grid: &Grid, lc: &LandCover, scratch: &Path) -> Result<Substitution> {
    let files = composites(&s.base.ndvi_dir, &s.base.ndvi_index)?;
    let groups = groups(lc, grid, s.substitution.distance_m)?;
    let dir = scratch.join("ndvi");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "cannot create", e))?;
    let lcr = GridReader::new(
        &lc.scratch,
        &[1, 2, 3].map(|i| BandRequest {
            index: i,
            name: format!("scenario land cover band {i}"),
        }),
        grid,
        Resampling::Nearest,
        None,
        lc.nodata as f64,
    )?;
    let clim = super::climatology::Climatology::load(s.substitution.climatology.as_deref())?;
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    for f in &files {
        let month = f.file_stem().unwrap_or_default().to_string_lossy();
        let month = month.rsplit('_').next().unwrap_or_default().to_string();
        let ndvi = GridReader::new(
            f,
            &[BandRequest {
                index: s.base.ndvi_band,
                name: "NDVI".into(),
            }],
            grid,
            Resampling::Nearest,
            None,
            f64::NAN,
        )?;
        let stats = month_stats(s, grid, &groups, &lcr, &ndvi)?;
        let mut values = BTreeMap::new();
        for (g, (scope, v)) in &stats {
            let st = &lc.changes[g.0 as usize - 1];
            let mut row = Row {
                change: st.label.clone(),
                class: g.1 as i64,
                month: month.clone(),
                scope: scope.clone(),
                donors: v.len() as u64,
                median: quantile(v, 0.5),
                p25: quantile(v, 0.25),
                p75: quantile(v, 0.75),
            };
            if scope == "whole scene" {
                warnings.push(format!(
                    "{} -> class {} in {month}: fewer than {} donors within {} m; the whole scene's {} pixels of the class used",
                    row.change, row.class, s.substitution.min_pixels, s.substitution.distance_m, row.donors
                ));
            } else if v.is_empty() {
                let (r, w) = fallback(s, &clim, row, &month);
                row = r;
                warnings.push(w);
            }
            values.insert(*g, row.median as f32);
            rows.push(row);
        }
        write_month(
            grid,
            &lcr,
            &ndvi,
            &values,
            &dir.join(f.file_name().expect("a file")),
            s.base.memory_mb,
        )?;
    }
    let used = rows.iter().any(|r| r.scope.starts_with("climatology"));
    Ok(Substitution {
        ndvi_dir: dir,
        rows,
        warnings,
        climatology_citation: used.then(|| clim.citation().to_string()),
    })
}

/// Rows per strip for the substitution's passes.
fn strip_rows(grid: &Grid, memory_mb: usize) -> usize {
    crate::engine::strips::rows(grid.width, grid.height, 16, 4, memory_mb)
}

/// Each group's donor values for one month, and where they came from.
fn month_stats(
    s: &Scenario,
    grid: &Grid,
    groups: &BTreeMap<Group, [usize; 4]>,
    lcr: &GridReader,
    ndvi: &GridReader,
) -> Result<BTreeMap<Group, (String, Vec<f32>)>> {
    // Pass 1: donors near each group and over the scene, counted.
    let mut near = vec![0u64; groups.len()];
    let mut scene: BTreeMap<i32, u64> = BTreeMap::new();
    for_donors(grid, lcr, ndvi, s.base.memory_mb, |col, row, cls, _| {
        for (i, ((_, c), w)) in groups.iter().enumerate() {
            if *c == cls && inside(w, col, row) {
                near[i] += 1;
            }
        }
        if groups.keys().any(|(_, c)| *c == cls) {
            *scene.entry(cls).or_default() += 1;
        }
    })?;
    let min = s.substitution.min_pixels;
    let plan: Vec<(bool, u64)> = groups
        .keys()
        .enumerate()
        .map(|(i, (_, c))| {
            let local = near[i] >= min;
            let n = if local {
                near[i]
            } else {
                scene.get(c).copied().unwrap_or(0)
            };
            (local, n.div_ceil(MAX_DONORS).max(1))
        })
        .collect();
    // Pass 2: the donors' values, every k-th beyond MAX_DONORS.
    let mut seen = vec![0u64; groups.len()];
    let mut vals: Vec<Vec<f32>> = vec![Vec::new(); groups.len()];
    for_donors(grid, lcr, ndvi, s.base.memory_mb, |col, row, cls, v| {
        for (i, ((_, c), w)) in groups.iter().enumerate() {
            let (local, stride) = plan[i];
            if *c == cls && (!local || inside(w, col, row)) {
                if seen[i].is_multiple_of(stride) {
                    vals[i].push(v);
                }
                seen[i] += 1;
            }
        }
    })?;
    Ok(groups
        .keys()
        .zip(plan)
        .zip(vals)
        .map(|((g, (local, _)), mut v)| {
            v.sort_by(f32::total_cmp);
            let scope = match (local, v.is_empty()) {
                (_, true) => "none".to_string(),
                (true, false) => format!("within {} m", s.substitution.distance_m),
                (false, false) => "whole scene".to_string(),
            };
            (*g, (scope, v))
        })
        .collect())
}

/// A group without any donor this month: its vegetation type's profile of the climatology table when it has
/// that month (scope "climatology"), else no value (the NPP job's gap fill); the warning says which.
fn fallback(
    s: &Scenario,
    clim: &super::climatology::Climatology,
    row: Row,
    month: &str,
) -> (Row, String) {
    let vt = s
        .legend
        .class(row.class)
        .map(|c| c.vegetation_type.clone())
        .unwrap_or_default();
    let m: Option<u32> = month.rsplit('-').next().and_then(|m| m.parse().ok());
    match m.and_then(|m| clim.month(&vt, m)) {
        Some(p) => {
            let w = format!(
                "{} -> class {} in {month}: no pixel of the class has an NDVI this month anywhere in the scene; the {vt} profile of {} used (NDVI {:.4}, from {} observations)",
                row.change,
                row.class,
                clim.describe(),
                p.median,
                p.count
            );
            let row = Row {
                scope: format!("climatology: {}", clim.describe()),
                donors: 0,
                median: p.median,
                p25: p.p25,
                p75: p.p75,
                ..row
            };
            (row, w)
        }
        None => {
            let w = format!(
                "{} -> class {} in {month}: no pixel of the class has an NDVI this month, and {} has no {vt} profile for it; the changed pixels are left to the NPP job's gap fill",
                row.change,
                row.class,
                clim.describe()
            );
            (row, w)
        }
    }
}

fn inside(w: &[usize; 4], col: usize, row: usize) -> bool {
    col >= w[0] && col <= w[2] && row >= w[1] && row <= w[3]
}

/// Call `f(col, row, class, ndvi)` for every unchanged pixel with an NDVI, strip by strip.
fn for_donors(
    grid: &Grid,
    lcr: &GridReader,
    ndvi: &GridReader,
    memory_mb: usize,
    mut f: impl FnMut(usize, usize, i32, f32),
) -> Result<()> {
    let rows = strip_rows(grid, memory_mb);
    for row0 in (0..grid.height).step_by(rows) {
        let n = rows.min(grid.height - row0);
        let len = n * grid.width;
        let (cls, by, v) = read_strip(lcr, ndvi, row0, n, len)?;
        for px in 0..len {
            if by[px] == 0 && v[px].is_finite() {
                f(px % grid.width, row0 + px / grid.width, cls[px], v[px]);
            }
        }
    }
    Ok(())
}

/// A strip's scenario class, change and NDVI.
fn read_strip(
    lcr: &GridReader,
    ndvi: &GridReader,
    row0: usize,
    n: usize,
    len: usize,
) -> Result<(Vec<i32>, Vec<i32>, Vec<f32>)> {
    let (mut cls, mut by, mut v) = (vec![0i32; len], vec![0i32; len], vec![0f32; len]);
    lcr.read_rows(0, row0, n, &mut cls)?;
    lcr.read_rows(1, row0, n, &mut by)?;
    ndvi.read_rows(0, row0, n, &mut v)?;
    Ok((cls, by, v))
}

/// The scenario's composite of one month: changed pixels take their group's median, others their own value.
fn write_month(
    grid: &Grid,
    lcr: &GridReader,
    ndvi: &GridReader,
    values: &BTreeMap<Group, f32>,
    target: &Path,
    memory_mb: usize,
) -> Result<()> {
    let w = RasterWriter::create::<f32>(
        target,
        grid,
        &[OutBand {
            description: "NDVI (scenario: substituted where the land cover changed)".into(),
            unit: "1".into(),
        }],
        None,
        &Default::default(),
        &Default::default(),
    )?;
    let read = |s: Window| read_strip(lcr, ndvi, s.row0, s.nrows, s.len());
    let kernel = |_, (cls, by, mut v): (Vec<i32>, Vec<i32>, Vec<f32>)| {
        for px in 0..v.len() {
            if by[px] > 0 {
                v[px] = values.get(&(by[px], cls[px])).copied().unwrap_or(f32::NAN);
            }
        }
        Ok(StripOut {
            planes: vec![vec![v.into()]],
            side: (),
        })
    };
    let mut writers = [w];
    let dims = crate::engine::run::strips(grid.width, grid.height, strip_rows(grid, memory_mb));
    // The readers serve every month: read on this thread, strip by strip.
    crate::engine::run::run_local(
        "substitute",
        dims,
        &mut writers,
        &Silent,
        (read, kernel),
        |_, _| {},
    )?;
    let [w] = writers;
    w.finish()?.keep_scratch()?;
    Ok(())
}

/// Quantile `q` of sorted values (linear between order statistics, R's type 7); NaN for none.
fn quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] as f64 + (h - lo as f64) * (sorted[hi] as f64 - sorted[lo] as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_as_r_type_7() {
        // R: quantile(c(1, 2, 3, 4), c(.25, .5, .75)) = 1.75 2.5 3.25
        let v = [1.0f32, 2.0, 3.0, 4.0];
        assert_eq!(super::quantile(&v, 0.25), 1.75);
        assert_eq!(super::quantile(&v, 0.5), 2.5);
        assert_eq!(super::quantile(&v, 0.75), 3.25);
        assert!(super::quantile(&[], 0.5).is_nan());
    }
}
