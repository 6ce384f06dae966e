//! CASA's kernel over a strip: every pixel's model-year series (NDVI, temperature) and the simulated months'
//! precipitation and radiation to NPP, Rh and (with `--monthly`) monthly NPP, Rh and NEP. Pure computation on
//! planes already read; `run.rs` owns the blocks, reading and writing.

use rayon::prelude::*;

use super::driver_error::Perturb;
use super::{read_months, split_monthly, ClassModel, PixelOut, Prepared, StripResult};
use crate::drivers::{Plane, Var};
use crate::error::Result;
use crate::io::Window;
use crate::npp::casa::{self, CasaParams, CasaType, WaterMethod};
use crate::npp::mod17::Mod17Class;

/// CASA over a strip. NPP is proportional to emax, so a correction factor on epsilon max and one on NPP
/// both multiply each month's NPP.
pub(super) fn strip_casa(
    p: &Prepared,
    models: &[Option<(usize, &ClassModel)>],
    (ndvi, t): (&[Vec<f32>], &[Plane]),
    factors: &[f64],
    w: &Window,
    (want_monthly, perturb): (bool, Option<Perturb>),
) -> Result<StripResult> {
    let npx = w.len();
    // The model year's 12 months of NDVI and temperature (optimum temperature, Thornthwaite heat index); the
    // simulated months of the rest, indexed from the first simulated month, read (and warped) in parallel.
    let range = p.period.sim_range();
    let sim: Vec<usize> = range.clone().collect();
    let sim = &sim;
    let strip = w;
    let with_vpd = p.casa.water.method == WaterMethod::Vpd;
    let d = (p.drivers.as_slice(), p.window_steps.as_slice());
    let (pr, (sol, vpd)) = rayon::join(
        || read_months(d, Var::Precip, range.clone(), strip),
        || {
            rayon::join(
                || read_months(d, Var::Srad, range.clone(), strip),
                || {
                    with_vpd
                        .then(|| read_months(d, Var::Vpd, range.clone(), strip))
                        .transpose()
                },
            )
        },
    );
    // A run with a driver moved (`driver_error.rs`) sees its planes moved.
    let pr = Perturb::planes(perturb, Var::Precip, pr?);
    let sol = Perturb::planes(perturb, Var::Srad, sol?);
    let vpd = vpd?.map(|v| Perturb::planes(perturb, Var::Vpd, v));
    let t_moved: Vec<Plane>;
    let t = match perturb {
        Some(_) => {
            t_moved = Perturb::planes(perturb, Var::Tmean, t.to_vec());
            &t_moved[..]
        }
        None => t,
    };
    let days: Vec<f64> = p
        .window_steps
        .iter()
        .map(|(part, steps)| p.drivers[*part].steps[steps[0]].days as f64)
        .collect();
    // Only Sync parts go into the parallel closure (the drivers hold GDAL handles).
    let rh_moved = Perturb::rh(perturb, &p.rh); // an Rh coefficient moved (`driver_error.rs`)
    let (casa_p, rh_p) = (&p.casa, &*rh_moved);
    let strip = CasaStrip {
        casa: casa_p,
        sim,
        pr: &pr,
        sol: &sol,
        vpd: vpd.as_deref(),
        days: &days,
        want_monthly,
    };
    let per_px: Vec<(PixelOut, Vec<[f32; 3]>)> = (0..npx)
        .into_par_iter()
        .map_init(
            // Per-worker scratch series (no allocation per pixel).
            || (Vec::new(), Vec::new(), Vec::new()),
            |(temps, rh_m, nd): &mut (Vec<f64>, Vec<f64>, Vec<f64>), px| {
                let months = |v: [f32; 3]| {
                    if want_monthly {
                        vec![v; sim.len()]
                    } else {
                        Vec::new()
                    }
                };
                let nan = (
                    PixelOut {
                        gpp: f64::NAN,
                        npp: f64::NAN,
                        rh: f64::NAN,
                    },
                    months([f32::NAN; 3]),
                );
                let Some((_, m)) = models[px] else { return nan };
                temps.clear();
                temps.extend(t.iter().map(|pl| pl.at(px)));
                rh_m.clear();
                rh_m.extend(
                    sim.iter()
                        .enumerate()
                        .map(|(k, &i)| rh_p.monthly(temps[i], pr[k].at(px))),
                );
                rh_p.finish(rh_m);
                match m {
                    ClassModel::Zero => (
                        PixelOut {
                            gpp: 0.0,
                            npp: 0.0,
                            rh: 0.0,
                        },
                        months([0.0; 3]),
                    ),
                    ClassModel::Mod17(_) => unreachable!(),
                    ClassModel::Casa { t: ct, m17 } => {
                        nd.clear();
                        nd.extend((0..12).map(|k| ndvi[k][px] as f64));
                        let inputs = CasaPixel {
                            temps,
                            ndvi: nd,
                            rh: rh_m,
                            factor: factors[px],
                        };
                        strip.casa_pixel(px, (ct, m17.as_ref()), &inputs)
                    }
                }
            },
        )
        .collect();
    // Monthly planes only when they are written (12 months x 3 planes of NaN per block otherwise).
    let nmonths = if want_monthly { sim.len() } else { 0 };
    Ok(split_monthly(per_px, nmonths, &[0, 1, 2]))
}

/// A strip's CASA inputs shared by its pixels (the simulated months' precipitation, radiation and VPD,
/// indexed from the first simulated month; month lengths of the model year).
struct CasaStrip<'a> {
    casa: &'a CasaParams,
    /// Indices into the model year of the simulated months.
    sim: &'a [usize],
    pr: &'a [Plane],
    sol: &'a [Plane],
    vpd: Option<&'a [Plane]>,
    days: &'a [f64],
    want_monthly: bool,
}

/// One pixel's model-year series: temperature and NDVI (12 months), monthly Rh of the simulated months, and
/// its correction factor.
struct CasaPixel<'a> {
    temps: &'a [f64],
    ndvi: &'a [f64],
    rh: &'a [f64],
    factor: f64,
}

impl CasaStrip<'_> {
    /// CASA NPP of one pixel over the simulated months (and per month with `--monthly`: NPP, Rh, NEP). The
    /// optimum temperature and the Thornthwaite heat index come from the model year.
    fn casa_pixel(
        &self,
        px: usize,
        (ct, m17): (&CasaType, Option<&Mod17Class>),
        x: &CasaPixel,
    ) -> (PixelOut, Vec<[f32; 3]>) {
        let c = self.casa;
        let topt = casa::topt(x.ndvi, x.temps);
        let (hi, ha) = c.thornthwaite_index(x.temps);
        let mut npp = 0.0;
        let mut monthly = Vec::with_capacity(if self.want_monthly { self.sim.len() } else { 0 });
        for (k, &i) in self.sim.iter().enumerate() {
            let we = match (self.vpd, m17) {
                (Some(v), Some(m)) => m.f_vpd(v[k].at(px)),
                _ => c.we_zhou_zhang(x.temps[i], self.pr[k].at(px), hi, ha),
            };
            // SOL: the month's total, MJ m-2 month-1.
            let sol = self.sol[k].at(px) * self.days[i];
            let npp_m = c.month(ct, x.ndvi[i], sol, x.temps[i], topt, we).npp * x.factor;
            npp += npp_m;
            if self.want_monthly {
                monthly.push([npp_m as f32, x.rh[k] as f32, (npp_m - x.rh[k]) as f32]);
            }
        }
        let rh: f64 = x.rh.iter().sum();
        (
            PixelOut {
                gpp: f64::NAN,
                npp,
                rh,
            },
            monthly,
        )
    }
}
