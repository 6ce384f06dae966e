//! Climate drivers from gridded archives as ERA5 delivers them: hourly fields of several variables in one
//! NetCDF file (packed int16 with scale_factor/add_offset and _FillValue, temperature in K, precipitation in
//! m and radiation in J m-2 per hour, time in "hours since 1900-01-01", no grid mapping), and the same fields
//! as a Zarr store laid out as xarray writes it (latitude ascending, chunked by month). `npp` driven by either
//! gives the NPP of monthly GeoTIFF drivers computed from the same hourly values by numpy (means of K less
//! 273.15, sums of m times 1000, sums of J m-2 over the month's days divided by 1e6 and the days).

mod common;

use std::path::Path;

use common::{carbonmap, read_band};

const W: usize = 4;
const H: usize = 2;
/// A UTM 30N grid near 3 W, 50.5 N (inside the 10 x 10 ERA5-like cells of 0.2 degrees below).
const GT: [f64; 6] = [500_000.0, 30.0, 0.0, 5_600_000.0, 0.0, -30.0];
const LC: [u8; W * H] = [30, 30, 10, 40, 30, 10, 30, 40];
const NDVI: [f32; W * H] = [0.4, 0.5, 0.7, 0.3, 0.6, 0.8, 0.45, 0.35];

/// Hourly fields for 2021 on 10 x 10 cells of 0.2 degrees from (-4, 51.5), written as `era5.nc` and
/// `era5.zarr` (and their daily means as climate models store them, in three calendars), and their monthly aggregates as Float64 GeoTIFFs (`ref_tmean.tif`, degC; `ref_precip.tif`,
/// mm per month; `ref_srad.tif`, MJ m-2 d-1).
const MAKE: &str = r#"
import json, os, sys, datetime
import numpy as np
from osgeo import gdal, osr
d = sys.argv[1]
rng = np.random.default_rng(11)
hours0 = int((datetime.datetime(2021, 1, 1) - datetime.datetime(1900, 1, 1)).total_seconds() // 3600)
n = 8760
t = np.arange(n)
lat = 51.5 - 0.2 * (np.arange(10) + 0.5)          # north to south, as ERA5
lon = -4.0 + 0.2 * (np.arange(10) + 0.5)
hod = (t % 24)[:, None, None]
doy = (t // 24)[:, None, None]
season = np.sin(2 * np.pi * (doy - 105) / 365.0)
grad = (lon[None, None, :] + 3.0) + (lat[None, :, None] - 50.5)
k = 283.0 + 8 * season + 4 * np.sin(2 * np.pi * (hod - 9) / 24) + grad + rng.normal(0, 0.5, (n, 10, 10))
rain = np.where(rng.random((n, 10, 10)) < 0.1, rng.gamma(1.0, 0.0012, (n, 10, 10)), 0.0)
sun = np.clip(np.sin(np.pi * (hod - 5) / 14), 0, None) * (1.6e6 + 0.9e6 * season) * (0.6 + 0.4 * rng.random((n, 10, 10)))
packs = {"t2m": ("K", 0.001, 280.0, k), "tp": ("m", 2e-7, 0.0, rain), "ssrd": ("J m-2", 60.0, 1.9e6, sun)}
raw, val = {}, {}
for name, (unit, s, o, v) in packs.items():
    r = np.clip(np.round((v - o) / s), -32766, 32767).astype("int16")
    raw[name] = r
    val[name] = r.astype("float64") * s + o

f8 = gdal.ExtendedDataType.Create(gdal.GDT_Float64)
string = gdal.ExtendedDataType.CreateString()

# A NetCDF file's dimensions and coordinates: time (name, values, units, calendar), latitude and longitude.
def header(path, time, lat, lon, names=("latitude", "longitude")):
  tname, tvalues, tunits, calendar = time
  ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(path)
  rg = ds.GetRootGroup()
  dt = rg.CreateDimension(tname, "TEMPORAL", None, len(tvalues))
  dy = rg.CreateDimension(names[0], "HORIZONTAL_Y", "NORTH", 10)
  dx = rg.CreateDimension(names[1], "HORIZONTAL_X", "EAST", 10)
  tv = rg.CreateMDArray(tname, [dt], f8)
  tv.Write(tvalues)
  tv.CreateAttribute("units", [], string).WriteString(tunits)
  if calendar is not None:
      tv.CreateAttribute("calendar", [], string).WriteString(calendar)
  for name, dim, values, unit in ((names[0], dy, lat, "degrees_north"), (names[1], dx, lon, "degrees_east")):
      a = rg.CreateMDArray(name, [dim], f8)
      a.Write(values)
      a.CreateAttribute("units", [], string).WriteString(unit)
  return ds, rg, (dt, dy, dx)
hourly = ("valid_time", np.arange(hours0, hours0 + n, dtype="float64"), "hours since 1900-01-01 00:00:00", None)

# NetCDF, ERA5's layout: int16 packed, _FillValue, valid_time in hours since 1900, no grid mapping; and the
# same fields with latitude ascending (rows south first), as many other archives store them; and split at
# 2021-06-15 12:00 (hour 3972, mid-day) between expver 1 (ERA5) and 5 (ERA5T), the other slice missing, as
# CDS requests reaching into the preliminary months came.
def netcdf(path, lat, raw, cut=None, lon=lon):
  ds, rg, (dt, dy, dx) = header(path, hourly, lat, lon)
  if cut is not None:
      de = rg.CreateDimension("expver", None, None, 2)
      rg.CreateMDArray("expver", [de], gdal.ExtendedDataType.Create(gdal.GDT_Int32)).Write(np.array([1, 5], "int32"))
  for name, (unit, s, o, _) in packs.items():
      dims = [dt, dy, dx] if cut is None else [dt, de, dy, dx]
      v = rg.CreateMDArray(name, dims, gdal.ExtendedDataType.Create(gdal.GDT_Int16))
      v.SetNoDataValueDouble(-32767)
      v.SetScale(s)
      v.SetOffset(o)
      v.CreateAttribute("units", [], string).WriteString(unit)
      if cut is None:
          v.Write(raw[name])
      else:
          split = np.full((n, 2, 10, 10), -32767, "int16")
          split[:cut, 0] = raw[name][:cut]
          split[cut:, 1] = raw[name][cut:]
          v.Write(split)
  del ds
netcdf(os.path.join(d, "era5.nc"), lat, raw)
netcdf(os.path.join(d, "era5_south_first.nc"), lat[::-1].copy(), {k: v[:, ::-1, :].copy() for k, v in raw.items()})
netcdf(os.path.join(d, "era5_expver.nc"), lat, raw, cut=3972)
# Longitudes 0..360, as climate models and some ERA5 downloads store them: -4..-2 is 356..358.
netcdf(os.path.join(d, "era5_360.nc"), lat, raw, lon=lon + 360.0)

# Float64 fields of `fields` (name: array) under `time`.
def plain(path, time, fields, names=("latitude", "longitude")):
  ds, rg, dims = header(path, time, lat, lon, names)
  for name, a in fields.items():
      v = rg.CreateMDArray(name, list(dims), f8)
      v.CreateAttribute("units", [], string).WriteString(packs[name][0])
      v.Write(a)
  del ds

# Precipitation as ERA5-Land stores it: a running total since the start of the day (here from the day's 00
# UTC sample: each day's last sample, 23 UTC, holds the day's total of era5.nc's hourly values).
running = np.cumsum(val["tp"].reshape(365, 24, 10, 10), axis=1).reshape(n, 10, 10)
plain(os.path.join(d, "era5land.nc"), hourly, {"tp": running})

# Daily fields of 2021 as climate models store them: days since 1850-01-01 at noon, in a calendar. 2021-01-01
# is day 171 x 365 = 62,415 in noleap, 62,415 + 42 leap days (1852-2020 less 1900) = 62,457 in standard.
day = {k: v.reshape(365, 24, 10, 10).mean(axis=1) * (1 if k == "t2m" else 24) for k, v in val.items()}
for name, first, calendar in (("standard", 62457, "standard"), ("noleap", 62415, "noleap"), ("360", 171 * 360, "360_day")):
  time = ("time", first + np.arange(365) + 0.5, "days since 1850-01-01", calendar)
  plain(os.path.join(d, f"daily_{name}.nc"), time, day, names=("lat", "lon"))

# Zarr v2 as xarray writes it: _ARRAY_DIMENSIONS, CF attributes, latitude ascending, chunks of 744 hours.
z = os.path.join(d, "era5.zarr")
os.makedirs(z)
json.dump({"zarr_format": 2}, open(os.path.join(z, ".zgroup"), "w"))
json.dump({"Conventions": "CF-1.6"}, open(os.path.join(z, ".zattrs"), "w"))
def array(name, a, dims, attrs, chunk0, fill=None):
    p = os.path.join(z, name)
    os.makedirs(p)
    chunks = [chunk0] + list(a.shape[1:])
    json.dump({"zarr_format": 2, "shape": list(a.shape), "chunks": chunks, "dtype": a.dtype.str,
               "compressor": None, "fill_value": fill, "order": "C", "filters": None},
              open(os.path.join(p, ".zarray"), "w"))
    json.dump(dict(attrs, _ARRAY_DIMENSIONS=dims), open(os.path.join(p, ".zattrs"), "w"))
    for c in range(0, a.shape[0], chunk0):
        block = np.zeros([chunk0] + list(a.shape[1:]), a.dtype)
        part = a[c:c + chunk0]
        block[:len(part)] = part
        key = ".".join([str(c // chunk0)] + ["0"] * (a.ndim - 1))
        open(os.path.join(p, key), "wb").write(np.ascontiguousarray(block).tobytes())
array("time", np.arange(hours0, hours0 + n, dtype="<i8"), ["time"],
      {"units": "hours since 1900-01-01 00:00:00", "calendar": "proleptic_gregorian", "standard_name": "time"}, n)
array("latitude", lat[::-1].copy(), ["latitude"], {"units": "degrees_north", "standard_name": "latitude"}, 10)
array("longitude", lon.copy(), ["longitude"], {"units": "degrees_east", "standard_name": "longitude"}, 10)
for name, (unit, s, o, _) in packs.items():
    array(name, raw[name][:, ::-1, :].astype("<i2"), ["time", "latitude", "longitude"],
          {"units": unit, "scale_factor": s, "add_offset": o}, 744, fill=-32767)

# The equivalent monthly drivers.
month = np.array([(datetime.date(2021, 1, 1) + datetime.timedelta(days=int(h // 24))).month for h in t])
days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
refs = {
    "tmean": [val["t2m"][month == m].mean(axis=0) - 273.15 for m in range(1, 13)],
    "precip": [val["tp"][month == m].sum(axis=0) * 1000.0 for m in range(1, 13)],
    "srad": [val["ssrd"][month == m].sum(axis=0) / 1e6 / days[m - 1] for m in range(1, 13)],
}
srs = osr.SpatialReference()
srs.ImportFromEPSG(4326)
for name, bands in refs.items():
    o = gdal.GetDriverByName("GTiff").Create(os.path.join(d, f"ref_{name}.tif"), 10, 10, 12, gdal.GDT_Float64)
    o.SetGeoTransform([-4.0, 0.2, 0.0, 51.5, 0.0, -0.2])
    o.SetProjection(srs.ExportToWkt())
    for i, b in enumerate(bands):
        o.GetRasterBand(i + 1).WriteArray(b)
    del o
"#;

fn fixture(d: &Path) {
    let ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", MAKE])
        .arg(d)
        .status()
        .expect("python3 with osgeo (scripts/test.sh installs python3-gdal)");
    assert!(ok.success());
    common::casa_scene(d, GT, (W, H), (&NDVI, 1.0), &LC);
    std::fs::write(
        d.join("monthly.toml"),
        "step = \"month\"\n[raster.tmean]\nfile = \"ref_tmean.tif\"\nunit = \"degC\"\n\
         [raster.precip]\nfile = \"ref_precip.tif\"\nunit = \"mm\"\n\
         [raster.srad]\nfile = \"ref_srad.tif\"\nunit = \"MJ m-2 d-1\"\n",
    )
    .unwrap();
}

/// `NAME.toml` in `d`: `hourly_drivers(source, "")`.
fn drivers_file(d: &Path, name: &str, source: &str) {
    std::fs::write(d.join(format!("{name}.toml")), hourly_drivers(source, "")).unwrap();
}

/// A drivers file reading t2m, tp and ssrd from `source` (a format string with `{}` for the variable).
fn hourly_drivers(source: &str, extra: &str) -> String {
    let mut s = String::from("step = \"month\"\n");
    for (var, name, unit) in [
        ("tmean", "t2m", "K"),
        ("precip", "tp", "m"),
        ("srad", "ssrd", "J m-2"),
    ] {
        s += &format!(
            "[raster.{var}]\nfile = '{}'\nunit = \"{unit}\"\ntime = \"coordinate\"\ncrs = \"EPSG:4326\"\n{extra}",
            source.replace("{}", name)
        );
    }
    s
}

fn npp(d: &Path, drivers: &str, out: &str) -> assert_cmd::assert::Assert {
    npp_command(d, drivers, out).assert()
}

/// `npp` refused as bad input (exit 2, nothing written): its error message.
fn npp_refused(d: &Path, drivers: &str, out: &str) -> String {
    let a = npp(d, drivers, out).code(2);
    assert!(!d.join(out).exists(), "{out} written");
    String::from_utf8_lossy(&a.get_output().stderr).to_string()
}

fn npp_command(d: &Path, drivers: &str, out: &str) -> assert_cmd::Command {
    let mut c = carbonmap();
    c.args(npp_args(d, drivers, out));
    c
}

fn npp_args(d: &Path, drivers: &str, out: &str) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = [
        "npp",
        "--legend",
        "esa-worldcover",
        "--year",
        "2021",
        "--months",
        "5-7",
    ]
    .iter()
    .map(Into::into)
    .collect();
    for (flag, path) in [
        ("--ndvi", d.join("ndvi")),
        ("--landcover", d.join("lc.tif")),
        ("--drivers", d.join(drivers)),
        ("-o", d.join(out)),
    ] {
        a.push(flag.into());
        a.push(path.into());
    }
    a
}

#[test]
fn hourly_netcdf_and_zarr_drivers_give_the_npp_of_their_monthly_aggregates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    drivers_file(d, "nc", "NETCDF:\"era5.nc\":{}");
    drivers_file(d, "zarr", "ZARR:\"era5.zarr\":/{}");
    drivers_file(d, "south", "NETCDF:\"era5_south_first.nc\":{}");
    drivers_file(d, "expver", "NETCDF:\"era5_expver.nc\":{}");
    drivers_file(d, "lon360", "NETCDF:\"era5_360.nc\":{}");
    npp(d, "monthly.toml", "ref").success();
    npp(d, "nc.toml", "nc").success();
    npp(d, "zarr.toml", "zarr").success();
    npp(d, "south.toml", "south").success();
    npp(d, "expver.toml", "expver").success();
    npp(d, "lon360.toml", "lon360").success();
    for f in [
        "NPP_gC_m2_2021-05_2021-07.tif",
        "Rh_gC_m2_2021-05_2021-07.tif",
    ] {
        let (want, _, _) = read_band(&d.join("ref").join(f), 1);
        assert!(
            want.iter().filter(|v| v.is_finite()).count() >= 6,
            "{want:?}"
        );
        // The same fields stored south first, split between ERA5 and ERA5T slices of expver, or with
        // longitudes 0..360, give the same values, to the bit.
        let (nc, _, _) = read_band(&d.join("nc").join(f), 1);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for other in ["south", "expver", "lon360"] {
            let (o, _, _) = read_band(&d.join(other).join(f), 1);
            assert_eq!(bits(&nc), bits(&o), "{other} {f}");
        }
        for out in ["nc", "zarr"] {
            let (got, _, _) = read_band(&d.join(out).join(f), 1);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    common::close_or_both_nan(*g, *w, 1e-6 * w.abs().max(1.0)),
                    "{out} {f}: {g} vs {w}"
                );
            }
        }
    }
    let prov = common::metadata_item(&d.join("zarr/NPP_gC_m2_2021-05_2021-07.tif"), "DRIVER_SRAD")
        .unwrap();
    assert!(
        prov.contains("sum of 24 sample(s) a day") && prov.contains("era5.zarr"),
        "{prov}"
    );
    // Only the cells around the 4 x 2 px grid were aggregated (the values above are the whole file's).
    assert!(prov.contains(" x 5 of its 10 x 10 cells"), "{prov}");
    let prov = common::metadata_item(
        &d.join("expver/NPP_gC_m2_2021-05_2021-07.tif"),
        "DRIVER_TMEAN",
    )
    .unwrap();
    assert!(prov.contains("its 2 expver slices merged"), "{prov}");

    // Placing each hour one hour later leaves 1 January with 23 of its 24 hours: refused, naming the day.
    std::fs::write(
        d.join("shifted.toml"),
        hourly_drivers("NETCDF:\"era5.nc\":{}", "time_shift_hours = 1\n"),
    )
    .unwrap();
    let err = npp_refused(d, "shifted.toml", "shifted");
    assert!(err.contains("2021-01-01: 23 of 24 samples"), "{err}");
    assert!(!d.join("shifted").exists());

    // Radiation in J m-2 per hour averaged would be off by the hours of a day: refused.
    let mean = hourly_drivers("NETCDF:\"era5.nc\":{}", "").replacen(
        "unit = \"J m-2\"\n",
        "unit = \"J m-2\"\naggregate = \"mean\"\n",
        1,
    );
    std::fs::write(d.join("mean.toml"), mean).unwrap();
    let err = npp_refused(d, "mean.toml", "mean");
    assert!(
        err.contains("raster.srad: aggregate = \"mean\" on a unit that is a total"),
        "{err}"
    );
}

/// `carbonmap check` plans a gridded archive's samples without aggregating them (a year of hourly fields is
/// read once, by the stage): with no usable TMPDIR, where `npp` cannot make its scratch of aggregates, the
/// check of the same season passes; a missing hour is still found by the check, naming its day. A run
/// checks every other input before it aggregates.
#[test]
fn check_plans_hourly_archives_without_aggregating_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    for (name, extra) in [("nc.toml", ""), ("shifted.toml", "time_shift_hours = 1\n")] {
        let text = hourly_drivers("NETCDF:\"era5.nc\":{}", extra);
        std::fs::write(d.join(name), text).unwrap();
    }
    let season = |drivers: &str| {
        format!(
            "[season]\ndefault = \"2021-05..2021-07\"\nout = \"out/{{season}}\"\n\
             [stages.npp]\ncommand = \"npp\"\nndvi = \"ndvi\"\nlandcover = \"lc.tif\"\n\
             legend = \"esa-worldcover\"\ndrivers = \"{drivers}\"\nyear = \"{{year}}\"\nmonths = \"{{months}}\"\n"
        )
    };
    std::fs::write(d.join("season.toml"), season("nc.toml")).unwrap();
    std::fs::write(d.join("shifted-season.toml"), season("shifted.toml")).unwrap();
    let no_tmp = d.join("no-such-tmp");
    let check = |config: &str| {
        carbonmap()
            .env("TMPDIR", &no_tmp)
            .arg("check")
            .arg(d.join(config))
            .assert()
    };
    check("season.toml").success();
    let a = check("shifted-season.toml").code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("2021-01-01: 23 of 24 samples"), "{err}");
    // Drivers of another region are found by the check, naming the file (a monthly GeoTIFF moved 20 degrees
    // east, so that the check does not depend on aggregation).
    let moved = d.join("ref_tmean_east.tif");
    let src = gdal::Dataset::open(d.join("ref_tmean.tif")).unwrap();
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut copy = src.create_copy(&drv, &moved, &Default::default()).unwrap();
    copy.set_geo_transform(&[16.0, 0.2, 0.0, 51.5, 0.0, -0.2])
        .unwrap();
    drop(copy);
    let east = std::fs::read_to_string(d.join("monthly.toml"))
        .unwrap()
        .replace("ref_tmean.tif", "ref_tmean_east.tif");
    std::fs::write(d.join("east.toml"), east).unwrap();
    std::fs::write(d.join("east-season.toml"), season("east.toml")).unwrap();
    let a = check("east-season.toml").code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("climate driver") && err.contains("ref_tmean_east.tif does not overlap"),
        "{err}"
    );
    // The premise: a run does aggregate, into TMPDIR (a file-system failure while running: exit 3).
    let a = npp_command(d, "nc.toml", "run")
        .env("TMPDIR", &no_tmp)
        .assert()
        .code(3);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("cannot create a scratch folder"), "{err}");
    // A run with another bad input says so before it aggregates anything (nor needs a scratch folder).
    std::fs::rename(d.join("ndvi"), d.join("ndvi-away")).unwrap();
    std::fs::create_dir(d.join("ndvi")).unwrap();
    let a = npp_command(d, "nc.toml", "run")
        .env("TMPDIR", &no_tmp)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("no NDVI composite") && !err.contains("scratch"),
        "{err}"
    );
    std::fs::remove_dir(d.join("ndvi")).unwrap();
    std::fs::rename(d.join("ndvi-away"), d.join("ndvi")).unwrap();
    // The aggregates' values are still checked, once made: kelvins declared as degC are refused.
    let text = hourly_drivers("NETCDF:\"era5.nc\":{}", "").replacen("\"K\"", "\"degC\"", 1);
    std::fs::write(d.join("celsius.toml"), text).unwrap();
    let err = npp_refused(d, "celsius.toml", "celsius");
    assert!(err.contains("outside the plausible range"), "{err}");
}

/// A season's manifest records a Zarr store as one input (its files' number, total size, latest time and one
/// hash over their paths and contents), not one record a chunk file; a chunk rewritten with other bytes makes
/// the stage run again, a chunk touched with the same bytes does not.
#[test]
fn a_season_records_a_zarr_store_as_one_input() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    drivers_file(d, "zarr", "ZARR:\"era5.zarr\":/{}");
    std::fs::write(
        d.join("season.toml"),
        "[season]\ndefault = \"2021-05..2021-07\"\nout = \"out/{season}\"\n\
         [stages.npp]\ncommand = \"npp\"\nndvi = \"ndvi\"\nlandcover = \"lc.tif\"\n\
         legend = \"esa-worldcover\"\ndrivers = \"zarr.toml\"\nyear = \"{year}\"\nmonths = \"{months}\"\n",
    )
    .unwrap();
    let run = || {
        let a = assert_cmd::Command::cargo_bin("carbonmap")
            .unwrap()
            .args(["--log-format", "json", "run"])
            .arg(d.join("season.toml"))
            .assert()
            .success();
        // The npp stage's last state, from the JSON log lines.
        let log = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        let state = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "stage")
            .last()
            .map(|v| v["state"].as_str().unwrap().to_string());
        state.unwrap_or_else(|| panic!("no stage state in {log}"))
    };
    run();
    let manifest = d.join("out/2021-05_2021-07/manifest.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let inputs = m["stages"][0]["inputs"].as_array().unwrap();
    let store = d.join("era5.zarr");
    let chunks = walkdir::WalkDir::new(&store)
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count();
    // The fixture's store: .zgroup, .zattrs, and per array .zarray, .zattrs and its chunks.
    assert!(chunks > 30, "{chunks}");
    let zarr: Vec<_> = inputs
        .iter()
        .filter(|r| r["path"].as_str().unwrap().contains("era5.zarr"))
        .collect();
    assert_eq!(zarr.len(), 1, "{zarr:?}");
    assert_eq!(zarr[0]["path"], store.to_string_lossy().as_ref());
    assert_eq!(zarr[0]["files"], chunks as u64);
    assert_eq!(run(), "up to date");
    // Touched, same bytes: still up to date. Rewritten with other bytes: the stage runs again.
    let chunk = store.join("tp/4.0.0");
    let bytes = std::fs::read(&chunk).unwrap();
    std::fs::write(&chunk, &bytes).unwrap();
    assert_eq!(run(), "up to date");
    let mut other = bytes.clone();
    other[0] ^= 1;
    std::fs::write(&chunk, &other).unwrap();
    assert_eq!(run(), "done");
}

/// Climate-model files count days in their own calendar. The same daily fields of 2021 stored in the noleap
/// calendar (2021-01-01 is day 62,415 since 1850) give the NPP and Rh of the standard-calendar file (day
/// 62,457), to the bit: counted as Gregorian days, every noleap sample would land 42 days early. A 360_day
/// file's daily fields cannot be laid on 2021's days: refused, naming the calendar. Provenance names the
/// noleap calendar.
#[test]
fn model_calendars_place_each_day_where_it_belongs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    for cal in ["standard", "noleap", "360"] {
        drivers_file(d, cal, &format!("NETCDF:\"daily_{cal}.nc\":{{}}"));
    }
    npp(d, "standard.toml", "standard").success();
    npp(d, "noleap.toml", "noleap").success();
    for f in [
        "NPP_gC_m2_2021-05_2021-07.tif",
        "Rh_gC_m2_2021-05_2021-07.tif",
    ] {
        let (s, _, _) = read_band(&d.join("standard").join(f), 1);
        let (n, _, _) = read_band(&d.join("noleap").join(f), 1);
        assert!(s.iter().filter(|v| v.is_finite()).count() >= 6, "{s:?}");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&s), bits(&n), "{f}");
    }
    // The provenance names a calendar that is not Gregorian.
    let tmean = |dir: &str| {
        common::metadata_item(
            &d.join(dir).join("NPP_gC_m2_2021-05_2021-07.tif"),
            "DRIVER_TMEAN",
        )
        .unwrap()
    };
    let noleap = tmean("noleap");
    assert!(
        noleap.contains("counted in the noleap (365 days every year) calendar"),
        "{noleap}"
    );
    assert!(
        !tmean("standard").contains("calendar"),
        "{}",
        tmean("standard")
    );
    let err = npp_refused(d, "360.toml", "360");
    assert!(
        err.contains("360_day") && err.contains("one sample a step"),
        "{err}"
    );
}

/// ERA5-Land's accumulations run from the start of the day. Summed as totals per hour they would count each
/// hour up to 24 times: refused, saying what to declare. With aggregate = "accumulated" (each day's last
/// sample) they give the NPP and Rh of the same rain as hourly totals.
#[test]
fn running_totals_are_found_and_read_as_accumulations() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    let hourly = hourly_drivers("NETCDF:\"era5.nc\":{}", "");
    std::fs::write(d.join("nc.toml"), &hourly).unwrap();
    let land = hourly.replace("NETCDF:\"era5.nc\":tp", "NETCDF:\"era5land.nc\":tp");
    std::fs::write(d.join("summed.toml"), &land).unwrap();
    let accumulated = land.replacen(
        "unit = \"m\"\n",
        "unit = \"m\"\naggregate = \"accumulated\"\n",
        1,
    );
    std::fs::write(d.join("land.toml"), accumulated).unwrap();
    let err = npp_refused(d, "summed.toml", "summed");
    assert!(
        err.contains("only rise") && err.contains("aggregate = \"accumulated\""),
        "{err}"
    );
    npp(d, "nc.toml", "nc").success();
    npp(d, "land.toml", "land").success();
    for f in [
        "NPP_gC_m2_2021-05_2021-07.tif",
        "Rh_gC_m2_2021-05_2021-07.tif",
    ] {
        let (want, _, _) = read_band(&d.join("nc").join(f), 1);
        let (got, _, _) = read_band(&d.join("land").join(f), 1);
        assert!(want.iter().filter(|v| v.is_finite()).count() >= 6);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                common::close_or_both_nan(*g, *w, 1e-6 * w.abs().max(1.0)),
                "{f}: {g} vs {w}"
            );
        }
    }
}

/// Monthly fields of 2021 on a global grid of 1 degree (4 rows from 52 N), random per cell, written with
/// longitudes -180..180 (`g180.nc`) and the same cells rolled to 0..360 (`g360.nc`, its first column east of
/// Greenwich), in the units carbonmap reads (degC, mm per month, MJ m-2 d-1).
const MAKE_GLOBAL: &str = r#"
import sys
import numpy as np
from osgeo import gdal
d = sys.argv[1]
rng = np.random.default_rng(5)
lat = 52.0 - (np.arange(4) + 0.5)
lon = np.arange(360) + 0.5 - 180.0
fields = {"tmean": rng.uniform(5, 25, (12, 4, 360)), "precip": rng.uniform(10, 120, (12, 4, 360)),
          "srad": rng.uniform(5, 25, (12, 4, 360))}
f8 = gdal.ExtendedDataType.Create(gdal.GDT_Float64)
string = gdal.ExtendedDataType.CreateString()
def write(path, lon, roll):
  ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(path)
  rg = ds.GetRootGroup()
  dt = rg.CreateDimension("time", "TEMPORAL", None, 12)
  dy = rg.CreateDimension("lat", "HORIZONTAL_Y", "NORTH", 4)
  dx = rg.CreateDimension("lon", "HORIZONTAL_X", "EAST", 360)
  t = rg.CreateMDArray("time", [dt], f8)
  t.Write(np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], "float64") + 14.5)
  t.CreateAttribute("units", [], string).WriteString("days since 2021-01-01")
  for name, dim, values in (("lat", dy, lat), ("lon", dx, lon)):
      rg.CreateMDArray(name, [dim], f8).Write(values)
  for name, a in fields.items():
      rg.CreateMDArray(name, [dt, dy, dx], f8).Write(np.roll(a, roll, axis=2).copy())
  del ds
write(f"{d}/g180.nc", lon, 0)
write(f"{d}/g360.nc", np.arange(360) + 0.5, -180)
"#;

/// A grid across the Greenwich meridian (-0.32..0.23 E, UTM 30N) under a global file of longitudes 0..360:
/// the cells west of 0 are its last columns, joined to its first. The NPP and Rh equal those of the same
/// cells stored -180..180, to the bit.
#[test]
fn a_global_file_of_longitudes_0_to_360_covers_a_grid_across_greenwich() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", MAKE_GLOBAL])
        .arg(d)
        .status()
        .unwrap();
    assert!(ok.success());
    let gt = [690_000.0, 10_000.0, 0.0, 5_600_000.0, 0.0, -10_000.0];
    common::casa_scene(d, gt, (W, H), (&NDVI, 1.0), &LC);
    for file in ["g180", "g360"] {
        let mut s = String::from("step = \"month\"\n");
        for (var, unit) in [("tmean", "degC"), ("precip", "mm"), ("srad", "MJ m-2 d-1")] {
            s += &format!(
                "[raster.{var}]\nfile = 'NETCDF:\"{file}.nc\":{var}'\nunit = \"{unit}\"\n\
                 time = \"coordinate\"\ncrs = \"EPSG:4326\"\n"
            );
        }
        std::fs::write(d.join(format!("{file}.toml")), s).unwrap();
        npp(d, &format!("{file}.toml"), file).success();
    }
    for f in [
        "NPP_gC_m2_2021-05_2021-07.tif",
        "Rh_gC_m2_2021-05_2021-07.tif",
    ] {
        let (want, _, _) = read_band(&d.join("g180").join(f), 1);
        let (got, _, _) = read_band(&d.join("g360").join(f), 1);
        assert!(
            want.iter().filter(|v| v.is_finite()).count() >= 6,
            "{want:?}"
        );
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&want), bits(&got), "{f}");
    }
    // Only the cells around the grid were aggregated: columns 359 and 0 and 2 margin columns each side.
    let prov = common::metadata_item(
        &d.join("g360/NPP_gC_m2_2021-05_2021-07.tif"),
        "DRIVER_TMEAN",
    )
    .unwrap();
    assert!(prov.contains("6 x 4 of its 360 x 4 cells"), "{prov}");
}

/// A run killed (SIGKILL) while it aggregates hourly archives commits nothing; its scratch folder of
/// aggregates (in TMPDIR) stays behind, unlocked, and the next run removes it and gives the same NPP as a
/// run never killed.
#[test]
fn a_run_killed_while_aggregating_commits_nothing_and_its_scratch_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixture(d);
    drivers_file(d, "nc", "NETCDF:\"era5.nc\":{}");
    let scratch_root = d.join("tmp");
    std::fs::create_dir(&scratch_root).unwrap();
    let scratch = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&scratch_root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("carbonmap-drivers-"))
            .collect()
    };
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("carbonmap"))
        .args(npp_args(d, "nc.toml", "killed"))
        .env("TMPDIR", &scratch_root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a scratch folder holds its lock (a run killed in the microseconds before has its folder
    // removed a minute later: `scratch.rs`, SETUP_GRACE).
    while !scratch().iter().any(|p| p.join("lock").exists()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before aggregating"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let locked = |p: &std::path::PathBuf| p.join("lock").exists();
    let left: Vec<_> = scratch().into_iter().filter(locked).collect();
    assert!(!left.is_empty());
    let committed: Vec<String> = match std::fs::read_dir(d.join("killed")) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tif") || n.ends_with(".csv"))
            .collect(),
        Err(_) => Vec::new(),
    };
    assert!(committed.is_empty(), "{committed:?}");
    npp_command(d, "nc.toml", "after")
        .env("TMPDIR", &scratch_root)
        .assert()
        .success();
    assert!(left.iter().all(|p| !p.exists()), "{left:?} left");
    // Nothing else but a folder the kill caught in its set-up (without its lock yet).
    assert!(!scratch().iter().any(locked), "{:?}", scratch());
    npp(d, "nc.toml", "never_killed").success();
    let f = "NPP_gC_m2_2021-05_2021-07.tif";
    let (a, _, _) = read_band(&d.join("after").join(f), 1);
    let (b, _, _) = read_band(&d.join("never_killed").join(f), 1);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}
