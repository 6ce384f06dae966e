//! The executor: a stage gives a reader (all its I/O: a window of its inputs on the grid), a kernel (a
//! window of inputs to a window of every output, and side results such as counts) and its writers; `run` owns
//! the rest. It walks the windows in order (whole-row strips, or blocks of whole tiles for wide rasters), reads
//! the next window on a worker while the current one is computed and written, writes each output's window by
//! its own worker (outputs compressed on all cores), folds the side results in window order on the calling
//! thread, and reports progress. Every output's tiles reach its file in order and the fold sees windows in
//! order, so outputs and tables do not depend on the thread count. The stage then finishes (verifies) and
//! commits its writers.

use crate::error::Result;
use crate::io::{RasterWriter, Window};
use crate::progress::Progress;

/// Values of one output band over a strip, in the band's pixel type.
pub enum Plane {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

macro_rules! plane_from {
    ($t:ty, $v:ident) => {
        impl From<Vec<$t>> for Plane {
            fn from(v: Vec<$t>) -> Plane {
                Plane::$v(v)
            }
        }
    };
}
plane_from!(u8, U8);
plane_from!(u16, U16);
plane_from!(i32, I32);
plane_from!(f32, F32);
plane_from!(f64, F64);

impl Plane {
    fn write(self, w: &mut RasterWriter, band: usize, window: &Window) -> Result<()> {
        match self {
            Plane::U8(v) => w.write_window(band, window, v),
            Plane::U16(v) => w.write_window(band, window, v),
            Plane::I32(v) => w.write_window(band, window, v),
            Plane::F32(v) => w.write_window(band, window, v),
            Plane::F64(v) => w.write_window(band, window, v),
        }
    }
}

/// What a kernel makes of one strip: for each writer (in the writers' order) its bands' planes (in band
/// order), and the strip's side results.
pub struct StripOut<S> {
    pub planes: Vec<Vec<Plane>>,
    pub side: S,
}

impl StripOut<()> {
    /// The result of a kernel that writes no raster and has no side result (a pass whose sums are its work,
    /// run with no writers).
    pub fn none() -> StripOut<()> {
        StripOut {
            planes: Vec::new(),
            side: (),
        }
    }
}

/// Run a stage named `name` over `windows` (whole-row strips, `strips`, or blocks of whole tiles,
/// `engine::strips::blocks`; each output is flushed after each window). `read` is called once per window in
/// order, on a worker, the next window's read beside the current window's kernel and writing (with one worker
/// thread, after them: the calling thread would otherwise be a second one computing). The kernel runs on the
/// calling thread (it may hold what cannot leave it, and it may use the pool itself); `fold` gets each
/// window's side results in order.
pub fn run<I, S, R, K, F>(
    name: &str,
    windows: Vec<Window>,
    writers: &mut [RasterWriter],
    progress: &dyn Progress,
    (read, mut kernel): (R, K),
    fold: F,
) -> Result<()>
where
    I: Send,
    R: FnMut(Window) -> Result<I> + Send,
    K: FnMut(Window, I) -> Result<StripOut<S>>,
    F: FnMut(Window, S),
{
    if rayon::current_num_threads() < 2 {
        return run_local(name, windows, writers, progress, (read, kernel), fold);
    }
    let step = |read: &mut R, strip: Window, input: I, following: Option<Window>| {
        let mut next = Ok(None);
        let done = rayon::in_place_scope(|s| {
            s.spawn(|_| next = following.map(read).transpose());
            kernel(strip, input).and_then(|out| write_strip(&strip, out, writers))
        });
        (next, done)
    };
    walk(name, windows, progress, read, step, fold)
}

/// `run` for a reader that cannot leave the calling thread (such as vector zones rasterised strip by strip: GDAL
/// geometries are not `Send`): each window is read on the calling thread after the previous one is written.
/// The same outputs.
pub fn run_local<I, S, R, K, F>(
    name: &str,
    windows: Vec<Window>,
    writers: &mut [RasterWriter],
    progress: &dyn Progress,
    (read, mut kernel): (R, K),
    fold: F,
) -> Result<()>
where
    R: FnMut(Window) -> Result<I>,
    K: FnMut(Window, I) -> Result<StripOut<S>>,
    F: FnMut(Window, S),
{
    let step = |read: &mut R, strip: Window, input: I, following: Option<Window>| {
        let done = kernel(strip, input).and_then(|out| write_strip(&strip, out, writers));
        match done {
            Ok(_) => (following.map(read).transpose(), done),
            Err(_) => (Ok(None), done),
        }
    };
    walk(name, windows, progress, read, step, fold)
}

/// The strip loop of `run` and `run_local`: the first strip is read, then `step` computes and writes each strip
/// and reads the following one (the next strip's input, none after the last), and `fold` takes the side
/// results in row order. Stops at the first error, the write's before the read's.
fn walk<I, S, R, P, F>(
    name: &str,
    strips: Vec<Window>,
    progress: &dyn Progress,
    mut read: R,
    mut step: P,
    mut fold: F,
) -> Result<()>
where
    R: FnMut(Window) -> Result<I>,
    P: FnMut(&mut R, Window, I, Option<Window>) -> (Result<Option<I>>, Result<S>),
    F: FnMut(Window, S),
{
    progress.start(name, strips.iter().map(|w| w.len() as u64).sum());
    let mut next = match strips.first() {
        Some(s) => Some(read(*s)?),
        None => None,
    };
    for (i, strip) in strips.iter().enumerate() {
        let input = next
            .take()
            .expect("a strip's input is read before its turn");
        let (ahead, done) = step(&mut read, *strip, input, strips.get(i + 1).copied());
        fold(*strip, done?);
        next = ahead?;
        progress.advance(strip.len() as u64);
    }
    progress.finish();
    Ok(())
}

/// The strips of `rows` rows (the last one shorter) of a grid `width` x `height`, in row order: the windows
/// of `run` for a stage that walks whole rows (`engine::strips::blocks` gives blocks of fewer columns).
pub fn strips(width: usize, height: usize, rows: usize) -> Vec<Window> {
    (0..height)
        .step_by(rows.max(1))
        .map(|row0| Window::rows(row0, rows.max(1).min(height - row0), width))
        .collect()
}

/// Write a strip's planes, each writer by one worker, and flush each writer (its tiles in row order) when the
/// strip completes a tile row: strips of part of a tile row (`engine::strips::sub_tile_rows`, for wide rasters)
/// leave their tiles in the cache until the strip that completes them, so each tile is written once.
fn write_strip<S>(strip: &Window, out: StripOut<S>, writers: &mut [RasterWriter]) -> Result<S> {
    assert_eq!(
        out.planes.len(),
        writers.len(),
        "a kernel gives one list of planes per writer"
    );
    crate::engine::write::each_output_with(writers, out.planes, |planes, w| {
        for (band, p) in planes.into_iter().enumerate() {
            p.write(w, band, strip)?;
        }
        match crate::engine::strips::is_tile_end(strip.row0 + strip.nrows, w.height()) {
            true => w.flush(),
            false => Ok(()),
        }
    })?;
    Ok(out.side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Grid, OutBand};

    fn grid(width: usize, height: usize) -> Grid {
        Grid {
            crs_wkt: gdal::spatial_ref::SpatialRef::from_epsg(32630)
                .unwrap()
                .to_wkt()
                .unwrap(),
            gt: [500_000.0, 10.0, 0.0, 5_600_000.0, 0.0, -10.0],
            width,
            height,
        }
    }

    /// A kernel of two outputs (Float32 x + 1, Byte x mod 7) over 600 x 700 px in strips of 256 rows: the
    /// values read back, the strips read and folded once each in row order, and the same bytes at 1 and 2
    /// threads.
    #[test]
    fn every_strip_read_once_written_in_order_and_folded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid(600, 700);
        let run_with = |threads: usize, tag: &str| {
            let band = |d: &str| {
                vec![OutBand {
                    description: d.into(),
                    unit: "1".into(),
                }]
            };
            let md = Default::default();
            let wo = Default::default();
            let pa = dir.path().join(format!("a{tag}.tif"));
            let pb = dir.path().join(format!("b{tag}.tif"));
            let mut writers = vec![
                RasterWriter::create::<f32>(&pa, &g, &band("x+1"), None, &md, &wo).unwrap(),
                RasterWriter::create::<u8>(&pb, &g, &band("x mod 7"), Some(255.0), &md, &wo)
                    .unwrap(),
            ];
            let (mut reads, mut folds) = (Vec::new(), Vec::new());
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                run(
                    "test",
                    strips(g.width, g.height, 256),
                    &mut writers,
                    &crate::progress::Silent,
                    (
                        |s: Window| {
                            reads.push(s.row0);
                            Ok((0..s.len())
                                .map(|p| (s.row0 * s.ncols + p) as u32)
                                .collect())
                        },
                        |s: Window, x: Vec<u32>| {
                            Ok(StripOut {
                                planes: vec![
                                    vec![x
                                        .iter()
                                        .map(|&v| v as f32 + 1.0)
                                        .collect::<Vec<_>>()
                                        .into()],
                                    vec![x
                                        .iter()
                                        .map(|&v| (v % 7) as u8)
                                        .collect::<Vec<_>>()
                                        .into()],
                                ],
                                side: (s.row0, x.len()),
                            })
                        },
                    ),
                    |_, side| folds.push(side),
                )
                .unwrap()
            });
            assert_eq!(reads, vec![0, 256, 512]);
            assert_eq!(
                folds,
                vec![(0, 256 * 600), (256, 256 * 600), (512, 188 * 600)]
            );
            for w in writers {
                w.finish().unwrap().commit().unwrap();
            }
            (
                std::fs::read(&pa).unwrap(),
                std::fs::read(&pb).unwrap(),
                pa,
                pb,
            )
        };
        let (a1, b1, pa, pb) = run_with(1, "1");
        let (a2, b2, _, _) = run_with(2, "2");
        assert!(a1 == a2 && b1 == b2, "same bytes at 1 and 2 threads");
        let ds = gdal::Dataset::open(&pa).unwrap();
        let v = ds.rasterband(1).unwrap().read_band_as::<f32>().unwrap();
        // Pixel (col 9, row 300) is x = 300 * 600 + 9 = 180009: 180010 in a; 180009 = 7 * 25715 + 4, so 4 in b.
        assert_eq!(v.data()[300 * 600 + 9], 180_010.0);
        let ds = gdal::Dataset::open(&pb).unwrap();
        let v = ds.rasterband(1).unwrap().read_band_as::<u8>().unwrap();
        assert_eq!(v.data()[300 * 600 + 9], 4);
    }

    /// Strips of part of a tile row (64 rows, four to a tile row) leave their tiles in the cache until the strip
    /// that completes them: each tile is written once, so the file is byte for byte the one whole-tile strips
    /// write, at 1 and 2 threads.
    #[test]
    fn sub_tile_strips_write_each_tile_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid(600, 700);
        let write = |rows: usize, threads: usize| {
            let p = dir.path().join(format!("x{rows}-{threads}.tif"));
            let band = vec![OutBand {
                description: "x".into(),
                unit: "1".into(),
            }];
            let (md, wo) = (Default::default(), Default::default());
            let w = RasterWriter::create::<f32>(&p, &g, &band, None, &md, &wo).unwrap();
            let mut writers = vec![w];
            let kernel = |s: Window, _: Window| {
                let v: Vec<f32> = (0..s.len())
                    .map(|i| ((s.row0 * s.ncols + i) as f32).sqrt())
                    .collect();
                Ok(StripOut {
                    planes: vec![vec![v.into()]],
                    side: (),
                })
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let windows = strips(g.width, g.height, rows);
                let silent = &crate::progress::Silent;
                run(
                    "test",
                    windows,
                    &mut writers,
                    silent,
                    (Ok, kernel),
                    |_, ()| {},
                )
                .unwrap()
            });
            for w in writers {
                w.finish().unwrap().commit().unwrap();
            }
            let ds = gdal::Dataset::open(&p).unwrap();
            let v = ds.rasterband(1).unwrap().read_band_as::<f32>().unwrap();
            (std::fs::read(&p).unwrap(), v.data().to_vec())
        };
        let (_, v) = write(256, 2);
        // Pixel (col 9, row 300): sqrt(300 * 600 + 9).
        assert_eq!(v[300 * 600 + 9], (180_009f32).sqrt());
        let (one, v64) = write(64, 1);
        assert!(v64 == v, "64-row strips give the values of 256-row strips");
        assert!(write(64, 2).0 == one, "the same bytes at 1 and 2 threads");
        // Each tile written once: the file is its header and its 9 tiles, nothing left behind. (The edge tiles'
        // padding, outside the raster, may differ from whole-tile strips': GDAL fills it as it writes.)
        let tiles = |bytes: &[u8]| {
            let p = dir.path().join("probe.tif");
            std::fs::write(&p, bytes).unwrap();
            use gdal::Metadata;
            let ds = gdal::Dataset::open(&p).unwrap();
            let b = ds.rasterband(1).unwrap();
            let item = |k: &str, x: usize, y: usize| -> u64 {
                let key = format!("BLOCK_{k}_{x}_{y}");
                b.metadata_item(&key, "TIFF").unwrap().parse().unwrap()
            };
            let mut t: Vec<(u64, u64)> = (0..9)
                .map(|i| (item("OFFSET", i % 3, i / 3), item("SIZE", i % 3, i / 3)))
                .collect();
            t.sort();
            t
        };
        let t = tiles(&one);
        assert!(t.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "{t:?}");
        assert_eq!(t[8].0 + t[8].1, one.len() as u64, "{t:?}");
    }

    #[test]
    fn a_failed_read_stops_the_run_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid(64, 600);
        let p = dir.path().join("x.tif");
        let band = vec![OutBand {
            description: "x".into(),
            unit: "1".into(),
        }];
        let w = RasterWriter::create::<f32>(
            &p,
            &g,
            &band,
            None,
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        let mut writers = vec![w];
        let err = run(
            "test",
            strips(g.width, g.height, 256),
            &mut writers,
            &crate::progress::Silent,
            (
                |s: Window| {
                    if s.row0 == 256 {
                        Err(crate::error::Error::Usage("unreadable strip".into()))
                    } else {
                        Ok(vec![0f32; s.len()])
                    }
                },
                |_, x: Vec<f32>| {
                    Ok(StripOut {
                        planes: vec![vec![x.into()]],
                        side: (),
                    })
                },
            ),
            |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("unreadable strip"), "{err}");
        drop(writers);
        assert!(!p.exists(), "nothing committed");
    }
}
