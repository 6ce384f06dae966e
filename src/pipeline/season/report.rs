//! The run report: report.md (and the same as one self-contained report.html) in the output folder, with a quick-look PNG of every output raster (report/),
//! the maps and charts the stages drew, and their tables. It depends only on the outputs and on which stages
//! failed, never on timings, so a resumed run writes the same report as an uninterrupted one (timings are in
//! the manifest).

use std::fmt::Write as _;
use std::path::Path;

use super::run::{Manifest, StageStatus};
use super::Plan;
use crate::error::{Error, Result};
use crate::progress::Progress;

pub const REPORT: &str = "report.md";
/// Folder of the quick-look maps (a stage cannot be called this).
pub(super) const QUICKLOOKS: &str = "report";
/// Tables the report names without showing their rows (lists of samples, not results).
const SAMPLE_TABLES: [&str; 1] = ["training_samples.csv"];
/// Bands of a multi-band raster drawn in the report (12: a year of months).
const MAX_BANDS: usize = 12;
/// Rows of a table shown in the report (the file has them all).
const TABLE_ROWS: usize = 20;

fn is_ext(p: &str, ext: &str) -> bool {
    super::extension(Path::new(p)) == ext
}

/// A CSV file as a Markdown table (first rows; comment lines skipped).
pub(crate) fn markdown_table(path: &Path) -> Result<String> {
    Ok(markdown_rows(super::intervals::read_rows(path)?))
}

/// A table as Markdown: its header and first rows, and how many more the file has.
fn markdown_rows((header, rows): super::intervals::Rows) -> String {
    if header.is_empty() {
        return "(empty table)\n".into();
    }
    let cells = |r: &[String]| {
        r.iter()
            .map(|c| c.replace('|', "\\|"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut s = format!("| {} |\n|{}\n", cells(&header), "---|".repeat(header.len()));
    for r in rows.iter().take(TABLE_ROWS) {
        let _ = writeln!(s, "| {} |", cells(r));
    }
    if rows.len() > TABLE_ROWS {
        let _ = writeln!(s, "\n({} more rows in the file)", rows.len() - TABLE_ROWS);
    }
    s
}

/// A stage's result table, with the 90 % intervals of its Monte Carlo draws in its cells when the stage wrote
/// a draws table of the same totals.
fn result_table(out: &Path, rel: &str, outputs: &[&str]) -> Result<String> {
    let rows = super::intervals::read_rows(&out.join(rel))?;
    let Some(draws) = super::intervals::draws_table_of(rel, outputs) else {
        return Ok(markdown_rows(rows));
    };
    let d = super::intervals::read_rows(&out.join(draws))?;
    let (rows, n) = super::intervals::annotate(rows, &d);
    let mut s = markdown_rows(rows);
    if n > 0 {
        let _ = writeln!(
            s,
            "\nIn brackets: the 90 % interval (5th to 95th percentile) of the Monte Carlo draws of {n} totals ({draws})."
        );
    }
    Ok(s)
}

/// Write report.md and its quick-look maps (rendered into a hidden folder and swapped into place).
pub(super) fn write(
    plan: &Plan,
    manifest: &Manifest,
    statuses: &[(String, StageStatus)],
    progress: &dyn Progress,
) -> Result<()> {
    let partial = plan.out.join(format!(".{QUICKLOOKS}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let result = draw(plan, manifest, statuses, progress, &partial);
    if result.is_err() {
        // The previous report stays whole; nothing half-drawn is left.
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

/// Quick-looks of every band (months, sectors, the draws' mean, sd and percentiles) up to MAX_BANDS: band 1 as
/// NAME.png, band N as NAME.bN.png, each titled with its band's description. An output that cannot be
/// previewed is a warning; a quick-look that cannot be written (a full disk) fails the report, and the previous
/// report stays as it was.
fn raster_quicklooks(
    (path, rel, draws): (&Path, &str, Option<&str>),
    partial: &Path,
    max_side: usize,
    md: &mut String,
    progress: &dyn Progress,
) -> Result<()> {
    let bands = crate::io::RasterInfo::read(path).map_or_else(|_| Vec::new(), |i| i.bands);
    let nbands = bands.len().max(1);
    for band in 1..=nbands.min(MAX_BANDS) {
        let png = if band == 1 {
            Path::new(rel).with_extension("png")
        } else {
            Path::new(rel).with_extension(format!("b{band}.png"))
        };
        let target = partial.join(&png);
        let description = bands
            .get(band - 1)
            .map(|b| b.description.as_str())
            .filter(|d| !d.is_empty());
        let title = match (nbands, description) {
            (1, _) => rel.to_string(),
            (_, Some(d)) => format!("{rel}, band {band} of {nbands}: {d}"),
            (_, None) => format!("{rel}, band {band} of {nbands}"),
        };
        // The picture's own title leads with the band's description already: not twice.
        let png_title = match nbands {
            1 => rel.to_string(),
            _ => format!("{rel}, band {band} of {nbands}"),
        };
        match crate::io::read_preview(path, band, max_side) {
            Ok(b) => {
                crate::commit::run(&[], || {
                    crate::report::quicklook_png(&target, &b, &png_title)
                })?;
                match draws.filter(|_| band == 1) {
                    Some(d) => beside_its_spread(md, (&title, &png), (path, d)),
                    None => {
                        let _ = writeln!(md, "![{title}]({QUICKLOOKS}/{})\n", png.display());
                    }
                }
            }
            Err(e) => progress.warn(&format!("report: no quick-look of {rel}: {e}")),
        }
    }
    if nbands > MAX_BANDS {
        let _ = writeln!(md, "({} more bands in the file)\n", nbands - MAX_BANDS);
    }
    Ok(())
}

/// The map `png` (titled `title`) and, beside it, the spread of its Monte Carlo draws: band 2 (sd) of the draws
/// raster `draws` (relative path) beside `path`, whose quick-looks are drawn with it as NAME.b2.png.
fn beside_its_spread(md: &mut String, (title, png): (&str, &Path), (path, draws): (&Path, &str)) {
    let sd_png = Path::new(draws).with_extension("b2.png");
    let draws_path = path.with_file_name(Path::new(draws).file_name().unwrap_or_default());
    let sd_title = crate::io::RasterInfo::read(&draws_path)
        .ok()
        .and_then(|i| {
            i.bands
                .get(1)
                .map(|b| format!("{}, {}", b.description, b.unit))
        })
        .unwrap_or_else(|| format!("{draws}, band 2 (sd)"));
    let _ = writeln!(
        md,
        "| {title} | uncertainty: {sd_title} |\n|---|---|\n| ![{title}]({QUICKLOOKS}/{}) | ![{sd_title}]({QUICKLOOKS}/{}) |\n",
        png.display(),
        sd_png.display()
    );
}

/// The draws raster of output `rel` among a stage's outputs (NAME_draws.tif beside NAME.tif), if any.
fn draws_of<'a>(rel: &str, outputs: &'a [super::run::FileRecord]) -> Option<&'a str> {
    let stem = rel.strip_suffix(".tif")?;
    let want = format!("{stem}_draws.tif");
    outputs.iter().map(|o| o.path.as_str()).find(|p| *p == want)
}

fn draw(
    plan: &Plan,
    manifest: &Manifest,
    statuses: &[(String, StageStatus)],
    progress: &dyn Progress,
    partial: &Path,
) -> Result<()> {
    let out = &plan.out;
    let max_side = crate::report::quicklook_max_pixels()?;
    std::fs::create_dir_all(partial).map_err(|e| Error::io(partial, "cannot create", e))?;
    let mut md = String::new();
    let _ = writeln!(md, "# carbonmap run report: season {}\n", plan.season.label);
    let _ = writeln!(
        md,
        "Season {} to {}; config `{}` (SHA-256 {}); carbonmap {}. Every input, parameter file and output with \
         its hash, and the timings, are in [{}]({}).\n",
        plan.season.start,
        plan.season.end,
        plan.config.display(),
        &manifest.config.sha256[..12],
        manifest.carbonmap_version,
        super::run::MANIFEST,
        super::run::MANIFEST
    );
    let _ = writeln!(
        md,
        "| stage | command | status | outputs |\n|---|---|---|---|"
    );
    for (name, st) in statuses {
        let rec = manifest.stages.iter().find(|r| &r.name == name);
        let status = match st {
            StageStatus::Done | StageStatus::UpToDate => "ok".to_string(),
            StageStatus::Failed(e) => format!("**failed**: {}", e.lines().next().unwrap_or("")),
            StageStatus::Blocked(why) => format!("**not run**: {why}"),
        };
        let command = plan
            .stages
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.command.join(" "))
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {name} | `{command}` | {} | {} |",
            status.replace('|', "\\|"),
            rec.map_or(0, |r| r.outputs.len())
        );
    }
    for stage in &plan.stages {
        let Some(rec) = manifest.stages.iter().find(|r| r.name == stage.name) else {
            continue;
        };
        let _ = writeln!(
            md,
            "\n## {}\n\n`carbonmap {}`\n",
            stage.name,
            rec.recipe.join(" ")
        );
        if !rec.warnings.is_empty() {
            let _ = writeln!(md, "**Warnings** ({}):\n", rec.warnings.len());
            for w in &rec.warnings {
                let _ = writeln!(md, "- {}", w.replace('\n', " "));
            }
            md.push('\n');
        }
        for o in &rec.outputs {
            let path = out.join(&o.path);
            if is_ext(&o.path, "tif") {
                let draws = draws_of(&o.path, &rec.outputs);
                raster_quicklooks(
                    (&path, &o.path, draws),
                    partial,
                    max_side,
                    &mut md,
                    progress,
                )?;
            } else if is_ext(&o.path, "png") {
                let _ = writeln!(md, "![{0}]({0})\n", o.path);
            }
        }
        for o in rec.outputs.iter().filter(|o| is_ext(&o.path, "csv")) {
            let _ = writeln!(md, "**{}**\n", o.path);
            // Lists of samples are data, not results: named, not shown.
            if SAMPLE_TABLES.iter().any(|t| o.path.ends_with(t)) {
                let _ = writeln!(md, "(the samples themselves: see the file)\n");
                continue;
            }
            let names: Vec<&str> = rec.outputs.iter().map(|o| o.path.as_str()).collect();
            md.push_str(&result_table(out, &o.path, &names)?);
            md.push('\n');
        }
    }
    let _ = writeln!(
        md,
        "\n{}{}{}",
        HASH_NOTE.0,
        stages_hash(manifest),
        HASH_NOTE.1
    );
    super::run::swap(out, QUICKLOOKS)?;
    // The same report as one self-contained HTML file (pictures embedded), then report.md, whose hash note
    // marks the pair as current.
    let title = format!("carbonmap run report: season {}", plan.season.label);
    let page = super::html::render(&md, out, &title)?;
    crate::commit::run(&[], || {
        crate::io::write_atomic(&out.join(super::html::REPORT_HTML), page.as_bytes())
    })?;
    crate::commit::run(&[], || {
        crate::io::write_atomic(&out.join(REPORT), md.as_bytes())
    })
}

/// The comment at the end of report.md naming the stage records it was drawn from.
const HASH_NOTE: (&str, &str) = ("<!-- carbonmap report of stage records sha256:", " -->");

/// Hash of a manifest's stage records (what a report shows).
pub(super) fn stages_hash(manifest: &Manifest) -> String {
    // What a report shows (no timings or modification times, so a resumed run writes the same bytes).
    let shown: Vec<_> = manifest
        .stages
        .iter()
        .map(|r| {
            let outputs: Vec<(&str, &str)> = r
                .outputs
                .iter()
                .map(|o| (o.path.as_str(), o.sha256.as_str()))
                .collect();
            (
                &r.name,
                &r.recipe,
                &r.status,
                &r.error,
                outputs,
                &r.warnings,
            )
        })
        .collect();
    crate::io::sha256_hex(serde_json::to_string(&shown).unwrap_or_default().as_bytes())
}

/// Whether report.md exists, was drawn from these stage records, and every quick-look it shows is there (a
/// failed or killed report leaves the previous one, which the next run then replaces).
pub(super) fn is_current(out: &Path, hash: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(out.join(REPORT)) else {
        return false;
    };
    let note = format!("{}{hash}{}", HASH_NOTE.0, HASH_NOTE.1);
    let images_there = text
        .lines()
        .filter_map(|l| l.strip_prefix("![").and_then(|r| r.split_once("](")))
        .all(|(_, rest)| out.join(rest.trim_end_matches(')')).is_file());
    text.contains(&note) && images_there && out.join(super::html::REPORT_HTML).is_file()
}
