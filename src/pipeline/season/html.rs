//! report.html: the run report as one self-contained HTML file (opened offline, sent by mail): the Markdown
//! report rendered with its tables, every picture embedded as a data URI, and a style sheet inside the file.
//! Links to the output files (tables, manifest) stay relative, so they work beside the outputs.

use std::path::Path;

use base64::Engine as _;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

use crate::error::{Error, Result};

pub const REPORT_HTML: &str = "report.html";

/// Style of the report: readable widths, tables with lines, warnings set apart.
const CSS: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b;line-height:1.45}h1{border-bottom:2px solid #2c7fb8;padding-bottom:.3rem}\
h2{margin-top:2.5rem;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:1rem 0;font-size:.85rem;\
display:block;overflow-x:auto}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left}th{background:#eef3f8}\
img{max-width:100%;height:auto;border:1px solid #ddd;margin:.5rem 0}code{background:#f4f4f4;padding:0 .2rem;\
word-break:break-all}p img:not(:only-child){max-width:32.5%}ul.warnings{background:#fff7e0;border-left:4px solid #e6a700;padding:.5rem 1rem .5rem 2rem}";

/// `md` (whose image paths are relative to `out`) as a complete HTML document with the images embedded.
pub fn render(md: &str, out: &Path, title: &str) -> Result<String> {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    let mut events = Vec::new();
    let mut after_warnings = false;
    for ev in Parser::new_ext(md, opts) {
        let ev = match ev {
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Image {
                link_type,
                dest_url: CowStr::from(embed(&out.join(dest_url.as_ref()))?),
                title,
                id,
            }),
            // The list after a "**Warnings** (n):" paragraph is drawn as a warning box.
            Event::Text(ref t) if t.starts_with("Warnings") => {
                after_warnings = true;
                ev
            }
            Event::Start(Tag::List(None)) if after_warnings => {
                after_warnings = false;
                events.push(Event::Html(CowStr::from("<ul class=\"warnings\">\n")));
                continue;
            }
            other => other,
        };
        events.push(ev);
    }
    // The list end tags stay `</ul>`, matching the replaced start.
    let mut body = String::new();
    html::push_html(&mut body, events.into_iter());
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n\
         <body>\n{body}</body>\n</html>\n",
        escape(title)
    ))
}

/// A PNG as a data URI.
fn embed(png: &Path) -> Result<String> {
    let bytes = std::fs::read(png).map_err(|e| Error::io(png, "cannot read the picture", e))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_warnings_and_embedded_pictures() {
        let dir = tempfile::tempdir().unwrap();
        // The smallest valid PNG is not needed: any bytes are embedded as they are.
        std::fs::create_dir_all(dir.path().join("report")).unwrap();
        std::fs::write(dir.path().join("report/a.png"), b"PNGDATA").unwrap();
        let md = "# Run <1>\n\n**Warnings** (1):\n\n- a & b\n\n![a](report/a.png)\n\n| x | y |\n|---|---|\n| 1 | 2 |\n";
        let h = render(md, dir.path(), "Run <1>").unwrap();
        assert!(h.contains("<title>Run &lt;1&gt;</title>"));
        assert!(h.contains("<ul class=\"warnings\">"));
        assert!(h.contains("<li>a &amp; b</li>"));
        assert!(h.contains("src=\"data:image/png;base64,UE5HREFUQQ==\""));
        assert!(h.contains("<table>") && h.contains("<td>2</td>"));
        assert!(!h.contains("src=\"report/"));
        assert!(render("![b](report/missing.png)", dir.path(), "t").is_err());
    }
}
