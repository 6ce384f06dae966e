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
        c("indices {STACK} --out {O} --no-such-flag --memory-mb lots --threads many", bad(&["--no-such-flag", "lots", "many"])),
        c("site --pft abc --years 2024-2024", bad(&["abc", "--drivers", "--out"])),
        // npp
        c("{NPP} --out {O} --model foo", bad(&["foo"])),
        c("{NPP} --out {O} --months 13-2", bad(&["13-2"])),
        c("{NPP} --out {O} --legend nosuch-legend", bad(&["nosuch-legend"])),
        c("{NPP} --out {O} --casa-params nosuch", bad(&["nosuch"])),
        c("{NPP} --out {O} --landcover-band 5", bad(&["band 5"])),
        c("{NPP} --out {O} --drivers {F}/hostile/raster.toml", bad(&["raster.toml", "GeoTIFF"])),
        c("{NPP} --out {O} --drivers {F}/hostile/latin1.toml", bad(&["latin1.toml", "UTF-8"])),
        c("{NPP} --out {O} --corrections {F}/hostile/junk.csv", bad(&["junk.csv"])),
        c("{NPP} --out {O} --corrections {F}/hostile/norows.csv", bad(&["norows.csv", "no rows"])),
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
        c("calibrate --plots {F}/plots.csv --x-field x --y-field y --plots-crs EPSG:32630 --observed-field npp --observed-unit kg~C~m-2~yr-1 --raster {SEQ} --model-unit t~C~ha-1~yr-1 --applies-to npp --out {O}", bad(&["plots.csv", "no group"])),
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
        c("check {F}/hostile/trunc-season.toml --out {O}", bad(&["trunc_landcover.tif", "truncated"])),
        c("run {F}/hostile/trunc-season.toml --out {O}", bad(&["trunc_landcover.tif", "truncated"])),
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
            failures.push(format!(
                "{}\n    {}\n    {}",
                args.join(" "),
                why.join("; "),
                err.trim().replace('\n', "\n    ")
            ));
        }
    }
    assert_eq!(snapshot(&f.root), before, "an input changed");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Outputs that name inputs, for every command that takes an output path: exit 2 naming both, nothing
/// written, the input unchanged (a symlink to an input counts as the input).
#[test]
fn outputs_that_name_inputs_are_refused() {
    let f = fixture();
    let copy = tempfile::tempdir().unwrap();
    // A private copy of the inputs, so a failure cannot spoil the other tests' fixture.
    let src = copy.path().join("in");
    copy_tree(&f.root, &src);
    let link = copy.path().join("link.tif");
    std::os::unix::fs::symlink(src.join("s/landcover_worldcover.tif"), &link).unwrap();
    let seq = fixture::pick(&src, "npp/sequestration_tCO2_ha_2024-06_2024-08.tif");
    let i = |rel: &str| src.join(rel).to_string_lossy().into_owned();
    let seq = seq.to_string_lossy().into_owned();
    let link = link.to_string_lossy().into_owned();
    let unit = "t CO2 ha-1 yr-1";
    let cases: Vec<Vec<String>> = vec![
        vec![
            "indices",
            "--stack",
            &i("s/stack.toml"),
            "--out",
            &i("s/stack.toml"),
        ],
        vec![
            "npp",
            "--ndvi",
            &i("ndvi"),
            "--landcover",
            &i("s/landcover_worldcover.tif"),
            "--legend",
            "esa-worldcover",
            "--drivers",
            &i("s/drivers.toml"),
            "--year",
            "2024",
            "--months",
            "6-8",
            "--out",
            &i("s/landcover_worldcover.tif"),
        ],
        vec![
            "balance",
            "--sink",
            &seq,
            "--lattice",
            &i("s/emissions_lattice_1km.tif"),
            "--out",
            &i("s/emissions_lattice_1km.tif"),
        ],
        vec![
            "regrid",
            "--lattice",
            &i("s/emissions_lattice_1km.tif"),
            "--to",
            &seq,
            "--unit",
            unit,
            "--out",
            &i("s/emissions_lattice_1km.tif"),
        ],
        vec![
            "regrid",
            "--lattice",
            &i("s/emissions_lattice_1km.tif"),
            "--to",
            &seq,
            "--unit",
            unit,
            "--out",
            &seq,
        ],
        vec![
            "landcover",
            "check",
            "--map",
            &i("s/landcover_worldcover.tif"),
            "--legend",
            "esa-worldcover",
            "--out",
            &i("s/landcover_worldcover.tif"),
        ],
        vec![
            "landcover",
            "check",
            "--map",
            &link,
            "--legend",
            "esa-worldcover",
            "--out",
            &i("s/landcover_worldcover.tif"),
        ],
        vec![
            "landcover",
            "train",
            "--stack",
            &i("s/stack.toml"),
            "--bands",
            "R,N",
            "--labels",
            &i("plots.csv"),
            "--x-field",
            "x",
            "--y-field",
            "y",
            "--labels-crs",
            "EPSG:32630",
            "--label-field",
            "vegtype",
            "--model",
            &i("plots.csv"),
            "--out",
            &i("train"),
        ],
        vec![
            "landcover",
            "predict",
            "--stack",
            &i("s/stack.toml"),
            "--model",
            &i("model/landcover.model.json"),
            "--out",
            &i("model/landcover.model.json"),
        ],
        vec![
            "calibrate",
            "--plots",
            &i("plots.csv"),
            "--x-field",
            "x",
            "--y-field",
            "y",
            "--plots-crs",
            "EPSG:32630",
            "--observed-field",
            "npp",
            "--observed-unit",
            "kg C m-2 yr-1",
            "--raster",
            &seq,
            "--model-unit",
            unit,
            "--applies-to",
            "npp",
            "--table",
            &i("plots.csv"),
            "--out",
            &i("cal"),
        ],
        vec![
            "validate",
            "--plots",
            &i("plots.csv"),
            "--x-field",
            "x",
            "--y-field",
            "y",
            "--plots-crs",
            "EPSG:32630",
            "--observed-field",
            "npp",
            "--raster",
            &seq,
            "--out",
            &i("plots.csv"),
        ],
        vec![
            "site",
            "--drivers",
            &i("s/drivers.toml"),
            "--pft",
            "1",
            "--years",
            "2024-2024",
            "--out",
            &i("s/drivers.toml"),
        ],
        vec!["stack", &i("s"), "--out", &i("s/landcover_worldcover.tif")],
        vec!["stack", &i("s"), "--out", &i("s/stack.toml")],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(str::to_string).collect())
    .collect();
    let before = snapshot(copy.path());
    let mut failures = Vec::new();
    for args in &cases {
        let o = carbonmap().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        // The path that collides: the value after the output option (the last --out/--model/--table given).
        let at = args
            .iter()
            .rposition(|a| ["--out", "--model", "--table"].contains(&a.as_str()));
        let collides = args.iter().any(|a| a.ends_with("plots.csv"))
            && args.contains(&"--labels".to_string())
            || args.contains(&"--table".to_string());
        let target = if collides {
            i("plots.csv")
        } else {
            args[at.unwrap() + 1].clone()
        };
        let named = err.contains(target.as_str())
            && (err.contains("names the input") || err.contains("input"));
        if o.status.code() != Some(2) || !named {
            failures.push(format!(
                "{}: exit {:?}: {err}",
                args.join(" "),
                o.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        snapshot(copy.path()),
        before,
        "an input changed or an output was written"
    );
}

/// `run --out` and `-o` into a folder holding a user's files: exit 2 saying what is there, nothing written.
/// A file output that exists and that carbonmap did not write is refused. Folders carbonmap wrote are reused
/// and a user's file left in them is never touched.
#[test]
fn foreign_folders_and_files_are_never_written() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let user = t.path().join("mine");
    std::fs::create_dir_all(user.join("ndvi")).unwrap();
    std::fs::write(user.join("manifest.json"), "{\"mine\": true}").unwrap();
    std::fs::write(user.join("report.md"), "my notes").unwrap();
    std::fs::write(user.join("ndvi/field.tif"), "not carbonmap's").unwrap();
    let before = snapshot(&user);
    let config = t.path().join("season.toml");
    std::fs::write(
        &config,
        format!(
            "[season]\ndefault = \"2024-JJA\"\nout = \"out\"\n[stages.ndvi]\ncommand = \"indices\"\nstack = \"{}\"\nperiod = \"month\"\nstats = \"median\"\n",
            f.root.join("s/stack.toml").display()
        ),
    )
    .unwrap();
    for args in [
        vec![
            "run".to_string(),
            config.to_string_lossy().into(),
            "--out".into(),
            user.to_string_lossy().into(),
        ],
        vec![
            "indices".into(),
            "--stack".into(),
            f.root.join("s/stack.toml").to_string_lossy().into(),
            "--out".into(),
            user.to_string_lossy().into(),
        ],
        vec![
            "samples".into(),
            "--out".into(),
            user.to_string_lossy().into(),
        ],
    ] {
        let o = carbonmap().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("carbonmap did not write") && err.contains("manifest.json"),
            "{err}"
        );
        assert_eq!(snapshot(&user), before);
    }
    // A carbonmap folder with the user's names inside: run refuses the names it would replace.
    let out = t.path().join("ours");
    let ok = |args: &[&str]| {
        let o = carbonmap().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let stack = f.root.join("s/stack.toml");
    let stack = stack.to_str().unwrap();
    ok(&[
        "indices",
        "--stack",
        stack,
        "--out",
        out.to_str().unwrap(),
        "--stats",
        "median",
    ]);
    std::fs::write(out.join("notes.txt"), "field notes").unwrap();
    ok(&[
        "indices",
        "--stack",
        stack,
        "--out",
        out.to_str().unwrap(),
        "--stats",
        "median,max",
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "field notes"
    );
    // The user's file under an output's name in a carbonmap folder: refused, left as it is.
    std::fs::write(out.join("EVI_2024-06.tif"), "mine").unwrap();
    let o = carbonmap()
        .args([
            "indices",
            "--stack",
            stack,
            "--out",
            out.to_str().unwrap(),
            "--index",
            "NDVI,EVI",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("EVI_2024-06.tif") && err.contains("not written by carbonmap"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("EVI_2024-06.tif")).unwrap(),
        "mine"
    );
    // A single-file output over a user's file.
    let mine = t.path().join("regridded.tif");
    std::fs::write(&mine, "mine").unwrap();
    let seq = fixture::pick(&f.root, "npp/sequestration_tCO2_ha_2024-06_2024-08.tif");
    let o = carbonmap()
        .args(["regrid", "--lattice"])
        .arg(f.root.join("s/emissions_lattice_1km.tif"))
        .arg("--to")
        .arg(&seq)
        .args(["--unit", "t CO2 ha-1 yr-1", "--out"])
        .arg(&mine)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "mine");
}

/// Two commands into one folder at once: the second is refused with exit 5 and writes nothing; the first
/// finishes.
#[test]
fn a_second_command_into_a_locked_folder_exits_5() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let marker = std::fs::File::create(out.join(carbonmap::commit::MARKER)).unwrap();
    marker.lock().unwrap();
    let o = carbonmap()
        .args(["indices", "--stack"])
        .arg(f.root.join("s/stack.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(common::list_dir(&out), Vec::<String>::new());
    drop(marker);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
