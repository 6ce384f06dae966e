#!/usr/bin/env python3
"""Write examples/slovenia/stack.toml: one [[scene]] per band of the eo-learn Slovenia NDVI series
(../shared/real-data/slovenia-ndvi-landcover/NDVI.tif, 68 dates), with IS_VALID.tif as the clear-sky mask."""
import csv
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
data = "../../../shared/real-data/slovenia-ndvi-landcover"
rows = list(csv.DictReader(open(root.parent / "shared/real-data/slovenia-ndvi-landcover/timestamps.csv")))
out = [
    "# eo-learn TestEOPatch NDVI series near Ljubljana (68 Sentinel-2 dates, 2015-07 .. 2017-12); band i of NDVI.tif",
    "# with band i of IS_VALID.tif (1 = data and not cloud) as its mask. Written by scripts/slovenia-stack.py.",
    'sensor = "ndvi-series.toml"',
]
for r in rows:
    b = int(r["band"])
    out += [
        "",
        "[[scene]]",
        f'id = "{r["timestamp_utc"]}"',
        f'date = "{r["timestamp_utc"][:10]}"',
        "[scene.files]",
        f'NDVI = {{ path = "{data}/NDVI.tif", band = {b} }}',
        f'IS_VALID = {{ path = "{data}/IS_VALID.tif", band = {b} }}',
    ]
(root / "examples/slovenia/stack.toml").write_text("\n".join(out) + "\n")
