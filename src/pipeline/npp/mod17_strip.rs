//! MOD17's (and the P-model's) kernel over a strip: each step's drivers accumulated into every pixel's year
//! (GPP, maintenance and growth respiration), then NPP, Rh and monthly GPP and Rh. Pure computation on planes
//! read by `step_drivers`; `run.rs` owns the blocks, reading and writing.

use rayon::prelude::*;

use super::driver_error::Perturb;
use super::{split_monthly, ClassModel, PixelOut, Prepared, StripResult};
use crate::correction::Target;
use crate::drivers::{Drivers, Plane, Var};
use crate::error::Result;
use crate::io::Window;
use crate::npp::mod17::{Mod17Class, Mod17Constants, Mod17Year};
use crate::npp::pmodel::{PDrivers, PModelParams, Pathway};

/// MOD17 NPP of one pixel from its accumulated period (`year`), with a correction factor on LUEmax (GPP, before
/// maintenance respiration: GPP is proportional to LUEmax) or on NPP; monthly GPP and Rh beside it (MOD17's NPP
/// is annual only).
fn mod17_pixel(
    (c, k17): (&Mod17Class, &Mod17Constants),
    year: &Mod17Year,
    (f, target): (f64, Option<Target>),
    (gpp_m, rh_m): (&[f64], &[f64]),
) -> (PixelOut, Vec<[f32; 3]>) {
    let (gpp_f, npp_f) = match target {
        Some(Target::EpsilonMax) => (f, 1.0),
        Some(Target::Npp) => (1.0, f),
        None => (1.0, 1.0),
    };
    let mut y = year.clone();
    y.gpp *= gpp_f;
    let mut a = y.finish(c, k17);
    a.npp *= npp_f;
    let monthly = gpp_m
        .iter()
        .zip(rh_m)
        .map(|(g, r)| [(g * gpp_f) as f32, *r as f32, f32::NAN])
        .collect();
    (
        PixelOut {
            gpp: a.gpp,
            npp: a.npp,
            rh: rh_m.iter().sum(),
        },
        monthly,
    )
}

/// The P-model's GPP for a day of mean drivers, g C m-2 d-1: PAR (MJ m-2 d-1) as a mean PPFD (umol m-2 s-1)
/// with models/climate.toml's umol J-1; NaN where the P-model has no solution (m_j <= c*).
#[allow(clippy::too_many_arguments)]
fn pmodel_gpp_per_day(
    pm: &PModelParams,
    umol_per_j: f64,
    tc: f64,
    vpd: f64,
    co2: f64,
    patm: f64,
    fapar: f64,
    par_mj_m2_d: f64,
) -> f64 {
    let secs = crate::units::seconds_per_day();
    let d = PDrivers {
        tc,
        vpd_pa: vpd,
        co2_ppm: co2,
        patm_pa: patm,
        fapar,
        ppfd_umol_m2_s: par_mj_m2_d * 1e6 * umol_per_j / secs,
    };
    pm.gpp(&d, Pathway::C3).gpp_ugc_m2_s * 1e-6 * secs
}

/// A strip's per-pixel sums by simulated month (index k): GPP, temperature x days, precipitation, and the
/// month's days.
struct MonthSums<'a> {
    gpp: &'a [Vec<f64>],
    t: &'a [Vec<f64>],
    p: &'a [Vec<f64>],
    days: &'a [f64],
}

/// Each pixel's period results and monthly values from its year's accumulator and month sums (Rh from the
/// months' mean temperature and precipitation).
fn mod17_results(
    p: &Prepared,
    models: &[Option<(usize, &ClassModel)>],
    years: &[Mod17Year],
    sums: &MonthSums,
    (factors, target): (&[f64], Option<Target>),
    rh_p: &crate::npp::rh::RhModel,
) -> Vec<(PixelOut, Vec<[f32; 3]>)> {
    let k17 = &p.k17;
    let nm = sums.days.len();
    (0..models.len())
        .into_par_iter()
        .map(|px| {
            let Some((_, m)) = models[px] else {
                return (
                    PixelOut {
                        gpp: f64::NAN,
                        npp: f64::NAN,
                        rh: f64::NAN,
                    },
                    vec![[f32::NAN; 3]; nm],
                );
            };
            let mut rh_m: Vec<f64> = (0..nm)
                .map(|k| rh_p.monthly(sums.t[k][px] / sums.days[k], sums.p[k][px]))
                .collect();
            rh_p.finish(&mut rh_m);
            match m {
                ClassModel::Zero => (
                    PixelOut {
                        gpp: 0.0,
                        npp: 0.0,
                        rh: 0.0,
                    },
                    vec![[0.0; 3]; nm],
                ),
                ClassModel::Mod17(c) => {
                    let gpp_m: Vec<f64> = (0..nm).map(|k| sums.gpp[k][px]).collect();
                    mod17_pixel((c, k17), &years[px], (factors[px], target), (&gpp_m, &rh_m))
                }
                ClassModel::Casa { .. } => unreachable!(),
            }
        })
        .collect()
}

/// One step's drivers over a window for MOD17 (or the P-model's GPP): PAR (or shortwave and the fraction
/// that is PAR), temperatures, VPD, precipitation, and CO2 and pressure for the P-model.
struct StepDrivers {
    tmin: Plane,
    tmean: Plane,
    vpd: Plane,
    par: Plane,
    par_f: f64,
    precip: Plane,
    pm_planes: Option<(Plane, Plane)>,
}

fn step_drivers(
    p: &Prepared,
    d: &Drivers,
    (i, w): (usize, &Window),
    par_from_srad: bool,
    perturb: Option<Perturb>,
) -> Result<StepDrivers> {
    // A run with a driver moved (`driver_error.rs`) sees its planes moved.
    let read = |var: Var| d.read(var, i, w).map(|pl| Perturb::one(perturb, var, pl));
    Ok(StepDrivers {
        // MOD17's Tmin scalar (the P-model has its own temperature responses).
        tmin: if p.pmodel.is_some() {
            Plane::Uniform(f64::NAN)
        } else {
            read(Var::Tmin)?
        },
        tmean: read(Var::Tmean)?,
        vpd: read(Var::Vpd)?,
        par: read(if par_from_srad { Var::Srad } else { Var::Par })?,
        par_f: if par_from_srad {
            p.k17.par_fraction_of_shortwave
        } else {
            1.0
        },
        precip: read(Var::Precip)?,
        pm_planes: match &p.pmodel {
            Some(_) => Some((read(Var::Co2)?, read(Var::Patm)?)),
            None => None,
        },
    })
}

/// MOD17 over a strip. A correction on epsilon max (LUEmax) multiplies GPP before maintenance respiration
/// (GPP is proportional to LUEmax); one on NPP multiplies the annual NPP.
pub(super) fn strip_mod17(
    p: &Prepared,
    models: &[Option<(usize, &ClassModel)>],
    ndvi: &[Vec<f32>],
    (factors, target): (&[f64], Option<Target>),
    w: &Window,
    perturb: Option<Perturb>,
) -> Result<StripResult> {
    let npx = w.len();
    let range = p.period.sim_range();
    let nm = range.len();
    // Per pixel: the year's accumulator, monthly GPP and NPP-ready sums, monthly T and P for Rh.
    let mut years = vec![Mod17Year::default(); npx];
    let mut month_gpp = vec![vec![0f64; npx]; nm];
    let mut month_t = vec![vec![0f64; npx]; nm];
    let mut month_days = vec![0f64; nm];
    let mut month_p = vec![vec![0f64; npx]; nm];
    let par_from_srad = !p.drivers[0].available(Var::Par);
    // Only Sync parts go into the parallel closures (the drivers hold GDAL handles).
    let (k17, fp) = (&p.k17, &p.fpar);
    let is_fpar = p.input_is_fpar;
    // FPAR and LAI of a month of the model year.
    let fpar_lai = |nd: f32| {
        let fpar = if is_fpar {
            nd as f64
        } else {
            fp.fpar_linear(nd as f64)
        };
        (fpar, fp.lai(fpar))
    };
    let steps = range.clone().flat_map(|wk| {
        let (part, st) = &p.window_steps[wk];
        st.iter().map(move |&i| (wk, &p.drivers[*part], i))
    });
    for (wk, d, i) in steps {
        let s = d.steps[i];
        let k = wk - range.start;
        let n = s.days as f64;
        let StepDrivers {
            tmin,
            tmean,
            vpd,
            par,
            par_f,
            precip,
            pm_planes,
        } = step_drivers(p, d, (i, w), par_from_srad, perturb)?;
        month_days[k] += n;
        let nd = &ndvi[wk];
        let pm = p.pmodel.as_ref();
        years
            .par_iter_mut()
            .zip(month_gpp[k].par_iter_mut())
            .zip(month_t[k].par_iter_mut().zip(month_p[k].par_iter_mut()))
            .enumerate()
            .for_each(|(px, ((y, g), (mt, mp)))| {
                *mt += tmean.at(px) * n;
                *mp += precip.at(px);
                let Some((_, ClassModel::Mod17(c))) = models[px] else {
                    return;
                };
                let (fpar, lai) = fpar_lai(nd[px]);
                let before = y.gpp;
                match (pm, &pm_planes) {
                    (Some((pm, umol_per_j)), Some((co2, patm))) => {
                        let gpp = pmodel_gpp_per_day(
                            pm,
                            *umol_per_j,
                            tmean.at(px),
                            vpd.at(px),
                            co2.at(px),
                            patm.at(px),
                            fpar,
                            par.at(px) * par_f,
                        );
                        y.add_days_gpp(c, k17, gpp, lai, tmean.at(px), s.days);
                    }
                    _ => y.add_days(
                        c,
                        k17,
                        fpar,
                        tmin.at(px),
                        vpd.at(px),
                        par.at(px) * par_f,
                        lai,
                        tmean.at(px),
                        s.days,
                    ),
                }
                *g += y.gpp - before;
            });
    }
    // The live-wood mass is the model year's: its other months count in the largest LAI.
    for wk in (0..12).filter(|wk| !range.contains(wk)) {
        let nd = &ndvi[wk];
        years
            .par_iter_mut()
            .enumerate()
            .for_each(|(px, y)| y.note_lai(fpar_lai(nd[px]).1));
    }
    let sums = MonthSums {
        gpp: &month_gpp,
        t: &month_t,
        p: &month_p,
        days: &month_days,
    };
    let rh_moved = Perturb::rh(perturb, &p.rh);
    let out = mod17_results(p, models, &years, &sums, (factors, target), &rh_moved);
    Ok(split_monthly(out, nm, &[0, 1]))
}
