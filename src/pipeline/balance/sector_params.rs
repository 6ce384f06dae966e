//! Which parameters of an uncertainty file multiply a lattice sector's emissions. Two kinds of error:
//! "inventory", the error of the sector's total (activity data times emission factors; what national
//! inventories' uncertainty tables give per category), and "allocation", the error of where the lattice puts
//! that total (how far a cell's share is off). Within each kind a sector takes its own entry (`sector`, or one
//! of `sectors`), else the kind's entry for every sector ("*" or no sector). Its multiplier in a draw is the
//! product of the two (1 for a kind without a parameter). An allocation error with a `length_km` varies between
//! the lattice's cells (`CellField`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::pipeline::npp::draws::{Draws, Parameter};

/// A sector's inventory and allocation parameters (indices into the file's parameters).
pub type SectorParams = (Option<usize>, Option<usize>);

/// The kinds of an emissions parameter's error, the default first.
pub const KINDS: [&str; 2] = ["inventory", "allocation"];

impl Parameter {
    /// What an emissions parameter's error is of: "inventory" (the default) or "allocation".
    pub fn error_kind(&self) -> &str {
        self.error.as_deref().unwrap_or(KINDS[0])
    }

    /// Whether it names `sector` itself.
    fn names(&self, sector: &str) -> bool {
        self.sector.as_deref() == Some(sector) || self.sectors.iter().any(|s| s == sector)
    }

    /// Whether it is its kind's entry for every sector without its own.
    fn is_default(&self) -> bool {
        self.sectors.is_empty() && matches!(self.sector.as_deref(), None | Some("*"))
    }

    /// The sectors it names ("*" for every sector without its own entry), joined by "+".
    pub fn sector_label(&self) -> String {
        if self.sectors.is_empty() {
            self.sector.clone().unwrap_or_else(|| "*".into())
        } else {
            self.sectors.join("+")
        }
    }

    /// The sectors it names itself (none for a default entry).
    pub fn named_sectors(&self) -> Vec<&str> {
        self.sector
            .iter()
            .chain(&self.sectors)
            .map(String::as_str)
            .filter(|s| *s != "*")
            .collect()
    }

    /// What is wrong with its emissions fields, if anything.
    pub(crate) fn emissions_problem(&self) -> Option<String> {
        if self.target != "emissions" {
            return (self.error.is_some() || self.sector.is_some() || !self.sectors.is_empty())
                .then(|| "sector, sectors and error are for emissions parameters only".into());
        }
        if !KINDS.contains(&self.error_kind()) {
            return Some(format!(
                "error \"{}\" must be \"inventory\" or \"allocation\"",
                self.error_kind()
            ));
        }
        if self.sector.is_some() && !self.sectors.is_empty() {
            return Some("give sector or sectors, not both".into());
        }
        self.sectors
            .iter()
            .any(|s| s == "*" || s.trim().is_empty())
            .then(|| "sectors lists sector names (for every sector, give sector = \"*\")".into())
    }
}

/// Every sector named twice within one kind, and every kind with two entries for every sector.
pub(crate) fn overlaps(params: &[Parameter]) -> Vec<String> {
    let mut problems = Vec::new();
    for kind in KINDS {
        let of_kind: Vec<(usize, &Parameter)> = params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.target == "emissions" && p.error_kind() == kind)
            .collect();
        let defaults: Vec<String> = of_kind
            .iter()
            .filter(|(_, p)| p.is_default())
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if defaults.len() > 1 {
            problems.push(format!(
                "parameters {} are each the {kind} error of every sector: give one",
                defaults.join(" and ")
            ));
        }
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (i, p) in &of_kind {
            for s in p.named_sectors() {
                match seen.iter().find(|(t, _)| *t == s) {
                    Some((_, j)) => problems.push(format!(
                        "parameters {} and {} both give sector \"{s}\"'s {kind} error",
                        j + 1,
                        i + 1
                    )),
                    None => seen.push((s, *i)),
                }
            }
        }
    }
    problems
}

impl Draws {
    /// A lattice sector's inventory and allocation parameters.
    pub fn emissions_params(&self, sector: &str) -> SectorParams {
        let ps = &self.spec.parameters;
        let find = |kind: &str| {
            let of_kind = |p: &Parameter| p.target == "emissions" && p.error_kind() == kind;
            ps.iter()
                .position(|p| of_kind(p) && p.names(sector))
                .or_else(|| ps.iter().position(|p| of_kind(p) && p.is_default()))
        };
        (find(KINDS[0]), find(KINDS[1]))
    }

    /// A sector's multiplier in draw `d`: its inventory multiplier times its allocation multiplier.
    #[inline]
    pub fn sector_factor(&self, d: usize, (inventory, allocation): SectorParams) -> f64 {
        self.at(d, inventory) * self.at(d, allocation)
    }
}

/// An allocation error that varies between the lattice's cells (`length_km` on an allocation parameter):
/// cell c's multiplier in draw d is 1 + sd (sqrt(rho) z_0 + sqrt(1 - rho) g_d(x_c)), g the standard normal field
/// of `npp/field.rs` at the cell's centre in the lattice's CRS (knots `length_km` apart, anchored at the CRS's
/// origin; knots closer than the cells: every cell its own normal). Cells closer than about two lengths move
/// together, so a zone spanning many cells averages their errors where a run-wide multiplier would not.
pub struct CellField {
    /// The parameter.
    pub k: usize,
    field: crate::pipeline::npp::field::Field,
    /// The lattice's grid (its cells' centres).
    grid: crate::io::Grid,
    /// Per cell given to `new`, its multiplier in every draw.
    factors: std::collections::BTreeMap<usize, Vec<f64>>,
}

impl CellField {
    /// The field of the file's allocation parameter with a length_km (None without one), its multipliers
    /// computed for `cells` of `lattice`.
    pub fn new(
        d: &Draws,
        lattice: &crate::lattice::Lattice,
        cells: &[usize],
        seed: u64,
    ) -> Result<Option<CellField>> {
        let Some(k) = d
            .spec
            .parameters
            .iter()
            .position(|p| p.target == "emissions" && p.length_km.is_some())
        else {
            return Ok(None);
        };
        let length_m = d.spec.parameters[k].length_km.expect("found") * 1000.0;
        let field = crate::pipeline::npp::field::Field::new(&lattice.grid, length_m, seed, k)?;
        let mut f = CellField {
            k,
            field,
            grid: lattice.grid.clone(),
            factors: Default::default(),
        };
        for &c in cells {
            let v = f.compute(d, c);
            f.factors.insert(c, v);
        }
        Ok(Some(f))
    }

    /// Cell `c`'s multiplier in every draw.
    fn compute(&self, d: &Draws, c: usize) -> Vec<f64> {
        let (x, y) = self
            .grid
            .pixel_centre(c % self.grid.width, c / self.grid.width);
        let mut g = vec![0f64; d.n];
        self.field.values_at(&self.field.stencil(x, y), &mut g);
        (0..d.n).map(|i| d.field_factor(i, self.k, g[i])).collect()
    }

    /// Cell `c`'s multiplier in every draw (computed on the spot for a cell not given to `new`).
    pub fn of(&self, d: &Draws, c: usize) -> std::borrow::Cow<'_, [f64]> {
        match self.factors.get(&c) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(self.compute(d, c)),
        }
    }

    /// Whether a sector's allocation parameter is this field.
    pub fn covers(&self, (_, allocation): SectorParams) -> bool {
        allocation == Some(self.k)
    }
}

/// The sectors an uncertainty file names that the lattice does not have (a misspelt sector would otherwise
/// silently go without its error).
pub(crate) fn unknown_sectors<'a>(params: &'a [Parameter], lattice: &[String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in params
        .iter()
        .filter(|p| p.target == "emissions")
        .flat_map(|p| p.named_sectors())
    {
        if !lattice.iter().any(|l| l == s) && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// A user's uncertainty file `file` must name only sectors the lattice (`lattice`, with `sectors`) has: the
/// error names each other sector and the lattice's sectors.
pub(crate) fn check_named(
    params: &[Parameter],
    file: &Path,
    lattice: &Path,
    sectors: &[String],
) -> Result<()> {
    let unknown = unknown_sectors(params, sectors);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::input(
        file,
        format!(
            "names emission sector(s) {} that the lattice {} lacks (its sectors: {})",
            unknown.join(", "),
            lattice.display(),
            sectors.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sector: Option<&str>, sectors: &[&str], error: Option<&str>, sd: f64) -> Parameter {
        Parameter {
            target: "emissions".into(),
            vegetation_type: None,
            sector: sector.map(Into::into),
            sectors: sectors.iter().map(|s| s.to_string()).collect(),
            error: error.map(Into::into),
            sd,
            length_km: None,
            source: "test".into(),
        }
    }

    fn file(parameters: Vec<Parameter>) -> crate::pipeline::npp::draws::UncertaintyFile {
        crate::pipeline::npp::draws::UncertaintyFile {
            name: "t".into(),
            correlation: 0.0,
            parameters,
        }
    }

    #[test]
    fn a_sector_takes_its_own_entry_of_each_kind_else_the_kinds_default() {
        let f = file(vec![
            p(Some("energy"), &[], None, 0.05),
            p(None, &["road", "rail"], Some("inventory"), 0.04),
            p(Some("*"), &[], Some("allocation"), 0.4),
        ]);
        let d = Draws::new(f, Path::new("t"), 3, 1);
        assert_eq!(d.emissions_params("energy"), (Some(0), Some(2)));
        assert_eq!(d.emissions_params("rail"), (Some(1), Some(2)));
        assert_eq!(d.emissions_params("waste"), (None, Some(2)));
        // The product of the two multipliers, 1 for a missing kind.
        for i in 0..3 {
            assert_eq!(
                d.sector_factor(i, (Some(0), Some(2))),
                d.m[i][0] * d.m[i][2]
            );
            assert_eq!(d.sector_factor(i, (None, Some(2))), d.m[i][2]);
            assert_eq!(d.sector_factor(i, (Some(1), None)), d.m[i][1]);
        }
    }

    #[test]
    fn overlapping_and_misplaced_entries_are_each_named() {
        let f = file(vec![
            p(Some("energy"), &[], None, 0.05),
            p(None, &["energy", "road"], None, 0.04),
            p(None, &[], Some("allocation"), 0.4),
            p(Some("*"), &[], Some("allocation"), 0.4),
            p(Some("energy"), &[], Some("allocation"), 0.4),
        ]);
        let problems = overlaps(&f.parameters);
        assert_eq!(
            problems,
            [
                "parameters 1 and 2 both give sector \"energy\"'s inventory error",
                "parameters 3 and 4 are each the allocation error of every sector: give one",
            ]
        );
        let bad = p(Some("x"), &["y"], Some("spatial"), 0.1);
        assert!(bad.emissions_problem().unwrap().contains("inventory"));
        let both = p(Some("x"), &["y"], None, 0.1);
        assert_eq!(
            both.emissions_problem().unwrap(),
            "give sector or sectors, not both"
        );
        let mut npp = p(Some("x"), &[], None, 0.1);
        npp.target = "npp".into();
        assert!(npp
            .emissions_problem()
            .unwrap()
            .contains("emissions parameters only"));
        let lattice = ["energy".to_string(), "waste".to_string()];
        assert_eq!(unknown_sectors(&f.parameters, &lattice), ["road"]);
    }
}
