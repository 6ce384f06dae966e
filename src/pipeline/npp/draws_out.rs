//! The outputs of a run's draws (`npp --draws`): the per-pixel rasters (NPP, NEP and sequestration: mean, sd and
//! 5/50/95th percentiles) and the totals per class with intervals (draws_PERIOD.csv) and each source's share of
//! the NEP's variance (draws_variance_PERIOD.csv), every total computed per draw from per-class sums.

use std::path::{Path, PathBuf};

use super::confusion::Confusion;
use super::draws::{
    attribution_of, sens_finite, shifted, summary, Draws, ErrorParams, Responses, Sens, STATS,
};
use super::driver_error::N;
use crate::engine::run::{Plane, StripOut};
use crate::error::Result;
use crate::io::Window;

/// Per class: its code, NPP parameter, area (m2) and the sums of NPP x area and Rh x area (g C) over its
/// pixels with a result, and of their sensitivities to the drivers x area (pixels with one).
#[derive(Default, Clone, Copy)]
struct ClassSums {
    code: i32,
    k: Option<usize>,
    area: f64,
    npp: f64,
    rh: f64,
    sens: Sens,
    /// The parameters of its errors (run-wide drivers', and its type's class parameters).
    ps: ErrorParams,
}

/// What a total is drawn with: the confusion rows' shares (None: as mapped), the draw of NPP's and Rh's
/// spatial fields (None: at their mean), and the drivers' errors.
#[derive(Clone, Copy)]
struct Drawn<'a> {
    shares: Option<&'a [Vec<f64>]>,
    field: (Option<usize>, Option<usize>),
    drivers: DriversIn,
}

/// The drivers' errors in a total: at their mean (0), every driver as in draw d, or driver v alone in draw d.
#[derive(Clone, Copy)]
enum DriversIn {
    Mean,
    Draw(usize),
    Alone(usize, usize),
}

/// Totals of sets of mapped classes in a draw: with a confusion matrix, each mapped class's area taken as the
/// classes it truly is (drawn shares), each at that class's mean NPP and Rh per area; without, as mapped.
struct Totals<'a> {
    sums: &'a std::collections::BTreeMap<i32, ClassSums>,
    /// Whether NPP and Rh have spatial fields, and then each class's sums per draw.
    field: (bool, bool),
    draw_sums: &'a super::pixel_draws::DrawSums,
    confusion: Option<&'a Confusion>,
    /// Per draw, per confusion row, the shares of each reference class.
    shares: Vec<Vec<Vec<f64>>>,
    /// The rows' own proportions (land cover held at its mean while a parameter varies).
    mean: Vec<Vec<f64>>,
    /// Pixels with a result but no sensitivity to a declared driver.
    without_sensitivity: u64,
    draws: &'a Draws,
    /// Per driver, whether its error is a spatial field (its part of a total is then summed draw by draw).
    driver_field: [bool; N],
}

impl Totals<'_> {
    /// NPP and Rh (g C) of `set` drawn as `drawn` says, with NPP multipliers `m` and Rh's `r`.
    fn npp_rh(
        &self,
        set: &[ClassSums],
        drawn: Drawn,
        m: &dyn Fn(Option<usize>) -> f64,
        r: f64,
    ) -> (f64, f64) {
        let (mut npp, mut rh) = (0.0, 0.0);
        let (shares, fd) = (drawn.shares, drawn.field);
        let in_draw = |s: &ClassSums| {
            let sums = self.draw_sums.get(&s.code);
            let n = fd.0.zip(sums).map_or(s.npp, |(d, v)| v.npp[d]);
            let r = fd.1.zip(sums).map_or(s.rh, |(d, v)| v.rh[d]);
            let (dn, dr) = self.drivers_part(s, sums, drawn.drivers);
            (n + dn, r + dr)
        };
        for s in set {
            let (s_npp, s_rh) = in_draw(s);
            let row = self.confusion.zip(shares).and_then(|(c, sh)| {
                let i = c.codes.iter().position(|&x| x == s.code)?;
                Some((c, &sh[i]))
            });
            let Some((c, row)) = row.filter(|_| s.area > 0.0) else {
                npp += s_npp * m(s.k);
                rh += s_rh * r;
                continue;
            };
            for (&code, &p) in c.codes.iter().zip(row) {
                // A reference class without pixels in the map has no mean: that share keeps the mapped class.
                let t = self.sums.get(&code).filter(|t| t.area > 0.0).unwrap_or(s);
                let (t_npp, t_rh) = in_draw(t);
                npp += p * s.area * t_npp / t.area * m(t.k);
                rh += p * s.area * t_rh / t.area * r;
            }
        }
        (npp, rh)
    }

    /// The drivers' part of a class's NPP and Rh (g C): from the pixels' per-draw sums where they hold it (a
    /// spatial field in the run: each pixel's own errors), else the class's summed sensitivities times the run's
    /// errors.
    fn drivers_part(
        &self,
        s: &ClassSums,
        sums: Option<&super::pixel_draws::ClassDraws>,
        how: DriversIn,
    ) -> (f64, f64) {
        let d = self.draws;
        match (how, sums) {
            (DriversIn::Mean, _) => (0.0, 0.0),
            (DriversIn::Draw(i), Some(v)) => (v.npp_moved[i], v.rh_moved[i]),
            (DriversIn::Draw(i), None) => shifted(0.0, 0.0, &s.sens, &d.errors(i, &s.ps)),
            (DriversIn::Alone(v, i), Some(c)) if self.driver_field[v] => {
                (c.alone[v].0[i], c.alone[v].1[i])
            }
            (DriversIn::Alone(v, i), _) => shifted(0.0, 0.0, &s.sens, &d.error_alone(i, v, &s.ps)),
        }
    }

    fn shares(&self, d: usize) -> Option<&[Vec<f64>]> {
        self.confusion.map(|_| self.shares[d].as_slice())
    }

    /// Draw `d` of every source: the confusion shares, the fields' draw and the drivers' errors.
    fn drawn(&self, d: usize) -> Drawn<'_> {
        let f = |on: bool| on.then_some(d);
        Drawn {
            shares: self.shares(d),
            field: (f(self.field.0), f(self.field.1)),
            drivers: DriversIn::Draw(d),
        }
    }

    /// Every source at its mean: land cover at the rows' proportions, fields and drivers at 0.
    fn at_mean(&self) -> Drawn<'_> {
        Drawn {
            shares: self.confusion.map(|_| self.mean.as_slice()),
            field: (None, None),
            drivers: DriversIn::Mean,
        }
    }
}

/// The draws' rasters (NPP, NEP and sequestration: mean, sd, p05, p50, p95), in the deterministic outputs' units
/// (per year for a calendar year, else over the period).
fn draws_writers(
    job: &super::NppJob,
    draws: &Draws,
    (grid, npp): (&crate::io::Grid, &Path),
    period: &str,
    seed: u64,
) -> Result<Vec<crate::io::RasterWriter>> {
    use crate::io::{OutBand, RasterWriter};
    use std::collections::BTreeMap;
    // The deterministic outputs' units (per year for a calendar year, else over the period).
    let unit = crate::io::RasterInfo::read(npp)?.bands[0].unit.clone();
    let per_year = if unit.ends_with("yr-1") { " yr-1" } else { "" };
    let seq_unit = format!("t CO2 ha-1{per_year}");
    let names = [
        ("NPP", unit.as_str()),
        ("NEP", unit.as_str()),
        ("sequestration", seq_unit.as_str()),
    ];
    let mut md = BTreeMap::new();
    md.insert("UNCERTAINTY".to_string(), draws.path.display().to_string());
    md.insert(
        "DRAWS".to_string(),
        format!("{} draws, seed {seed}", draws.n),
    );
    md.insert(
        "PERIOD".to_string(),
        format!("{period} (totals over the period)"),
    );
    names
        .iter()
        .map(|(q, unit)| {
            let stem = if *q == "sequestration" {
                "sequestration_tCO2_ha"
            } else if *q == "NPP" {
                "NPP_gC_m2"
            } else {
                "NEP_gC_m2"
            };
            let bands: Vec<OutBand> = STATS
                .iter()
                .map(|s| OutBand {
                    description: format!("{q} {s} of {} draws, {period}", draws.n),
                    unit: unit.to_string(),
                })
                .collect();
            RasterWriter::create::<f32>(
                &job.out_dir.join(format!("{stem}_{period}_draws.tif")),
                grid,
                &bands,
                None,
                &md,
                &job.write,
            )
        })
        .collect()
}

/// The draws' rasters (NPP, NEP and sequestration: mean, sd, p05, p50, p95) and totals table, from the run's
/// NPP and Rh over the period.
pub fn write(
    job: &super::NppJob,
    legend: &crate::landcover::Legend,
    (npp_path, rh_path, sens_path): (&Path, &Path, Option<&Path>),
    period: &str,
    draws: &Draws,
    (seed, confusion): (u64, Option<&Confusion>),
) -> Result<Vec<PathBuf>> {
    use crate::io::Grid;
    use std::collections::BTreeMap;
    let (npp_r, rh_r) = (
        crate::commit::readable(npp_path),
        crate::commit::readable(rh_path),
    );
    let grid = Grid::from_raster(&npp_r)?;
    let (nr, rr, lc) = strip_readers(job, (&npp_r, &rh_r), &grid)?;
    let sens_r = sens_path
        .map(|p| SensReader::open(&crate::commit::readable(p), &grid, draws))
        .transpose()?;
    let param = |code: i32| {
        legend
            .class(code as i64)
            .and_then(|c| draws.npp_param(&c.vegetation_type))
    };
    let class_params = class_error_params(legend, draws);
    let ps_of = |code: i32| class_params.get(&code).copied().unwrap_or(draws.run_wide());
    let mut writers = draws_writers(job, draws, (&grid, &npp_r), period, seed)?;
    let areas = crate::area::PixelAreas::of(&grid)?;
    let mut sums: BTreeMap<i32, ClassSums> = BTreeMap::new();
    let rows = strip_rows(job, &grid, draws);
    let read =
        |row0: usize, n: usize| read_strip((&nr, &rr, &lc), sens_r.as_ref(), grid.width, (row0, n));
    let declared = sens_r.as_ref().map_or_else(Vec::new, |r| r.drivers.clone());
    let add = |sums: &mut BTreeMap<i32, ClassSums>, row0: usize, data: &Strip3| {
        let strip = (
            &data.0[..],
            &data.1[..],
            &data.2[..],
            responses(&declared, data),
        );
        add_strip(sums, (&areas, grid.width, row0), strip, (&param, &ps_of))
    };
    // With land-cover confusion the pixels need every class's mean first: a pass of its own (reads only).
    if confusion.is_some() {
        for row0 in (0..grid.height).step_by(rows) {
            add(&mut sums, row0, &read(row0, rows.min(grid.height - row0))?);
        }
    }
    let shares = confusion.map_or_else(Vec::new, |c| c.draw_shares(draws.n, seed));
    let fields = super::pixel_draws::Fields::new(draws, &grid, seed)?;
    let strip = super::pixel_draws::Strip {
        draws,
        grid: &grid,
        fields: &fields,
        areas: &areas,
        param: &param,
        to_co2: super::gc_m2_to_tco2_ha(1.0),
        errs: (0..draws.n).map(|d| draws.driver_errors(d)).collect(),
        class_params: &class_params,
        confusion: confusion.map(|c| super::pixel_draws::PixelConfusion {
            codes: &c.codes,
            shares: &shares,
            means: class_means(&sums),
            seed,
        }),
    };
    let mut draw_sums = super::pixel_draws::DrawSums::new();
    let writers_len = writers.len();
    let mut strip_sums = BTreeMap::new();
    let mut without_sensitivity = 0;
    // Each strip's percentiles per writer and band; the draws' sums and the class sums folded in row order.
    let kernel = |w: Window, data: Strip3| {
        let sens = responses(&declared, &data);
        let (stats, field_sums) = strip.run(w.row0, (&data.0, &data.1, &data.2), sens);
        Ok(StripOut {
            planes: stat_planes(&stats, writers_len),
            side: (field_sums, data),
        })
    };
    crate::engine::run::run_local(
        "npp draws",
        crate::engine::run::strips(grid.width, grid.height, rows),
        &mut writers,
        &crate::progress::Silent,
        (|w: Window| read(w.row0, w.nrows), kernel),
        |w, (field_sums, data)| {
            super::pixel_draws::add_sums(&mut draw_sums, field_sums);
            without_sensitivity += add(&mut strip_sums, w.row0, &data);
        },
    )?;
    if confusion.is_none() {
        sums = strip_sums;
    }
    let mut outputs = Vec::new();
    for w in writers {
        outputs.push(w.finish()?.commit()?);
    }
    let table = job.out_dir.join(format!("draws_{period}.csv"));
    let totals = Totals {
        sums: &sums,
        field: (fields.npp.is_some(), fields.rh.is_some()),
        draw_sums: &draw_sums,
        confusion,
        shares,
        mean: confusion.map_or_else(Vec::new, Confusion::mean_shares),
        without_sensitivity,
        draws,
        driver_field: fields.drivers.each_ref().map(Option::is_some),
    };
    io_table(&table, legend, &totals, draws, period, seed)?;
    outputs.push(table);
    let shares = job.out_dir.join(format!("draws_variance_{period}.csv"));
    variance_table(&shares, legend, &totals, draws, seed)?;
    outputs.push(shares);
    Ok(outputs)
}

/// Per class code, its errors' parameters where a class parameter is drawn per type (else empty).
fn class_error_params(
    legend: &crate::landcover::Legend,
    draws: &Draws,
) -> std::collections::BTreeMap<i32, ErrorParams> {
    if !draws.has_per_class() {
        return Default::default();
    }
    (legend.classes.iter())
        .map(|c| (c.code as i32, draws.error_params(&c.vegetation_type)))
        .collect()
}

/// Each class's area-weighted mean NPP, Rh (g C m-2) and drivers' responses.
fn class_means(
    sums: &std::collections::BTreeMap<i32, ClassSums>,
) -> std::collections::BTreeMap<i32, (f64, f64, Sens)> {
    sums.iter()
        .filter(|(_, s)| s.area > 0.0)
        .map(|(&code, s)| {
            let sens = s.sens.map(|x| x.map(|v| v / s.area));
            (code, (s.npp / s.area, s.rh / s.area, sens))
        })
        .collect()
}

/// A class code's NPP parameter, if any.
type ParamOf<'a> = dyn Fn(i32) -> Option<usize> + 'a;

/// Adds a strip's pixels with a result (`row0`.. of a grid `width` wide) to their classes' sums; returns how
/// many of them have no sensitivity to a declared driver (their drivers' errors are not drawn).
fn add_strip(
    sums: &mut std::collections::BTreeMap<i32, ClassSums>,
    (areas, width, row0): (&crate::area::PixelAreas, usize, usize),
    (npp, rh, cls, sens): (&[f64], &[f64], &[i32], Responses),
    (param, ps_of): (&ParamOf, &dyn Fn(i32) -> ErrorParams),
) -> u64 {
    let mut without = 0;
    for (px, c) in cls.iter().enumerate() {
        if !(npp[px].is_finite() && rh[px].is_finite()) {
            continue;
        }
        let a = areas.at(px % width, row0 + px / width);
        let s = sums.entry(*c).or_insert_with(|| ClassSums {
            code: *c,
            k: param(*c),
            ps: ps_of(*c),
            ..Default::default()
        });
        s.area += a;
        s.npp += npp[px] * a;
        s.rh += rh[px] * a;
        match sens.at(px) {
            Some(x) if sens_finite(&x) => {
                for (sv, xv) in s.sens.iter_mut().zip(&x) {
                    for (sq, xq) in sv.iter_mut().zip(xv) {
                        *sq += xq * a;
                    }
                }
            }
            Some(_) => without += 1,
            None => {}
        }
    }
    without
}

/// Readers of the run's NPP and Rh (g C m-2 over the period) and of the land cover, on the NPP's grid.
/// A strip of `n` rows from `row0`: NPP, Rh, land cover and (with declared drivers) the responses.
fn read_strip(
    (nr, rr, lc): (
        &crate::io::GridReader,
        &crate::io::GridReader,
        &crate::io::GridReader,
    ),
    sens: Option<&SensReader>,
    width: usize,
    (row0, n): (usize, usize),
) -> Result<Strip3> {
    let len = n * width;
    let (mut npp, mut rh, mut cls) = (vec![0f64; len], vec![0f64; len], vec![0i32; len]);
    nr.read_rows(0, row0, n, &mut npp)?;
    rr.read_rows(0, row0, n, &mut rh)?;
    lc.read_rows(0, row0, n, &mut cls)?;
    let sens = match sens {
        Some(r) => r.read(row0, n)?,
        None => Vec::new(),
    };
    Ok((npp, rh, cls, sens))
}

/// Per-pixel statistics (`[pixel][writer][band]`) as each writer's band planes.
fn stat_planes(stats: &[super::pixel_draws::PixelStats], writers: usize) -> Vec<Vec<Plane>> {
    (0..writers)
        .map(|q| {
            (0..STATS.len())
                .map(|b| stats.iter().map(|s| s[q][b]).collect::<Vec<_>>().into())
                .collect()
        })
        .collect()
}

fn strip_readers(
    job: &super::NppJob,
    (npp, rh): (&Path, &Path),
    grid: &crate::io::Grid,
) -> Result<(
    crate::io::GridReader,
    crate::io::GridReader,
    crate::io::GridReader,
)> {
    use crate::io::{BandRequest, GridReader, Resampling};
    let reader = |p: &Path, band: usize, fill: f64| {
        let request = BandRequest {
            index: band,
            name: p.display().to_string(),
        };
        GridReader::new(p, &[request], grid, Resampling::Nearest, None, fill)
    };
    Ok((
        reader(npp, 1, f64::NAN)?,
        reader(rh, 1, f64::NAN)?,
        reader(&job.landcover, job.landcover_band, super::LC_FILL)?,
    ))
}

/// A strip's NPP, Rh (g C m-2), land-cover class and (with drivers' errors) sensitivities per pixel.
type Strip3 = (Vec<f64>, Vec<f64>, Vec<i32>, Vec<f32>);

/// Rows per strip of the draws' pass within the job's memory budget.
fn strip_rows(job: &super::NppJob, grid: &crate::io::Grid, draws: &Draws) -> usize {
    crate::engine::strips::rows(
        grid.width,
        grid.height,
        // With drivers' errors, each pixel's responses (4 float32 per declared entry) and a band's read buffer.
        16 + 16 * draws.n.min(64) + 16 * draws.declared_drivers().len() + 4,
        60,
        job.memory_mb,
    )
}

/// A strip's responses to the `declared` entries.
fn responses<'a>(declared: &'a [usize], data: &'a Strip3) -> Responses<'a> {
    Responses {
        declared,
        vals: &data.3,
    }
}

/// The sensitivity raster of a run (`driver_error.rs`): two bands (NPP, Rh) per declared driver, in order.
struct SensReader {
    reader: crate::io::GridReader,
    width: usize,
    drivers: Vec<usize>,
}

impl SensReader {
    fn open(path: &Path, grid: &crate::io::Grid, draws: &Draws) -> Result<SensReader> {
        use crate::io::{BandRequest, GridReader, Resampling};
        let drivers = draws.declared_drivers();
        let bands: Vec<BandRequest> = (0..4 * drivers.len())
            .map(|b| BandRequest {
                index: b + 1,
                name: format!("{} band {}", path.display(), b + 1),
            })
            .collect();
        let reader = GridReader::new(path, &bands, grid, Resampling::Nearest, None, f64::NAN)?;
        Ok(SensReader {
            reader,
            width: grid.width,
            drivers,
        })
    }

    /// Rows `row0`.. (`n` of them, full width): each pixel's responses (`Responses` with `drivers`).
    fn read(&self, row0: usize, n: usize) -> Result<Vec<f32>> {
        let (len, k) = (n * self.width, 4 * self.drivers.len());
        let mut out = vec![0f32; len * k];
        let mut buf = vec![0f32; len];
        for b in 0..k {
            self.reader.read_rows(b, row0, n, &mut buf)?;
            out.iter_mut()
                .skip(b)
                .step_by(k)
                .zip(&buf)
                .for_each(|(o, x)| *o = *x);
        }
        Ok(out)
    }
}

/// `row(code, name, sums)` for all classes together, then for each class.
fn for_classes(
    legend: &crate::landcover::Legend,
    sums: &std::collections::BTreeMap<i32, ClassSums>,
    mut row: impl FnMut(&str, &str, &[ClassSums]),
) {
    let all: Vec<ClassSums> = sums.values().copied().collect();
    row("all", "all classes", &all);
    for (code, s) in sums {
        let name = legend
            .class(*code as i64)
            .map_or("(not in the legend)", |c| c.name.as_str());
        row(&code.to_string(), name, std::slice::from_ref(s));
    }
}

/// draws_variance_PERIOD.csv: per class and for all classes, each source's share of the NEP's variance (t C
/// over the period): every NPP parameter (its multiplier times the NPP of the classes it multiplies) and Rh's.
fn variance_table(
    target: &Path,
    legend: &crate::landcover::Legend,
    totals: &Totals,
    draws: &Draws,
    seed: u64,
) -> Result<()> {
    let mut out = String::from("code,class,source,sd_tC,share_of_NEP_variance,dominant\n");
    let mut params: Vec<Option<usize>> = totals.sums.values().map(|s| s.k).collect();
    params.sort_unstable();
    params.dedup();
    let row = |code: &str, name: &str, set: &[ClassSums]| {
        let nep = |drawn: Drawn, m: &dyn Fn(Option<usize>) -> f64, r: f64| {
            let (n, h) = totals.npp_rh(set, drawn, m, r);
            (n - h) / 1e6
        };
        let at_mean = totals.at_mean();
        // Every source alone (the others at their means: multipliers 1, land cover at the rows' proportions).
        let mut terms: Vec<(String, Vec<f64>)> = Vec::new();
        for &k in &params {
            let label = k.map_or_else(
                || "NPP without a parameter".to_string(),
                |k| {
                    let p = &draws.spec.parameters[k];
                    format!("npp:{}", p.vegetation_type.as_deref().unwrap_or("*"))
                },
            );
            let v: Vec<f64> = (0..draws.n)
                .map(|d| {
                    nep(
                        at_mean,
                        &|kk| if kk == k { draws.at(d, k) } else { 0.0 },
                        0.0,
                    )
                })
                .collect();
            if v.iter().any(|x| *x != 0.0) {
                terms.push((label, v));
            }
        }
        let rk = draws.rh_param();
        let rh = (0..draws.n)
            .map(|d| nep(at_mean, &|_| 0.0, draws.at(d, rk)))
            .collect();
        terms.push(("rh".into(), rh));
        // A spatial field alone (with its shared part), the other sources at their means.
        for (on, target, fd) in [
            (totals.field.0, "npp", (true, false)),
            (totals.field.1, "rh", (false, true)),
        ] {
            if let Some(k) = draws.field_param(target).filter(|_| on) {
                let km = draws.spec.parameters[k].length_km.unwrap_or(f64::NAN);
                let v = (0..draws.n)
                    .map(|d| {
                        let field = (fd.0.then_some(d), fd.1.then_some(d));
                        nep(Drawn { field, ..at_mean }, &|_| 1.0, 1.0)
                    })
                    .collect();
                terms.push((format!("{target}:field {km} km"), v));
            }
        }
        // A driver's error alone: its sensitivities' term in NPP and in Rh together.
        for v in draws.declared_drivers() {
            let drv = &super::driver_error::DRIVERS[v];
            let t = (0..draws.n)
                .map(|d| {
                    let drivers = DriversIn::Alone(v, d);
                    nep(Drawn { drivers, ..at_mean }, &|_| 1.0, 1.0)
                })
                .collect();
            let field = draws
                .driver_length_km(v)
                .map_or_else(String::new, |l| format!(" (field {l} km)"));
            terms.push((format!("{}:{}{field}", drv.kind(), drv.name), t));
        }
        if totals.confusion.is_some() {
            let lc = (0..draws.n)
                .map(|d| {
                    let shares = totals.shares(d);
                    nep(Drawn { shares, ..at_mean }, &|_| 1.0, 1.0)
                })
                .collect();
            terms.push(("landcover".into(), lc));
        }
        let total: Vec<f64> = (0..draws.n)
            .map(|d| nep(totals.drawn(d), &|k| draws.at(d, k), draws.at(d, rk)))
            .collect();
        for (source, sd, share, top) in attribution_of(&total, &terms) {
            // No share where the NEP has no variance (a class without NPP and Rh): empty, not NaN.
            let share = if share.is_finite() {
                format!("{share:.6}")
            } else {
                String::new()
            };
            out += &format!("{code},\"{name}\",\"{source}\",{sd:.6},{share},{top}\n");
        }
    };
    for_classes(legend, totals.sums, row);
    let mut notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of {} ({})", draws.n, draws.spec.name, draws.path.display()),
        "one-at-a-time attribution: a source's share is the variance of the NEP with that source alone drawn (the others at their means: multipliers 1, land cover at the confusion rows' proportions) over the variance of the NEP with all drawn; with correlated parameters the shares need not add up to 1; no share where the NEP has no variance (classes without NPP and Rh)".into(),
    ];
    notes.extend(confusion_notes(totals));
    crate::io::write_table(target, out.as_bytes(), &notes)
}

/// draws_PERIOD.csv: per class and for all classes, NPP, Rh, NEP (t C) and sequestration (t CO2) over the
/// period, each total computed per draw.
fn io_table(
    target: &Path,
    legend: &crate::landcover::Legend,
    totals: &Totals,
    draws: &Draws,
    period: &str,
    seed: u64,
) -> Result<()> {
    let co2 = crate::units::co2_per_c();
    let mut out = String::from("code,class,quantity,unit,mean,sd,p05,p50,p95\n");
    let row = |code: &str, name: &str, set: &[ClassSums]| {
        let (mut npp, mut rh, mut nep) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..draws.n {
            let r = draws.at(d, draws.rh_param());
            let (n, h) = totals.npp_rh(set, totals.drawn(d), &|k| draws.at(d, k), r);
            let (n, h) = (n / 1e6, h / 1e6);
            npp.push(n);
            rh.push(h);
            nep.push(n - h);
        }
        let mut seq: Vec<f64> = nep.iter().map(|v| v * co2).collect();
        for (q, unit, v) in [
            ("NPP", "t C", &mut npp),
            ("Rh", "t C", &mut rh),
            ("NEP", "t C", &mut nep),
            ("sequestration", "t CO2", &mut seq),
        ] {
            let s = summary(v);
            out += &format!(
                "{code},\"{name}\",{q},{unit},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
                s[0], s[1], s[2], s[3], s[4]
            );
        }
    };
    for_classes(legend, totals.sums, row);
    let mut notes = vec![
        format!("{} Monte Carlo draws (seed {seed}) of the parameters of {} ({}); totals over the period {period}, not per year", draws.n, draws.spec.name, draws.path.display()),
        "each total is computed per draw (pixels sharing a parameter move together); mean, sd (n - 1), and the 5th, 50th and 95th percentiles of the draws".into(),
        format!("sources: {}", draws.spec.parameters.iter().map(|p| format!("{} {} sd {}: {}", p.target, p.vegetation_type.as_deref().unwrap_or(""), p.sd, p.source)).collect::<Vec<_>>().join("; ")),
    ];
    notes.extend(driver_notes(draws, totals.without_sensitivity));
    notes.extend(confusion_notes(totals));
    crate::io::write_table(target, out.as_bytes(), &notes)
}

/// The table notes of the drivers' errors: how they are drawn, and the pixels without a sensitivity.
fn driver_notes(draws: &Draws, without: u64) -> Vec<String> {
    if !draws.has_drivers() {
        return Vec::new();
    }
    let names: Vec<String> = draws
        .declared_drivers()
        .iter()
        .map(|&v| {
            let d = &super::driver_error::DRIVERS[v];
            let unit = if d.additive { " (K)" } else { " (relative)" };
            format!("{}{unit}", d.name)
        })
        .collect();
    let mut notes = vec![format!(
        "drivers' (and model coefficients') errors ({}): one error per draw for every month, the same at every pixel (or a spatial field where the parameter has a length_km), through each pixel's responses of NPP and Rh (driver_sensitivity_PERIOD.tif: the slope and curvature of the parabola through the model's values with the driver at -sd, 0 and +sd), second order in the error, without cross terms between drivers",
        names.join(", ")
    )];
    if without > 0 {
        notes.push(format!(
            "{without} pixels with a result have no sensitivity (the model has no result with the driver moved either way): their drivers' errors are not drawn, and their draws in the rasters are nodata"
        ));
    }
    notes
}

/// The table notes of a confusion matrix: its file, the estimator, and reference classes without pixels in the
/// map (their shares keep the mapped class's values).
fn confusion_notes(totals: &Totals) -> Vec<String> {
    let Some(c) = totals.confusion else {
        return Vec::new();
    };
    let mut notes = vec![format!(
        "land-cover confusion from {}: each mapped class's area is what the matrix's row says it truly is (Dirichlet draws of the row's counts), each true class at its mean NPP and Rh per area over the map (Olofsson et al. 2014's stratified estimator with its sampling uncertainty); in the per-pixel rasters each pixel is drawn to be a reference class with the row's drawn shares, as another class at that class's mean NPP and Rh per area",
        c.path.display()
    )];
    let mut absent: Vec<String> = Vec::new();
    for (j, &code) in c.codes.iter().enumerate() {
        let n: u64 = c.counts.iter().map(|row| row[j]).sum();
        let present = totals.sums.get(&code).is_some_and(|t| t.area > 0.0);
        if n > 0 && !present {
            absent.push(format!("{code} ({n} reference samples)"));
        }
    }
    if !absent.is_empty() {
        notes.push(format!(
            "reference classes without pixels in the map keep the mapped class's values: {}",
            absent.join(", ")
        ));
    }
    notes
}
