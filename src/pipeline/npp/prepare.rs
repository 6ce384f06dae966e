//! Everything the NPP stage needs, read and checked before computing, every problem at once: the period and
//! parameter sets, the NDVI composites on one grid, a model for every land-cover class present, the drivers
//! each model needs for every year it touches, and the correction table with its zones.

use std::collections::{BTreeMap, BTreeSet};

use super::confusion::Confusion;
use super::fill::{self, Timeline};
use super::period::NppPeriod;
use super::{driver_needs, ndvi_composites, ClassModel, NppJob, NppModel, Prepared};
use crate::correction::CorrectionTable;
use crate::drivers::{Drivers, Step};
use crate::error::{Error, Problems, Result};
use crate::io::{Grid, RasterInfo};
use crate::landcover::{self, Legend};
use crate::npp::casa::{CasaParams, TypeParams, WaterMethod};
use crate::npp::fpar::FparConstants;
use crate::npp::mod17::{Bplut, Mod17Constants};
use crate::npp::pmodel::PModelParams;
use crate::npp::rh::RhModel;
use crate::zones::Zones;

pub(super) fn prepare(job: &NppJob) -> Result<Prepared> {
    let mut problems = Problems::new();
    let period = NppPeriod::new(job.year, job.months)?;
    let timeline = Timeline::around(period.window[0]);
    let casa = problems.take(CasaParams::resolve(&job.casa_params));
    let bplut = problems.take(Bplut::resolve(&job.bplut));
    let rh = problems.take(RhModel::resolve(&job.rh_model));
    let pmodel = pmodel_params(job, &mut problems)?;
    let legend = problems.take(Legend::resolve(&job.legend));
    // The drivers of every calendar year the model year touches; gridded archives' samples only planned until
    // every input is checked (`Drivers::aggregate` below).
    let drivers: Option<Vec<Drivers>> = period
        .years()
        .iter()
        .map(|&y| problems.take(Drivers::inspect(&job.drivers, y)))
        .collect();
    let gapfill = fill::GapFill::builtin()?;
    if job.input_is_fpar && job.model == NppModel::Casa {
        problems.push(Error::Usage(
            "CASA computes FPAR from NDVI and the simple ratio: give --ndvi, or use --model mod17 with --fpar".into(),
        ));
    }
    let (ndvi_files, missing_months, grid) =
        ndvi_composites(job, &period, &timeline, &mut problems);
    let (class_models, lc_nodata) = match (&legend, &casa, &bplut) {
        (Some(l), Some(c), Some(b)) => class_models(job, l, (c, b), &mut problems)?,
        _ => (BTreeMap::new(), None),
    };
    let window_steps = match (&drivers, &grid, &casa) {
        (Some(ds), Some(g), Some(c)) => driver_steps(job, ds, g, c, &period, &mut problems),
        _ => Vec::new(),
    };
    let corrections = corrections(job, grid.as_ref(), &mut problems)?;
    // The uncertainty file, checked before any computing (it is used only once the model has run).
    let uncertainty = job
        .draws
        .as_ref()
        .and_then(|d| problems.take(super::draws::UncertaintyFile::load(&d.file)));
    if let Some((u, d)) = uncertainty.as_ref().zip(job.draws.as_ref()) {
        class_params_need_mod17(job, u, &d.file, &mut problems);
    }
    let confusion = match (&job.draws, &legend) {
        (Some(d), Some(l)) => d
            .confusion
            .as_ref()
            .and_then(|f| confusion(f, l, &mut problems)),
        _ => None,
    };
    problems.finish()?;
    let grid = grid.expect("checked");
    // Gridded archives aggregated now, over the grid's footprint: a problem elsewhere was said before a year of
    // hourly fields is read.
    let mut drivers = drivers.expect("checked");
    for d in drivers.iter_mut() {
        d.aggregate(Some(&grid))?;
    }
    let legend = legend.expect("checked");
    // Per legend class, the dormancy threshold of its vegetation type (models/gapfill.toml).
    let dormancy = legend
        .classes
        .iter()
        .map(|c| {
            gapfill
                .dormancy
                .below_deg_c
                .get(&c.vegetation_type)
                .copied()
        })
        .collect();
    let class_moves = uncertainty.as_ref().map_or_else(Vec::new, |u| {
        super::driver_error::class_moves(u, &legend, &class_models)
    });
    Ok(Prepared {
        grid,
        legend,
        class_models,
        ndvi_files,
        missing_months,
        timeline,
        dormancy,
        fill_warn_fraction: gapfill.warn_fraction,
        drivers,
        window_steps,
        casa: casa.expect("checked"),
        bplut: bplut.expect("checked"),
        k17: Mod17Constants::builtin()?,
        fpar: FparConstants::builtin()?,
        rh: rh.expect("checked"),
        pmodel,
        period,
        lc_nodata,
        input_is_fpar: job.input_is_fpar,
        corrections,
        confusion,
        driver_errors: uncertainty
            .as_ref()
            .map_or_else(Vec::new, super::driver_error::declared),
        uncertainty,
        class_moves,
    })
}

/// A class's model parameter in an uncertainty file (`mod17.*`, `driver_error::Driver::per_class`: MOD17's
/// BPLUT) needs the model that reads it.
fn class_params_need_mod17(
    job: &NppJob,
    u: &super::draws::UncertaintyFile,
    file: &std::path::Path,
    problems: &mut Problems,
) {
    let mut targets: Vec<&String> = u.parameters.iter().map(|p| &p.target).collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        let per_class = super::driver_error::driver_of(target)
            .is_some_and(|v| super::driver_error::DRIVERS[v].per_class());
        if per_class && job.model != NppModel::Mod17 {
            problems.push(Error::Usage(format!(
                "{}: {} is a parameter of MOD17's BPLUT: the run's model is {} (use --model mod17)",
                file.display(),
                target,
                job.model.name()
            )));
        }
    }
}

/// The classifier's confusion matrix, every class it names in the legend.
fn confusion(
    path: &std::path::Path,
    legend: &Legend,
    problems: &mut Problems,
) -> Option<Confusion> {
    let c = problems.take(Confusion::read(path))?;
    let unknown: Vec<String> = c
        .codes
        .iter()
        .filter(|&&code| legend.class(code as i64).is_none())
        .map(|code| code.to_string())
        .collect();
    if !unknown.is_empty() {
        problems.push(Error::input(
            path,
            format!(
                "class code(s) {} are not in the legend {} (the confusion matrix of another map?)",
                unknown.join(", "),
                legend.product
            ),
        ));
        return None;
    }
    Some(c)
}

/// The P-model's parameters and PAR's photons per joule (models/climate.toml), for `--model pmodel`.
fn pmodel_params(job: &NppJob, problems: &mut Problems) -> Result<Option<(PModelParams, f64)>> {
    if job.model != NppModel::PModel {
        return Ok(None);
    }
    let Some(p) = problems.take(PModelParams::resolve(&job.pmodel_params)) else {
        return Ok(None);
    };
    let constants = crate::climate::ClimateConstants::builtin()?;
    Ok(Some((p, constants.radiation.umol_per_joule_par)))
}

/// Land cover: every code in the legend, and a model with parameters for every class present; the map's
/// no-data value.
fn class_models(
    job: &NppJob,
    legend: &Legend,
    (casa, bplut): (&CasaParams, &Bplut),
    problems: &mut Problems,
) -> Result<(BTreeMap<i64, ClassModel>, Option<f64>)> {
    let mut models = BTreeMap::new();
    let areas = match landcover::check_map(&job.landcover, job.landcover_band, legend) {
        Ok(areas) => areas,
        Err(e) => {
            problems.push(e);
            return Ok((models, None));
        }
    };
    let types = landcover::vegetation_types()?;
    for a in areas.iter().filter(|a| a.pixels > 0) {
        let vt = types
            .iter()
            .find(|t| t.name == a.vegetation_type)
            .expect("legend checked");
        let m17 = vt.mod17_umd.and_then(|u| bplut.class(u).cloned());
        let cm = match (job.model, casa.type_params(&vt.name)) {
            (_, Some(TypeParams::Zero(_))) => Some(ClassModel::Zero),
            (NppModel::Casa, Some(TypeParams::Vegetated(t))) => {
                if casa.water.method == WaterMethod::Vpd && m17.is_none() {
                    problems.push(Error::config(
                        &casa.source,
                        format!("class {} ({}): water method \"vpd\" needs the MOD17 VPD ramp of vegetation type {}, which has no MOD17 class", a.code, a.name, vt.name),
                    ));
                }
                Some(ClassModel::Casa { t: t.clone(), m17 })
            }
            (NppModel::Mod17 | NppModel::PModel, Some(TypeParams::Vegetated(_))) => {
                m17.map(ClassModel::Mod17)
            }
            (_, None) => None,
        };
        match cm {
            Some(cm) => {
                models.insert(a.code, cm);
            }
            None => problems.push(Error::config(
                if job.model == NppModel::Casa { &casa.source } else { &bplut.source },
                format!(
                    "class {} ({}, {} pixels) maps to vegetation type {}, which has no {} parameters; add the type to the table or map the class to another type in the legend",
                    a.code, a.name, a.pixels, vt.name, job.model.name()
                ),
            )),
        }
    }
    let nodata = RasterInfo::read(&job.landcover)?.bands[job.landcover_band - 1].nodata;
    Ok((models, nodata))
}

/// Drivers: what each model needs, checked for every year of the model year; per month of the model year,
/// which `drivers` and the indices of its steps there.
fn driver_steps(
    job: &NppJob,
    ds: &[Drivers],
    grid: &Grid,
    casa: &CasaParams,
    period: &NppPeriod,
    problems: &mut Problems,
) -> Vec<(usize, Vec<usize>)> {
    let needs = driver_needs(job.model, casa, &ds[0]);
    let mut seen = BTreeSet::new();
    for d in ds {
        if job.model == NppModel::Casa && d.step != Step::Month {
            problems.push(Error::config(
                &d.source,
                "CASA is a monthly model: the drivers must have step = \"month\"",
            ));
            break;
        }
        if let Err(e) = d.check(grid, &needs) {
            // The same raster problem for each year is said once.
            if seen.insert(e.to_string()) {
                problems.push(e);
            }
        }
    }
    let years = period.years();
    period
        .window
        .iter()
        .map(|&(y, m)| {
            let part = years.iter().position(|&x| x == y).expect("window year");
            let steps = (0..ds[part].steps.len())
                .filter(|&i| ds[part].steps[i].month == m)
                .collect();
            (part, steps)
        })
        .collect()
}

/// Corrections: the table, its zones on the grid, and every zone and class it names known.
fn corrections(
    job: &NppJob,
    grid: Option<&Grid>,
    problems: &mut Problems,
) -> Result<Option<(CorrectionTable, Option<Zones>)>> {
    let Some(name) = &job.corrections else {
        if job.zones.is_some() {
            problems.push(Error::Usage(
                "--zones is for --corrections (which factor applies where); give the correction table too".into(),
            ));
        }
        return Ok(None);
    };
    let table = problems.take(CorrectionTable::resolve(name));
    let zones = match (&job.zones, grid) {
        (Some(z), Some(g)) => problems.take(Zones::load(z, g)).map(Some),
        (Some(_), None) => None,
        (None, _) => Some(None),
    };
    let (Some(t), Some(z)) = (table, zones) else {
        return Ok(None);
    };
    let classes: BTreeSet<String> = landcover::vegetation_types()?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let known: Option<BTreeSet<String>> = z
        .as_ref()
        .filter(|z| z.is_vector())
        .map(|z| z.keys.iter().filter_map(|k| k.last().cloned()).collect());
    let check = z.as_ref().map(|_| known.as_ref());
    Ok(problems.take(t.check(check, &classes)).map(|()| (t, z)))
}
