//! STAC input (CARBONMAP_REAL_DATA): the real Exeter HLS S30 scenes described as STAC items (each one asset
//! with eo:bands), read as a static catalog, as an ItemCollection and as single items, give the same pixels
//! as the manifest-based run of examples/exeter/hls-2021.toml; wrong file kinds are named.

mod common;

use std::path::Path;

use common::carbonmap;

fn item(file: &Path) -> serde_json::Value {
    let name = file.file_stem().unwrap().to_string_lossy().to_string();
    let date = name.split('_').nth(2).unwrap().to_string();
    serde_json::json!({
        "type": "Feature", "stac_version": "1.0.0", "id": name, "collection": "HLSS30.v2.0",
        "geometry": null, "links": [],
        "properties": {"datetime": format!("{date}T11:21:21Z")},
        "assets": {"data": {
            "href": file.to_str().unwrap(), "type": "image/tiff; application=geotiff",
            "eo:bands": [
                {"name": "B02", "common_name": "blue"}, {"name": "B03", "common_name": "green"},
                {"name": "B04", "common_name": "red"}, {"name": "B08", "common_name": "nir"},
                {"name": "Fmask"}
            ]
        }}
    })
}

/// Pixel checksums of every band of the outputs (the metadata names the stack's own file).
fn checksums(dir: &Path) -> Vec<(String, Vec<u16>)> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .collect();
    names.sort();
    for p in names {
        let ds = gdal::Dataset::open(&p).unwrap();
        let sums = (1..=ds.raster_count())
            .map(|b| {
                let band = ds.rasterband(b).unwrap();
                let (w, h) = band.size();
                band.checksum((0, 0), (w, h)).unwrap()
            })
            .collect();
        out.push((p.file_name().unwrap().to_string_lossy().to_string(), sums));
    }
    out
}

#[test]
fn stac_catalog_item_collection_and_items_match_the_manifest_run() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let scenes = root.join("exeter-s2-hls/hls_s30");
    let mut files: Vec<_> = std::fs::read_dir(&scenes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .collect();
    files.sort();
    std::fs::create_dir_all(d.join("items")).unwrap();
    let items: Vec<serde_json::Value> = files.iter().map(|f| item(f)).collect();
    let mut links = Vec::new();
    for it in &items {
        let name = format!("items/{}.json", it["id"].as_str().unwrap());
        std::fs::write(d.join(&name), it.to_string()).unwrap();
        links.push(serde_json::json!({"rel": "item", "href": name}));
    }
    std::fs::write(
        d.join("catalog.json"),
        serde_json::json!({"type": "Catalog", "stac_version": "1.0.0", "id": "exe", "description": "test", "links": links}).to_string(),
    )
    .unwrap();
    std::fs::write(
        d.join("items.geojson"),
        serde_json::json!({"type": "FeatureCollection", "features": items}).to_string(),
    )
    .unwrap();
    let run = |stack: &Path, out: &str| {
        carbonmap()
            .args([
                "indices", "--period", "month", "--index", "NDVI", "--stats", "median", "--stack",
            ])
            .arg(stack)
            .arg("-o")
            .arg(d.join(out))
            .assert()
            .success();
        checksums(&d.join(out))
    };
    let manifest = run(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exeter/hls-2021.toml"),
        "manifest",
    );
    assert_eq!(manifest.len(), 4);
    assert_eq!(run(&d.join("catalog.json"), "catalog"), manifest);
    assert_eq!(run(&d.join("items.geojson"), "collection"), manifest);
    // One item: one scene of June.
    let one = run(
        &d.join(format!("items/{}.json", items[0]["id"].as_str().unwrap())),
        "one",
    );
    assert_eq!(one.len(), 2);
    assert_eq!(
        common::metadata_item(&d.join("catalog/NDVI_2021-06.tif"), "STACK_MANIFEST").unwrap(),
        d.join("catalog.json").to_str().unwrap()
    );

    // An item of a collection carbonmap does not know, without carbonmap:sensor: named, exit 2.
    let mut odd = items[0].clone();
    odd["collection"] = "my-drone-flights".into();
    std::fs::write(d.join("odd.json"), odd.to_string()).unwrap();
    let a = carbonmap()
        .args(["indices", "--index", "NDVI", "--stack"])
        .arg(d.join("odd.json"))
        .arg("-o")
        .arg(d.join("odd"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("collection my-drone-flights is not one carbonmap knows"),
        "{err}"
    );
    // ... and with it, read.
    odd["properties"]["carbonmap:sensor"] = "hls-s30".into();
    std::fs::write(d.join("odd.json"), odd.to_string()).unwrap();
    assert_eq!(run(&d.join("odd.json"), "odd"), one);
}
