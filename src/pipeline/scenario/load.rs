//! A scenario file read: paths made relative to it, every problem listed at once, then the base's NPP job,
//! the scenario's own parameter sets, the emission changes against the lattice and the paired draws.

use std::path::{Path, PathBuf};

use super::{
    check_change, BaseSpec, ChangeSpec, ParametersFile, Scenario, ScenarioFile, ScenarioJob,
    SubstitutionSpec,
};
use crate::error::{Error, Problems, Result};
use crate::io;
use crate::landcover::Legend;
use crate::lattice::LatticeSpec;
use crate::pipeline::balance::EmissionFactor;
use crate::pipeline::npp::draws::{Draws, UncertaintyFile};
use crate::pipeline::npp::{NppJob, NppModel};
use crate::zones::ZoneSpec;

/// The lattice, the scenario's emission changes, and those given as absolute changes (index, t CO2 yr-1).
type BalanceParts = (LatticeSpec, Vec<EmissionFactor>, Vec<(usize, f64)>);

pub(super) fn load(job: &ScenarioJob) -> Result<Scenario> {
    let f: ScenarioFile = crate::models::read_toml(&job.file)?;
    let dir = job.file.parent().unwrap_or(Path::new("."));
    let at = |p: &Path| io::join_source(dir, &p.to_string_lossy());
    let mut problems = Problems::new();
    let model = match f.base.model.as_str() {
        "casa" => Some(NppModel::Casa),
        "mod17" => Some(NppModel::Mod17),
        "pmodel" => Some(NppModel::PModel),
        o => {
            problems.push(Error::config(
                &job.file,
                format!("base.model = \"{o}\": casa, mod17 or pmodel"),
            ));
            None
        }
    };
    let months = problems.take(crate::pipeline::npp::period::parse_months(
        job.months.as_deref().unwrap_or(&f.base.months),
    ));
    let legend = problems.take(Legend::resolve(&f.base.legend));
    if f.changes.is_empty() && f.emissions.is_empty() && f.parameters.is_none() {
        problems.push(Error::config(
            &job.file,
            "no [[change]], [[emissions]] or [parameters]: a scenario changes something",
        ));
    }
    let substitution = substitution(job, &f, &at, &mut problems);
    if !f.emissions.is_empty() && f.balance.is_none() {
        problems.push(Error::config(
            &job.file,
            "[[emissions]] changes need [balance] (the lattice)",
        ));
    }
    if f.balance.is_some() && months.is_some_and(|m| m != (1, 12)) {
        problems.push(Error::config(
            &job.file,
            "[balance] compares annual emissions with annual sequestration: base.months must be the calendar year (1-12)",
        ));
    }
    let changes: Vec<ChangeSpec> = f
        .changes
        .iter()
        .map(|c| ChangeSpec {
            polygons: c.polygons.as_deref().map(at),
            raster: c.raster.as_deref().map(at),
            ..c.clone()
        })
        .collect();
    for (i, c) in changes.iter().enumerate() {
        check_change(&job.file, i, c, legend.as_ref(), &mut problems);
    }
    for p in [&at(&f.base.landcover), &at(&f.base.drivers)] {
        if !p.exists() {
            problems.push(Error::input(p, "file does not exist"));
        }
    }
    let balance = balance(job, &f, &at, &mut problems);
    problems.finish()?;
    let (Some(model), Some(months), Some(legend), Some(substitution)) =
        (model, months, legend, substitution)
    else {
        unreachable!("problems.finish() returned early");
    };
    let base = base_job(job, &f.base, &at, model, months);
    let scenario_params = scenario_params(f.parameters, &base);
    let draws = match f.uncertainty {
        None => None,
        Some(u) => {
            // A file relative to the scenario, or a built-in one by name (models/uncertainty/).
            let user_file = crate::models::is_user_file(&u.file.to_string_lossy());
            let path = if user_file {
                at(&u.file)
            } else {
                u.file.clone()
            };
            let spec = UncertaintyFile::load(&path)?;
            if let Some(p) = spec.parameters.iter().find(|p| p.length_km.is_some()) {
                return Err(crate::error::Error::Invalid(vec![format!(
                    "{}: the {} parameter has a length_km: spatially correlated errors are drawn by `npp --draws` and `balance --draws`; a scenario's paired draws take run-wide parameters only",
                    path.display(),
                    p.target
                )]));
            }
            let driver = |p: &&crate::pipeline::npp::draws::Parameter| {
                crate::pipeline::npp::driver_error::driver_of(&p.target).is_some()
            };
            if let Some(p) = spec.parameters.iter().find(driver) {
                return Err(crate::error::Error::Invalid(vec![format!(
                    "{}: the {} parameter is a driver's error (or a model coefficient's): these are drawn by `npp --draws` (through each pixel's responses); a scenario's paired draws take multipliers of NPP, Rh, emissions and sequestration only",
                    path.display(),
                    p.target
                )]));
            }
            if let Some((lattice, ..)) = balance.as_ref().filter(|_| user_file) {
                lattice_sectors_named(&spec, &path, lattice)?;
            }
            Some(Draws::new(spec, &path, u.draws, u.seed))
        }
    };
    Ok(Scenario {
        draws,
        scenario_params,
        name: f.name,
        description: f.description.unwrap_or_default(),
        base,
        zones: f.zones.map(|z| ZoneSpec {
            path: at(&z.file),
            fields: z.fields,
            layer: z.layer,
            band: 1,
        }),
        substitution,
        changes,
        legend,
        balance,
    })
}

/// `[substitution]`: where changed pixels find their new class's NDVI (needed by land-cover changes only).
fn substitution(
    job: &ScenarioJob,
    f: &ScenarioFile,
    at: &dyn Fn(&Path) -> PathBuf,
    problems: &mut Problems,
) -> Option<SubstitutionSpec> {
    match (&f.substitution, f.changes.is_empty()) {
        (Some(sub), _) if !(sub.distance_m > 0.0 && sub.distance_m.is_finite()) => {
            problems.push(Error::config(
                &job.file,
                "substitution.distance_m must be a positive distance in metres",
            ));
            None
        }
        (Some(sub), _) => Some(SubstitutionSpec {
            climatology: sub.climatology.as_deref().map(at),
            ..sub.clone()
        }),
        (None, false) => {
            problems.push(Error::config(
                &job.file,
                "land-cover changes need [substitution] (distance_m, min_pixels): where changed pixels find their new class's NDVI",
            ));
            None
        }
        (None, true) => Some(SubstitutionSpec {
            distance_m: 1.0,
            min_pixels: 0,
            climatology: None,
        }),
    }
}

/// A user's uncertainty file names only sectors the lattice has (a built-in file's sector entries apply where
/// a lattice has those sectors).
fn lattice_sectors_named(spec: &UncertaintyFile, path: &Path, lattice: &LatticeSpec) -> Result<()> {
    let sectors = crate::lattice::Lattice::load(lattice)?.sectors;
    crate::pipeline::balance::sector_params::check_named(
        &spec.parameters,
        path,
        &lattice.path,
        &sectors,
    )
}

/// `[balance]` and `[[emissions]]`: the lattice and each emission change as a factor (absolute changes get
/// theirs once the base's emissions are known).
fn balance(
    job: &ScenarioJob,
    f: &ScenarioFile,
    at: &dyn Fn(&Path) -> PathBuf,
    problems: &mut Problems,
) -> Option<BalanceParts> {
    let b = f.balance.as_ref()?;
    let spec = LatticeSpec {
        path: at(&b.lattice),
        unit: b.lattice_unit.clone(),
        bands: b.lattice_bands.clone(),
        ..Default::default()
    };
    if !spec.path.exists() {
        problems.push(Error::input(&spec.path, "file does not exist"));
    }
    let mut absolute = Vec::new();
    let factors = f
        .emissions
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let factor = match (e.factor, e.change_tco2_yr) {
                (Some(x), None) => x,
                (None, Some(c)) => {
                    absolute.push((i, c));
                    // A placeholder until the base's emissions are known (not 1, which changes nothing).
                    0.0
                }
                _ => {
                    let what = format!(
                        "emissions {}: give exactly one of factor or change_tco2_yr",
                        i + 1
                    );
                    problems.push(Error::config(&job.file, what));
                    0.0
                }
            };
            EmissionFactor {
                level: e.zone_field.clone(),
                zone: e.zone.clone(),
                polygons: e.polygons.as_deref().map(at),
                sector: e.sector.clone(),
                factor,
            }
        })
        .collect();
    Some((spec, factors, absolute))
}

/// The base's NPP job: the scenario file's inputs (the command line's NDVI, year and months first) and
/// parameter sets, into OUT/base.
fn base_job(
    job: &ScenarioJob,
    b: &BaseSpec,
    at: &dyn Fn(&Path) -> PathBuf,
    model: NppModel,
    months: (u32, u32),
) -> NppJob {
    let or = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.into());
    NppJob {
        model,
        ndvi_dir: job.ndvi.clone().unwrap_or_else(|| at(&b.ndvi)),
        ndvi_label: None,
        landcover_label: None,
        ndvi_index: "NDVI".into(),
        input_is_fpar: false,
        ndvi_band: b.ndvi_band,
        ndvi_year: None,
        landcover: at(&b.landcover),
        landcover_band: b.landcover_band,
        legend: b.legend.clone(),
        drivers: at(&b.drivers),
        year: job.year.unwrap_or(b.year),
        months,
        casa_params: or(&b.casa_params, crate::npp::casa::DEFAULT_CASA),
        bplut: or(&b.bplut, crate::npp::mod17::DEFAULT_BPLUT),
        rh_model: or(&b.rh, crate::npp::rh::DEFAULT_RH),
        pmodel_params: or(&b.pmodel_params, crate::npp::pmodel::DEFAULT_PMODEL),
        out_dir: job.out_dir.join("base"),
        monthly: false,
        write: job.write.clone(),
        memory_mb: job.memory_mb,
        strict_months: false,
        corrections: None,
        zones: None,
        draws: None,
    }
}

/// The scenario's NPP job: the base's, with `[parameters]`'s sets where given.
fn scenario_params(p: Option<ParametersFile>, base: &NppJob) -> NppJob {
    let p = p.unwrap_or(ParametersFile {
        casa_params: None,
        rh: None,
        bplut: None,
        pmodel_params: None,
    });
    NppJob {
        casa_params: p.casa_params.unwrap_or_else(|| base.casa_params.clone()),
        rh_model: p.rh.unwrap_or_else(|| base.rh_model.clone()),
        bplut: p.bplut.unwrap_or_else(|| base.bplut.clone()),
        pmodel_params: p
            .pmodel_params
            .unwrap_or_else(|| base.pmodel_params.clone()),
        ..base.clone()
    }
}
