//! STAC input (CARBONMAP_REAL_DATA): the real Exeter HLS S30 scenes described as STAC items (each one asset
//! with eo:bands), read as a static catalog, as an ItemCollection and as single items, give the same pixels
//! as the manifest-based run of examples/exeter/hls-2021.toml, and the same over HTTP (retries, a paged
//! search, ETags in the run manifest); the Colorado Landsat scenes as items with one asset per band in a
//! STAC Collection give the pixels of the recognised stack; wrong file kinds are named.

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

/// The real Exeter HLS S30 scenes, sorted.
fn hls_scenes(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root.join("exeter-s2-hls/hls_s30"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif"))
        .collect();
    files.sort();
    files
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
    let files = hls_scenes(&root);
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

/// A minimal HTTP/1.1 file server on 127.0.0.1 for the test: HEAD and GET with byte ranges (206), and the
/// first GET of every file answered 503 Service Unavailable (a transient failure GDAL must retry).
mod server {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    pub struct Server {
        pub port: u16,
        /// Requests per path: (503s answered, successful GETs).
        pub log: Arc<Mutex<BTreeMap<String, (usize, usize)>>>,
        /// Each file's ETag (default "v1"), changed by a test to publish a new version.
        pub etags: Arc<Mutex<BTreeMap<String, String>>>,
    }

    pub fn start(files: BTreeMap<String, PathBuf>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(BTreeMap::new()));
        let etags = Arc::new(Mutex::new(BTreeMap::new()));
        let (l2, e2) = (log.clone(), etags.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let files = files.clone();
                let (log, etags) = (l2.clone(), e2.clone());
                std::thread::spawn(move || serve(stream, &files, &log, &etags));
            }
        });
        Server { port, log, etags }
    }

    fn serve(
        stream: TcpStream,
        files: &BTreeMap<String, PathBuf>,
        log: &Mutex<BTreeMap<String, (usize, usize)>>,
        etags: &Mutex<BTreeMap<String, String>>,
    ) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let (mut range, mut length) = (None, 0usize);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    let (a, b) = v.trim().split_once('-').unwrap();
                    range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().ok()));
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            // A POST search: the first page, or the second when the body carries the next link's token
            // merged into the first request's body (the collection must still be there).
            let key = if method == "POST" {
                let body = String::from_utf8_lossy(&body);
                match (
                    body.contains("\"token\":\"p2\""),
                    body.contains("HLSS30.v2.0"),
                ) {
                    (_, false) => "POST (bad body)".to_string(),
                    (true, true) => format!("POST {path} p2"),
                    (false, true) => format!("POST {path}"),
                }
            } else {
                path.trim_start_matches('/').to_string()
            };
            let Some(file) = files.get(&key) else {
                let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            let mut bytes = Vec::new();
            std::fs::File::open(file)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            let len = bytes.len() as u64;
            let etag = etags
                .lock()
                .unwrap()
                .get(path.trim_start_matches('/'))
                .cloned()
                .unwrap_or_else(|| "v1".into());
            if method == "HEAD" {
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"{etag}\"\r\nAccept-Ranges: bytes\r\n\r\n"
                );
                continue;
            }
            {
                let mut l = log.lock().unwrap();
                let e = l.entry(key.clone()).or_insert((0, 0));
                if e.0 == 0 && method == "GET" {
                    e.0 += 1;
                    let _ = out.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
                    );
                    continue;
                }
                e.1 += 1;
            }
            let (a, b) = match range {
                Some((a, b)) => (a.min(len), b.map_or(len - 1, |b| b.min(len - 1))),
                None => (0, len - 1),
            };
            let body = &bytes[a as usize..=b as usize];
            let head = if range.is_some() {
                format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nAccept-Ranges: bytes\r\n\r\n", body.len())
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nAccept-Ranges: bytes\r\n\r\n",
                    body.len()
                )
            };
            if out
                .write_all(head.as_bytes())
                .and_then(|_| out.write_all(body))
                .is_err()
            {
                return;
            }
        }
    }
}

/// The same scenes served over HTTP by a server on 127.0.0.1 (byte ranges; every file's first GET fails with
/// 503): items whose hrefs are http URLs are read through /vsicurl/, the failures retried, and the pixels are
/// those of the local run.
#[test]
fn stac_items_over_http_are_read_with_retries() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let files = hls_scenes(&root);
    let mut served: std::collections::BTreeMap<String, std::path::PathBuf> = files
        .iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().to_string(),
                f.clone(),
            )
        })
        .collect();
    // A catalog served too: catalog.json links items/NAME.json, whose asset hrefs are ../NAME.tif.
    std::fs::create_dir_all(d.join("web/items")).unwrap();
    let mut links = Vec::new();
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let mut it = item(f);
        it["assets"]["data"]["href"] = format!("../{name}.tif").into();
        let rel = format!("items/{name}.json");
        std::fs::write(d.join("web").join(&rel), it.to_string()).unwrap();
        served.insert(rel.clone(), d.join("web").join(&rel));
        links.push(serde_json::json!({"rel": "item", "href": format!("./{rel}")}));
    }
    std::fs::write(
        d.join("web/catalog.json"),
        serde_json::json!({"type": "Catalog", "stac_version": "1.0.0", "id": "exe", "description": "t", "links": links}).to_string(),
    )
    .unwrap();
    served.insert("catalog.json".into(), d.join("web/catalog.json"));
    // A STAC API's GET /search in two pages (the second by the first's `next` link).
    let q = "search?collections=HLSS30.v2.0&bbox=-3.6,50.6,-3.4,50.8&datetime=2021-06-01/2021-07-31&limit=100";
    let all: Vec<serde_json::Value> = files.iter().map(|f| item(f)).collect();
    std::fs::write(
        d.join("web/page1.json"),
        serde_json::json!({"type": "FeatureCollection", "features": all[..2],
            "links": [{"rel": "next", "href": "search?page=2", "method": "GET"}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        d.join("web/page2.json"),
        serde_json::json!({"type": "FeatureCollection", "features": all[2..], "links": []})
            .to_string(),
    )
    .unwrap();
    served.insert(q.into(), d.join("web/page1.json"));
    // The same search by POST, its next page a POST link whose body merges into the first request's.
    std::fs::write(
        d.join("web/post1.json"),
        serde_json::json!({"type": "FeatureCollection", "features": all[..1],
            "links": [{"rel": "next", "href": "search", "method": "POST", "body": {"token": "p2"}, "merge": true}]})
        .to_string(),
    )
    .unwrap();
    served.insert("POST /search".into(), d.join("web/post1.json"));
    served.insert("POST /search p2".into(), d.join("web/page2.json"));
    served.insert("search?page=2".into(), d.join("web/page2.json"));
    let srv = server::start(served);
    let items: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let mut it = item(f);
            it["assets"]["data"]["href"] = format!(
                "http://127.0.0.1:{}/{}",
                srv.port,
                f.file_name().unwrap().to_string_lossy()
            )
            .into();
            it
        })
        .collect();
    std::fs::write(
        d.join("remote.json"),
        serde_json::json!({"type": "FeatureCollection", "features": items}).to_string(),
    )
    .unwrap();
    let local: Vec<serde_json::Value> = files.iter().map(|f| item(f)).collect();
    std::fs::write(
        d.join("local.json"),
        serde_json::json!({"type": "FeatureCollection", "features": local}).to_string(),
    )
    .unwrap();
    let run = |stack: &str, out: &str| {
        carbonmap()
            .env_remove("GDAL_HTTP_MAX_RETRY")
            .env("GDAL_HTTP_RETRY_DELAY", "0.1")
            .args([
                "indices", "--period", "month", "--index", "NDVI", "--stats", "median", "--stack",
            ])
            .arg(d.join(stack))
            .arg("-o")
            .arg(d.join(out))
            .assert()
            .success();
        checksums(&d.join(out))
    };
    let local_run = run("local.json", "local");
    assert_eq!(run("remote.json", "remote"), local_run);
    // The catalog itself over HTTP: JSON documents read through GDAL too, relative links and hrefs joined.
    carbonmap()
        .args([
            "indices", "--period", "month", "--index", "NDVI", "--stats", "median", "--stack",
        ])
        .arg(format!("http://127.0.0.1:{}/catalog.json", srv.port))
        .arg("-o")
        .arg(d.join("web-out"))
        .assert()
        .success();
    assert_eq!(checksums(&d.join("web-out")), local_run);
    // The search, saved as an ItemCollection, then used as the stack.
    // The search by GET (or by POST), saved as an ItemCollection.
    let search = |post: bool, name: &str| -> serde_json::Value {
        let target = d.join(name);
        carbonmap()
            .arg("stack")
            .args(post.then_some("--stac-post"))
            .arg("--stac-api")
            .arg(format!("http://127.0.0.1:{}", srv.port))
            .args([
                "--collection",
                "HLSS30.v2.0",
                "--bbox",
                "-3.6,50.6,-3.4,50.8",
            ])
            .args(["--datetime", "2021-06-01/2021-07-31", "-o"])
            .arg(&target)
            .assert()
            .success();
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap()
    };
    let saved = search(false, "found.json");
    assert_eq!(saved["features"].as_array().unwrap().len(), files.len());
    assert_eq!(saved["links"][0]["carbonmap:pages"], 2);
    assert_eq!(run("found.json", "found"), local_run);
    let by_post = search(true, "posted.json");
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    // post1 holds the first item, page2 the items from the third: the second is not in the POST answer.
    let mut want = ids(&saved);
    want.remove(1);
    assert_eq!(ids(&by_post), want);
    assert_eq!(by_post["links"][0]["method"], "POST");
    assert_eq!(
        by_post["links"][0]["body"]["bbox"],
        serde_json::json!([-3.6, 50.6, -3.4, 50.8])
    );
    assert_eq!(by_post["links"][0]["carbonmap:pages"], 2);
    let log = srv.log.lock().unwrap();
    let tifs = log.keys().filter(|k| k.ends_with(".tif")).count();
    assert_eq!(tifs, files.len(), "{log:?}");
    assert!(
        log.iter()
            .filter(|(k, _)| !k.starts_with("POST"))
            .all(|(_, (failed, ok))| *failed == 1 && *ok >= 1),
        "{log:?}"
    );
    assert!(log.contains_key("catalog.json"), "{log:?}");
    assert_eq!(log.get("POST /search p2"), Some(&(0, 1)), "{log:?}");
    drop(log);
    remote_assets_are_versioned_in_the_run_manifest(d, &srv, &files);
}

/// A season whose stack is the ItemCollection of remote assets: the run manifest records each asset's item,
/// key, URL and ETag; a rerun is up to date; a new ETag on one scene (a reprocessed file) reruns the stage.
fn remote_assets_are_versioned_in_the_run_manifest(
    d: &Path,
    srv: &server::Server,
    files: &[std::path::PathBuf],
) {
    std::fs::write(
        d.join("season.toml"),
        "[season]\ndefault = \"2021-JJA\"\nout = \"season/{season}\"\n\n[stages.ndvi]\ncommand = \"indices\"\n\
         stack = \"remote.json\"\nindex = [\"NDVI\"]\nperiod = \"month\"\nstats = \"median\"\n",
    )
    .unwrap();
    let run = || {
        let o = assert_cmd::Command::cargo_bin("carbonmap")
            .unwrap()
            .env("GDAL_HTTP_RETRY_DELAY", "0.1")
            .args(["--log-format", "json", "run"])
            .arg(d.join("season.toml"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let states: Vec<String> = String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "stage")
            .map(|v| v["state"].as_str().unwrap_or("").to_string())
            .collect();
        states.last().cloned().unwrap_or_default()
    };
    assert_eq!(run(), "done");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("season/2021-JJA/manifest.json")).unwrap(),
    )
    .unwrap();
    let inputs = manifest["stages"][0]["inputs"].as_array().unwrap();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let url = format!("/vsicurl/http://127.0.0.1:{}/{name}", srv.port);
        let rec = inputs
            .iter()
            .find(|r| r["path"] == url.as_str())
            .unwrap_or_else(|| panic!("{url} not in {inputs:?}"));
        assert_eq!(rec["version"], "ETag \"v1\"", "{rec}");
        assert_eq!(rec["asset"], "data");
        assert_eq!(rec["item"], item(f)["id"]);
        assert_eq!(rec["size"], std::fs::metadata(f).unwrap().len());
    }
    assert_eq!(run(), "up to date");
    let first = files[0].file_name().unwrap().to_string_lossy().to_string();
    srv.etags.lock().unwrap().insert(first, "v2".into());
    assert_eq!(run(), "done");
}

/// The real Colorado Landsat 5/7 LEDAPS scenes of summer 2011 (one file per band and an Fmask file) as STAC
/// items with one asset per band, linked from a STAC Collection: the same pixels as the stack `carbonmap stack`
/// recognises from the scene folders.
#[test]
fn colorado_landsat_items_of_a_collection_match_the_recognised_stack() {
    let Some(root) = common::real_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let lsts = root.join("colorado-landsat/lsts");
    carbonmap()
        .arg("stack")
        .arg(&lsts)
        .args(["--from", "2011-06-01", "--to", "2011-08-31", "-o"])
        .arg(d.join("stack.toml"))
        .assert()
        .success();
    let mut scenes: Vec<String> = std::fs::read_dir(&lsts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| {
            let (year, doy) = (&n[9..13], n[13..16].parse::<u32>().unwrap());
            year == "2011" && (152..=243).contains(&doy)
        })
        .collect();
    scenes.sort();
    assert!(scenes.len() >= 8, "{scenes:?}");
    std::fs::create_dir_all(d.join("items")).unwrap();
    let mut links = Vec::new();
    for id in &scenes {
        let date =
            chrono::NaiveDate::from_yo_opt(id[9..13].parse().unwrap(), id[13..16].parse().unwrap())
                .unwrap();
        let mut assets = serde_json::Map::new();
        for band in ["b3", "b4", "b5", "fmask"] {
            let href = lsts.join(id).join(format!("{id}_{band}.tif"));
            assets.insert(
                band.into(),
                serde_json::json!({"href": href.to_str().unwrap(), "type": "image/tiff; application=geotiff"}),
            );
        }
        let it = serde_json::json!({
            "type": "Feature", "stac_version": "1.0.0", "id": id, "geometry": null, "links": [],
            "properties": {"datetime": format!("{date}T17:30:00Z"), "carbonmap:sensor": "landsat-ledaps-fmask"},
            "assets": assets,
        });
        std::fs::write(d.join(format!("items/{id}.json")), it.to_string()).unwrap();
        links.push(serde_json::json!({"rel": "item", "href": format!("./items/{id}.json")}));
    }
    std::fs::write(
        d.join("collection.json"),
        serde_json::json!({"type": "Collection", "stac_version": "1.0.0", "id": "colorado-ledaps",
            "description": "test", "license": "proprietary",
            "extent": {"spatial": {"bbox": [[-106, 40, -105, 41]]}, "temporal": {"interval": [["2011-06-01T00:00:00Z", "2011-08-31T23:59:59Z"]]}},
            "links": links})
        .to_string(),
    )
    .unwrap();
    let run = |stack: &str, out: &str| {
        carbonmap()
            .args([
                "indices", "--period", "month", "--index", "NDVI", "--stats", "median", "--stack",
            ])
            .arg(d.join(stack))
            .arg("-o")
            .arg(d.join(out))
            .assert()
            .success();
        checksums(&d.join(out))
    };
    let recognised = run("stack.toml", "recognised");
    assert_eq!(
        recognised.len(),
        6,
        "NDVI and clear counts of June, July and August: {recognised:?}"
    );
    assert_eq!(run("collection.json", "collection"), recognised);
}
