//! Classifier features from a scene stack: reflectance bands and spectral indices, each summarised over the
//! stack's acquisitions by temporal statistics (min, max, mean, median, amplitude, standard deviation, day of
//! year of the maximum), computed strip by strip on the analysis grid.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use chrono::Datelike;
use serde::{Deserialize, Serialize};

use super::{bands_of, clear_then_fill, composite_strip, strip_index_values, GridChoice};
use crate::composite::Stat;
use crate::error::{Error, Result};
use crate::indices::{CompiledIndex, ConstOverrides, IndexDef, IndexTable};
use crate::io::Grid;
use crate::scene::{SceneReader, Stack};

/// Which features to compute: every variable (bands first, then indices) with every statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Band letters (reflectance features), e.g. R, N, S1.
    pub bands: Vec<String>,
    /// Index names from the index table.
    pub indices: Vec<String>,
    /// Temporal statistics, by name.
    pub stats: Vec<String>,
    /// Fill cloudy observations linearly in time before the statistics.
    pub gap_fill: bool,
    /// Index constant overrides (`NAME=value`).
    #[serde(default)]
    pub constants: Vec<String>,
}

/// What one feature is, as recorded in a model's sidecar and compared when the model is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDef {
    pub name: String,
    /// The band letter or index name.
    pub variable: String,
    pub formula: String,
    /// Band letter -> the sensor's band name.
    pub bands: BTreeMap<String, String>,
    pub constants: BTreeMap<String, f64>,
    pub stat: String,
    pub unit: String,
}

/// Computes the feature planes of a stack on a grid.
pub struct FeatureEngine {
    pub stack: Stack,
    pub grid: Grid,
    pub defs: Vec<FeatureDef>,
    compiled: Vec<CompiledIndex>,
    letters: Vec<String>,
    band_pos: Vec<Vec<usize>>,
    stats: Vec<Stat>,
    gap_fill: bool,
    days: Vec<f64>,
    doys: Vec<f64>,
}

/// A reflectance band as a one-band "index" (so bands and indices share one code path).
fn band_def(stack: &Stack, letter: &str) -> IndexDef {
    let product = stack.band_name(letter).unwrap_or("?");
    IndexDef {
        name: letter.to_string(),
        long_name: format!("reflectance of band {letter} ({product})"),
        formula: letter.to_string(),
        bands: vec![letter.to_string()],
        constants: BTreeMap::new(),
        unit: "1".into(),
        citation: format!("sensor profile {}", stack.profile.name),
    }
}

impl FeatureSpec {
    pub fn parsed_stats(&self) -> Result<Vec<Stat>> {
        if self.stats.is_empty() {
            return Err(Error::Usage("give at least one feature statistic".into()));
        }
        self.stats.iter().map(|s| Stat::parse(s)).collect()
    }

    /// The variables (bands, then indices) compiled for `stack`; unknown names are errors.
    fn compile(&self, stack: &Stack, index_table: Option<&Path>) -> Result<Vec<CompiledIndex>> {
        if self.bands.is_empty() && self.indices.is_empty() {
            return Err(Error::Usage(
                "no features: give --bands and/or --indices".into(),
            ));
        }
        let mut defs: Vec<IndexDef> = self.bands.iter().map(|b| band_def(stack, b)).collect();
        if !self.indices.is_empty() {
            let table = match index_table {
                Some(p) => IndexTable::from_file(p)?,
                None => IndexTable::builtin()?,
            };
            defs.extend(table.select(&self.indices)?);
        }
        let overrides = ConstOverrides::parse(&self.constants)?;
        overrides.check(&defs)?;
        defs.iter()
            .map(|d| CompiledIndex::new(d, &overrides.for_index(d)))
            .collect()
    }
}

impl FeatureEngine {
    /// Open `stack` on the grid, check every band the features need, and prepare the readers' inputs.
    pub fn open(
        stack_path: &Path,
        grid: &GridChoice,
        spec: &FeatureSpec,
        index_table: Option<&Path>,
    ) -> Result<FeatureEngine> {
        Self::new(Stack::open(stack_path)?, grid, spec, index_table)
    }

    /// As `open`, for a stack already loaded.
    pub fn new(
        stack: Stack,
        grid: &GridChoice,
        spec: &FeatureSpec,
        index_table: Option<&Path>,
    ) -> Result<FeatureEngine> {
        let stats = spec.parsed_stats()?;
        let compiled = spec.compile(&stack, index_table)?;
        let grid = grid.resolve(&stack)?;
        let (letters, band_pos) = bands_of(&stack, &grid, &compiled)?;
        let mut defs = Vec::new();
        for c in &compiled {
            for s in &stats {
                defs.push(FeatureDef {
                    name: format!("{}_{}", c.def.name, s.name()),
                    variable: c.def.name.clone(),
                    formula: c.def.formula.clone(),
                    bands: c
                        .def
                        .bands
                        .iter()
                        .map(|b| (b.clone(), stack.band_name(b).unwrap_or("?").to_string()))
                        .collect(),
                    constants: c.constants.clone(),
                    stat: s.name().into(),
                    unit: s.unit(&c.def.unit),
                });
            }
        }
        let days = stack
            .scenes
            .iter()
            .map(|s| s.date.num_days_from_ce() as f64)
            .collect();
        let doys = stack
            .scenes
            .iter()
            .map(|s| s.date.ordinal() as f64)
            .collect();
        Ok(FeatureEngine {
            stack,
            grid,
            defs,
            compiled,
            letters,
            band_pos,
            stats,
            gap_fill: spec.gap_fill,
            days,
            doys,
        })
    }

    /// One GDAL reader set per scene (each used by one thread at a time).
    pub fn readers(&self) -> Result<Vec<Mutex<SceneReader<'_>>>> {
        self.stack
            .scenes
            .iter()
            .map(|s| SceneReader::new(&self.stack, s, &self.letters, &self.grid).map(Mutex::new))
            .collect()
    }

    /// Rows per strip so that one strip's working values stay within `memory_mb`.
    pub fn strip_rows(&self, memory_mb: usize) -> usize {
        let nscenes = self.stack.scenes.len();
        // Per pixel: every variable's value and clear flag per scene, every band's reflectance per scene,
        // (f64) and the feature planes (f32).
        let per_px = self.compiled.len() * nscenes * 5
            + self.letters.len() * nscenes * 8
            + self.defs.len() * 8;
        let rows = (memory_mb.max(1) * 1024 * 1024) / (per_px * self.grid.width).max(1);
        rows.clamp(1, self.grid.height.max(1))
    }

    /// Feature planes (`[feature][pixel]`, NaN where a pixel has no clear observation) of rows
    /// `row0 .. row0 + nrows`.
    pub fn strip(
        &self,
        readers: &[Mutex<SceneReader>],
        row0: usize,
        nrows: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let npx = nrows * self.grid.width;
        let which: Vec<usize> = (0..self.compiled.len()).collect();
        let (mut values, _) = strip_index_values(
            readers,
            &self.compiled,
            &self.band_pos,
            &which,
            &crate::io::Window::rows(row0, nrows, self.grid.width),
        )?;
        let clear = clear_then_fill(&mut values, npx, self.gap_fill.then_some(&self.days));
        let members: Vec<usize> = (0..self.stack.scenes.len()).collect();
        let mut planes = Vec::with_capacity(self.defs.len());
        for (v, c) in values.iter().zip(&clear) {
            let (bands, _) = composite_strip(v, c, npx, &members, &self.doys, &self.stats, false);
            planes.extend(bands);
        }
        Ok(planes)
    }
}
