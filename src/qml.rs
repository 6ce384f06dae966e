//! QGIS style files (`.qml`) written beside carbonmap's rasters and vector layers, so that QGIS opens them with
//! the colours, classes and sign semantics of carbonmap's own maps (models/maps.toml): a pseudocolour ramp for
//! quantities (centred on zero for signed ones), a palette with class names for land cover, and a graduated
//! ramp for the zone and lattice tables.

/// QGIS version the files are written for (QGIS 3 reads them all).
const QGIS_VERSION: &str = "3.28.0";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn document(body: &str) -> String {
    format!(
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n<qgis version=\"{QGIS_VERSION}\" \
         styleCategories=\"Symbology\">\n{body}</qgis>\n"
    )
}

/// Evenly spaced stops of `ramp` (hex colours) over `lo..hi`.
fn stops(ramp: &[String], (lo, hi): (f64, f64)) -> Vec<(f64, &str)> {
    let n = ramp.len().max(2) - 1;
    ramp.iter()
        .enumerate()
        .map(|(i, c)| (lo + (hi - lo) * i as f64 / n as f64, c.as_str()))
        .collect()
}

/// A single-band pseudocolour style: `ramp` interpolated over `range`, the band's `label` (quantity and unit)
/// as the legend title, values outside drawn in the end colours.
pub fn raster_pseudocolor(band: usize, ramp: &[String], range: (f64, f64), label: &str) -> String {
    let stops = stops(ramp, range);
    let labels = crate::report::fmt_ticks(&stops.iter().map(|(v, _)| *v).collect::<Vec<_>>());
    let items: String = stops
        .iter()
        .zip(labels)
        .map(|((v, c), label)| {
            format!(
                "          <item value=\"{v}\" color=\"{c}\" alpha=\"255\" label=\"{label}\"/>\n"
            )
        })
        .collect();
    document(&format!(
        "  <pipe>\n    <rasterrenderer type=\"singlebandpseudocolor\" band=\"{band}\" opacity=\"1\" \
         alphaBand=\"-1\" classificationMin=\"{lo}\" classificationMax=\"{hi}\">\n      \
         <rasterTransparency/>\n      <rastershader>\n        <colorrampshader colorRampType=\"INTERPOLATED\" \
         classificationMode=\"1\" clip=\"0\" minimumValue=\"{lo}\" maximumValue=\"{hi}\" \
         labelPrecision=\"4\">\n{items}        </colorrampshader>\n      </rastershader>\n    \
         </rasterrenderer>\n  </pipe>\n  <customproperties>\n    <Option type=\"Map\">\n      <Option \
         name=\"carbonmap:quantity\" type=\"QString\" value=\"{}\"/>\n    </Option>\n  </customproperties>\n",
        escape(label),
        lo = range.0,
        hi = range.1,
    ))
}

/// A paletted style: every class with its colour and name.
pub fn raster_paletted(classes: &[(u16, String, (u8, u8, u8))]) -> String {
    let entries: String = classes
        .iter()
        .map(|(code, name, (r, g, b))| {
            format!(
                "        <paletteEntry value=\"{code}\" color=\"#{r:02x}{g:02x}{b:02x}\" alpha=\"255\" label=\"{}\"/>\n",
                escape(name)
            )
        })
        .collect();
    document(&format!(
        "  <pipe>\n    <rasterrenderer type=\"paletted\" band=\"1\" opacity=\"1\" alphaBand=\"-1\">\n      \
         <rasterTransparency/>\n      <colorPalette>\n{entries}      </colorPalette>\n    </rasterrenderer>\n  \
         </pipe>\n"
    ))
}

/// A graduated fill style on `field`: one class per step of `ramp` over `range`, outlines in grey.
pub fn vector_graduated(field: &str, ramp: &[String], range: (f64, f64), label: &str) -> String {
    let n = ramp.len();
    let (lo, hi) = range;
    let edge = |i: usize| lo + (hi - lo) * i as f64 / n as f64;
    let labels = crate::report::fmt_ticks(&(0..=n).map(edge).collect::<Vec<_>>());
    let mut ranges = String::new();
    let mut symbols = String::new();
    for (i, c) in ramp.iter().enumerate() {
        // The end classes reach to any value beyond the range.
        let a = if i == 0 { -1e300 } else { edge(i) };
        let b = if i + 1 == n { 1e300 } else { edge(i + 1) };
        let text = format!("{} to {}", labels[i], labels[i + 1]);
        ranges.push_str(&format!(
            "      <range lower=\"{a}\" upper=\"{b}\" symbol=\"{i}\" label=\"{text}\" render=\"true\"/>\n"
        ));
        let rgb = crate::landcover::hex_rgb(c).unwrap_or((128, 128, 128));
        symbols.push_str(&format!(
            "      <symbol type=\"fill\" name=\"{i}\" alpha=\"1\" clip_to_extent=\"1\" force_rhr=\"0\">\n        \
             <layer class=\"SimpleFill\" enabled=\"1\" locked=\"0\" pass=\"0\">\n          <Option type=\"Map\">\n            \
             <Option name=\"color\" type=\"QString\" value=\"{},{},{},255\"/>\n            <Option name=\"outline_color\" \
             type=\"QString\" value=\"90,90,90,255\"/>\n            <Option name=\"outline_width\" type=\"QString\" \
             value=\"0.26\"/>\n            <Option name=\"style\" type=\"QString\" value=\"solid\"/>\n          \
             </Option>\n        </layer>\n      </symbol>\n",
            rgb.0, rgb.1, rgb.2
        ));
    }
    document(&format!(
        "  <renderer-v2 type=\"graduatedSymbol\" attr=\"{}\" graduatedMethod=\"GraduatedColor\" \
         symbollevels=\"0\" enableorderby=\"0\" forceraster=\"0\">\n    <ranges>\n{ranges}    </ranges>\n    \
         <symbols>\n{symbols}    </symbols>\n  </renderer-v2>\n  <customproperties>\n    <Option type=\"Map\">\n      \
         <Option name=\"carbonmap:quantity\" type=\"QString\" value=\"{}\"/>\n    </Option>\n  \
         </customproperties>\n",
        escape(field),
        escape(label)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_are_xml_with_the_right_renderer() {
        let ramp: Vec<String> = ["#0000ff", "#ffffff", "#ff0000"].map(String::from).to_vec();
        let p = raster_pseudocolor(1, &ramp, (-2.0, 2.0), "NEP <g C m-2 yr-1>");
        assert!(p.contains("type=\"singlebandpseudocolor\""));
        assert!(p.contains("<item value=\"0\" color=\"#ffffff\""));
        assert!(p.contains("NEP &lt;g C m-2 yr-1&gt;"));
        let c = raster_paletted(&[(10, "Tree cover & shrubs".into(), (0, 100, 0))]);
        assert!(c.contains("<paletteEntry value=\"10\" color=\"#006400\" alpha=\"255\" label=\"Tree cover &amp; shrubs\"/>"));
        let v = vector_graduated("net_tCO2_yr", &ramp, (-3.0, 3.0), "net");
        assert!(v.contains("type=\"graduatedSymbol\" attr=\"net_tCO2_yr\""));
        assert_eq!(v.matches("<range ").count(), 3);
        assert!(v.contains("value=\"255,0,0,255\""));
    }
}
