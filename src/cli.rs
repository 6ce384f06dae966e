//! The carbonmap command line: parse, call the library, map errors to exit codes. `carbonmap run` runs these
//! same commands as the stages of a season config (through `StageCommands`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::composite::{PeriodSpec, Stat};
use crate::error::Problems;
use crate::indices::IndexTable;
use crate::io::WriteOptions;
use crate::landcover::forest::{ForestParams, MaxFeatures};
use crate::pipeline::classify::{self, ClassifierKind, LabelSource, PredictJob, TrainJob};
use crate::pipeline::features::FeatureSpec;
use crate::pipeline::npp::{run_npp, NppJob, NppModel};
use crate::pipeline::season;
use crate::pipeline::{self, GridChoice, IndicesJob};
use crate::progress::{Progress, StageState};
use crate::scene::SensorProfile;
use crate::{synth, Error, Result};

#[derive(Parser)]
#[command(
    name = "carbonmap",
    version,
    about = "Satellite imagery to vegetation indices, carbon-sink maps and net carbon balance maps"
)]
struct Cli {
    /// Worker threads for computation (default: all cores). Outputs are identical for any value.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars or logs; warnings and errors only.
    #[arg(long, global = true)]
    quiet: bool,
    /// Progress and logs on stderr: text (bars on a terminal, plain lines otherwise) or json (one object per
    /// line, for schedulers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Compression of output rasters: deflate, zstd, lzw or none, optionally :LEVEL (deflate 1-12, zstd 1-22).
    /// Default deflate:1 (fast, and readable by every GIS).
    #[arg(long, global = true)]
    compress: Option<crate::engine::codec::Codec>,
    /// Draw a quick-look map (NAME.png: title, legend with unit and sign, scale bar, north arrow, CRS) beside
    /// every raster the command writes, committed with it.
    #[arg(long, global = true)]
    maps: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a season config: every stage (stack, indices, land cover, NPP, corrections, balance, validation)
    /// that is not up to date, then the run report. Exit codes: 0 all stages done or up to date, 2 bad config
    /// or input (nothing computed), 3 processing failure, 4 partial success, 5 output folder locked.
    Run {
        /// Season config (TOML; see the README).
        config: PathBuf,
        #[command(flatten)]
        season: SeasonArgs,
        /// Run one shard of the plan `carbonmap plan` wrote: its number from 0, or `env` for the first of
        /// SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX that is set.
        #[arg(long)]
        shard: Option<String>,
    },
    /// Split a season into shards of the analysis grid for a batch scheduler (Slurm arrays, Kubernetes Indexed
    /// Jobs, AWS Batch): runs the stages every shard reads (stack, classifier training ...), then writes
    /// OUT/shards.json. Each shard then runs with `run --shard I`; `merge` mosaics them and runs the rest.
    Plan {
        /// Season config (TOML).
        config: PathBuf,
        /// Side of a square shard in pixels (a multiple of 256, the output tile).
        #[arg(long, default_value_t = 4096, conflicts_with = "tiles")]
        tile_size: usize,
        /// Cut the grid at the west and north edges of this layer's tiles (an OGR file: MGRS, a national grid),
        /// snapped to the 256-px output tile, instead of squares.
        #[arg(long)]
        tiles: Option<PathBuf>,
        /// The tile layer's field naming each tile (recorded with the shard it starts).
        #[arg(long, requires = "tiles")]
        tile_field: Option<String>,
        #[command(flatten)]
        season: SeasonArgs,
    },
    /// Mosaic the shards of `carbonmap plan` into the season's folder (refusing missing, failed or stale
    /// shards, all named at once), then run the stages after them and the run report.
    Merge {
        /// Season config (TOML).
        config: PathBuf,
        /// Write the mosaics as Cloud-Optimised GeoTIFFs with overviews.
        #[arg(long)]
        cog: bool,
        #[command(flatten)]
        season: SeasonArgs,
    },
    /// Check a season config and every input it names, listing all problems at once; computes nothing.
    Check {
        /// Season config (TOML).
        config: PathBuf,
        /// Season (default: the config's).
        #[arg(long)]
        season: Option<String>,
        /// Output folder instead of the config's `[season] out`.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// A value for a variable the config declares in [vars] (repeatable): NAME=VALUE.
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Vegetation indices per date or composited per period (median, mean, max, min and a clear-observation count).
    Indices(IndicesArgs),
    /// NPP, soil heterotrophic respiration, NEP and sequestration (CASA monthly or MOD17) from monthly NDVI
    /// composites, a land-cover map and climate drivers.
    Npp(NppArgs),
    /// Run MOD17 or the P-model at one site from a daily driver table (with FPAR), optionally against observed
    /// GPP; calibrate the P-model there (--fit).
    Site(SiteArgs),
    /// Net carbon balance: fuse a sequestration raster with an emission lattice (raster or vector grid) into
    /// net balance rasters (fine and per lattice cell), per-zone tables and a map.
    Balance(BalanceArgs),
    /// A land-cover scenario against its base: the changes of a scenario file (inside polygons, or from an
    /// alternate map), NDVI for changed pixels by space-for-time substitution, the NPP job for base and
    /// scenario, difference rasters and a per-zone table of base, scenario and difference.
    Scenario(ScenarioArgs),
    /// Compare a model output (a raster sampled at field plots, or a table joined on a key such as a date) with
    /// observations: statistics overall, per class, per zone and per group, a scatter plot and a residual map.
    Validate(ValidateArgs),
    /// Validate every soil heterotrophic-respiration model against plot records of annual Rh (ForC's
    /// R_het_soil) with each plot's climate: per model and group, n, bias and RMSE.
    ValidateRh(ValidateRhArgs),
    /// Fit correction factors per zone x class, zone and class from field plots (partial pooling), write a
    /// correction table for `npp --corrections`, and cross-validate with folds grouped by site.
    Calibrate(CalibrateArgs),
    /// Move a carbon quantity from one grid onto another (finer or coarser, any CRS), conserving mass.
    Regrid(RegridArgs),
    /// Land cover: check a map against its legend and tabulate class areas; train a classifier and predict.
    #[command(subcommand)]
    Landcover(LandcoverCmd),
    /// Recognise a stack from a folder of files named by a sensor's convention and print its manifest.
    Stack {
        /// Folder to search (recursively); not with --stac-api.
        #[arg(required_unless_present = "stac_api", conflicts_with = "stac_api")]
        dir: Option<PathBuf>,
        /// Keep acquisitions from this date (YYYY-MM-DD).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Keep acquisitions up to this date (YYYY-MM-DD).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Write the manifest to this file (with absolute paths) instead of printing it.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// A folder of dated multi-band GeoTIFFs of this sensor (any naming; band names from the band
        /// descriptions), instead of recognising a product's file names.
        #[arg(long)]
        sensor: Option<String>,
        /// With --sensor: the date from the file name, a regular expression with a named group (?P<date>...)
        /// (YYYY-MM-DD or YYYYMMDD); default: the file's DATETIME / TIFFTAG_DATETIME / ACQUISITION_DATE tag.
        #[arg(long, requires = "sensor")]
        date_pattern: Option<String>,
        /// Search a STAC API instead of a folder (give -o): the items of --collection in
        /// --bbox and --datetime, all pages, written as an ItemCollection for --stack.
        #[arg(long, requires = "collection")]
        stac_api: Option<String>,
        /// With --stac-api: search by POST with a JSON body (for APIs that search only by POST); `next` pages
        /// are requested as their links say either way.
        #[arg(long, requires = "stac_api")]
        stac_post: bool,
        /// STAC collection(s) to search (repeatable).
        #[arg(long)]
        collection: Vec<String>,
        /// Bounding box WEST,SOUTH,EAST,NORTH in degrees.
        #[arg(long, allow_hyphen_values = true)]
        bbox: Option<String>,
        /// Time range, RFC 3339 (2024-06-01T00:00:00Z/2024-08-31T23:59:59Z, or a date range 2024-06-01/2024-08-31).
        #[arg(long)]
        datetime: Option<String>,
    },
    /// List the built-in indices or sensor profiles.
    List {
        /// indices | sensors | legends
        what: String,
    },
    /// Generate the SYNTHETIC sample stack (data-samples/).
    Samples {
        #[arg(long, default_value = "data-samples")]
        out: PathBuf,
        /// Width and height in pixels.
        #[arg(long, default_value_t = 96)]
        size: usize,
    },
    /// Generate a large SYNTHETIC stack for benchmarks.
    #[command(hide = true)]
    BenchStack {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 8192)]
        size: usize,
        #[arg(long, default_value_t = 12)]
        dates: usize,
    },
}

#[derive(Subcommand)]
enum LandcoverCmd {
    /// Check that every code of a land-cover raster is in its legend, and write the per-class area table.
    Check {
        /// Land-cover raster.
        #[arg(long)]
        map: PathBuf,
        /// Legend: a built-in product (see `carbonmap list legends`) or a legend .toml file.
        #[arg(long)]
        legend: String,
        /// Band of the raster holding the codes.
        #[arg(long, default_value_t = 1)]
        band: usize,
        /// Write the area table (CSV, hectares) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train a classifier (random forest or decision tree) on labelled samples with features from a stack;
    /// assess it on spatially blocked held-out samples; save the model and its sidecar.
    Train(Box<TrainArgs>),
    /// Classify a stack with a saved model: class raster (colour table, class names), confidence raster and
    /// per-class area table (hectares).
    Predict(PredictArgs),
}

/// The features a classifier reads from a stack.
#[derive(Args)]
struct FeatureArgs {
    /// Band letters used as reflectance features, comma-separated (for example B,G,R,N,S1,S2).
    #[arg(long, value_delimiter = ',')]
    bands: Vec<String>,
    /// Indices used as features, comma-separated (see `carbonmap list indices`).
    #[arg(long, value_delimiter = ',')]
    indices: Vec<String>,
    /// Temporal statistics of every band and index over the stack's dates: median, mean, max, min,
    /// amplitude, std, doy_max.
    #[arg(long, default_value = "min,max,mean,amplitude,doy_max")]
    stats: String,
    /// Fill cloudy observations by linear interpolation in time before the statistics.
    #[arg(long)]
    gap_fill: bool,
    /// Override an index constant: NAME=VALUE or INDEX.NAME=VALUE.
    #[arg(long = "const")]
    constants: Vec<String>,
}

#[derive(Args)]
struct TrainArgs {
    /// Stack manifest (TOML) or a folder of files named by a sensor's convention.
    #[arg(long)]
    stack: PathBuf,
    #[command(flatten)]
    grid: GridArgs,
    #[command(flatten)]
    features: FeatureArgs,
    /// Use this index table instead of the built-in models/indices.toml.
    #[arg(long)]
    index_table: Option<PathBuf>,
    /// Labels: a land-cover raster, a vector file of points or polygons (GeoPackage, GeoJSON, Shapefile ...),
    /// or a CSV with coordinate columns.
    #[arg(long)]
    labels: PathBuf,
    /// Band of a label raster.
    #[arg(long, default_value_t = 1)]
    labels_band: usize,
    /// Field (vector) or column (CSV) holding the class: an integer code or a name.
    #[arg(long)]
    label_field: Option<String>,
    /// Vector layer (files with several layers).
    #[arg(long)]
    labels_layer: Option<String>,
    /// CSV coordinate columns and their CRS.
    #[arg(long, default_value = "x")]
    x_field: String,
    #[arg(long, default_value = "y")]
    y_field: String,
    #[arg(long)]
    labels_crs: Option<String>,
    /// Legend for class names, colours and vegetation types (built-in product or .toml); label codes or
    /// names must be in it.
    #[arg(long)]
    legend: Option<String>,
    /// Label codes or names that are not classes (comma-separated), besides declared nodata.
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
    /// random-forest | decision-tree
    #[arg(long, default_value = "random-forest")]
    classifier: String,
    /// Trees per class (random forest).
    #[arg(long, default_value_t = 100)]
    trees: usize,
    /// Features tried per tree: sqrt, all or a number (random forest).
    #[arg(long, default_value = "sqrt")]
    max_features: String,
    /// Maximum tree depth (default: unlimited).
    #[arg(long)]
    max_depth: Option<usize>,
    #[arg(long, default_value_t = 2)]
    min_samples_split: usize,
    #[arg(long, default_value_t = 1)]
    min_samples_leaf: usize,
    /// Seed of the sample selection, the bootstrap, the feature subsets and the block folds.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// At most this many samples per class (seeded random selection).
    #[arg(long, default_value_t = 2000)]
    max_samples_per_class: usize,
    /// Side of the square blocks of the spatial holdout, in metres.
    #[arg(long, default_value_t = 200.0)]
    block_size: f64,
    /// Blocks are dealt into this many folds; one fold is held out for the accuracy assessment.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Where to save the model (its sidecar goes beside it as MODEL.sidecar.json); default OUT/landcover.model.json.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output folder for the accuracy report.
    #[arg(long, short)]
    out: PathBuf,
    /// Working-memory budget per strip in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
}

#[derive(Args)]
struct PredictArgs {
    /// Stack manifest (TOML) or a folder of files named by a sensor's convention.
    #[arg(long)]
    stack: PathBuf,
    #[command(flatten)]
    grid: GridArgs,
    /// Model saved by `carbonmap landcover train` (its sidecar MODEL.sidecar.json must be beside it).
    #[arg(long)]
    model: PathBuf,
    /// Use this index table instead of the built-in one (must define the model's indices identically).
    #[arg(long)]
    index_table: Option<PathBuf>,
    /// Output folder: landcover.tif, landcover_confidence.tif, landcover_area.csv.
    #[arg(long, short)]
    out: PathBuf,
    /// Write Cloud-Optimised GeoTIFFs with overviews.
    #[arg(long)]
    cog: bool,
    /// Working-memory budget in MiB of the two strips in flight (the one classified and the one read beside it).
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
}

/// The season, output folder, variables and hashing of `run`, `plan` and `merge`.
#[derive(Args)]
struct SeasonArgs {
    /// Season: 2024, 2024-JJA, 2024-07, 2024-06..2024-08 or 2024-06-01..2024-08-31 (default: the config's).
    #[arg(long)]
    season: Option<String>,
    /// Output folder instead of the config's `[season] out`.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// A value for a variable the config declares in [vars] (repeatable): NAME=VALUE.
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Hash every input again (else a recorded hash is trusted while size and modification time match).
    #[arg(long)]
    rehash: bool,
}

impl SeasonArgs {
    fn options(self) -> season::RunOptions {
        season::RunOptions {
            season: self.season,
            out: self.out,
            vars: self.vars,
            rehash: self.rehash,
            ..Default::default()
        }
    }
}

/// The analysis grid of commands that read a stack.
#[derive(Args)]
struct GridArgs {
    /// Take the analysis grid from this raster (default: the first acquisition's grid).
    #[arg(long, conflicts_with_all = ["crs", "res", "bounds"])]
    grid_from: Option<PathBuf>,
    /// Analysis grid CRS (EPSG:xxxx, WKT or PROJ), with --res and --bounds.
    #[arg(long, requires_all = ["res", "bounds"])]
    crs: Option<String>,
    /// Analysis grid resolution in CRS units.
    #[arg(long, requires = "crs")]
    res: Option<f64>,
    /// Analysis grid bounds xmin,ymin,xmax,ymax in CRS units.
    #[arg(long, requires = "crs", allow_hyphen_values = true)]
    bounds: Option<String>,
    /// Only these pixels of the analysis grid: COL0,ROW0,NCOLS,NROWS (one shard; see `carbonmap plan`).
    #[arg(long)]
    window: Option<String>,
}

impl GridArgs {
    fn choice(self) -> Result<GridChoice> {
        let whole = match (self.grid_from, self.crs, self.res, self.bounds) {
            (Some(p), _, _, _) => GridChoice::Reference(p),
            (None, Some(crs), Some(res), Some(b)) => GridChoice::Spec {
                crs,
                res,
                bounds: parse_bounds(&b)?,
            },
            _ => GridChoice::FirstScene,
        };
        Ok(match self.window {
            Some(w) => GridChoice::Window(Box::new(whole), season::parse_window(&w)?),
            None => whole,
        })
    }
}

#[derive(Args)]
struct IndicesArgs {
    /// Stack manifest (TOML), or a folder of files named by a sensor's convention (see `carbonmap stack`).
    #[arg(long)]
    stack: PathBuf,
    /// Output folder.
    #[arg(long, short)]
    out: PathBuf,
    /// Indices, comma-separated, or "all" (see `carbonmap list indices`).
    #[arg(long, default_value = "NDVI", value_delimiter = ',')]
    index: Vec<String>,
    /// date | month | season | year | NAME:START:END[,NAME:START:END...]
    #[arg(long, default_value = "month")]
    period: String,
    /// Composite statistics, comma-separated: median, mean, max, min, amplitude, std, doy_max.
    #[arg(long, default_value = "median,mean,max")]
    stats: String,
    /// Fill cloudy observations by linear interpolation in time before compositing.
    #[arg(long)]
    gap_fill: bool,
    #[command(flatten)]
    grid: GridArgs,
    /// Override an index constant: NAME=VALUE (every index using it) or INDEX.NAME=VALUE.
    #[arg(long = "const")]
    constants: Vec<String>,
    /// Use this index table instead of the built-in models/indices.toml.
    #[arg(long)]
    index_table: Option<PathBuf>,
    /// Write Cloud-Optimised GeoTIFFs with overviews.
    #[arg(long)]
    cog: bool,
    /// Working-memory budget per strip in MiB (peak memory stays near this plus GDAL's 128 MiB block cache;
    /// a strip is at least one 256-row tile row).
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
}

/// Monte Carlo options of `npp` and `balance`.
#[derive(Args)]
struct DrawArgs {
    /// Monte Carlo: this many draws of the parameters of --uncertainty (npp: per-pixel mean, sd and 5/50/95th
    /// percentiles of NPP, NEP and sequestration; both: totals with intervals computed per draw).
    #[arg(long, requires = "uncertainty")]
    draws: Option<usize>,
    /// Uncertainty file (TOML; see the README) or a built-in one by name (models/uncertainty/:
    /// carbonmap-validation, uk-station-drivers-jun-jul, mod17-prior-lue): relative errors of NPP per vegetation
    /// type and of Rh, the climate drivers' errors (temperature in K, precipitation, radiation), the Rh model's
    /// coefficients (rh.b, rh.c) and MOD17's LUEmax and ramps per type (mod17.*; npp), of emission sectors
    /// (inventory and allocation) and the sink (balance), each with its source, and their correlation.
    #[arg(long, requires = "draws")]
    uncertainty: Option<String>,
    /// Seed of the draws (the same seed gives the same draws on any machine and thread count).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl DrawArgs {
    fn spec(self) -> Option<crate::pipeline::npp::draws::DrawSpec> {
        match (self.draws, self.uncertainty) {
            (Some(n), Some(file)) => Some(crate::pipeline::npp::draws::DrawSpec {
                file: PathBuf::from(file),
                confusion: None,
                n,
                seed: self.seed,
            }),
            _ => None,
        }
    }
}

#[derive(Args)]
struct ScenarioArgs {
    /// Scenario file (TOML; see the README): name, [base] (the npp inputs), [zones], [substitution] and
    /// [[change]] entries.
    file: PathBuf,
    /// Output folder: base/, scenario/, difference/ and the tables.
    #[arg(long, short)]
    out: PathBuf,
    /// The base's NDVI composites instead of the file's base.ndvi (in a season: ndvi = "@ndvi").
    #[arg(long)]
    ndvi: Option<PathBuf>,
    /// The base year instead of the file's base.year (in a season: year = "{year}").
    #[arg(long)]
    year: Option<i32>,
    /// The months instead of the file's base.months (in a season: months = "{months}").
    #[arg(long)]
    months: Option<String>,
    /// Cloud-optimised GeoTIFFs with overviews.
    #[arg(long)]
    cog: bool,
    /// Working-memory budget (MiB) for each pass over the grid.
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
}

#[derive(Args)]
struct NppArgs {
    /// Model: casa (monthly), mod17 (daily or monthly drivers) or pmodel (P-model GPP with MOD17's
    /// respiration for NPP; needs co2 and patm drivers).
    #[arg(long, default_value = "casa")]
    model: String,
    /// Folder of monthly composites from `carbonmap indices --period month` (files NDVI_YYYY-MM.tif).
    #[arg(long, required_unless_present = "fpar", conflicts_with = "fpar")]
    ndvi: Option<PathBuf>,
    /// Instead of NDVI, a folder of monthly FPAR rasters (0-1, files FPAR_YYYY-MM.tif), for MOD17.
    #[arg(long)]
    fpar: Option<PathBuf>,
    /// Band of the composites to use (1 = the first statistic, by default the median).
    #[arg(long, default_value_t = 1)]
    ndvi_band: usize,
    /// Year of the NDVI composites, when it differs from --year.
    #[arg(long)]
    ndvi_year: Option<i32>,
    /// Land-cover raster (any CRS; nearest-neighbour onto the NDVI grid).
    #[arg(long)]
    landcover: PathBuf,
    /// Band of the land-cover raster.
    #[arg(long, default_value_t = 1)]
    landcover_band: usize,
    /// Legend of the land-cover raster: a built-in product or a .toml file.
    #[arg(long)]
    legend: String,
    /// Climate drivers file (TOML; see the README).
    #[arg(long)]
    drivers: PathBuf,
    /// Year the simulated period ends in (the drivers' year).
    #[arg(long)]
    year: i32,
    /// Simulated months FIRST-LAST (default 1-12, a full year). FIRST > LAST crosses the year boundary and
    /// ends in --year: 12-2 is December of the year before to February (DJF), 7-6 July to June (a
    /// hydrological or Southern-Hemisphere year). Annual quantities always use a full model year (README).
    #[arg(long, default_value = "1-12")]
    months: String,
    /// CASA parameter table: built-in name or .toml file.
    #[arg(long, default_value = crate::npp::casa::DEFAULT_CASA)]
    casa_params: String,
    /// MOD17 BPLUT: built-in name or .toml file.
    #[arg(long, default_value = crate::npp::mod17::DEFAULT_BPLUT)]
    bplut: String,
    /// Heterotrophic-respiration model: built-in name or .toml file.
    #[arg(long, default_value = crate::npp::rh::DEFAULT_RH)]
    rh: String,
    /// P-model parameter set (--model pmodel): built-in name or .toml file (such as site --fit's
    /// pmodel_fitted.toml).
    #[arg(long, default_value = crate::npp::pmodel::DEFAULT_PMODEL)]
    pmodel_params: String,
    /// Output folder.
    #[arg(long, short)]
    out: PathBuf,
    /// Also write one band per month.
    #[arg(long)]
    monthly: bool,
    /// Refuse a simulated month without a composite (by default it is filled per pixel by cyclic linear
    /// interpolation between the nearest months with data, and counted).
    #[arg(long)]
    strict_months: bool,
    /// Write Cloud-Optimised GeoTIFFs with overviews.
    #[arg(long)]
    cog: bool,
    /// Working-memory budget per strip in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
    #[command(flatten)]
    draws: DrawArgs,
    /// With --draws: the land-cover classifier's confusion matrix (`landcover train`'s confusion_matrix.csv:
    /// rows predicted, columns reference, labels "CODE NAME"); the totals then carry land-cover confusion.
    #[arg(long, requires = "draws")]
    confusion: Option<PathBuf>,
    /// Region-specific correction table: a built-in name (models/corrections/) or a CSV (as `carbonmap
    /// calibrate` writes). Factors per zone x class, zone or class on epsilon max or NPP.
    #[arg(long)]
    corrections: Option<String>,
    /// Zones the correction table names: a vector file (with --zone-fields; the finest level names the
    /// zone) or a raster of zone codes.
    #[arg(long, requires = "corrections")]
    zones: Option<PathBuf>,
    /// Fields naming the zones, coarsest level first (comma-separated).
    #[arg(long, value_delimiter = ',')]
    zone_fields: Vec<String>,
    /// Layer of the zones file.
    #[arg(long)]
    zone_layer: Option<String>,
}

/// Where the emission lattice comes from and what its unit is.
#[derive(Args)]
struct LatticeArgs {
    /// Emission lattice: a raster (one band per sector or year) or a vector grid of rectangular cells
    /// (GeoPackage, GeoJSON, Shapefile, CSV with a WKT column).
    #[arg(long)]
    lattice: PathBuf,
    /// Declared unit of the lattice values, for example "Tg C cell-1 yr-1" (mass per cell) or
    /// "t CO2 km-2 yr-1" (flux density). Required unless the file's bands declare it.
    #[arg(long)]
    lattice_unit: Option<String>,
    /// Raster lattice: bands to use (descriptions or numbers, comma-separated); all bands when absent.
    #[arg(long, value_delimiter = ',')]
    lattice_bands: Vec<String>,
    /// Vector lattice: fields holding each sector's emissions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    lattice_fields: Vec<String>,
    /// Vector lattice: the cell id field.
    #[arg(long)]
    cell_id_field: Option<String>,
    /// Vector lattice: layer name.
    #[arg(long)]
    lattice_layer: Option<String>,
    /// CRS of a lattice file that has none (CSV), for example EPSG:27700.
    #[arg(long)]
    lattice_crs: Option<String>,
    /// Sectors that may be negative (removals, land use); negative values in any other sector are warned about.
    #[arg(long, value_delimiter = ',')]
    signed_sectors: Vec<String>,
}

impl LatticeArgs {
    fn spec(self) -> crate::lattice::LatticeSpec {
        crate::lattice::LatticeSpec {
            path: self.lattice,
            unit: self.lattice_unit,
            bands: self.lattice_bands,
            fields: self.lattice_fields,
            id_field: self.cell_id_field,
            layer: self.lattice_layer,
            crs: self.lattice_crs,
            signed_sectors: self.signed_sectors,
        }
    }
}

#[derive(Args)]
struct ProxyArgs {
    /// Proxy for spreading each cell's emissions over the fine grid: a land-cover raster (with --proxy-classes)
    /// or a raster of non-negative weights. Uniform by area when absent.
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// Band of --proxy.
    #[arg(long, default_value_t = 1)]
    proxy_band: usize,
    /// Land-cover classes and their weights, for example 50=1 (built-up only) or 50=1,40=0.1.
    #[arg(long, value_delimiter = ',')]
    proxy_classes: Vec<String>,
}

impl ProxyArgs {
    fn spec(self) -> Result<Option<crate::pipeline::balance::ProxySpec>> {
        let Some(path) = self.proxy else {
            if !self.proxy_classes.is_empty() {
                return Err(Error::Usage("--proxy-classes needs --proxy".into()));
            }
            return Ok(None);
        };
        let classes = self
            .proxy_classes
            .iter()
            .map(|s| {
                let bad = || {
                    Error::Usage(format!(
                        "--proxy-classes {s}: expected CODE=WEIGHT, for example 50=1"
                    ))
                };
                let (c, w) = s.split_once('=').ok_or_else(bad)?;
                let c: i64 = c.trim().parse().map_err(|_| bad())?;
                let w: f64 = w.trim().parse().map_err(|_| bad())?;
                if !(w >= 0.0 && w.is_finite()) {
                    return Err(Error::Usage(format!(
                        "--proxy-classes {s}: weights must be >= 0"
                    )));
                }
                Ok((c, w))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(crate::pipeline::balance::ProxySpec {
            path,
            band: self.proxy_band,
            classes,
        }))
    }
}

#[derive(Args)]
struct BalanceArgs {
    /// Sequestration (carbon sink) raster, positive = uptake: `carbonmap npp`'s sequestration_tCO2_ha_*.tif or
    /// any raster with a declared unit.
    #[arg(long)]
    sink: PathBuf,
    /// Band of --sink.
    #[arg(long, default_value_t = 1)]
    sink_band: usize,
    /// Unit of the sink, when the file does not declare it (or to take a period's total as the year's), for
    /// example "t CO2 ha-1 yr-1".
    #[arg(long)]
    sink_unit: Option<String>,
    #[command(flatten)]
    draws: DrawArgs,
    #[command(flatten)]
    lattice: LatticeArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Zones for the summary table: a vector file (with --zone-fields) or a raster of zone codes.
    #[arg(long)]
    zones: Option<PathBuf>,
    /// Fields naming the zones, from the coarsest level to the finest (comma-separated).
    #[arg(long, value_delimiter = ',')]
    zone_fields: Vec<String>,
    /// Layer of the zones file.
    #[arg(long)]
    zone_layer: Option<String>,
    /// Population raster for per-person indicators in the zone table (persons per area, any grid; or persons
    /// per pixel on the sink's grid), with --population-unit.
    #[arg(long)]
    population: Option<PathBuf>,
    /// Band of --population.
    #[arg(long, default_value_t = 1)]
    population_band: usize,
    /// Unit of --population: "persons km-2", "persons ha-1", "persons m-2" or "persons pixel-1".
    #[arg(long, default_value = "persons km-2")]
    population_unit: String,
    /// Targets per zone: a CSV with level, zone, and target_net_balance_tCO2_yr and/or
    /// target_neutrality_ratio; the zone table gains each zone's target and the gap to it.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// A previous run's zones_balance.csv (the season before): the zone table gains the change in net
    /// balance, emissions and sequestration per zone. A missing file (the first season) is a warning.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// Output folder.
    #[arg(long, short)]
    out: PathBuf,
    /// Write cloud-optimised GeoTIFFs.
    #[arg(long)]
    cog: bool,
}

/// Observations and the model values to compare them with (shared by validate and calibrate).
#[derive(Args)]
struct SampleArgs {
    /// Field plots or other observations: a CSV with coordinate columns, or points in a GeoPackage, GeoJSON or
    /// Shapefile; with --model-table, a CSV with the key column.
    #[arg(long)]
    plots: PathBuf,
    /// Layer of --plots (vector files with several layers).
    #[arg(long)]
    plots_layer: Option<String>,
    /// CSV column of x (longitude, easting).
    #[arg(long, default_value = "lon")]
    x_field: String,
    /// CSV column of y (latitude, northing).
    #[arg(long, default_value = "lat")]
    y_field: String,
    /// CRS of the CSV coordinates (default EPSG:4326), or of a vector layer without one.
    #[arg(long)]
    plots_crs: Option<String>,
    /// Column with a unique plot id (duplicates are an error).
    #[arg(long)]
    id_field: Option<String>,
    /// Column with the observed value.
    #[arg(long)]
    observed_field: String,
    /// Unit of every observation, for example "Mg C ha-1 yr-1" (ForC) or "g C m-2 yr-1".
    #[arg(long)]
    observed_unit: Option<String>,
    /// ... or the column holding each row's unit.
    #[arg(long)]
    observed_unit_field: Option<String>,
    /// Column with the plot's class (else the vegetation type under the plot on --landcover).
    #[arg(long)]
    class_field: Option<String>,
    /// One class for every plot (for example a tower's vegetation type, evergreen_broadleaf_forest).
    #[arg(long)]
    plot_class: Option<String>,
    /// Map --class-field's codes to carbonmap's vegetation types: a built-in map (forc-dominant-veg) or a .toml
    /// file with a [map] table, so that a calibrated table keys on types `npp --corrections` knows.
    #[arg(long)]
    class_map: Option<String>,
    /// Column naming the site (calibrate's cross-validation keeps a site's plots in one fold).
    #[arg(long)]
    site_field: Option<String>,
    /// Column with the plot's zone (instead of --zones).
    #[arg(long)]
    plot_zone_field: Option<String>,
    /// Further columns to summarise by (repeatable), for example a biome column.
    #[arg(long = "group-by")]
    group_by: Vec<String>,
    /// Keep rows where FIELD has one of the values: FIELD=V1,V2 (repeatable; all filters apply).
    #[arg(long = "where", value_parser = crate::plots::parse_filter)]
    filters: Vec<(String, Vec<String>)>,
    /// Model raster sampled at the plots (reprojected to its CRS).
    #[arg(long, conflicts_with = "model_table")]
    raster: Option<PathBuf>,
    /// Band of --raster.
    #[arg(long, default_value_t = 1)]
    band: usize,
    /// Window side in pixels (odd): the mean of the valid pixels around the plot's pixel.
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Unit of the model values (required for --model-table; for --raster when the band declares none).
    #[arg(long)]
    model_unit: Option<String>,
    /// Model values in a CSV joined to the observations on --key (for example a daily series).
    #[arg(long)]
    model_table: Option<PathBuf>,
    /// Key column shared by --model-table and --plots.
    #[arg(long, default_value = "date")]
    key: String,
    /// Column of --model-table with the model value.
    #[arg(long)]
    model_field: Option<String>,
    /// Zones: a vector file (with --zone-fields) or a raster of zone codes, read on the model raster's grid.
    #[arg(long)]
    zones: Option<PathBuf>,
    /// Fields naming the zones, coarsest level first (comma-separated).
    #[arg(long, value_delimiter = ',')]
    zone_fields: Vec<String>,
    /// Layer of the zones file.
    #[arg(long)]
    zone_layer: Option<String>,
    /// Land-cover map giving each plot's class (its legend's vegetation type).
    #[arg(long, requires = "legend")]
    landcover: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    landcover_band: usize,
    /// Legend of --landcover (built-in name or .toml file).
    #[arg(long)]
    legend: Option<String>,
}

impl SampleArgs {
    fn job(self) -> Result<crate::pipeline::validate::SampleJob> {
        use crate::pipeline::validate::{ClassMap, ModelSource, SampleJob};
        let model = match (self.raster, self.model_table) {
            (Some(path), None) => {
                if self.window.is_multiple_of(2) {
                    return Err(Error::Usage(format!(
                        "--window {}: must be odd (1, 3, 5 ...)",
                        self.window
                    )));
                }
                ModelSource::Raster {
                    path,
                    band: self.band,
                    unit: self.model_unit,
                    window: self.window,
                }
            }
            (None, Some(path)) => ModelSource::Table {
                path,
                key_field: self.key,
                value_field: self.model_field.ok_or_else(|| {
                    Error::Usage("--model-table needs --model-field (the column with the model value)".into())
                })?,
                unit: self.model_unit.ok_or_else(|| {
                    Error::Usage("--model-table needs --model-unit (units are never assumed)".into())
                })?,
            },
            _ => {
                return Err(Error::Usage(
                    "give the model: --raster FILE, or --model-table FILE with --model-field and --model-unit".into(),
                ))
            }
        };
        Ok(SampleJob {
            plots: crate::plots::PlotSpec {
                path: self.plots,
                layer: self.plots_layer,
                x_field: self.x_field,
                y_field: self.y_field,
                crs: self.plots_crs,
                // Set from the model table's key by `collect`.
                key_field: None,
                id_field: self.id_field,
                observed_field: self.observed_field,
                unit: self.observed_unit,
                unit_field: self.observed_unit_field,
                class_field: self.class_field,
                class: self.plot_class,
                class_map: self.class_map,
                site_field: self.site_field,
                zone_field: self.plot_zone_field,
                group_fields: self.group_by,
                filters: self.filters,
            },
            model,
            zones: self.zones.map(|path| crate::zones::ZoneSpec {
                path,
                fields: self.zone_fields,
                layer: self.zone_layer,
                band: 1,
            }),
            landcover: self.landcover.map(|path| ClassMap {
                path,
                band: self.landcover_band,
                legend: self.legend.unwrap_or_default(),
            }),
        })
    }
}

#[derive(Args)]
struct ValidateArgs {
    #[command(flatten)]
    sample: SampleArgs,
    /// What is compared, for titles (for example NPP or "daily GPP").
    #[arg(long, default_value = "model")]
    quantity: String,
    /// Output folder (samples and metrics tables, metrics JSON, scatter and residual PNGs).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct ValidateRhArgs {
    /// Plot records (CSV with coordinates), such as ForC's ForC_simplified.csv.
    #[arg(long)]
    plots: PathBuf,
    /// Column naming the variable of each record.
    #[arg(long, default_value = "variable.name")]
    variable_field: String,
    /// Variable of the records to compare.
    #[arg(long, default_value = "R_het_soil")]
    variable: String,
    /// Column holding the value.
    #[arg(long, default_value = "mean")]
    value_field: String,
    /// Unit of the values (an annual carbon flux density).
    #[arg(long)]
    value_unit: String,
    /// Column grouping the records in the table (a biome or ecozone).
    #[arg(long, default_value = "FAO.ecozone")]
    group_field: String,
    #[arg(long, default_value = "lon")]
    lon_field: String,
    #[arg(long, default_value = "lat")]
    lat_field: String,
    /// Columns of the plot's mean annual temperature (C) and precipitation (mm yr-1), used where the normals
    /// do not cover the plot.
    #[arg(long, default_value = "mat")]
    mat_field: String,
    #[arg(long, default_value = "map")]
    map_field: String,
    /// Monthly normal temperature raster (12 bands, C) ...
    #[arg(long)]
    temperature: Option<PathBuf>,
    /// ... and precipitation raster (12 bands, mm month-1).
    #[arg(long)]
    precipitation: Option<PathBuf>,
    /// Models to compare (built-in names or .toml files, comma separated); default every built-in model.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Fit a scale factor per model (ratio of sums), cross-validated leaving one site out; writes
    /// rh_fitted_MODEL.toml for `npp --rh`.
    #[arg(long)]
    fit: bool,
    /// Column naming each record's site (the cross-validation groups of --fit).
    #[arg(long, default_value = "sites.sitename")]
    site_field: String,
    /// Also compare NEP = NPP - Rh with the NEP (and -NEE) records of plots that have an NPP record
    /// (nep_validation.csv).
    #[arg(long)]
    nep: bool,
    /// Column naming each record's plot within its site (--nep pairs records of one plot).
    #[arg(long, default_value = "plot.name")]
    plot_field: String,
    /// Variable of the NPP records --nep uses.
    #[arg(long, default_value = "NPP_1")]
    npp_variable: String,
    /// Output folder (rh_validation.csv, rh_plots.csv).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct CalibrateArgs {
    #[command(flatten)]
    sample: SampleArgs,
    /// What the factors multiply: epsilon_max (light-use efficiency; GPP and CASA NPP scale with it) or npp.
    #[arg(long, value_parser = crate::correction::Target::parse)]
    applies_to: crate::correction::Target,
    /// Folds of the grouped cross-validation (0 = none).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed of the fold assignment.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder (correction table, calibration.json, calibration_cv.csv).
    #[arg(long, short)]
    out: PathBuf,
    /// Where to write the correction table (default OUT/corrections.csv).
    #[arg(long)]
    table: Option<PathBuf>,
}

#[derive(Args)]
struct RegridArgs {
    /// The raster (or vector grid) to regrid, with its unit declared.
    #[command(flatten)]
    input: LatticeArgs,
    /// A raster whose grid (CRS, extent, resolution) is the target.
    #[arg(long)]
    to: PathBuf,
    /// Unit of the output, for example "t CO2 ha-1 yr-1" or "Tg C cell-1 yr-1".
    #[arg(long)]
    unit: String,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Output raster.
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct SiteArgs {
    /// Drivers file with a daily station table including an fpar column (TOML; see the README).
    #[arg(long)]
    drivers: PathBuf,
    /// Productivity model: mod17 (GPP, maintenance respiration, NPP) or pmodel (GPP with SPLASH soil water).
    #[arg(long, default_value = "mod17", value_parser = ["mod17", "pmodel"])]
    model: String,
    /// MOD17 plant functional type (MCD12Q1 LC_Type2 code, 1-10 or 12); required with --model mod17.
    #[arg(long)]
    pft: Option<u8>,
    /// P-model parameter set: built-in name or .toml file (such as the pmodel_fitted.toml of --fit).
    #[arg(long, default_value = crate::npp::pmodel::DEFAULT_PMODEL)]
    params: String,
    /// P-model photosynthetic pathway.
    #[arg(long, default_value = "c3", value_parser = ["c3", "c4"])]
    pathway: String,
    /// Soil water-holding capacity (SPLASH bucket), mm; default: the parameter set's fitted bucket, else 150.
    #[arg(long)]
    whc: Option<f64>,
    /// Soil-water limitation of GPP (Stocker stress from the SPLASH bucket): default on for pmodel, off for
    /// mod17 (so MOD17 stays the reference algorithm).
    #[arg(long, value_parser = ["on", "off"])]
    soil_water: Option<String>,
    /// Fit the P-model's kphio, soil-moisture stress curve and bucket to --observed, with leave-one-year-out
    /// cross-validation (writes pmodel_fitted.toml and site_cross_validation.csv).
    #[arg(long)]
    fit: bool,
    /// Correction table (`npp --corrections` format) applied to this site: epsilon_max scales GPP (the
    /// P-model's kphio), npp scales MOD17's annual NPP.
    #[arg(long)]
    corrections: Option<String>,
    /// The site's zone in the correction table.
    #[arg(long)]
    zone: Option<String>,
    /// The site's vegetation type in the correction table (default: MOD17's type for --pft).
    #[arg(long)]
    vegetation_type: Option<String>,
    /// Years FIRST-LAST.
    #[arg(long)]
    years: String,
    /// MOD17 BPLUT: built-in name or .toml file.
    #[arg(long, default_value = crate::npp::mod17::DEFAULT_BPLUT)]
    bplut: String,
    /// Observed daily GPP: CSV with a `date` column.
    #[arg(long)]
    observed: Option<PathBuf>,
    /// Column of --observed holding GPP.
    #[arg(long, default_value = "gpp")]
    observed_column: String,
    /// Unit of the observed GPP: g C m-2 d-1 or kg C m-2 d-1 or umol m-2 s-1.
    #[arg(long)]
    observed_unit: Option<String>,
    /// Output folder (daily series CSV, annual CSV, comparison JSON).
    #[arg(long, short)]
    out: PathBuf,
}

/// How progress and logs reach stderr.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// indicatif bars (text on a terminal).
    Bars,
    /// Plain lines (text when stderr is not a terminal).
    Lines,
    /// One JSON object per line.
    Json,
    /// Warnings and failures only.
    Quiet,
}

/// Progress on stderr: indicatif bars with ETA on a terminal, plain lines otherwise, JSON lines for
/// schedulers; warnings always.
struct CliProgress {
    mode: Mode,
    /// With JSON: warnings, failures and errors only.
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
    /// The run stage in progress (prefix of bars and lines).
    stage: Mutex<String>,
    /// Lines and JSON: the current step's label, total, done and the last reported tenth.
    step: Mutex<(String, u64, u64, u64)>,
}

fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

impl CliProgress {
    fn new(quiet: bool, format: LogFormat) -> CliProgress {
        use std::io::IsTerminal;
        let mode = match (quiet, format) {
            (_, LogFormat::Json) => Mode::Json,
            (true, _) => Mode::Quiet,
            (false, LogFormat::Text) if std::io::stderr().is_terminal() => Mode::Bars,
            (false, LogFormat::Text) => Mode::Lines,
        };
        CliProgress {
            mode,
            quiet,
            bar: Mutex::new(None),
            stage: Mutex::new(String::new()),
            step: Mutex::new((String::new(), 0, 0, 0)),
        }
    }

    fn json(&self, fields: serde_json::Value) {
        let mut v = serde_json::json!({ "time": unix_time() });
        if let (Some(o), serde_json::Value::Object(f)) = (v.as_object_mut(), fields) {
            o.extend(f);
        }
        eprintln!("{v}");
    }

    fn prefixed(&self, label: &str) -> String {
        let stage = self.stage.lock().unwrap();
        if stage.is_empty() {
            label.to_string()
        } else {
            format!("[{stage}] {label}")
        }
    }
}

impl Progress for CliProgress {
    fn start(&self, label: &str, total: u64) {
        match self.mode {
            Mode::Bars => {
                let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} ({eta})")
                        .unwrap()
                        .progress_chars("=> "),
                );
                pb.set_prefix(self.prefixed(label));
                *self.bar.lock().unwrap() = Some(pb);
            }
            Mode::Lines | Mode::Json if !self.quiet => {
                *self.step.lock().unwrap() = (label.to_string(), total, 0, 0)
            }
            _ => {}
        }
    }
    fn advance(&self, n: u64) {
        match self.mode {
            Mode::Bars => {
                if let Some(pb) = self.bar.lock().unwrap().as_ref() {
                    pb.inc(n);
                }
            }
            Mode::Lines | Mode::Json if !self.quiet => {
                let mut st = self.step.lock().unwrap();
                st.2 += n;
                // One line per tenth of the step.
                let tenth = (st.2 * 10).checked_div(st.1).unwrap_or(10).min(10);
                if tenth > st.3 {
                    st.3 = tenth;
                    let (label, total, done) = (st.0.clone(), st.1, st.2);
                    drop(st);
                    if self.mode == Mode::Json {
                        let stage = self.stage.lock().unwrap().clone();
                        self.json(serde_json::json!({"event": "progress", "stage": stage, "step": label, "done": done, "total": total}));
                    } else {
                        eprintln!(
                            "{}: {}% ({done}/{total})",
                            self.prefixed(&label),
                            tenth * 10
                        );
                    }
                }
            }
            _ => {}
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.lock().unwrap().take() {
            pb.finish_and_clear();
        }
    }
    fn warn(&self, message: &str) {
        match (self.mode, self.bar.lock().unwrap().as_ref()) {
            (Mode::Json, _) => {
                let stage = self.stage.lock().unwrap().clone();
                self.json(
                    serde_json::json!({"event": "warning", "stage": stage, "message": message}),
                );
            }
            (_, Some(pb)) => pb.println(format!("warning: {message}")),
            _ => eprintln!("warning: {message}"),
        }
    }
    fn stage(&self, name: &str, state: StageState, seconds: Option<f64>, detail: &str) {
        *self.stage.lock().unwrap() = if state == StageState::Started {
            name.to_string()
        } else {
            String::new()
        };
        let quiet_ok = matches!(state, StageState::Failed | StageState::Blocked);
        match self.mode {
            Mode::Json if self.quiet && !quiet_ok => {}
            Mode::Json => self.json(serde_json::json!({"event": "stage", "stage": name, "state": state.name(), "seconds": seconds, "detail": detail})),
            Mode::Quiet if !quiet_ok => {}
            _ => {
                let secs = seconds.map(|s| format!(" in {s:.1} s")).unwrap_or_default();
                let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
                eprintln!("[{name}] {}{secs}{detail}", state.name());
            }
        }
    }
}

/// The arguments that name outputs: (command, argument id, whether it is a folder). Every other path-valued
/// argument, and every text argument naming an existing file (a legend or parameter .toml), is an input.
const OUTPUTS: [(&str, &str, bool); 17] = [
    ("validate-rh", "out", true),
    ("indices", "out", true),
    ("npp", "out", true),
    ("scenario", "out", true),
    ("site", "out", true),
    ("balance", "out", true),
    ("validate", "out", true),
    ("calibrate", "out", true),
    ("calibrate", "table", false),
    ("regrid", "out", false),
    ("landcover check", "out", false),
    ("landcover train", "out", true),
    ("landcover train", "model", false),
    ("landcover predict", "out", true),
    ("stack", "out", false),
    ("samples", "out", true),
    ("bench-stack", "out", true),
];

/// The outputs (path, is a folder) and input files of a command line, read from clap's matches.
fn io_plan(argv: &[String]) -> (Vec<(PathBuf, bool)>, Vec<PathBuf>) {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let Ok(matches) = cmd.try_get_matches_from_mut(argv) else {
        return (Vec::new(), Vec::new());
    };
    let (mut words, mut m, mut c) = (Vec::new(), &matches, &cmd);
    while let Some((name, sub)) = m.subcommand() {
        words.push(name.to_string());
        m = sub;
        c = c.find_subcommand(name).expect("parsed subcommand");
    }
    let joined = words.join(" ");
    let (mut outputs, mut inputs) = (Vec::new(), Vec::new());
    for arg in c.get_arguments() {
        let id = arg.get_id().as_str();
        let paths: Vec<PathBuf> = match m.try_get_many::<PathBuf>(id) {
            Ok(Some(v)) => v.cloned().collect(),
            _ => match m.try_get_many::<String>(id) {
                Ok(Some(v)) => v.map(PathBuf::from).filter(|p| p.is_file()).collect(),
                _ => Vec::new(),
            },
        };
        match OUTPUTS.iter().find(|(w, a, _)| *w == joined && *a == id) {
            Some((_, _, folder)) => outputs.extend(paths.into_iter().map(|p| (p, *folder))),
            None => inputs.extend(paths),
        }
    }
    let inputs = crate::io::input_closure(&inputs, false).unwrap_or(inputs);
    (outputs, inputs)
}

/// Run one command line as one commit: its outputs are checked against its inputs and against files
/// carbonmap did not write before anything is computed, then written, verified and committed together.
fn execute_argv(
    argv: &[String],
    command: Command,
    progress: &dyn Progress,
    quiet: bool,
) -> Result<()> {
    let (outputs, inputs) = io_plan(argv);
    let problems = crate::commit::check_outputs(&outputs, &inputs);
    if !problems.is_empty() {
        return Err(Error::Invalid(
            problems
                .into_iter()
                .flat_map(Error::into_problems)
                .collect(),
        ));
    }
    crate::commit::run(&inputs, || {
        execute(command, progress, quiet)?;
        if crate::engine::maps::enabled() {
            crate::engine::maps::draw_staged()?;
        }
        Ok(())
    })
}

/// The commands of this command line, as stages of `carbonmap run`.
struct StageCommands;

impl StageCommands {
    fn parse_argv(argv: &[String]) -> Result<Cli> {
        Cli::try_parse_from(std::iter::once("carbonmap".to_string()).chain(argv.iter().cloned()))
            .map_err(|e| Error::Usage(e.to_string().trim_end().to_string()))
    }
}

impl season::Commands for StageCommands {
    fn options(&self, command: &[String]) -> Option<Vec<season::OptionSpec>> {
        use clap::CommandFactory;
        let mut c = Cli::command();
        for w in command {
            c = c.find_subcommand(w)?.clone();
        }
        Some(
            c.get_arguments()
                .filter(|a| !a.is_hide_set())
                .map(|a| season::OptionSpec {
                    long: a
                        .get_long()
                        .map_or_else(|| a.get_id().to_string(), str::to_string),
                    positional: a.is_positional(),
                    path: a.get_value_parser().type_id() == std::any::TypeId::of::<PathBuf>(),
                    switch: !a.get_action().takes_values(),
                    delimiter: a.get_value_delimiter(),
                })
                .collect(),
        )
    }
    fn parse(&self, argv: &[String]) -> Result<()> {
        Self::parse_argv(argv).map(|_| ())
    }
    fn grid(&self, argv: &[String]) -> Result<Option<crate::io::Grid>> {
        // A placeholder --out: only the stack and the grid options are read.
        let with_out: Vec<String> = argv
            .iter()
            .cloned()
            .chain(["--out".into(), ".".into()])
            .collect();
        let (stack, grid) = match Self::parse_argv(&with_out)?.command {
            Command::Indices(a) => (a.stack, a.grid),
            Command::Landcover(LandcoverCmd::Predict(a)) => (a.stack, a.grid),
            _ => return Ok(None),
        };
        let stack = crate::scene::Stack::open(&stack)?;
        grid.choice()?.resolve(&stack).map(Some)
    }
    fn execute(&self, argv: &[String], progress: &dyn Progress) -> Result<()> {
        let full: Vec<String> = std::iter::once("carbonmap".to_string())
            .chain(argv.iter().cloned())
            .collect();
        execute_argv(&full, Self::parse_argv(argv)?.command, progress, true)
    }
}

/// What `carbonmap plan` decided, and the commands a scheduler runs next.
fn print_shards(main: &season::Plan, sp: &season::ShardPlan) {
    let n = sp.shards.len();
    let shape = match &sp.tiles {
        Some(t) => format!("cut at the tiles of {t}"),
        None => format!("of at most {0} x {0} px", sp.tile_size),
    };
    println!(
        "{n} shard(s) {shape} over {} x {} px; {}",
        sp.grid.width,
        sp.grid.height,
        main.out.join(season::PLAN_FILE).display()
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("  before (done): {}", list(&sp.before));
    println!("  per shard:     {}", list(&sp.tiled));
    println!("  after merge:   {}", list(&sp.after));
    println!("next: carbonmap run {} --shard I   (I = 0..{}; or --shard env under Slurm, Kubernetes, AWS Batch)", main.config.display(), n - 1);
    println!("then: carbonmap merge {}", main.config.display());
}

/// Print the outcome of `carbonmap run` (one line per stage) unless quiet.
fn print_run(summary: &season::RunSummary, quiet: bool) {
    if quiet {
        return;
    }
    for (name, st) in &summary.statuses {
        let s = match st {
            season::StageStatus::Done => "done".to_string(),
            season::StageStatus::UpToDate => "up to date".to_string(),
            season::StageStatus::Failed(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
            season::StageStatus::Blocked(w) => format!("not run: {w}"),
        };
        println!("{name:<20} {s}");
    }
    println!(
        "manifest {}; report {}",
        summary.manifest.display(),
        summary.report.display()
    );
}

fn run(cli: Cli, argv: &[String]) -> Result<()> {
    // Before any other thread exists (glibc fixes its arena limit when a second arena is first made).
    let workers = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    crate::engine::memory::limit_arenas(workers);
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| Error::Usage(format!("--threads {n}: {e}")))?;
    }
    if let Some(c) = cli.compress {
        crate::engine::codec::set(c);
    }
    crate::engine::maps::set(cli.maps);
    let progress = CliProgress::new(cli.quiet, cli.log_format);
    match cli.command {
        Command::Run {
            config,
            season: sa,
            shard,
        } => {
            let opts = sa.options();
            let summary = match shard {
                Some(i) => {
                    let i = season::shard_index(Some(&i))?;
                    season::run_shard(&config, &opts, i, &StageCommands, &progress)?
                }
                None => season::run(&config, &opts, &StageCommands, &progress)?,
            };
            print_run(&summary, cli.quiet);
            summary.outcome()
        }
        Command::Plan {
            config,
            tile_size,
            tiles,
            tile_field,
            season: sa,
        } => {
            let tiling = match tiles {
                Some(p) => season::Tiling::Layer(p, tile_field),
                None => season::Tiling::Size(tile_size),
            };
            let (main, sp) =
                season::plan_shards(&config, &sa.options(), &tiling, &StageCommands, &progress)?;
            if !cli.quiet {
                print_shards(&main, &sp);
            }
            Ok(())
        }
        Command::Merge {
            config,
            cog,
            season: sa,
        } => {
            let summary = season::merge(&config, &sa.options(), cog, &StageCommands, &progress)?;
            print_run(&summary, cli.quiet);
            summary.outcome()
        }
        Command::Check {
            config,
            season: s,
            out,
            vars,
        } => {
            let plan = season::check(&config, s.as_deref(), out.as_deref(), &vars, &StageCommands)?;
            if !cli.quiet {
                for st in &plan.stages {
                    let deps = if st.deps.is_empty() {
                        String::new()
                    } else {
                        format!(" after {}", st.deps.join(", "))
                    };
                    println!(
                        "{:<20} carbonmap {}{deps} ({} input path(s))",
                        st.name,
                        st.command.join(" "),
                        st.inputs.len()
                    );
                }
                println!(
                    "{}: season {} ({} to {}), {} stage(s) into {}: no problems found",
                    config.display(),
                    plan.season.label,
                    plan.season.start,
                    plan.season.end,
                    plan.stages.len(),
                    plan.out.display()
                );
            }
            Ok(())
        }
        command => execute_argv(argv, command, &progress, cli.quiet),
    }
}

/// `carbonmap indices`: every value problem at once, then the job.
fn indices_cmd(a: IndicesArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    // Every problem with the values at once (the stack's own problems come from run_indices).
    let mut problems = Problems::new();
    let grid = problems.take(a.grid.choice());
    let period = problems.take(PeriodSpec::parse(&a.period));
    let stats = problems.take(Stat::parse_list(&a.stats));
    if !problems.is_empty() {
        let table = match &a.index_table {
            Some(p) => IndexTable::from_file(p),
            None => IndexTable::builtin(),
        };
        problems.take(table.and_then(|t| t.select(&a.index)));
    }
    problems.finish()?;
    let (Some(grid), Some(period), Some(stats)) = (grid, period, stats) else {
        unreachable!("problems.finish() returned early");
    };
    let job = IndicesJob {
        stack: a.stack,
        out_dir: a.out,
        indices: a.index,
        period,
        stats,
        gap_fill: a.gap_fill,
        grid,
        constants: a.constants,
        index_table: a.index_table,
        write: WriteOptions { cog: a.cog },
        memory_mb: a.memory_mb,
    };
    let summary = pipeline::run_indices(&job, progress)?;
    if !quiet {
        println!(
            "wrote {} raster(s) on a {} x {} grid to {} (table: indices_summary.csv)",
            summary.outputs.len(),
            summary.grid.width,
            summary.grid.height,
            job.out_dir.display()
        );
    }
    Ok(())
}

/// `carbonmap site`.
fn site_cmd(a: SiteArgs, quiet: bool) -> Result<()> {
    let (y0, y1) = parse_range(&a.years, "--years")?;
    let job = crate::pipeline::site::SiteJob {
        drivers: a.drivers,
        model: if a.model == "pmodel" {
            crate::pipeline::site::SiteModel::PModel
        } else {
            crate::pipeline::site::SiteModel::Mod17
        },
        pft: a.pft,
        years: (y0 as i32, y1 as i32),
        bplut: a.bplut,
        params: a.params,
        pathway: if a.pathway == "c4" {
            crate::npp::pmodel::Pathway::C4
        } else {
            crate::npp::pmodel::Pathway::C3
        },
        whc_mm: a.whc,
        soil_water: a.soil_water.map(|s| s == "on"),
        fit: a.fit,
        corrections: a.corrections,
        zone: a.zone,
        vegetation_type: a.vegetation_type,
        observed: a.observed,
        observed_column: a.observed_column,
        observed_unit: a.observed_unit,
        out_dir: a.out,
    };
    let report = crate::pipeline::site::run_site(&job)?;
    if !quiet {
        print!("{report}");
    }
    Ok(())
}

/// `carbonmap validate-rh`.
fn validate_rh_cmd(a: ValidateRhArgs, quiet: bool) -> Result<()> {
    let job = crate::pipeline::rh_check::RhCheckJob {
        plots: a.plots,
        variable_field: a.variable_field,
        variable: a.variable,
        value_field: a.value_field,
        value_unit: a.value_unit,
        group_field: a.group_field,
        lon_field: a.lon_field,
        lat_field: a.lat_field,
        mat_field: a.mat_field,
        map_field: a.map_field,
        temperature: a.temperature,
        precipitation: a.precipitation,
        models: a.models,
        fit: a.fit,
        site_field: a.site_field,
        nep: a.nep,
        plot_field: a.plot_field,
        npp_variable: a.npp_variable,
        out_dir: a.out,
    };
    let report = crate::pipeline::rh_check::run_rh_check(&job)?;
    if !quiet {
        print!("{report}");
    }
    Ok(())
}

/// `carbonmap stack --stac-api`: a STAC API search saved as an ItemCollection.
/// `carbonmap stack --stac-api`'s query.
struct StacQuery {
    api: String,
    collection: Vec<String>,
    bbox: Option<String>,
    datetime: Option<String>,
    post: bool,
}

fn stac_search_cmd(q: StacQuery, out: Option<PathBuf>, quiet: bool) -> Result<()> {
    let StacQuery {
        api,
        collection,
        bbox,
        datetime,
        post,
    } = q;
    let out = out.ok_or_else(|| {
        Error::Usage("--stac-api writes an ItemCollection: give -o items.json".into())
    })?;
    let bbox = match bbox {
        None => None,
        Some(b) => {
            let v: Vec<f64> = b
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| {
                    Error::Usage(format!("--bbox {b}: four numbers WEST,SOUTH,EAST,NORTH"))
                })?;
            if v.len() != 4 {
                return Err(Error::Usage(format!(
                    "--bbox {b}: four numbers WEST,SOUTH,EAST,NORTH"
                )));
            }
            Some([v[0], v[1], v[2], v[3]])
        }
    };
    let found = crate::stac::search(&api, &collection, bbox, datetime.as_deref(), post)?;
    crate::io::write_atomic(
        &out,
        serde_json::to_string_pretty(&found)
            .expect("json")
            .as_bytes(),
    )?;
    if !quiet {
        println!(
            "wrote {} item(s) of {} to {}",
            found["features"].as_array().map_or(0, Vec::len),
            collection.join(", "),
            out.display()
        );
    }
    Ok(())
}
/// `carbonmap npp`: model and months checked together, then the job and its summary table.
fn npp_cmd(a: NppArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let mut problems = Problems::new();
    let model = match a.model.to_ascii_lowercase().as_str() {
        "casa" => Some(NppModel::Casa),
        "mod17" => Some(NppModel::Mod17),
        "pmodel" => Some(NppModel::PModel),
        other => {
            problems.push(Error::Usage(format!(
                "--model {other}: expected casa, mod17 or pmodel"
            )));
            None
        }
    };
    let months = problems.take(crate::pipeline::npp::period::parse_months(&a.months));
    problems.finish()?;
    let (Some(model), Some(months)) = (model, months) else {
        unreachable!("problems.finish() returned early");
    };
    let job = NppJob {
        model,
        input_is_fpar: a.fpar.is_some(),
        ndvi_index: if a.fpar.is_some() { "FPAR" } else { "NDVI" }.into(),
        ndvi_dir: a.ndvi.or(a.fpar).expect("clap requires one"),
        ndvi_label: None,
        landcover_label: None,
        ndvi_band: a.ndvi_band,
        ndvi_year: a.ndvi_year,
        landcover: a.landcover,
        landcover_band: a.landcover_band,
        legend: a.legend,
        drivers: a.drivers,
        year: a.year,
        months,
        casa_params: a.casa_params,
        bplut: a.bplut,
        pmodel_params: a.pmodel_params,
        rh_model: a.rh,
        out_dir: a.out,
        monthly: a.monthly,
        strict_months: a.strict_months,
        write: WriteOptions { cog: a.cog },
        memory_mb: a.memory_mb,
        corrections: a.corrections,
        zones: a.zones.map(|path| crate::zones::ZoneSpec {
            path,
            fields: a.zone_fields,
            layer: a.zone_layer,
            band: 1,
        }),
        draws: a
            .draws
            .spec()
            .map(|d| crate::pipeline::npp::draws::DrawSpec {
                confusion: a.confusion,
                ..d
            }),
    };
    let s = run_npp(&job, progress)?;
    if !quiet {
        print!("{}", s.table_text);
        println!(
            "wrote {} raster(s) and {} to {}",
            s.outputs.len(),
            s.table.file_name().unwrap().to_string_lossy(),
            job.out_dir.display()
        );
    }
    Ok(())
}

/// `carbonmap validate`: the job and its report.
fn validate_cmd(a: ValidateArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let job = crate::pipeline::validate::ValidateJob {
        inputs: a.sample.job()?,
        quantity: a.quantity,
        out_dir: a.out,
    };
    let report = crate::pipeline::validate::run_validate(&job, progress)?;
    if !quiet {
        print!("{report}");
    }
    Ok(())
}

/// `carbonmap calibrate`: the job and its report.
fn calibrate_cmd(a: CalibrateArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let job = crate::pipeline::calibrate::CalibrateJob {
        inputs: a.sample.job()?,
        target: a.applies_to,
        folds: a.folds,
        seed: a.seed,
        table: a.table.unwrap_or_else(|| a.out.join("corrections.csv")),
        out_dir: a.out,
    };
    let report = crate::pipeline::calibrate::run_calibrate(&job, progress)?;
    if !quiet {
        print!("{report}");
    }
    Ok(())
}

/// `carbonmap scenario`: the job, its zone table and its warnings.
fn scenario_cmd(a: ScenarioArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let job = crate::pipeline::scenario::ScenarioJob {
        file: a.file,
        out_dir: a.out,
        ndvi: a.ndvi,
        year: a.year,
        months: a.months,
        write: WriteOptions { cog: a.cog },
        memory_mb: a.memory_mb,
    };
    let s = crate::pipeline::scenario::run_scenario(&job, progress)?;
    for w in &s.warnings {
        progress.warn(w);
    }
    if !quiet {
        print!("{}", s.zone_table);
        println!(
            "scenario {}: {} pixel(s), {:.2} ha changed; wrote {} file(s) to {}",
            s.name,
            s.changed_pixels,
            s.changed_ha,
            s.outputs.len(),
            job.out_dir.display()
        );
    }
    Ok(())
}

/// `carbonmap balance`: the job and its totals.
fn balance_cmd(a: BalanceArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let job = crate::pipeline::balance::BalanceJob {
        sink: a.sink,
        sink_band: a.sink_band,
        sink_unit: a.sink_unit,
        lattice: a.lattice.spec(),
        proxy: a.proxy.spec()?,
        zones: a.zones.map(|path| crate::zones::ZoneSpec {
            path,
            fields: a.zone_fields,
            layer: a.zone_layer,
            band: 1,
        }),
        population: a
            .population
            .map(|path| crate::pipeline::balance::PopulationSpec {
                path,
                band: a.population_band,
                unit: a.population_unit,
            }),
        targets: a.targets,
        previous: a.previous,
        out_dir: a.out,
        write: crate::io::WriteOptions { cog: a.cog },
        emission_factors: Vec::new(),
        sink_label: None,
        draws: a.draws.spec(),
    };
    let s = crate::pipeline::balance::run_balance(&job, progress)?;
    if !quiet {
        println!(
                "over the sink raster: emissions {:.3} t CO2 yr-1, sequestration {:.3} t CO2 yr-1, net balance {:.3} t CO2 yr-1 (positive = net source)",
                s.emissions_t,
                s.sequestration_t,
                s.emissions_t - s.sequestration_t
            );
        for o in &s.outputs {
            println!("wrote {}", o.display());
        }
    }
    Ok(())
}

/// `carbonmap regrid`: the job and its totals.
fn regrid_cmd(a: RegridArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let job = crate::pipeline::balance::RegridJob {
        input: a.input.spec(),
        to: a.to,
        out_unit: a.unit,
        proxy: a.proxy.spec()?,
        output: a.out,
        write: crate::io::WriteOptions::default(),
    };
    let s = crate::pipeline::balance::run_regrid(&job, progress)?;
    if !quiet {
        println!(
            "regridded {} ({}) into {}",
            job.input.path.display(),
            s.direction,
            s.output.display()
        );
        for (k, (i, o)) in s.input_totals.iter().zip(&s.output_totals).enumerate() {
            println!(
                "band {}: total {i:.6e} t CO2 yr-1 in, {o:.6e} t CO2 yr-1 out ({})",
                k + 1,
                crate::pipeline::balance::percent_of(*o, *i)
            );
        }
    }
    Ok(())
}

/// `carbonmap landcover train`: labels, features and classifier from the arguments, then training.
fn train_cmd(a: Box<TrainArgs>, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let a = *a;
    let labels = if let Some(field) = a.label_field.clone() {
        let is_csv = a
            .labels
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv {
            LabelSource::Csv {
                path: a.labels.clone(),
                x_field: a.x_field.clone(),
                y_field: a.y_field.clone(),
                crs: a.labels_crs.clone(),
                field,
            }
        } else {
            LabelSource::Vector {
                path: a.labels.clone(),
                layer: a.labels_layer.clone(),
                field,
            }
        }
    } else if crate::io::is_raster(&a.labels) {
        LabelSource::Raster {
            path: a.labels.clone(),
            band: a.labels_band,
        }
    } else {
        return Err(Error::Usage(format!(
            "--labels {}: not a raster GDAL can open; for points or polygons give --label-field",
            a.labels.display()
        )));
    };
    let kind = match a.classifier.as_str() {
        "random-forest" => ClassifierKind::RandomForest,
        "decision-tree" => ClassifierKind::DecisionTree,
        other => {
            return Err(Error::Usage(format!(
                "--classifier {other}: expected random-forest or decision-tree"
            )))
        }
    };
    let params = match kind {
        ClassifierKind::RandomForest => ForestParams {
            trees: a.trees,
            bootstrap: true,
            max_features: MaxFeatures::parse(&a.max_features)?,
            max_depth: a.max_depth,
            min_samples_split: a.min_samples_split,
            min_samples_leaf: a.min_samples_leaf,
            seed: a.seed,
        },
        ClassifierKind::DecisionTree => {
            ForestParams::single_tree(a.max_depth, a.min_samples_split, a.min_samples_leaf, a.seed)
        }
    };
    let job = TrainJob {
        stack: a.stack,
        grid: a.grid.choice()?,
        features: a.features.spec()?,
        index_table: a.index_table,
        labels,
        legend: a.legend,
        ignore: a.ignore,
        kind,
        params,
        max_per_class: a.max_samples_per_class,
        block_size: a.block_size,
        folds: a.folds,
        model: a
            .model
            .unwrap_or_else(|| a.out.join("landcover.model.json")),
        out_dir: a.out,
        memory_mb: a.memory_mb,
    };
    let s = classify::train(&job, progress)?;
    if !quiet {
        print!("{}", s.assessment.table());
        println!(
            "held out: {} samples in fold 1 of {} ({} m blocks); trained on {}",
            s.sidecar.training.test_samples,
            job.folds,
            job.block_size,
            s.sidecar.training.train_samples
        );
        println!(
            "model {} (sidecar {}); report in {}",
            s.model.display(),
            s.sidecar_path.display(),
            job.out_dir.display()
        );
    }
    Ok(())
}

/// `carbonmap list`: the built-in indices, sensors or legends.
fn list_cmd(what: &str) -> Result<()> {
    match what {
        "indices" => {
            for d in IndexTable::builtin()?.defs {
                let consts = d
                    .constants
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:<6} {} = {}  [{}]{}\n       {}",
                    d.name,
                    d.long_name,
                    d.formula,
                    d.bands.join(","),
                    if consts.is_empty() {
                        String::new()
                    } else {
                        format!(" ({consts})")
                    },
                    d.citation
                );
            }
            Ok(())
        }
        "legends" => {
            for l in crate::landcover::Legend::builtin()? {
                println!("{:<24} {} ({} classes)", l.product, l.name, l.classes.len());
            }
            Ok(())
        }
        "sensors" => {
            for p in SensorProfile::builtin()? {
                println!("{:<22} {}", p.name, p.description);
            }
            Ok(())
        }
        other => Err(Error::Usage(format!(
            "list {other}: expected 'indices', 'sensors' or 'legends'"
        ))),
    }
}

/// `carbonmap landcover predict`: the job and its class areas.
fn predict_cmd(a: PredictArgs, progress: &dyn Progress, quiet: bool) -> Result<()> {
    let job = PredictJob {
        stack: a.stack,
        grid: a.grid.choice()?,
        model: a.model,
        index_table: a.index_table,
        out_dir: a.out,
        write: WriteOptions { cog: a.cog },
        memory_mb: a.memory_mb,
    };
    let s = classify::predict(&job, progress)?;
    if !quiet {
        print!("{}", crate::landcover::area_table_csv(&s.areas));
        println!(
            "wrote {} and {} ({} pixels without a clear observation left as 0 = no data)",
            s.class_raster.display(),
            s.confidence_raster.display(),
            s.unclassified_pixels
        );
    }
    Ok(())
}

/// Run one command (every command except run and check).
fn execute(command: Command, progress: &dyn Progress, quiet: bool) -> Result<()> {
    match command {
        Command::Indices(a) => indices_cmd(a, progress, quiet),
        Command::Npp(a) => npp_cmd(a, progress, quiet),
        Command::Scenario(a) => scenario_cmd(a, progress, quiet),
        Command::Site(a) => site_cmd(a, quiet),
        Command::Balance(a) => balance_cmd(a, progress, quiet),
        Command::Validate(a) => validate_cmd(a, progress, quiet),
        Command::ValidateRh(a) => validate_rh_cmd(a, quiet),
        Command::Calibrate(a) => calibrate_cmd(a, progress, quiet),
        Command::Regrid(a) => regrid_cmd(a, progress, quiet),
        Command::List { what } => list_cmd(&what),
        Command::Landcover(LandcoverCmd::Check {
            map,
            legend,
            band,
            out,
        }) => {
            let legend = crate::landcover::Legend::resolve(&legend)?;
            let rows = crate::landcover::check_map(&map, band, &legend)?;
            let csv = crate::landcover::area_table_csv(&rows);
            // The table is the command's result: printed unless it goes to a file under --quiet.
            match out {
                Some(out) => {
                    crate::io::write_atomic(&out, csv.as_bytes())?;
                    if !quiet {
                        print!("{csv}");
                    }
                }
                None => print!("{csv}"),
            }
            Ok(())
        }
        Command::Landcover(LandcoverCmd::Train(a)) => train_cmd(a, progress, quiet),
        Command::Landcover(LandcoverCmd::Predict(a)) => predict_cmd(a, progress, quiet),
        Command::Run { .. }
        | Command::Check { .. }
        | Command::Plan { .. }
        | Command::Merge { .. } => Err(Error::Usage(
            "run, check, plan and merge are not stages of a season config".into(),
        )),
        Command::Stack {
            dir,
            from,
            to,
            out,
            sensor,
            date_pattern,
            stac_api,
            stac_post,
            collection,
            bbox,
            datetime,
        } => {
            if let Some(api) = stac_api {
                let query = StacQuery {
                    api,
                    collection,
                    bbox,
                    datetime,
                    post: stac_post,
                };
                return stac_search_cmd(query, out, quiet);
            }
            let dates = match (from, to) {
                (None, None) => None,
                (a, b) => Some((
                    a.unwrap_or(chrono::NaiveDate::MIN),
                    b.unwrap_or(chrono::NaiveDate::MAX),
                )),
            };
            let dir = dir.expect("clap requires DIR without --stac-api");
            let manifest = match &sensor {
                Some(s) => crate::scene::Stack::recognise_dated(
                    &std::path::absolute(&dir).map_err(|e| Error::io(&dir, "cannot resolve", e))?,
                    s,
                    date_pattern.as_deref(),
                    dates,
                )?,
                None => crate::scene::Stack::recognise_dir(&dir, dates, out.is_some())?.1,
            };
            match out {
                Some(out) => crate::io::write_atomic(&out, manifest.as_bytes())?,
                None => print!("{manifest}"),
            }
            Ok(())
        }
        Command::Samples { out, size } => {
            let m = synth::generate_samples(&out, size)?;
            println!("wrote SYNTHETIC sample stack {}", m.display());
            Ok(())
        }
        Command::BenchStack { out, size, dates } => {
            let m = synth::generate_bench_stack(&out, size, dates)?;
            println!("{}", m.display());
            Ok(())
        }
    }
}

impl FeatureArgs {
    fn spec(self) -> Result<FeatureSpec> {
        let stats: Vec<String> = Stat::parse_list(&self.stats)?
            .into_iter()
            .map(|s| s.name().to_string())
            .collect();
        Ok(FeatureSpec {
            bands: self.bands,
            indices: self.indices,
            stats,
            gap_fill: self.gap_fill,
            constants: self.constants,
        })
    }
}

/// Parse `FIRST-LAST` (or a single number).
/// `--var NAME=VALUE`.
fn parse_var(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}': expected NAME=VALUE")),
    }
}

fn parse_range(s: &str, flag: &str) -> Result<(u32, u32)> {
    let bad = || Error::Usage(format!("{flag} {s}: expected FIRST-LAST, for example 1-12"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parse `xmin,ymin,xmax,ymax`.
fn parse_bounds(s: &str) -> Result<[f64; 4]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::Usage(format!(
                "--bounds {s}: expected four numbers xmin,ymin,xmax,ymax"
            ))
        })?;
    <[f64; 4]>::try_from(v).map_err(|_| {
        Error::Usage(format!(
            "--bounds {s}: expected four numbers xmin,ymin,xmax,ymax"
        ))
    })
}

/// Parse the command line, listing every problem clap finds at once: an unknown option or a bad value is
/// noted and dropped (with its value), and the rest parsed again, until clap finds no more (at most 20).
/// `--help` and `--version` print and exit as usual.
fn parse_all(argv: &[String]) -> Result<Cli> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut args = argv.to_vec();
    let mut problems: Vec<String> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for _ in 0..20 {
        let e = match Cli::try_parse_from(&args) {
            Ok(cli) if problems.is_empty() => return Ok(cli),
            Ok(_) => break,
            Err(e) => e,
        };
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
            || matches!(
                e.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) && problems.is_empty()
        {
            e.exit();
        }
        let line = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.split_whitespace().next().unwrap_or("").to_string(),
            _ => String::new(),
        };
        if e.kind() == ErrorKind::MissingRequiredArgument {
            // The missing arguments are on the following lines; those dropped above were reported already.
            let text = e.to_string();
            let missing: Vec<&str> = text
                .lines()
                .skip(1)
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .filter(|l| !dropped.iter().any(|d| l.starts_with(&format!("{d} "))))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "required arguments not given: {}",
                    missing.join(", ")
                ));
            }
            break;
        }
        problems.push(line);
        let at = args
            .iter()
            .skip(1)
            .position(|a| *a == arg || a.starts_with(&format!("{arg}=")));
        match (e.kind(), at) {
            (ErrorKind::UnknownArgument, Some(i)) => {
                args.remove(i + 1);
            }
            (ErrorKind::InvalidValue | ErrorKind::ValueValidation, Some(i))
                if arg.starts_with("--") =>
            {
                let with_value = !args[i + 1].contains('=') && i + 2 < args.len();
                args.remove(i + 1);
                if with_value {
                    args.remove(i + 1);
                }
                dropped.push(arg);
            }
            _ => break,
        }
    }
    Err(if problems.len() == 1 {
        Error::Usage(problems.remove(0))
    } else {
        Error::Invalid(problems)
    })
}

/// Parse the command line, run it, and map errors to exit codes (the error as a JSON line with
/// `--log-format json`).
pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = match parse_all(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let json = cli.log_format == LogFormat::Json;
    match run(cli, &argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            if json {
                let v = serde_json::json!({"time": unix_time(), "event": "error", "exit_code": code, "message": e.to_string()});
                eprintln!("{v}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(code as u8)
        }
    }
}
