//! The carbonmap command line: parse, call the library, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use carbonmap::composite::{PeriodSpec, Stat};
use carbonmap::indices::IndexTable;
use carbonmap::io::WriteOptions;
use carbonmap::pipeline::{self, GridChoice, IndicesJob};
use carbonmap::progress::Progress;
use carbonmap::scene::SensorProfile;
use carbonmap::{synth, Error, Result};

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
    /// No progress bars; warnings and errors only.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Vegetation indices per date or composited per period (median, mean, max, min and a clear-observation count).
    Indices(IndicesArgs),
    /// Land cover: check a map against its legend and tabulate class areas.
    #[command(subcommand)]
    Landcover(LandcoverCmd),
    /// Recognise a stack from a folder of files named by a sensor's convention and print its manifest.
    Stack {
        /// Folder to search (recursively).
        dir: PathBuf,
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
    /// Composite statistics, comma-separated: median, mean, max, min.
    #[arg(long, default_value = "median,mean,max")]
    stats: String,
    /// Fill cloudy observations by linear interpolation in time before compositing.
    #[arg(long)]
    gap_fill: bool,
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
    #[arg(long, default_value_t = 192)]
    memory_mb: usize,
}

/// Progress on stderr with indicatif (hidden when stderr is not a terminal or with --quiet).
struct CliProgress {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Progress for CliProgress {
    fn start(&self, stage: &str, total: u64) {
        let target = if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let pb = ProgressBar::with_draw_target(Some(total), target);
        pb.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} rows ({eta})")
                .unwrap()
                .progress_chars("=> "),
        );
        pb.set_prefix(stage.to_string());
        *self.bar.lock().unwrap() = Some(pb);
    }
    fn advance(&self, n: u64) {
        if let Some(pb) = self.bar.lock().unwrap().as_ref() {
            pb.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.lock().unwrap().take() {
            pb.finish_and_clear();
        }
    }
    fn warn(&self, message: &str) {
        match self.bar.lock().unwrap().as_ref() {
            Some(pb) if !pb.is_hidden() => pb.println(format!("warning: {message}")),
            _ => eprintln!("warning: {message}"),
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| Error::Usage(format!("--threads {n}: {e}")))?;
    }
    let progress = CliProgress {
        bar: Mutex::new(None),
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Indices(a) => {
            let grid = match (a.grid_from, a.crs, a.res, a.bounds) {
                (Some(p), _, _, _) => GridChoice::Reference(p),
                (None, Some(crs), Some(res), Some(b)) => GridChoice::Spec {
                    crs,
                    res,
                    bounds: parse_bounds(&b)?,
                },
                _ => GridChoice::FirstScene,
            };
            let job = IndicesJob {
                stack: a.stack,
                out_dir: a.out,
                indices: a.index,
                period: PeriodSpec::parse(&a.period)?,
                stats: Stat::parse_list(&a.stats)?,
                gap_fill: a.gap_fill,
                grid,
                constants: a.constants,
                index_table: a.index_table,
                write: WriteOptions { cog: a.cog },
                memory_mb: a.memory_mb,
            };
            let summary = pipeline::run_indices(&job, &progress)?;
            if !cli.quiet {
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
        Command::List { what } => match what.as_str() {
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
                for l in carbonmap::landcover::Legend::builtin()? {
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
        },
        Command::Landcover(LandcoverCmd::Check {
            map,
            legend,
            band,
            out,
        }) => {
            let legend = carbonmap::landcover::Legend::resolve(&legend)?;
            let rows = carbonmap::landcover::check_map(&map, band, &legend)?;
            let csv = carbonmap::landcover::area_table_csv(&rows);
            // The table is the command's result: printed unless it goes to a file under --quiet.
            match out {
                Some(out) => {
                    carbonmap::io::write_atomic(&out, csv.as_bytes())?;
                    if !cli.quiet {
                        print!("{csv}");
                    }
                }
                None => print!("{csv}"),
            }
            Ok(())
        }
        Command::Stack { dir } => {
            let (_, manifest) = carbonmap::scene::Stack::recognise_dir(&dir)?;
            print!("{manifest}");
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
