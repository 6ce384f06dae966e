//! Maps for people: PNG renderings of result rasters with a legend (colour bar with units and sign
//! convention) and a scale bar. Colour ramps, limits and fonts are data (models/maps.toml).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models;

#[derive(Debug, Clone, Deserialize)]
pub struct DivergingStyle {
    pub ramp: Vec<String>,
    pub ramp_citation: String,
    pub nodata: String,
    pub limit_percentile: f64,
    pub max_pixels: usize,
    /// Zone outlines are drawn at the finest level whose zones average at least this many screen pixels across.
    pub zone_min_px: f64,
    /// Zone names' font size (pixels).
    pub label_font_px: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct Maps {
    net_balance: DivergingStyle,
    quicklook: QuicklookStyle,
    charts: ChartStyle,
    text: Typography,
    fonts: Vec<PathBuf>,
}

/// Type sizes and line spacing of maps and charts, in pixels (models/maps.toml `[text]`).
#[derive(Debug, Clone, Copy, Deserialize)]
struct Typography {
    title_px: f64,
    /// Spacing of a long title's lines.
    title_line_px: i32,
    heading_px: f64,
    label_px: f64,
    note_px: f64,
    heading_line_px: i32,
    note_line_px: i32,
    legend_row_px: i32,
    /// Characters a line of the colour bar's caption and sign note, and of a residual map's legend.
    caption_chars: usize,
    sign_chars: usize,
    residual_chars: usize,
}

/// `[text]` of the embedded models/maps.toml (read once).
fn typography() -> Typography {
    static T: OnceLock<Typography> = OnceLock::new();
    *T.get_or_init(|| {
        maps()
            .expect("models/maps.toml is valid (checked by the test suite)")
            .text
    })
}

/// The labels' font at `size` pixels, in black.
fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).color(&BLACK)
}

/// Quick-look maps of run reports (models/maps.toml `[quicklook]`).
#[derive(Debug, Clone, Deserialize)]
struct QuicklookStyle {
    ramp: Vec<String>,
    nodata: String,
    /// The sequential scale spans these two percentiles of the mapped values.
    percentiles: [f64; 2],
    max_pixels: usize,
    /// Bands whose description contains one of these (case-insensitive) are signed quantities: always on the
    /// diverging ramp centred on zero.
    signed: Vec<String>,
    /// Signed quantities whose positive values are uptake (a sink; the band description starts with one of
    /// these, so "net balance (emissions - sequestration)" is not one): drawn with the ramp reversed, so that
    /// sinks are blue and sources red on every map, as on the net balance map.
    uptake_positive: Vec<String>,
    /// Legend lines saying which colour is what: for uptake-positive quantities, and for the others.
    sign_uptake: String,
    sign_source: String,
    /// Quantities that span zero but carry no carbon sign (vegetation indices): their own diverging ramp, so
    /// red and blue keep meaning source and sink.
    unsigned_ramp: Vec<String>,
    sign_unsigned: String,
    /// Never-negative uptake (NPP, GPP) in blues and sources (Rh, emissions) in reds.
    uptake_quantities: Vec<String>,
    uptake_ramp: Vec<String>,
    source_quantities: Vec<String>,
    source_ramp: Vec<String>,
    /// The spread of Monte Carlo draws (description containing one of these): never negative, no carbon sign.
    spread: Vec<String>,
    spread_ramp: Vec<String>,
    sign_spread: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ChartStyle {
    classes: Vec<String>,
    width: u32,
    height: u32,
}

fn maps() -> Result<Maps> {
    models::parse_toml(
        models::embedded("maps.toml").expect("models/maps.toml is embedded"),
        &models::embedded_path("maps.toml"),
    )
}

/// The qualitative class colours of charts (models/maps.toml `[charts] classes`), as (r, g, b).
pub fn class_palette() -> Result<Vec<(u8, u8, u8)>> {
    maps()?
        .charts
        .classes
        .iter()
        .map(|c| parse_hex(c).map(|RGBColor(r, g, b)| (r, g, b)))
        .collect()
}

/// Longest side in pixels of the quick-look maps of run reports.
pub fn quicklook_max_pixels() -> Result<usize> {
    Ok(maps()?.quicklook.max_pixels)
}

/// The style of net-balance maps.
pub fn net_balance_style() -> Result<DivergingStyle> {
    Ok(maps()?.net_balance)
}

/// A raster reduced to at most `max_pixels` on its long side by averaging blocks of `k x k` pixels, filled
/// strip by strip (memory bounded by the preview size, not the raster's).
pub struct Preview {
    pub k: usize,
    pub width: usize,
    pub height: usize,
    sum: Vec<f64>,
    count: Vec<u32>,
}

impl Preview {
    pub fn new(width: usize, height: usize, max_pixels: usize) -> Preview {
        let k = width.max(height).div_ceil(max_pixels.max(1)).max(1);
        let (w, h) = (width.div_ceil(k), height.div_ceil(k));
        Preview {
            k,
            width: w,
            height: h,
            sum: vec![0.0; w * h],
            count: vec![0; w * h],
        }
    }

    /// Add rows `row0 ..` of the full raster (`values.len()` = full width x rows); NaN is skipped.
    pub fn add_rows(&mut self, row0: usize, full_width: usize, values: &[f32]) {
        for (i, v) in values.iter().enumerate() {
            if v.is_finite() {
                let (r, c) = (row0 + i / full_width, i % full_width);
                let j = (r / self.k) * self.width + c / self.k;
                self.sum[j] += *v as f64;
                self.count[j] += 1;
            }
        }
    }

    pub fn value(&self, j: usize) -> f64 {
        if self.count[j] == 0 {
            f64::NAN
        } else {
            self.sum[j] / self.count[j] as f64
        }
    }
}

fn parse_hex(s: &str) -> Result<RGBColor> {
    crate::landcover::hex_rgb(s)
        .map(|(r, g, b)| RGBColor(r, g, b))
        .ok_or_else(|| {
            Error::config(
                models::embedded_path("maps.toml"),
                format!("colour \"{s}\" is not #rrggbb"),
            )
        })
}

/// Colour of `t` in [0, 1] on a ramp, linearly interpolated between stops.
fn ramp_at(stops: &[RGBColor], t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (t.floor() as usize).min(stops.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (stops[i], stops[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn load_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let m = maps().map_err(|e| e.to_string())?;
        let mut tried = Vec::new();
        let env = std::env::var_os("CARBONMAP_FONT").map(PathBuf::from);
        for p in env.iter().chain(m.fonts.iter()) {
            tried.push(p.display().to_string());
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font found for map labels (tried {}); install one (Debian: apt-get install fonts-dejavu-core) or set CARBONMAP_FONT to a .ttf file",
            tried.join(", ")
        ))
    })
    .clone()
    .map_err(Error::Usage)
}

/// A "nice" length (1, 2 or 5 x 10^n) not longer than `max`.
fn nice_length(max: f64) -> f64 {
    let p = 10f64.powf(max.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * p)
        .find(|l| *l <= max)
        .unwrap_or(p)
}

/// What a diverging map shows.
pub struct MapText<'a> {
    pub title: &'a str,
    /// Legend caption with the unit, for example "net balance, t CO2 ha-1 yr-1".
    pub quantity: &'a str,
    /// Sign convention, for example "positive = net source (emissions exceed sequestration)".
    pub sign: &'a str,
    /// The map's CRS and bounds: a north arrow, the CRS and the corner coordinates (no scale bar on a
    /// geographic CRS).
    pub frame: Option<&'a crate::io::MapFrame>,
    /// Zone outlines drawn over the map, with their names.
    pub outlines: &'a [Outline],
}

/// A zone's outline in the raster's pixel coordinates (column, row; fractional), its name, and its level in
/// the zone hierarchy (0: the coarsest).
#[derive(Debug, Clone)]
pub struct Outline {
    pub name: String,
    pub rings: Vec<Vec<(f64, f64)>>,
    pub level: usize,
}

/// Zone outlines and names over a map drawn at `scale` screen pixels per preview pixel of `k` raster pixels.
fn draw_outlines<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    outlines: &[Outline],
    (k, scale): (usize, f64),
    (left, top): (i32, i32),
    target: &Path,
) -> Result<()> {
    let style = &maps()?.net_balance;
    let font = TextStyle::from(("sans-serif", style.label_font_px).into_font()).color(&BLACK);
    let at = |(c, r): (f64, f64)| {
        (
            left + (c / k as f64 * scale).round() as i32,
            top + (r / k as f64 * scale).round() as i32,
        )
    };
    let level = outline_level(outlines, &at, style.zone_min_px);
    let outlines: Vec<&Outline> = outlines.iter().filter(|o| o.level == level).collect();
    for o in &outlines {
        for ring in &o.rings {
            let pts: Vec<(i32, i32)> = ring.iter().map(|&p| at(p)).collect();
            root.draw(&PathElement::new(pts, BLACK.stroke_width(1)))
                .map_err(|e| draw_error(target, e))?;
        }
    }
    // Names over every outline, each at the middle of its largest ring's points.
    let mut labels = Vec::new();
    for o in outlines {
        let Some(ring) = o.rings.iter().max_by_key(|r| r.len()) else {
            continue;
        };
        let n = ring.len().max(1) as f64;
        let c = ring
            .iter()
            .fold((0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n));
        // The name's box as the font draws it (a name that cannot be measured is not drawn).
        let Ok((tw, th)) = root.estimate_text_size(&o.name, &font) else {
            continue;
        };
        labels.push(Label {
            name: o.name.as_str(),
            centre: at(c),
            zone: extent_of(ring.iter().map(|&p| at(p))),
            text: (tw as i32, th as i32),
        });
    }
    for (name, (x, y)) in place_labels(labels) {
        root.draw_text(name, &font, (x, y))
            .map_err(|e| draw_error(target, e))?;
    }
    Ok(())
}

/// A zone's name to draw: its point, its zone's box size and its text's box size (screen pixels).
struct Label<'a> {
    name: &'a str,
    centre: (i32, i32),
    zone: (i32, i32),
    text: (i32, i32),
}

/// Where names are drawn (their top-left corners): each centred on its point when its text fits inside its
/// zone's box (thousands of small zones get outlines only) and clear of the names already placed, the largest
/// zones' first (ties in order).
fn place_labels(labels: Vec<Label<'_>>) -> Vec<(&str, (i32, i32))> {
    let mut fitting: Vec<(i64, &str, [i32; 4])> = (labels.into_iter())
        .filter_map(|l| {
            let ((x, y), (w, h), (tw, th)) = (l.centre, l.zone, l.text);
            let area = -(w as i64 * h as i64);
            let b = [x - tw / 2, y - th / 2, x - tw / 2 + tw, y - th / 2 + th];
            (w >= tw && h >= th).then_some((area, l.name, b))
        })
        .collect();
    fitting.sort_by_key(|l| l.0);
    let mut placed: Vec<(&str, [i32; 4])> = Vec::new();
    for (_, name, b) in fitting {
        let clear =
            |(_, p): &(&str, [i32; 4])| b[2] < p[0] || p[2] < b[0] || b[3] < p[1] || p[3] < b[1];
        if placed.iter().all(clear) {
            placed.push((name, b));
        }
    }
    placed.into_iter().map(|(n, b)| (n, (b[0], b[1]))).collect()
}

/// The level whose outlines are drawn: the finest whose zones' boxes on the map (screen pixels, through `at`)
/// have a mean area of at least `min_px` squared, else the coarsest.
fn outline_level(
    outlines: &[Outline],
    at: &dyn Fn((f64, f64)) -> (i32, i32),
    min_px: f64,
) -> usize {
    let deepest = outlines.iter().map(|o| o.level).max().unwrap_or(0);
    let big_enough = |level: usize| {
        let areas: Vec<f64> = (outlines.iter().filter(|o| o.level == level))
            .map(|o| {
                let pts = o.rings.iter().flatten().map(|&p| at(p));
                let (w, h) = extent_of(pts);
                w as f64 * h as f64
            })
            .collect();
        !areas.is_empty() && areas.iter().sum::<f64>() / areas.len() as f64 >= min_px * min_px
    };
    (0..=deepest).rev().find(|&l| big_enough(l)).unwrap_or(0)
}

/// The width and height in screen pixels of the bounding box of `pts`.
fn extent_of(pts: impl Iterator<Item = (i32, i32)>) -> (i32, i32) {
    let (mut x0, mut y0, mut x1, mut y1) = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
    for (x, y) in pts {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    (x1.saturating_sub(x0), y1.saturating_sub(y0))
}

/// Draw `preview` with a diverging ramp centred on zero, a colour bar and a scale bar (`metres_per_pixel` of
/// the preview on the ground), and write it atomically as PNG. Returns the limit L of the -L .. +L scale.
pub fn diverging_png(
    target: &Path,
    preview: &Preview,
    metres_per_pixel: f64,
    text: &MapText,
    style: &DivergingStyle,
) -> Result<f64> {
    let mut abs: Vec<f64> = (0..preview.sum.len())
        .map(|j| preview.value(j).abs())
        .filter(|v| v.is_finite())
        .collect();
    let limit = match percentile(&mut abs, style.limit_percentile) {
        Some(l) if l > 0.0 => l,
        _ => 1.0,
    };
    ramp_png(
        target,
        preview,
        metres_per_pixel,
        text,
        &style.ramp,
        &style.nodata,
        (-limit, limit),
    )?;
    Ok(limit)
}

/// The `p`-th percentile (nearest rank) of `v` (reordered in place: the value of that rank is found without
/// sorting the rest); None when empty.
fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    let i = ((p / 100.0) * (v.len().checked_sub(1)? as f64)).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(i.min(v.len() - 1), |a, b| a.total_cmp(b));
    Some(*x)
}

/// A quick-look map of any raster band for run reports: values that span zero on the diverging ramp centred on
/// zero, others on the sequential ramp between two percentiles; categorical bands in their own colours.
pub fn quicklook_png(target: &Path, band: &crate::io::BandPreview, title: &str) -> Result<()> {
    quicklook_png_range(target, band, title, None)
}

/// Quick-looks of bands compared side by side (a base and a scenario): one scale for all, from the percentiles
/// of their values together.
pub fn quicklook_pngs(maps_: &[(&Path, &crate::io::BandPreview, &str)]) -> Result<()> {
    let m = maps()?;
    let mut vals: Vec<f64> = maps_
        .iter()
        .flat_map(|(_, b, _)| b.values.iter())
        .filter(|v| v.is_finite())
        .map(|v| *v as f64)
        .collect();
    let q = &m.quicklook;
    let lo = percentile(&mut vals, q.percentiles[0]).unwrap_or(0.0);
    let hi = percentile(&mut vals, q.percentiles[1]).unwrap_or(1.0);
    for (target, band, title) in maps_ {
        quicklook_png_range(target, band, title, Some((lo, hi)))?;
    }
    Ok(())
}

fn quicklook_png_range(
    target: &Path,
    band: &crate::io::BandPreview,
    title: &str,
    range: Option<(f64, f64)>,
) -> Result<()> {
    let m = maps()?;
    let quantity = match (band.description.is_empty(), band.unit.is_empty()) {
        (false, false) => format!("{}, {}", band.description, band.unit),
        (false, true) => format!("{} (no unit declared)", band.description),
        (true, false) => band.unit.clone(),
        (true, true) => "(no unit declared)".to_string(),
    };
    let mut preview = Preview::new(band.width, band.height, band.width.max(band.height));
    preview.add_rows(0, band.width, &band.values);
    if let Some(palette) = &band.palette {
        return categorical_png(
            target,
            &preview,
            (title, &band.frame),
            (palette, &band.class_names),
            &m.quicklook.nodata,
        );
    }
    let mut vals: Vec<f64> = band
        .values
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| *v as f64)
        .collect();
    let q = &m.quicklook;
    let (lo, hi) = range.unwrap_or_else(|| {
        (
            percentile(&mut vals, q.percentiles[0]).unwrap_or(0.0),
            percentile(&mut vals, q.percentiles[1]).unwrap_or(1.0),
        )
    });
    let style = raster_style(&m, &band.description, (lo, hi));
    // A title a person reads first (the quantity and period), then the file it shows.
    let titled = if band.description.is_empty() {
        title.to_string()
    } else {
        format!("{} ({title})", band.description)
    };
    let text = MapText {
        title: &titled,
        quantity: &quantity,
        sign: &style.sign,
        frame: Some(&band.frame),
        outlines: &[],
    };
    ramp_png(
        target,
        &preview,
        band.metres_per_pixel,
        &text,
        &style.ramp,
        &style.nodata,
        style.range,
    )
}

/// How a quantity is coloured on carbonmap's maps and in its QGIS styles.
pub struct RasterStyle {
    pub ramp: Vec<String>,
    pub nodata: String,
    pub range: (f64, f64),
    /// What the colours mean (empty for plain sequential quantities).
    pub sign: String,
}

/// The colours of a quantity described as `description` whose values run over `(lo, hi)`: carbon quantities
/// with a sign on the diverging ramp centred on zero (sinks blue, sources red on every map), other
/// quantities spanning zero (indices) on the brown-green ramp, the rest on the sequential ramp.
fn raster_style(m: &Maps, description: &str, (lo, hi): (f64, f64)) -> RasterStyle {
    let q = &m.quicklook;
    let desc = description.to_lowercase();
    let has = |list: &[String]| list.iter().any(|d| desc.contains(&d.to_lowercase()));
    let l = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
    if has(&q.spread) {
        return RasterStyle {
            ramp: q.spread_ramp.clone(),
            nodata: q.nodata.clone(),
            range: (0.0, if hi > 0.0 { hi } else { 1.0 }),
            sign: q.sign_spread.clone(),
        };
    }
    if has(&q.signed) {
        let uptake = q
            .uptake_positive
            .iter()
            .any(|d| desc.starts_with(&d.to_lowercase()));
        let mut ramp = m.net_balance.ramp.clone();
        if uptake {
            ramp.reverse();
        }
        RasterStyle {
            ramp,
            nodata: m.net_balance.nodata.clone(),
            range: (-l, l),
            sign: if uptake {
                q.sign_uptake.clone()
            } else {
                q.sign_source.clone()
            },
        }
    } else if lo < 0.0 && hi > 0.0 {
        RasterStyle {
            ramp: q.unsigned_ramp.clone(),
            nodata: q.nodata.clone(),
            range: (-l, l),
            sign: q.sign_unsigned.clone(),
        }
    } else {
        // Quantities that are never negative (fluxes, counts, areas) start the ramp at zero, so a low but real
        // value is not drawn as nothing beside a high one.
        let lo = if lo >= 0.0 { 0.0 } else { lo };
        let starts = |list: &[String]| list.iter().any(|d| desc.starts_with(&d.to_lowercase()));
        let (ramp, sign) = if starts(&q.uptake_quantities) {
            (q.uptake_ramp.clone(), "uptake (blue)")
        } else if q.source_quantities.iter().any(|d| {
            let d = d.to_lowercase();
            // Short names (Rh) only at the start, longer ones (emissions) anywhere.
            desc.starts_with(&d) || (d.len() > 3 && desc.contains(&d))
        }) {
            (q.source_ramp.clone(), "source (red)")
        } else {
            (q.ramp.clone(), "")
        };
        RasterStyle {
            ramp,
            nodata: q.nodata.clone(),
            range: (lo, if hi > lo { hi } else { lo + 1.0 }),
            sign: sign.to_string(),
        }
    }
}

/// The QGIS style of a zone layer: `field` (net balance, positive = net source) graduated on the net balance
/// ramp, centred on zero with the limit at the largest |value|.
pub fn zones_qml(field: &str, values: &[f64]) -> Result<String> {
    let m = maps()?;
    let l = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, v| a.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    Ok(crate::qml::vector_graduated(
        field,
        &m.net_balance.ramp,
        (-l, l),
        &format!("{field}: {}", m.quicklook.sign_source),
    ))
}

/// The QGIS style (.qml) of a raster band: its classes when it has them, else the colours of its quick-look
/// over `(lo, hi)`.
pub fn raster_qml(
    (band, shown): (usize, &crate::io::OutBand),
    (lo, hi): (f64, f64),
    classes: Option<&[(u16, String, (u8, u8, u8))]>,
) -> Result<String> {
    let (description, unit) = (shown.description.as_str(), shown.unit.as_str());
    if let Some(c) = classes {
        return Ok(crate::qml::raster_paletted(c));
    }
    let style = raster_style(&maps()?, description, (lo, hi));
    let label = match (description.is_empty(), unit.is_empty()) {
        (false, false) => format!("{description}, {unit}; {}", style.sign),
        _ => format!("{description}{unit}; {}", style.sign),
    };
    Ok(crate::qml::raster_pseudocolor(
        band,
        &style.ramp,
        style.range,
        label.trim_end_matches("; "),
    ))
}

/// Screen pixels per preview pixel (the long side near 560 px, at least 1 per pixel) and the map's size.
fn map_scale(preview: &Preview) -> (f64, u32, u32) {
    // Small rasters (a few lattice cells) are enlarged to the same size as the others, not drawn as a dot.
    let scale = (560.0 / preview.width.max(preview.height) as f64).max(1.0);
    let side = |n: usize| (n as f64 * scale).round() as u32;
    (scale, side(preview.width), side(preview.height))
}

/// Draw `preview` at `(left, top)` at `scale`, each value coloured by `colour` (NaN = no data).
fn draw_preview<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    preview: &Preview,
    scale: f64,
    (left, top): (i32, i32),
    target: &Path,
    colour: impl Fn(f64) -> RGBColor,
) -> Result<()> {
    let (_, map_w, map_h) = map_scale(preview);
    for y in 0..map_h {
        let pr = ((y as f64 / scale) as usize).min(preview.height - 1);
        for x in 0..map_w {
            let pc = ((x as f64 / scale) as usize).min(preview.width - 1);
            let c = colour(preview.value(pr * preview.width + pc));
            root.draw_pixel((left + x as i32, top + y as i32), &c)
                .map_err(|e| draw_error(target, e))?;
        }
    }
    Ok(())
}

/// A categorical map in its colour table's colours with a legend of the codes shown.
fn categorical_png(
    target: &Path,
    preview: &Preview,
    (title, frame): (&str, &crate::io::MapFrame),
    (palette, names): (
        &std::collections::BTreeMap<i64, (u8, u8, u8)>,
        &std::collections::BTreeMap<i64, String>,
    ),
    nodata: &str,
) -> Result<()> {
    load_font()?;
    let t = typography();
    let nodata = parse_hex(nodata)?;
    let (scale, map_w, map_h) = map_scale(preview);
    let w = map_w + 280;
    let (titles, below) = title_lines(title, w - 40);
    let h =
        (map_h + 110).max(40 + t.legend_row_px as u32 * palette.len() as u32 + 20) + below as u32;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_title(&root, &titles, 20, target)?;
        let (left, top) = (20i32, 34i32 + below);
        draw_preview(&root, preview, scale, (left, top), target, |v| {
            palette
                .get(&(v as i64))
                .filter(|_| v.is_finite())
                .map_or(nodata, |&(r, g, b)| RGBColor(r, g, b))
        })?;
        draw_frame(&root, frame, (left, top), (map_w, map_h), target)?;
        let lx = left + map_w as i32 + 20;
        for (i, (code, &(r, g, b))) in palette.iter().enumerate() {
            let y = top + t.legend_row_px * i as i32;
            root.draw(&Rectangle::new(
                [(lx, y), (lx + 14, y + 14)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(|e| draw_error(target, e))?;
            let label = match names.get(code) {
                Some(n) => format!("{code} {n}"),
                None => format!("class {code}"),
            };
            root.draw_text(&label, &font(t.label_px), (lx + 20, y))
                .map_err(|e| draw_error(target, e))?;
        }
        root.present().map_err(|e| draw_error(target, e))?;
    }
    write_png(target, &buf, w, h)
}

/// Draw `preview` on a colour ramp from `range.0` (first colour) to `range.1` (last), with a colour bar and a
/// scale bar, and write it atomically as PNG.
fn ramp_png(
    target: &Path,
    preview: &Preview,
    metres_per_pixel: f64,
    text: &MapText,
    ramp: &[String],
    nodata: &str,
    range: (f64, f64),
) -> Result<()> {
    load_font()?;
    let t = typography();
    let stops = ramp
        .iter()
        .map(|s| parse_hex(s))
        .collect::<Result<Vec<_>>>()?;
    let nodata = parse_hex(nodata)?;
    let (lo, hi) = range;
    let (scale, map_w, map_h) = map_scale(preview);
    let margin = 20u32;
    let legend_w = 230u32;
    let w = map_w + legend_w + 3 * margin;
    let (titles, below) = title_lines(text.title, w - 2 * margin);
    let h = (map_h + 100).max(400) + 2 * margin + below as u32;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_title(&root, &titles, margin as i32, target)?;
        let top = 34i32 + below;
        let left = margin as i32;
        draw_preview(&root, preview, scale, (left, top), target, |v| {
            if v.is_finite() {
                ramp_at(&stops, (v - lo) / (hi - lo))
            } else {
                nodata
            }
        })?;
        root.draw(&Rectangle::new(
            [(left, top), (left + map_w as i32, top + map_h as i32)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| draw_error(target, e))?;
        draw_outlines(
            &root,
            text.outlines,
            (preview.k, scale),
            (left, top),
            target,
        )?;
        let geographic = text.frame.is_some_and(|f| f.geographic);
        if let Some(f) = text.frame {
            draw_frame(&root, f, (left, top), (map_w, map_h), target)?;
        }
        // Scale bar under the map (not on a geographic CRS, whose scale varies across the map).
        let ground_w = metres_per_pixel * preview.width as f64;
        if ground_w.is_finite() && ground_w > 0.0 && !geographic {
            let len_m = nice_length(ground_w / 3.0);
            let len_px = (len_m / ground_w * map_w as f64).round() as i32;
            let y = top + map_h as i32 + 22;
            root.draw(&Rectangle::new(
                [(left, y), (left + len_px, y + 6)],
                BLACK.filled(),
            ))
            .map_err(|e| draw_error(target, e))?;
            let label = if len_m >= 1000.0 {
                format!("{} km", len_m / 1000.0)
            } else {
                format!("{len_m} m")
            };
            root.draw_text(&label, &font(t.heading_px), (left + len_px + 8, y - 4))
                .map_err(|e| draw_error(target, e))?;
        }
        let lx = left + map_w as i32 + margin as i32;
        draw_colour_bar(&root, (&stops, nodata), range, text, (lx, top), target)?;
        root.present().map_err(|e| draw_error(target, e))?;
    }
    write_png(target, &buf, w, h)
}

/// A map's title in lines that fit `width` pixels (words kept whole; one line when it fits or cannot be
/// measured) and how far the lines after the first push the map down.
fn title_lines(title: &str, width: u32) -> (Vec<String>, i32) {
    let t = typography();
    let style = font(t.title_px);
    let fits = |s: &str| style.font.box_size(s).map_or(true, |(w, _)| w <= width);
    let mut lines: Vec<String> = Vec::new();
    for word in title.split(' ') {
        match lines.last_mut() {
            Some(line) if fits(&format!("{line} {word}")) => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    let below = t.title_line_px * (lines.len() as i32 - 1);
    (lines, below)
}

fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[String],
    left: i32,
    target: &Path,
) -> Result<()> {
    let t = typography();
    for (i, line) in lines.iter().enumerate() {
        root.draw_text(
            line,
            &font(t.title_px),
            (left, 6 + t.title_line_px * i as i32),
        )
        .map_err(|e| draw_error(target, e))?;
    }
    Ok(())
}

/// The colour bar beside the map (the top of the range at the top, ticks at quarters, the no-data swatch)
/// under the quantity's caption, and the sign convention below it.
fn draw_colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    (stops, nodata): (&[RGBColor], RGBColor),
    (lo, hi): (f64, f64),
    text: &MapText,
    (lx, top): (i32, i32),
    target: &Path,
) -> Result<()> {
    let t = typography();
    let bar_h = 240i32;
    let caption = wrap(text.quantity, t.caption_chars);
    for (i, line) in caption.iter().enumerate() {
        root.draw_text(
            line,
            &font(t.heading_px),
            (lx, top + t.heading_line_px * i as i32),
        )
        .map_err(|e| draw_error(target, e))?;
    }
    let bar_top = top + t.heading_line_px * caption.len().max(1) as i32 + 12;
    for y in 0..bar_h {
        let t = 1.0 - y as f64 / (bar_h - 1) as f64;
        root.draw(&Rectangle::new(
            [(lx, bar_top + y), (lx + 24, bar_top + y + 1)],
            ramp_at(stops, t).filled(),
        ))
        .map_err(|e| draw_error(target, e))?;
    }
    root.draw(&Rectangle::new(
        [(lx, bar_top), (lx + 24, bar_top + bar_h)],
        BLACK.stroke_width(1),
    ))
    .map_err(|e| draw_error(target, e))?;
    let values: Vec<f64> = (0..=4).map(|k| hi - (hi - lo) * k as f64 / 4.0).collect();
    for (k, tick) in fmt_ticks(&values).into_iter().enumerate() {
        let y = bar_top + (k as i32 * (bar_h - 1)) / 4;
        let label = match k {
            0 => format!(">= {tick}"),
            4 => format!("<= {tick}"),
            _ => tick,
        };
        root.draw_text(&label, &font(t.label_px), (lx + 30, y - 6))
            .map_err(|e| draw_error(target, e))?;
    }
    let y = bar_top + bar_h + 14;
    root.draw(&Rectangle::new(
        [(lx, y), (lx + 24, y + 12)],
        nodata.filled(),
    ))
    .map_err(|e| draw_error(target, e))?;
    root.draw_text("no data", &font(t.label_px), (lx + 30, y))
        .map_err(|e| draw_error(target, e))?;
    for (i, line) in wrap(text.sign, t.sign_chars).iter().enumerate() {
        root.draw_text(
            line,
            &font(t.note_px),
            (lx, y + 24 + t.note_line_px * i as i32),
        )
        .map_err(|e| draw_error(target, e))?;
    }
    Ok(())
}

/// A north arrow in the map's top-right corner (grid north), and under the map the CRS and the coordinates of
/// the map's corners.
fn draw_frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    f: &crate::io::MapFrame,
    (left, top): (i32, i32),
    (map_w, map_h): (u32, u32),
    target: &Path,
) -> Result<()> {
    let t = typography();
    let (ax, ay) = (left + map_w as i32 - 22, top + 10);
    root.draw(&Polygon::new(
        vec![
            (ax, ay),
            (ax - 7, ay + 20),
            (ax, ay + 15),
            (ax + 7, ay + 20),
        ],
        BLACK.filled(),
    ))
    .map_err(|e| draw_error(target, e))?;
    root.draw(&Rectangle::new(
        [(ax - 9, ay + 22), (ax + 9, ay + 38)],
        WHITE.mix(0.8).filled(),
    ))
    .map_err(|e| draw_error(target, e))?;
    root.draw_text("N", &font(t.heading_px), (ax - 5, ay + 23))
        .map_err(|e| draw_error(target, e))?;
    let [x0, y0, x1, y1] = f.bounds;
    let corners = if f.geographic {
        format!("lon {x0:.4} to {x1:.4}, lat {y0:.4} to {y1:.4} (degrees)")
    } else {
        format!("x {x0:.0} to {x1:.0}, y {y0:.0} to {y1:.0}")
    };
    let y = top + map_h as i32 + 40;
    for (i, line) in [format!("CRS: {}", f.crs), corners].iter().enumerate() {
        root.draw_text(
            line,
            &font(t.note_px),
            (left, y + t.note_line_px * i as i32),
        )
        .map_err(|e| draw_error(target, e))?;
    }
    Ok(())
}

fn draw_error(target: &Path, e: impl ToString) -> Error {
    Error::io(
        target,
        "cannot draw the image",
        std::io::Error::other(e.to_string()),
    )
}

/// Encode an RGB buffer as PNG and write it atomically.
fn write_png(target: &Path, rgb: &[u8], w: u32, h: u32) -> Result<()> {
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| draw_error(target, e))?;
        wr.write_image_data(rgb)
            .map_err(|e| draw_error(target, e))?;
    }
    crate::io::write_atomic(target, &png_bytes)
}

/// One point of a model-versus-observation scatter plot.
pub struct ScatterPoint {
    pub observed: f64,
    pub model: f64,
    pub class: String,
}

/// Padded (lo, hi) of values (both axes of a scatter share it, so the 1:1 line is the diagonal).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo.min(0.0).min(lo - pad), hi + pad)
}

/// Model against observation, a colour per class, the 1:1 line; written atomically as PNG.
pub fn scatter_png(target: &Path, points: &[ScatterPoint], title: &str, axis: &str) -> Result<()> {
    load_font()?;
    let t = typography();
    let style = maps()?.charts;
    let colours = style
        .classes
        .iter()
        .map(|c| parse_hex(c))
        .collect::<Result<Vec<_>>>()?;
    let classes: Vec<&str> = {
        let mut c: Vec<&str> = points.iter().map(|p| p.class.as_str()).collect();
        c.sort();
        c.dedup();
        c
    };
    let (lo, hi) = padded_range(points.iter().flat_map(|p| [p.observed, p.model]));
    let (w, h) = (style.width, style.height);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", t.title_px))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(|e| draw_error(target, e))?;
        chart
            .configure_mesh()
            .x_desc(format!("observed {axis}"))
            .y_desc(format!("model {axis}"))
            .label_style(("sans-serif", t.heading_px))
            .draw()
            .map_err(|e| draw_error(target, e))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(lo, lo), (hi, hi)],
                BLACK.stroke_width(1),
            )))
            .map_err(|e| draw_error(target, e))?
            .label("1:1")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        for (k, class) in classes.iter().enumerate() {
            let c = colours[k % colours.len()];
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.class == *class)
                        .map(|p| Circle::new((p.observed, p.model), 3, c.filled())),
                )
                .map_err(|e| draw_error(target, e))?
                .label(*class)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", t.label_px))
            .draw()
            .map_err(|e| draw_error(target, e))?;
        root.present().map_err(|e| draw_error(target, e))?;
    }
    write_png(target, &buf, w, h)
}

/// Residuals (model - observed) at plot positions, on the diverging ramp centred on zero with limits at the
/// style's percentile of |residual|; written atomically as PNG.
pub fn residual_map_png(
    target: &Path,
    points: &[(f64, f64, f64)],
    title: &str,
    quantity: &str,
    geographic: bool,
) -> Result<()> {
    load_font()?;
    let t = typography();
    let m = maps()?;
    let stops = m
        .net_balance
        .ramp
        .iter()
        .map(|s| parse_hex(s))
        .collect::<Result<Vec<_>>>()?;
    let mut abs: Vec<f64> = points
        .iter()
        .map(|p| p.2.abs())
        .filter(|v| v.is_finite())
        .collect();
    let limit = percentile(&mut abs, m.net_balance.limit_percentile)
        .filter(|l| *l > 0.0)
        .unwrap_or(1.0);
    // Plot positions with a margin (at least half a degree or 500 map units).
    let span = |v: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let (lo, hi) = points
            .iter()
            .map(v)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.05).max(if geographic { 0.5 } else { 500.0 });
        (lo - pad, hi + pad)
    };
    let (x0, x1) = span(&|p| p.0);
    let (y0, y1) = span(&|p| p.1);
    let (w, h) = (m.charts.width, m.charts.height);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let (plot_area, legend_area) = root.split_horizontally(w - 170);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", t.title_px))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_error(target, e))?;
        let (xd, yd) = if geographic {
            ("longitude (deg)", "latitude (deg)")
        } else {
            ("x (map units)", "y (map units)")
        };
        chart
            .configure_mesh()
            .x_desc(xd)
            .y_desc(yd)
            .label_style(("sans-serif", t.heading_px))
            .draw()
            .map_err(|e| draw_error(target, e))?;
        chart
            .draw_series(points.iter().map(|&(x, y, r)| {
                let c = ramp_at(&stops, 0.5 + 0.5 * r / limit);
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 6, c.filled())
                    + Circle::new((0, 0), 6, BLACK.stroke_width(1))
            }))
            .map_err(|e| draw_error(target, e))?;
        let (lx, top, bar_h) = (10i32, 60i32, 240i32);
        for (i, line) in wrap(quantity, t.residual_chars).iter().enumerate() {
            legend_area
                .draw_text(
                    line,
                    &font(t.label_px),
                    (lx, 24 + t.note_line_px * i as i32),
                )
                .map_err(|e| draw_error(target, e))?;
        }
        for y in 0..bar_h {
            let t = 1.0 - y as f64 / (bar_h - 1) as f64;
            legend_area
                .draw(&Rectangle::new(
                    [(lx, top + y), (lx + 24, top + y + 1)],
                    ramp_at(&stops, t).filled(),
                ))
                .map_err(|e| draw_error(target, e))?;
        }
        let values: Vec<f64> = (0..=4).map(|k| limit * (1.0 - k as f64 / 2.0)).collect();
        for (k, tick) in fmt_ticks(&values).iter().enumerate() {
            legend_area
                .draw_text(
                    tick,
                    &font(t.label_px),
                    (lx + 30, top + (k as i32 * (bar_h - 1)) / 4 - 6),
                )
                .map_err(|e| draw_error(target, e))?;
        }
        for (i, line) in wrap(
            "red: model above the observation; blue: below",
            t.residual_chars,
        )
        .iter()
        .enumerate()
        {
            legend_area
                .draw_text(
                    line,
                    &font(t.note_px),
                    (lx, top + bar_h + 14 + t.note_line_px * i as i32),
                )
                .map_err(|e| draw_error(target, e))?;
        }
        root.present().map_err(|e| draw_error(target, e))?;
    }
    write_png(target, &buf, w, h)
}

/// Legend labels of a scale's values, all with the same number of decimals: enough to tell apart values one
/// step apart (the smallest gap between neighbours), so a colour bar reads 175, 131, 87, 44, 0 rather than 175,
/// 131, 87.43, 43.71, 0. Minus zero is written 0.
pub fn fmt_ticks(values: &[f64]) -> Vec<String> {
    let step = values
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .filter(|d| *d > 0.0 && d.is_finite())
        .fold(f64::INFINITY, f64::min);
    let decimals = if step.is_finite() {
        (1.0 - step.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        0
    };
    values
        .iter()
        .map(|v| {
            let t = format!("{v:.decimals$}");
            match t.strip_prefix('-') {
                Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
                _ => t,
            }
        })
        .collect()
}

fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split_whitespace() {
        let cur = lines.last_mut().expect("one line");
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A title wider than its map wraps at spaces into lines that fit, in order, each line pushing the map
    /// down by `title_line_px`; one that fits stays one line.
    #[test]
    fn a_long_title_wraps_to_the_map_width() {
        load_font().unwrap();
        let t = typography();
        let title =
            "net balance in the covered part (emissions - sequestration) (lattice_balance.tif)";
        let (lines, below) = title_lines(title, 400);
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines.join(" "), title);
        assert_eq!(below, t.title_line_px * (lines.len() as i32 - 1));
        for l in &lines {
            assert!(font(t.title_px).font.box_size(l).unwrap().0 <= 400, "{l}");
        }
        assert_eq!(
            title_lines("NPP (npp.tif)", 400),
            (vec!["NPP (npp.tif)".into()], 0)
        );
    }

    /// One number of decimals per scale, from its step: 174.889 / 4 = 43.7 -> none; 0.5 / 4 = 0.125 -> 2
    /// (0.375 rounds to 0.38 by IEEE printing); a scale across zero writes 0, not -0.
    #[test]
    fn a_scale_has_one_number_of_decimals() {
        let bar = |hi: f64, lo: f64| {
            fmt_ticks(
                &(0..=4)
                    .map(|k| hi - (hi - lo) * k as f64 / 4.0)
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(bar(174.889, 0.0), ["175", "131", "87", "44", "0"]);
        assert_eq!(bar(0.5, 0.0), ["0.50", "0.38", "0.25", "0.12", "0.00"]);
        assert_eq!(bar(2.0, -2.0), ["2.0", "1.0", "0.0", "-1.0", "-2.0"]);
        assert_eq!(
            fmt_ticks(&[-0.001, 0.0, 10.0]),
            ["-0.0010", "0.0000", "10.0000"]
        );
        assert_eq!(fmt_ticks(&[-0.04, 5.0]), ["0.0", "5.0"]);
        assert_eq!(fmt_ticks(&[3.0]), ["3"]);
    }

    /// Outlines are drawn at the finest level whose zones average at least 16 x 16 screen px: of 2 provinces
    /// (100 x 100 px), 8 counties (25 x 25) and 200 townships (5 x 5), the counties; at 30 px the provinces;
    /// at 500 px none is that large and the coarsest is drawn.
    #[test]
    fn outlines_are_drawn_at_the_finest_level_that_is_large_enough() {
        let square = |level: usize, x: f64, side: f64| Outline {
            name: String::new(),
            rings: vec![vec![(x, 0.0), (x + side, 0.0), (x + side, side), (x, side)]],
            level,
        };
        let mut o: Vec<Outline> = (0..2).map(|i| square(0, 100.0 * i as f64, 100.0)).collect();
        o.extend((0..8).map(|i| square(1, 25.0 * i as f64, 25.0)));
        o.extend((0..200).map(|i| square(2, 5.0 * i as f64, 5.0)));
        let at = |(c, r): (f64, f64)| (c.round() as i32, r.round() as i32);
        assert_eq!(super::outline_level(&o, &at, 16.0), 1);
        assert_eq!(super::outline_level(&o, &at, 30.0), 0);
        assert_eq!(super::outline_level(&o, &at, 500.0), 0);
        assert_eq!(super::outline_level(&o[10..], &at, 4.0), 2);
        assert_eq!(super::outline_level(&[], &at, 16.0), 0);
    }

    /// The nearest-rank percentile by selection is the sorted vector's value at rank round(p/100 (n-1)):
    /// ties, negative zeros and a repeated call on the reordered vector included.
    #[test]
    fn percentile_is_the_sorted_values_nearest_rank() {
        let v: Vec<f64> = (0..1001)
            .map(|i| ((i as f64 * 0.7311).sin() * 50.0).round() / 4.0)
            .chain([-0.0, 0.0, 1e300])
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let mut w = v.clone();
        for p in [0.0, 2.0, 50.0, 97.5, 98.0, 100.0] {
            let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
            assert_eq!(
                percentile(&mut w, p).unwrap().to_bits(),
                sorted[i].to_bits()
            );
        }
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    /// A name of 5 characters (about 30 x 12 screen pixels) is drawn in a zone 40 px wide and 20 high, not in
    /// one 20 px wide, nor in one too low; of two names whose boxes would overlap, the larger zone's is drawn;
    /// a name clear of both is drawn too.
    #[test]
    fn names_are_drawn_where_they_fit_their_zone_and_clear_of_each_other() {
        let square = |w: i32, h: i32| vec![(0, 0), (w, 0), (w, h), (0, h)].into_iter();
        assert_eq!(super::extent_of(square(40, 20)), (40, 20));
        // Names of 30 x 12 px.
        let label = |name, centre, zone| super::Label {
            name,
            centre,
            zone,
            text: (30, 12),
        };
        let placed = super::place_labels(vec![
            label("small", (100, 100), (40, 20)),
            label("narrw", (300, 100), (20, 20)),
            label("lowww", (500, 100), (40, 10)),
            label("large", (110, 104), (80, 40)),
            label("apart", (100, 300), (40, 20)),
        ]);
        assert_eq!(placed, vec![("large", (95, 98)), ("apart", (85, 294))]);
        assert!(super::place_labels(Vec::new()).is_empty());
    }

    #[test]
    fn ramp_is_centred_on_zero() {
        let s = net_balance_style().unwrap();
        let stops: Vec<RGBColor> = s.ramp.iter().map(|c| parse_hex(c).unwrap()).collect();
        // Zero maps to the middle stop; the ends to the end stops.
        assert_eq!(ramp_at(&stops, 0.5), stops[5]);
        assert_eq!(ramp_at(&stops, 0.0), stops[0]);
        assert_eq!(ramp_at(&stops, 1.0), stops[10]);
        assert_eq!(nice_length(740.0), 500.0);
        assert_eq!(nice_length(1999.0), 1000.0);
    }

    /// The spread of draws (an sd band, of a signed quantity or not) is drawn from zero on its own ramp with no
    /// carbon sign; the mean band of the same draws keeps its quantity's sign.
    #[test]
    fn a_spread_is_never_drawn_as_a_sink_or_a_source() {
        let m = maps().unwrap();
        for d in [
            "NEP sd of 100 draws, 2024",
            "net balance sd of 100 draws",
            "NPP sd of 50 draws",
        ] {
            let s = raster_style(&m, d, (3.0, 225.0));
            assert_eq!(s.ramp, m.quicklook.spread_ramp, "{d}");
            assert_eq!(
                (s.range.0, s.range.1, s.sign.as_str()),
                (0.0, 225.0, m.quicklook.sign_spread.as_str())
            );
        }
        let mean = raster_style(&m, "NEP mean of 100 draws, 2024", (-3.0, 225.0));
        assert_eq!(mean.sign, m.quicklook.sign_uptake);
    }

    /// One colour meaning on every map: a positive NEP or sequestration (uptake) is blue, a positive net
    /// balance (a net source) is red.
    #[test]
    fn sinks_are_blue_and_sources_red_on_every_map() {
        let t = tempfile::tempdir().unwrap();
        let colour_at_centre = |description: &str, value: f32| {
            let band = crate::io::BandPreview {
                values: vec![value; 64],
                width: 8,
                height: 8,
                metres_per_pixel: 20.0,
                description: description.into(),
                unit: "t CO2 ha-1 yr-1".into(),
                palette: None,
                class_names: Default::default(),
                frame: crate::io::MapFrame {
                    crs: "WGS 84 / UTM zone 30N (EPSG:32630)".into(),
                    bounds: [500000.0, 5599840.0, 500160.0, 5600000.0],
                    geographic: false,
                },
            };
            let path = t.path().join("q.png");
            quicklook_png(&path, &band, "test").unwrap();
            let dec = png::Decoder::new(std::fs::File::open(&path).unwrap());
            let mut reader = dec.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).unwrap();
            let ch = info.color_type.samples();
            // The 8 x 8 map is drawn 8 times enlarged at the top left, under the title.
            let (x, y) = (50, 66);
            let i = (y * info.width as usize + x) * ch;
            (buf[i] as i32, buf[i + 2] as i32)
        };
        for d in ["NEP 2024", "sequestration 2024"] {
            let (r, b) = colour_at_centre(d, 3.0);
            assert!(b > r + 50, "{d}: uptake drawn red ({r}, {b})");
        }
        let (r, b) = colour_at_centre("net balance (emissions - sequestration)", 3.0);
        assert!(r > b + 50, "a net source drawn blue ({r}, {b})");
    }

    #[test]
    fn preview_averages_blocks() {
        // 4 x 2 raster, at most 2 pixels on the long side: blocks of 2 x 2.
        let mut p = Preview::new(4, 2, 2);
        p.add_rows(0, 4, &[1.0, 3.0, f32::NAN, 5.0, 2.0, 2.0, 7.0, 9.0]);
        assert_eq!((p.width, p.height, p.k), (2, 1, 2));
        assert_eq!(p.value(0), 2.0);
        assert_eq!(p.value(1), 7.0);
    }
}
