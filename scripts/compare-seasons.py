#!/usr/bin/python3
"""Compare two season output folders: every stage raster value for value (NaN where NaN) with the same grid,
and the zone and lattice tables byte for byte. Prints the differences; exit 1 when there are any.
Usage: scripts/compare-seasons.py WHOLE MERGED"""
import filecmp
import glob
import os
import sys

import numpy as np
from osgeo import gdal

a, b = sys.argv[1], sys.argv[2]
bad = 0
files = sorted(f for f in glob.glob(a + "/*/*.tif") if "/report/" not in f)
for f in files:
    rel = os.path.relpath(f, a)
    g = os.path.join(b, rel)
    if not os.path.exists(g):
        print("missing", rel)
        bad += 1
        continue
    A, B = gdal.Open(f), gdal.Open(g)
    if A.GetGeoTransform() != B.GetGeoTransform() or A.RasterCount != B.RasterCount:
        print("grid differs", rel)
        bad += 1
        continue
    for i in range(1, A.RasterCount + 1):
        x, y = A.GetRasterBand(i).ReadAsArray(), B.GetRasterBand(i).ReadAsArray()
        same = np.array_equal(x, y, equal_nan=(x.dtype.kind == "f"))
        if not same:
            print("values differ", rel, "band", i)
            bad += 1
for t in ["balance/zones_balance.csv", "balance/lattice_balance.csv"]:
    if not filecmp.cmp(os.path.join(a, t), os.path.join(b, t), shallow=False):
        print("table differs", t)
        bad += 1
print(f"{len(files)} rasters and 2 tables compared: {bad} difference(s)")
sys.exit(1 if bad else 0)
