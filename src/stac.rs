//! STAC input for `--stack`: a STAC Item, an ItemCollection (a GeoJSON FeatureCollection of items) or a
//! static Catalog / Collection on disk whose `item` (and `child`) links lead to items. Each item becomes one
//! scene of a stack manifest: its date from `properties.datetime`, its sensor profile from its collection
//! (models/stac.toml) or a `carbonmap:sensor` property, and its bands from the assets: an asset whose key or
//! `eo:bands` names are the profile's band names (or whose `eo:bands` common names are the profile's, by the
//! standard letters of models/stac.toml) gives those bands; an asset with several `eo:bands` gives band i of
//! its file. Hrefs are relative to the JSON file that holds them; http(s) hrefs are read through GDAL's
//! /vsicurl/.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::models;
use crate::scene::SensorProfile;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StacTable {
    #[allow(dead_code)]
    citation: String,
    /// STAC collection id -> built-in sensor profile.
    collections: BTreeMap<String, String>,
    /// STAC eo:bands common name -> band letter of the profiles.
    common_names: BTreeMap<String, String>,
    sentinel2_offset: S2Offset,
}

/// The Sentinel-2 DN offset from an item's processing baseline (models/stac.toml).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S2Offset {
    sensors: Vec<String>,
    property: String,
    from_baseline: String,
    dn_add_offset: f64,
    applied_property: String,
    #[allow(dead_code)]
    citation: String,
}

impl S2Offset {
    /// The scene's DN offset when the item says (None: the profile's rule by date applies).
    fn for_item(&self, sensor: &str, props: &Value) -> Option<f64> {
        if !self.sensors.iter().any(|s| s == sensor) {
            return None;
        }
        if props.get(&self.applied_property).and_then(Value::as_bool) == Some(true) {
            return Some(0.0);
        }
        let b = props.get(&self.property).and_then(Value::as_str)?;
        let num = |s: &str| s.trim().parse::<f64>().ok();
        Some(if num(b)? >= num(&self.from_baseline)? {
            self.dn_add_offset
        } else {
            0.0
        })
    }
}

/// Does the file hold JSON (by its extension, or a first non-blank character `{`)? A TIFF or other binary
/// file given as a stack is left to the manifest reader, which names its kind.
pub fn is_json_file(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "json" || ext == "geojson" {
        return true;
    }
    use std::io::Read;
    let mut buf = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    // Text: no control byte but whitespace (a binary file, such as a Zarr chunk, may start with the byte).
    let text = buf[..n]
        .iter()
        .all(|b| !b.is_ascii_control() || b.is_ascii_whitespace());
    text && buf[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == JSON_OBJECT_START)
}

/// The byte a JSON object starts with (an opening curly bracket).
const JSON_OBJECT_START: u8 = 0x7B;

/// Is this JSON text a STAC document (has `stac_version`, or is a FeatureCollection of them)?
pub fn is_stac(v: &Value) -> bool {
    v.get("stac_version").is_some()
        || (v.get("type").and_then(Value::as_str) == Some("FeatureCollection")
            && v.get("features").is_some())
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Is this a STAC location on the network or a GDAL virtual file system (not a local path)?
pub fn is_remote(s: &str) -> bool {
    is_url(s) || s.starts_with("/vsi")
}

/// The location of `href` as written in the document at `doc` (a local path, a URL or a /vsi path): relative
/// hrefs resolve against the document's folder, with `.` and `..` segments.
fn join(doc: &str, href: &str) -> String {
    let href = href.strip_prefix("file://").unwrap_or(href);
    if is_remote(href) || Path::new(href).is_absolute() {
        return href.to_string();
    }
    // The document's path without its query (a search URL's query may hold '/').
    let doc = doc.split(['?', '#']).next().unwrap_or(doc);
    let dir = match doc.rfind('/') {
        Some(i) => &doc[..i],
        None => ".",
    };
    let (prefix, path) = match dir.find("://") {
        Some(i) => {
            let host_end = dir[i + 3..].find('/').map_or(dir.len(), |j| i + 3 + j);
            (&dir[..host_end], &dir[host_end..])
        }
        None => ("", dir),
    };
    let mut segs: Vec<&str> = path.split('/').collect();
    for part in href.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                if segs.len() > 1 {
                    segs.pop();
                }
            }
            p => segs.push(p),
        }
    }
    format!("{prefix}{}", segs.join("/"))
}

/// An asset's source for GDAL: http(s) through /vsicurl/.
fn gdal_source(loc: &str) -> String {
    if is_url(loc) {
        format!("/vsicurl/{loc}")
    } else {
        loc.to_string()
    }
}

/// STAC documents are small; anything larger is not one.
const MAX_JSON_BYTES: i64 = 256 << 20;

fn read_json(loc: &str) -> Result<Value> {
    let text = if is_remote(loc) {
        let bytes = crate::io::read_vsi(&gdal_source(loc), MAX_JSON_BYTES)?;
        String::from_utf8(bytes).map_err(|_| Error::input(Path::new(loc), "is not UTF-8 text"))?
    } else {
        crate::io::read_text(Path::new(loc), "a STAC JSON document")?
    };
    serde_json::from_str(&text).map_err(|e| Error::input(Path::new(loc), format!("not JSON: {e}")))
}

/// Every item of a STAC document, with the location of the document holding it (its hrefs' base).
fn items(path: &str, v: Value, out: &mut Vec<(String, Value)>, depth: usize) -> Result<()> {
    match v.get("type").and_then(Value::as_str) {
        Some("Feature") => out.push((path.to_string(), v)),
        Some("FeatureCollection") => {
            for f in v["features"].as_array().into_iter().flatten() {
                out.push((path.to_string(), f.clone()));
            }
        }
        Some("Catalog") | Some("Collection") => {
            if depth > 8 {
                return Err(Error::input(Path::new(path), "catalog links nest more than 8 levels"));
            }
            for l in v["links"].as_array().into_iter().flatten() {
                let rel = l.get("rel").and_then(Value::as_str).unwrap_or("");
                let Some(href) = l.get("href").and_then(Value::as_str) else {
                    continue;
                };
                if rel == "item" || rel == "child" {
                    let p = join(path, href);
                    let child = read_json(&p)?;
                    items(&p, child, out, depth + 1)?;
                }
            }
        }
        other => {
            return Err(Error::input(
                Path::new(path),
                format!(
                    "STAC type {}: expected an Item (Feature), an ItemCollection (FeatureCollection), a Catalog or a Collection",
                    other.unwrap_or("(none)")
                ),
            ))
        }
    }
    Ok(())
}

/// The bands an asset gives: (band name of the profile, 1-based band in the asset's file, or None for a
/// single-band file).
fn asset_bands(
    key: &str,
    asset: &Value,
    profile: &SensorProfile,
    table: &StacTable,
) -> Vec<(String, Option<usize>)> {
    let mut names: Vec<&str> = profile.bands.values().map(String::as_str).collect();
    if let Some(qa) = &profile.qa {
        names.push(qa.band.as_str());
    }
    let find = |s: &str| {
        names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(s))
            .map(|n| n.to_string())
    };
    let by_common = |b: &Value| {
        b.get("common_name")
            .and_then(Value::as_str)
            .and_then(|c| table.common_names.get(c))
            .and_then(|letter| profile.bands.get(letter))
            .cloned()
    };
    let eo = asset
        .get("eo:bands")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if eo.len() > 1 {
        return eo
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                b.get("name")
                    .and_then(Value::as_str)
                    .and_then(find)
                    .or_else(|| by_common(b))
                    .map(|n| (n, Some(i + 1)))
            })
            .collect();
    }
    let one = find(key)
        .or_else(|| {
            eo.first()
                .and_then(|b| b.get("name"))
                .and_then(Value::as_str)
                .and_then(find)
        })
        .or_else(|| eo.first().and_then(by_common));
    one.map(|n| vec![(n, None)]).unwrap_or_default()
}

/// A remote raster a STAC document's items name, for run manifests: the item's id, the asset's key and its
/// location for GDAL (/vsicurl/ for http(s)); the remote document itself has asset "(document)".
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAsset {
    pub item: String,
    pub asset: String,
    pub href: String,
}

/// The remote raster assets (GeoTIFF or JPEG 2000 by media type or extension) of a STAC document's items,
/// and the document itself when it is remote. Local documents' local assets are hashed as files instead.
pub fn remote_assets(loc: &str) -> Result<Vec<RemoteAsset>> {
    let doc = read_json(loc)?;
    if !is_stac(&doc) {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    items(loc, doc, &mut found, 0)?;
    let mut out = Vec::new();
    if is_remote(loc) {
        out.push(RemoteAsset {
            item: String::new(),
            asset: "(document)".into(),
            href: gdal_source(loc),
        });
    }
    for (base, item) in &found {
        let id = item.get("id").and_then(Value::as_str).unwrap_or("(no id)");
        for (key, a) in item["assets"].as_object().into_iter().flatten() {
            let Some(h) = a.get("href").and_then(Value::as_str) else {
                continue;
            };
            let href = join(base, h);
            let media = a.get("type").and_then(Value::as_str).unwrap_or("");
            let ext = href.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            let raster = media.contains("tiff")
                || media.contains("jp2")
                || ["tif", "tiff", "jp2"].contains(&ext.as_str());
            if is_remote(&href) && raster {
                out.push(RemoteAsset {
                    item: id.to_string(),
                    asset: key.clone(),
                    href: gdal_source(&href),
                });
            }
        }
    }
    Ok(out)
}

/// A STAC document (a local path, an http(s) URL or a /vsi path) as the text of an equivalent stack manifest
/// (absolute paths, /vsicurl/ for remote assets).
pub fn manifest_text(path: &Path) -> Result<String> {
    let loc = path.to_string_lossy().to_string();
    let rel = "stac.toml";
    let table: StacTable = models::parse_toml(
        models::embedded(rel).expect("embedded"),
        &models::embedded_path(rel),
    )?;
    let doc = read_json(&loc)?;
    if !is_stac(&doc) {
        return Err(Error::input(
            path,
            "is JSON but not a STAC document (no stac_version): --stack wants a stack manifest (TOML), a folder of scenes, or a STAC item, item collection or catalog",
        ));
    }
    let mut found = Vec::new();
    items(&loc, doc, &mut found, 0)?;
    if found.is_empty() {
        return Err(Error::input(path, "has no STAC items"));
    }
    let profiles = SensorProfile::builtin()?;
    let mut sensor: Option<String> = None;
    let mut scenes = Vec::new();
    let mut problems = Vec::new();
    for (base, item) in &found {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("(no id)")
            .to_string();
        let props = &item["properties"];
        let name = props
            .get("carbonmap:sensor")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                item.get("collection")
                    .and_then(Value::as_str)
                    .and_then(|c| table.collections.get(c).cloned())
            });
        let Some(name) = name else {
            problems.push(format!(
                "item {id}: collection {} is not one carbonmap knows (known: {}); set the property carbonmap:sensor to a sensor profile",
                item.get("collection").and_then(Value::as_str).unwrap_or("(none)"),
                table.collections.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        match &sensor {
            Some(s) if *s != name => {
                problems.push(format!(
                    "item {id}: sensor {name}, but earlier items are {s}: one stack is one sensor"
                ));
                continue;
            }
            _ => sensor = Some(name.clone()),
        }
        let Some(profile) = profiles.iter().find(|p| p.name == name) else {
            problems.push(format!("item {id}: no built-in sensor profile {name}"));
            continue;
        };
        let datetime = props
            .get("datetime")
            .and_then(Value::as_str)
            .or_else(|| props.get("start_datetime").and_then(Value::as_str));
        let Some(date) = datetime.and_then(|d| d.get(..10)) else {
            problems.push(format!("item {id}: no properties.datetime"));
            continue;
        };
        let mut files = toml::Table::new();
        for (key, asset) in item["assets"].as_object().into_iter().flatten() {
            let Some(href) = asset.get("href").and_then(Value::as_str) else {
                continue;
            };
            let href = gdal_source(&join(base, href));
            for (band, index) in asset_bands(key, asset, profile, &table) {
                let v = match index {
                    None => toml::Value::String(href.clone()),
                    Some(i) => {
                        let mut t = toml::Table::new();
                        t.insert("path".into(), href.clone().into());
                        t.insert("band".into(), (i as i64).into());
                        toml::Value::Table(t)
                    }
                };
                files.insert(band, v);
            }
        }
        if files.is_empty() {
            problems.push(format!("item {id}: no asset gives a band of sensor {name}"));
            continue;
        }
        let mut scene = toml::Table::new();
        if let Some(off) = table.sentinel2_offset.for_item(&name, props) {
            scene.insert("dn_add_offset".into(), off.into());
        }
        scene.insert("date".into(), date.into());
        scene.insert("id".into(), id.into());
        scene.insert("files".into(), toml::Value::Table(files));
        scenes.push(toml::Value::Table(scene));
    }
    if !problems.is_empty() {
        return Err(Error::input(path, problems.join("; ")));
    }
    let mut m = toml::Table::new();
    m.insert("sensor".into(), sensor.expect("an item resolved").into());
    m.insert("scene".into(), toml::Value::Array(scenes));
    toml::to_string(&m)
        .map_err(|e| Error::input(path, format!("cannot express as a manifest: {e}")))
}

/// A STAC API search: GET /search with the query in the URL, or (`post`) POST /search with a JSON body, then
/// every `next` page, by GET or by POST as the link says (its `body`, merged into the previous body when it
/// says `merge`). The items of all pages as one ItemCollection whose `search` link records the request.
pub fn search(
    api: &str,
    collections: &[String],
    bbox: Option<[f64; 4]>,
    datetime: Option<&str>,
    post: bool,
) -> Result<Value> {
    let url = format!("{}/search", api.trim_end_matches('/'));
    let first = if post {
        let mut body = serde_json::json!({"collections": collections, "limit": 100});
        if let Some(b) = bbox {
            body["bbox"] = serde_json::json!(b);
        }
        if let Some(d) = datetime {
            body["datetime"] = d.into();
        }
        Page::Post(url.clone(), body)
    } else {
        let mut query = vec![format!("collections={}", collections.join(","))];
        if let Some(b) = bbox {
            query.push(format!("bbox={},{},{},{}", b[0], b[1], b[2], b[3]));
        }
        if let Some(d) = datetime {
            query.push(format!("datetime={d}"));
        }
        query.push("limit=100".into());
        Page::Get(format!("{url}?{}", query.join("&")))
    };
    let record = first.record();
    let mut next = Some(first);
    let mut features = Vec::new();
    let mut pages = 0;
    while let Some(page_req) = next.take() {
        pages += 1;
        if pages > 1000 {
            return Err(Error::Usage(format!(
                "{url}: more than 1000 pages of results"
            )));
        }
        let (u, page) = page_req.fetch()?;
        let items = page["features"].as_array().ok_or_else(|| {
            Error::input(
                Path::new(&u),
                "is not an ItemCollection (no features): is this a STAC API?",
            )
        })?;
        features.extend(items.iter().cloned());
        for l in page["links"].as_array().into_iter().flatten() {
            if l.get("rel").and_then(Value::as_str) == Some("next") {
                next = Page::next(&page_req, &u, l);
            }
        }
    }
    let mut link = record;
    link["carbonmap:items"] = features.len().into();
    link["carbonmap:pages"] = pages.into();
    Ok(serde_json::json!({
        "type": "FeatureCollection",
        "features": features,
        "links": [link],
    }))
}

/// One page request of a search.
enum Page {
    Get(String),
    Post(String, Value),
}

impl Page {
    fn fetch(&self) -> Result<(String, Value)> {
        match self {
            Page::Get(u) => Ok((u.clone(), read_json(u)?)),
            Page::Post(u, body) => {
                let bytes = crate::io::http_post_json(u, &body.to_string())?;
                let v = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::input(
                        Path::new(u),
                        format!("answered with something not JSON: {e}"),
                    )
                })?;
                Ok((u.clone(), v))
            }
        }
    }

    /// The request a `next` link asks for (GET unless it says POST; a POST link's body replaces the previous
    /// body, or is merged into it with `merge`).
    fn next(prev: &Page, base: &str, link: &Value) -> Option<Page> {
        let href = join(base, link.get("href").and_then(Value::as_str)?);
        let method = link.get("method").and_then(Value::as_str).unwrap_or("GET");
        if !method.eq_ignore_ascii_case("POST") {
            return Some(Page::Get(href));
        }
        let mut body = match (prev, link.get("merge").and_then(Value::as_bool)) {
            (Page::Post(_, b), Some(true)) => b.clone(),
            _ => serde_json::json!({}),
        };
        for (k, v) in link
            .get("body")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            body[k] = v.clone();
        }
        Some(Page::Post(href, body))
    }

    /// The `search` link recorded in the saved ItemCollection.
    fn record(&self) -> Value {
        match self {
            Page::Get(u) => serde_json::json!({"rel": "search", "href": u}),
            Page::Post(u, b) => {
                serde_json::json!({"rel": "search", "href": u, "method": "POST", "body": b})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON by its extension or by its first bytes; a binary file that happens to start with `{` (a Zarr
    /// chunk) is not JSON.
    #[test]
    fn json_files_are_recognised_and_binary_ones_are_not() {
        let t = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = t.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert!(is_json_file(&file("stack", b"\n  {\"type\": \"Feature\"}")));
        assert!(is_json_file(&file("x.json", b"")));
        assert!(!is_json_file(&file("1178.0.0", b"{\x08\xf3\x06\x02")));
        assert!(!is_json_file(&file("notes", b"plain text")));
    }

    #[test]
    fn hrefs_join_against_their_document() {
        assert_eq!(
            join("/d/cat/catalog.json", "./items/a.json"),
            "/d/cat/items/a.json"
        );
        assert_eq!(join("/d/cat/items/a.json", "../a.tif"), "/d/cat/a.tif");
        assert_eq!(
            join("https://h.org/c/items/a.json", "../data/b.tif"),
            "https://h.org/c/data/b.tif"
        );
        assert_eq!(
            join("https://h.org/c/x.json", "https://o.org/y.tif"),
            "https://o.org/y.tif"
        );
        assert_eq!(join("/d/x.json", "/abs/y.tif"), "/abs/y.tif");
        assert_eq!(join("items.json", "a.tif"), "./a.tif");
        assert_eq!(
            gdal_source("https://h.org/y.tif"),
            "/vsicurl/https://h.org/y.tif"
        );
    }

    #[test]
    fn sentinel2_offset_follows_the_processing_baseline() {
        let t: StacTable = models::parse_toml(
            models::embedded("stac.toml").unwrap(),
            Path::new("stac.toml"),
        )
        .unwrap();
        let o = &t.sentinel2_offset;
        let p = |v: Value| o.for_item("sentinel2-l2a", &v);
        // Baseline 05.00 (also an old acquisition reprocessed): -1000; 02.14: none; applied by the provider: none.
        assert_eq!(
            p(serde_json::json!({"s2:processing_baseline": "05.00"})),
            Some(-1000.0)
        );
        assert_eq!(
            p(serde_json::json!({"s2:processing_baseline": "02.14"})),
            Some(0.0)
        );
        assert_eq!(
            p(
                serde_json::json!({"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": true})
            ),
            Some(0.0)
        );
        assert_eq!(p(serde_json::json!({})), None);
        assert_eq!(
            o.for_item(
                "hls-s30",
                &serde_json::json!({"s2:processing_baseline": "05.00"})
            ),
            None
        );
    }
}
