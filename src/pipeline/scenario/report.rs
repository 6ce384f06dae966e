//! scenario_report.html, one self-contained file: for each compared quantity the base, the scenario (one colour
//! scale for both) and the difference side by side, then the zone tables, the changes, the substitution's
//! donors and the warnings. The pictures are drawn in the scratch folder and embedded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io;

use super::compare::readable;
use super::Scenario;

/// One row of maps: the base's and the scenario's raster and their difference (output paths).
pub struct MapRow {
    pub title: String,
    pub base: PathBuf,
    pub scenario: PathBuf,
    pub difference: PathBuf,
}

pub const REPORT: &str = "scenario_report.html";

pub fn write(
    s: &Scenario,
    out_dir: &Path,
    scratch: &Path,
    rows: &[MapRow],
    tables: &[PathBuf],
    warnings: &[String],
) -> Result<PathBuf> {
    let max_side = crate::report::quicklook_max_pixels()?;
    let mut md = format!("# Scenario {}\n\n{}\n\n", s.name, s.description);
    let _ = writeln!(
        md,
        "Base: NPP model {}, land cover {}, NDVI {}, drivers {}, {}. Differences are the scenario minus the base.\n",
        s.base.model.name(),
        s.base.landcover.display(),
        s.base.ndvi_dir.display(),
        s.base.drivers.display(),
        s.base.year
    );
    if !warnings.is_empty() {
        let _ = writeln!(md, "**Warnings** ({}):\n", warnings.len());
        for w in warnings {
            let _ = writeln!(md, "- {}", w.replace('\n', " "));
        }
        md.push('\n');
    }
    for (k, r) in rows.iter().enumerate() {
        let names = [
            format!("{k}-base.png"),
            format!("{k}-scenario.png"),
            format!("{k}-difference.png"),
        ];
        let b = io::read_preview(&readable(&r.base), 1, max_side)?;
        let c = io::read_preview(&readable(&r.scenario), 1, max_side)?;
        let d = io::read_preview(&readable(&r.difference), 1, max_side)?;
        let (tb, tc, td) = (
            format!("base: {}", r.title),
            format!("scenario: {}", r.title),
            format!("scenario minus base: {}", r.title),
        );
        crate::commit::run(&[], || {
            crate::report::quicklook_pngs(&[
                (&scratch.join(&names[0]), &b, &tb),
                (&scratch.join(&names[1]), &c, &tc),
            ])?;
            crate::report::quicklook_png(&scratch.join(&names[2]), &d, &td)
        })?;
        let _ = writeln!(
            md,
            "## {}\n\n![{tb}]({}) ![{tc}]({}) ![{td}]({})\n",
            r.title, names[0], names[1], names[2]
        );
    }
    for t in tables {
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(md, "## {name}\n");
        md.push_str(&crate::pipeline::season::markdown_table(&readable(t))?);
        md.push('\n');
    }
    let html = crate::pipeline::season::render_html(&md, scratch, &format!("Scenario {}", s.name))?;
    let target = out_dir.join(REPORT);
    io::write_atomic(&target, html.as_bytes())?;
    Ok(target)
}
