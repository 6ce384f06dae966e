//! Tests that attack carbonmap's promises about users' files, through the binary: bad input of every kind
//! (exit 2, the message names what is wrong, nothing written, no input changed), outputs that name inputs,
//! folders carbonmap did not write, concurrent commands, full disks and kills.

#[path = "../common/mod.rs"]
mod common;
mod fixture;
mod kills;
mod space;

use std::path::Path;

use common::carbonmap;
use fixture::{fixture, snapshot};

/// One bad input's expectations: the exit code and words the message must contain. Its command line (with the
/// case) uses `{F}` = fixture folder, `{O}` = an output path that must stay absent, `~` = a space in a value.
struct Bad {
    code: i32,
    want: &'static [&'static str],
}

const fn bad(want: &'static [&'static str]) -> Bad {
    Bad { code: 2, want }
}

const STACK: &str = "--stack {F}/s/stack.toml";
const NPP: &str = "npp --ndvi {F}/ndvi --landcover {F}/s/landcover_worldcover.tif --legend esa-worldcover --drivers {F}/s/drivers.toml --year 2024 --months 6-8";
const BAL: &str = "balance --sink {SEQ} --lattice {F}/s/emissions_lattice_1km.tif";
const VAL: &str = "validate --plots {F}/plots.csv --x-field x --y-field y --plots-crs EPSG:32630 --observed-field npp --observed-unit kg~C~m-2~yr-1";
const TRAIN: &str = "landcover train --stack {F}/s/stack.toml --bands R,N --labels {F}/s/landcover_worldcover.tif --legend esa-worldcover";

/// At least 60 distinct bad inputs across every command.
fn cases() -> Vec<(String, Bad)> {
    let c = |prefix: &str, b: Bad| (prefix.to_string(), b);
    vec![
        // indices
        c("indices --stack {F}/nowhere.toml --out {O}", bad(&["nowhere.toml", "does not exist"])),
        c("indices --stack {F}/hostile/raster.toml --out {O}", bad(&["raster.toml", "GeoTIFF"])),
        c("indices --stack {F}/hostile/junk.toml --out {O}", bad(&["junk.toml", "binary"])),
        c("indices --stack {F}/hostile/latin1.toml --out {O}", bad(&["latin1.toml", "UTF-8"])),
        c("indices --stack {F}/hostile/empty.toml --out {O}", bad(&["empty.toml"])),
        c("indices --stack {F}/hostile/junk.bin --out {O}", bad(&["junk.bin"])),
        c("indices --stack {F}/truncstack/stack.toml --out {O}", bad(&["truncated"])),
        c("indices --stack {F}/s/baddate.toml --out {O}", bad(&["2024-13-45", "date"])),
        c("indices {STACK} --out {O} --index NDXI", bad(&["NDXI"])),
        c("indices {STACK} --out {O} --period fortnight", bad(&["fortnight"])),
        c("indices {STACK} --out {O} --stats medain", bad(&["medain"])),
        c("indices {STACK} --out {O} --const SAVI.L=abc", bad(&["SAVI.L"])),
        c("indices {STACK} --out {O} --crs EPSG:32630 --res 0.0002 --bounds 464000,5620360,474000,5621000", bad(&["0.0002", "pixels"])),
        c("indices {STACK} --out {O} --crs EPSG:32630 --res 20 --bounds 1,2,3", bad(&["bounds"])),
        c("indices {STACK} --out {O} --crs EPSG:32630 --res 20 --bounds 464640,5621000,464000,5620360", bad(&["bounds"])),
        c("indices {STACK} --out {O} --crs EPSG:99999 --res 20 --bounds 464000,5620360,464640,5621000", bad(&["EPSG:99999"])),
        c("indices {STACK} --out {O} --grid-from {F}/nowhere.tif", bad(&["nowhere.tif"])),
        c("indices {STACK} --out {O} --grid-from {F}/hostile/trunc_landcover.tif", bad(&["trunc_landcover.tif", "truncated"])),
        c("indices {STACK} --out {O} --index-table {F}/hostile/junk.toml", bad(&["junk.toml"])),
        c("indices {STACK} --out {O} --index NDXI --stats medain --period fortnight", bad(&["NDXI", "medain", "fortnight"])),
        c("indices {STACK} --out {O} --no-such-flag", bad(&["--no-such-flag"])),
        // npp
        c("{NPP} --out {O} --model foo", bad(&["foo"])),
        c("{NPP} --out {O} --months 13-2", bad(&["13-2"])),
        c("{NPP} --out {O} --legend nosuch-legend", bad(&["nosuch-legend"])),
        c("{NPP} --out {O} --casa-params nosuch", bad(&["nosuch"])),
        c("{NPP} --out {O} --landcover-band 5", bad(&["band 5"])),
        c("{NPP} --out {O} --drivers {F}/hostile/raster.toml", bad(&["raster.toml", "GeoTIFF"])),
        c("{NPP} --out {O} --drivers {F}/hostile/latin1.toml", bad(&["latin1.toml", "UTF-8"])),
        c("{NPP} --out {O} --corrections {F}/hostile/junk.csv", bad(&["junk.csv"])),
        c("{NPP} --out {O} --landcover {F}/hostile/trunc_landcover.tif", bad(&["trunc_landcover.tif", "truncated"])),
        c("{NPP} --out {O} --year 1990", bad(&["1990"])),
        c("{NPP} --out {O} --ndvi {F}/s", bad(&["NDVI"])),
        c("{NPP} --out {O} --model foo --months 13-2", bad(&["foo", "13-2"])),
        // balance
        c("balance --sink {F}/hostile/nan_sink.tif --sink-unit t~CO2~ha-1~yr-1 --lattice {F}/s/emissions_lattice_1km.tif --out {O}", bad(&["nan_sink.tif", "no valid pixel"])),
        c("{BAL} --out {O} --lattice {F}/nowhere.tif", bad(&["nowhere.tif"])),
        c("{BAL} --out {O} --lattice {F}/hostile/trunc_lattice.tif", bad(&["trunc_lattice.tif", "truncated"])),
        c("{BAL} --out {O} --lattice {F}/hostile/junk.bin", bad(&["junk.bin"])),
        c("{BAL} --out {O} --lattice-unit bananas", bad(&["bananas"])),
        c("balance --sink {F}/hostile/trunc_seq.tif --sink-unit t~CO2~ha-1~yr-1 --lattice {F}/s/emissions_lattice_1km.tif --out {O}", bad(&["trunc_seq.tif", "truncated"])),
        c("{BAL} --out {O} --zones {F}/hostile/junk.geojson --zone-fields town", bad(&["junk.geojson"])),
        c("{BAL} --out {O} --zones {F}/s/zones.geojson --zone-fields nosuchfield", bad(&["nosuchfield"])),
        c("{BAL} --out {O} --proxy {F}/nowhere.tif", bad(&["nowhere.tif"])),
        // regrid
        c("regrid --lattice {F}/s/emissions_lattice_1km.tif --to {F}/nowhere.tif --unit t~CO2~cell-1~yr-1 --out {O}.tif", bad(&["nowhere.tif"])),
        c("regrid --lattice {F}/s/emissions_lattice_1km.tif --to {SEQ} --unit furlongs --out {O}.tif", bad(&["furlongs"])),
        c("regrid --lattice {F}/hostile/trunc_lattice.tif --to {SEQ} --unit t~CO2~ha-1~yr-1 --out {O}.tif", bad(&["trunc_lattice.tif", "truncated"])),
        c("regrid --lattice {F}/s/emissions_lattice_1km.tif --to {F}/hostile/junk.bin --unit t~CO2~ha-1~yr-1 --out {O}.tif", bad(&["junk.bin"])),
        // validate
        c("{VAL} --raster {SEQ} --out {O} --plots {F}/nowhere.csv", bad(&["nowhere.csv"])),
        c("{VAL} --raster {SEQ} --out {O} --plots {F}/hostile/junk.csv", bad(&["junk.csv"])),
        c("{VAL} --raster {SEQ} --out {O} --plots {F}/hostile/latin1.csv", bad(&["latin1.csv", "UTF-8"])),
        c("{VAL} --raster {SEQ} --out {O} --observed-field nosuchcol", bad(&["nosuchcol"])),
        c("{VAL} --raster {F}/hostile/trunc_seq.tif --out {O}", bad(&["trunc_seq.tif", "truncated"])),
        c("{VAL} --raster {SEQ} --out {O} --window 2", bad(&["--window 2", "odd"])),
        c("{VAL} --out {O}", bad(&["--raster"])),
        // calibrate
        c("calibrate --plots {F}/nowhere.csv --x-field x --y-field y --observed-field npp --raster {SEQ} --applies-to npp --out {O}", bad(&["nowhere.csv"])),
        c("calibrate --plots {F}/plots.csv --x-field x --y-field y --plots-crs EPSG:32630 --observed-field npp --raster {SEQ} --applies-to leaves --out {O}", bad(&["leaves"])),
        c("calibrate --plots {F}/plots.csv --x-field x --y-field y --plots-crs EPSG:32630 --observed-field npp --raster {F}/nowhere.tif --applies-to npp --out {O}", bad(&["nowhere.tif"])),
        // landcover check
        c("landcover check --map {F}/nowhere.tif --legend esa-worldcover --out {O}.csv", bad(&["nowhere.tif"])),
        c("landcover check --map {F}/s/landcover_worldcover.tif --legend {F}/nowhere.toml --out {O}.csv", bad(&["nowhere.toml"])),
        c("landcover check --map {F}/hostile/trunc_landcover.tif --legend esa-worldcover --out {O}.csv", bad(&["trunc_landcover.tif", "truncated"])),
        c("landcover check --map {F}/s/landcover_worldcover.tif --legend esa-worldcover --band 9 --out {O}.csv", bad(&["band 9"])),
        c("landcover check --map {F}/s/landcover_worldcover.tif --legend {F}/hostile/junk.toml --out {O}.csv", bad(&["junk.toml"])),
        // landcover train
        c("{TRAIN} --out {O} --labels {F}/nowhere.gpkg", bad(&["nowhere.gpkg"])),
        c("{TRAIN} --out {O} --classifier svm", bad(&["svm"])),
        c("{TRAIN} --out {O} --max-features lots", bad(&["lots"])),
        c("{TRAIN} --out {O} --bands Q", bad(&["Q"])),
        c("{TRAIN} --out {O} --labels {F}/hostile/junk.csv", bad(&["junk.csv"])),
        // landcover predict
        c("landcover predict {STACK} --model {F}/nowhere.json --out {O}", bad(&["nowhere.json"])),
        c("landcover predict {STACK} --model {F}/hostile/junk.json --out {O}", bad(&["junk.json"])),
        c("landcover predict --stack {F}/truncstack/stack.toml --model {F}/model/landcover.model.json --out {O}", bad(&["truncated"])),
        // site
        c("site --drivers {F}/nowhere.toml --pft 1 --years 2024-2024 --out {O}", bad(&["nowhere.toml"])),
        c("site --drivers {F}/s/drivers.toml --pft 1 --years 2010-2008 --out {O}", bad(&["2010-2008"])),
        c("site --drivers {F}/s/drivers.toml --pft 99 --years 2024-2024 --out {O}", bad(&["99"])),
        c("site --drivers {F}/hostile/junk.toml --pft 1 --years 2024-2024 --out {O}", bad(&["junk.toml"])),
        // stack
        c("stack {F}/nowhere --out {O}.toml", bad(&["nowhere"])),
        c("stack {F}/s --from 2024-13-45 --out {O}.toml", bad(&["2024-13-45", "--from"])),
        c("stack {F}/hostile/junk.bin --out {O}.toml", bad(&["junk.bin"])),
        // run and check
        c("run {F}/nowhere.toml --out {O}", bad(&["nowhere.toml"])),
        c("run {F}/hostile/junk.toml --out {O}", bad(&["junk.toml"])),
        c("run {F}/hostile/raster.toml --out {O}", bad(&["raster.toml", "GeoTIFF"])),
        c("check {F}/hostile/latin1.toml --out {O}", bad(&["latin1.toml", "UTF-8"])),
    ]
}

fn expand(f: &fixture::Fixture, prefix: &str, out: &Path) -> Vec<String> {
    let seq = fixture::pick(&f.root, "npp/sequestration_tCO2_ha_2024-06_2024-08.tif");
    let text = prefix
        .replace("{STACK}", STACK)
        .replace("{NPP}", NPP)
        .replace("{BAL}", BAL)
        .replace("{VAL}", VAL)
        .replace("{TRAIN}", TRAIN)
        .replace("{SEQ}", &seq.to_string_lossy())
        .replace("{O}", &out.to_string_lossy());
    let words: Vec<String> = f
        .fill(&text)
        .split_whitespace()
        .map(|w| w.replace('~', " "))
        .collect();
    // A flag given again later overrides the template's (the flag and its one value are dropped).
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let later = w.starts_with("--") && words[i + 1..].contains(w);
        let takes_value = words.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        if later {
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        out.push(w.clone());
        i += 1;
    }
    out
}

#[test]
fn every_bad_input_exits_2_names_the_problem_and_writes_nothing() {
    let f = fixture();
    let before = snapshot(&f.root);
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (prefix, case) in &cases {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let args = expand(f, prefix, &out);
        let o = carbonmap().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let mut why = Vec::new();
        if o.status.code() != Some(case.code) {
            why.push(format!("exit {:?}, want {}", o.status.code(), case.code));
        }
        for w in case.want {
            if !err.contains(w) {
                why.push(format!("message lacks {w:?}"));
            }
        }
        let left: Vec<String> = std::fs::read_dir(scratch.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !left.is_empty() {
            why.push(format!("wrote {left:?}"));
        }
        if !why.is_empty() {
            failures.push(format!("{}\n    {}\n    {}", args.join(" "), why.join("; "), err.trim().replace('\n', "\n    ")));
        }
    }
    assert_eq!(snapshot(&f.root), before, "an input changed");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
