#!/usr/bin/python3
"""Write models/ndvi-climatology.toml: monthly NDVI profiles per vegetation type, the last fallback of a
scenario's space-for-time substitution (src/pipeline/scenario/substitute.rs), from the real Sentinel-2 NDVI
series of ../shared/real-data/slovenia-ndvi-landcover (eo-learn's TestEOPatch: 68 dates 2015-07 .. 2017-12,
1 km2 near Ljubljana, NDVI from L1C B08/B04, IS_VALID = data and not cloud) and its LULC raster, classes mapped
to vegetation types by models/legends/slovenia-eolearn-lulc.toml. For each type and calendar month: the median
and quartiles of every valid pixel-date of that month (all years pooled), and their count; a month or type
without valid observations is absent (nan). Deterministic: the same file every time.
Usage: CARBONMAP_REAL_DATA=../shared/real-data scripts/make-ndvi-climatology.py > models/ndvi-climatology.toml"""
import csv
import os
import sys
import tomllib

import numpy as np
from osgeo import gdal

root = os.path.join(os.environ.get("CARBONMAP_REAL_DATA", "../shared/real-data"), "slovenia-ndvi-landcover")
here = os.path.dirname(os.path.abspath(__file__))
legend = tomllib.load(open(os.path.join(here, "..", "models", "legends", "slovenia-eolearn-lulc.toml"), "rb"))
types = {c["code"]: c["vegetation_type"] for c in legend["class"]}
ndvi = gdal.Open(os.path.join(root, "NDVI.tif")).ReadAsArray().astype(np.float64)
valid = gdal.Open(os.path.join(root, "IS_VALID.tif")).ReadAsArray() == 1
lulc = gdal.Open(os.path.join(root, "LULC.tif")).ReadAsArray()
with open(os.path.join(root, "timestamps.csv")) as f:
    months = [int(r["timestamp_utc"][5:7]) for r in csv.DictReader(f)]


def fmt(v):
    return "nan" if v is None else f"{v:.4f}"


out = sys.stdout
out.write("""# Monthly NDVI profiles per vegetation type: the last fallback of a scenario's space-for-time substitution,
# for a changed pixel's new class when no pixel of that class in the whole scene has an NDVI that month
# (src/pipeline/scenario/substitute.rs; a warning names this table whenever it is used, and the substitution
# table records the scope "climatology"). Written by scripts/make-ndvi-climatology.py from one real place:
# 1 km2 near Ljubljana (45.87 N, 14.56 E, temperate, 664-801 m), Sentinel-2 NDVI from top-of-atmosphere
# reflectance (L1C B08/B04; lower than surface-reflectance NDVI, by a few hundredths over vegetation), 68 dates
# 2015-07 .. 2017-12, every valid (cloud-free) pixel-date of a calendar month pooled over the years. Types and
# months without observations are nan (left to the NPP job's gap fill). A scenario may name its own table
# ([substitution] climatology = "file.toml", the same layout) for another region.
""")
out.write('citation = "Sinergise eo-learn example data, TestEOPatch (github.com/sentinel-hub/eo-learn @ 303e758, '
          'example_data/TestEOPatch): Sentinel-2 L1C NDVI, IS_VALID (s2cloudless) and LULC (MKGP RABA land use '
          'recoded by Sinergise); medians and quartiles per LULC class and calendar month computed by '
          'scripts/make-ndvi-climatology.py"\n')
out.write('region = "Ljubljana basin, Slovenia (45.87 N, 14.56 E), 2015-2017"\n')
for code in sorted(types):
    vt = types[code]
    mask = lulc == code
    if not mask.any():
        continue
    med, q1, q3, n = [], [], [], []
    for m in range(1, 13):
        bands = [i for i, mm in enumerate(months) if mm == m]
        vals = np.concatenate([ndvi[i][mask & valid[i]] for i in bands]) if bands else np.array([])
        vals = vals[np.isfinite(vals)]
        if len(vals) == 0:
            med.append(None); q1.append(None); q3.append(None); n.append(0)
        else:
            med.append(float(np.median(vals)))
            q1.append(float(np.percentile(vals, 25)))
            q3.append(float(np.percentile(vals, 75)))
            n.append(int(len(vals)))
    out.write(f"\n[profile.{vt}]\n")
    out.write(f"# LULC class {code}; median, quartiles and count of valid pixel-dates per month, January first\n")
    out.write("median = [" + ", ".join(fmt(v) for v in med) + "]\n")
    out.write("p25 = [" + ", ".join(fmt(v) for v in q1) + "]\n")
    out.write("p75 = [" + ", ".join(fmt(v) for v in q3) + "]\n")
    out.write("count = [" + ", ".join(str(v) for v in n) + "]\n")
