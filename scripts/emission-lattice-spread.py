#!/usr/bin/env python3
"""How far two emission inventories disagree per 1-degree cell over Great Britain: the UK 20 km sector lattice
(ukghg NAEI base maps, about 2015) regridded by `carbonmap regrid` (exact overlaps) onto the CDIAC 1-degree grid,
against CDIAC's 2013 fossil-fuel CO2 there (Andres et al. 2016, ndp058 v2016). Both are scaled to a common total
over the compared cells (the products' years and sector coverage differ), so what remains is where each puts the
emissions. Cells where both hold more than 0.2 Tg C yr-1. Prints each cell and the spreads; the median absolute
relative deviation / 0.6745 is the normal sd that models/uncertainty/carbonmap-validation.toml uses for
`emissions` (robust to the point-source cells where the two disagree most), and the correlation of edge
neighbours' disagreement, which sets the error's length.

Usage: scripts/emission-lattice-spread.py [CARBONMAP_BIN]   (CARBONMAP_REAL_DATA must be set)"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from osgeo import gdal

gdal.UseExceptions()
root = os.environ["CARBONMAP_REAL_DATA"]
binary = sys.argv[1] if len(sys.argv) > 1 else "carbonmap"
with tempfile.TemporaryDirectory() as tmp:
    cdiac = os.path.join(tmp, "cdiac2013.tif")
    gdal.Translate(cdiac, os.path.join(root, "cdiac-ffco2-1deg/cdiac_ffco2_gridcar_1990_2013_TgC_per_cell.tif"),
                   bandList=[24], projWin=[-12, 62, 4, 49])
    uk_path = os.path.join(tmp, "uk_on_1deg.tif")
    subprocess.run([binary, "--quiet", "regrid", "--lattice",
                    os.path.join(root, "uk-emissions-20km/co2BySector_OSGB_20km.tif"),
                    "--lattice-unit", "Tg CO2 km-2 yr-1", "--to", cdiac, "--unit", "Tg C cell-1 yr-1",
                    "-o", uk_path], check=True)
    uk = np.nansum(gdal.Open(uk_path).ReadAsArray().astype(float), axis=0)
    cd_ds = gdal.Open(cdiac)
    cd = cd_ds.ReadAsArray().astype(float)
    gt = cd_ds.GetGeoTransform()
keep = (uk > 0.2) & (cd > 0.2)
scale = uk[keep].sum() / cd[keep].sum()
ratio = uk[keep] / (scale * cd[keep])
for (r, c), q in zip(np.argwhere(keep), ratio):
    print(f"cell {gt[0] + c + 0.5:+.1f} E {gt[3] - r - 0.5:.1f} N: ukghg {uk[r, c]:.3f}, CDIAC {cd[r, c]:.3f} Tg C; "
          f"ratio {q:.2f}")
# Whether neighbouring cells disagree alike: the correlation of ln(ratio) over pairs of compared cells that share
# an edge (each pair both ways), the length over which the allocation error is alike.
logr = {tuple(rc): float(np.log(q)) for rc, q in zip(np.argwhere(keep), ratio)}
pairs = np.array([(logr[a], logr[(a[0] + dr, a[1] + dc)]) for a in logr for dr, dc in [(0, 1), (1, 0)]
                  if (a[0] + dr, a[1] + dc) in logr])
both = np.r_[pairs, pairs[:, ::-1]]
r1 = float(np.corrcoef(both[:, 0], both[:, 1])[0, 1])
print(f"{len(pairs)} pairs of edge neighbours; correlation of their ln(ratio) {r1:.3f} "
      f"(standard error about {1 / np.sqrt(len(pairs)):.2f})")
mad = float(np.median(np.abs(ratio - 1.0)))
print(f"{keep.sum()} cells; common-total scale {scale:.4f}; median |ratio - 1| = {mad:.3f} "
      f"(normal sd {mad / 0.6745:.3f}); sd of ln(ratio) = {np.log(ratio).std(ddof=1):.3f}")
