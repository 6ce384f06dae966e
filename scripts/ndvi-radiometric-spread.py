#!/usr/bin/python3
"""How much of NDVI, and of CASA's NPP, the Sentinel-2 sensor's radiometric uncertainty moves (issue 22's
"index noise from the sensor's radiometric uncertainty"), and whether that error is shared across a scene.

Input: the NDVI of 21 Monte Carlo scenarios of one Sentinel-2A L1C scene (2019-03-28, tile 32TMT, Swiss
plateau), each scenario an L1C image perturbed by the ESA Sentinel-2 Radiometric Uncertainty Toolbox's
uncertainty and run through Sen2Cor to L2A, read at 1,634+ crop field points: Graf, L.V., Gorrono, J., Hueni,
A., Walter, A., Aasen, H. (2023) Propagating Sentinel-2 Top-of-Atmosphere Radiometric Uncertainty into Land
Surface Phenology Metrics Using a Monte Carlo Framework, IEEE JSTARS, doi:10.1109/JSTARS.2023.3297713; the
table is github.com/EOA-team/s2toarup @ 17d448c,
S2A_MSIL2A_Analysis/how_many_scenarios/NDVI/NDVI_ZH_Points_2019_EPSG32632_selected-crops.csv (GPL-3.0, read
here, not copied into carbonmap).

Output: per NDVI range, the median sd of a point's NDVI over the scenarios, and of CASA's FPAR (NPP is
proportional to FPAR) for grassland with models/casa/zhu2007.toml's bounds, relative to the FPAR; the share of the
error shared by the whole scene (the sd of the scenarios' mean anomaly) and the mean correlation of two points'
errors. Usage: ndvi-radiometric-spread.py TABLE.csv
"""
import csv
import sys
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def casa_fpar(ndvi, fp, t):
    """CASA's FPAR of an NDVI array for type t (src/npp/casa.rs `fpar`, the types' own or the shared minima)."""
    span = fp["fpar_max"] - fp["fpar_min"]
    nmin = fp["ndvi_min"]
    smin = (1 + nmin) / (1 - nmin)
    by_ndvi = np.clip((ndvi - nmin) / (t["ndvi_max"] - nmin) * span + fp["fpar_min"], fp["fpar_min"], fp["fpar_max"])
    sr = (1 + ndvi) / (1 - ndvi)
    by_sr = np.clip((sr - smin) / (t["sr_max"] - smin) * span + fp["fpar_min"], fp["fpar_min"], fp["fpar_max"])
    by_sr = np.where(ndvi >= t["ndvi_max"], fp["fpar_max"], by_sr)
    return fp["alpha"] * by_ndvi + (1 - fp["alpha"]) * by_sr


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    cols = [c for c in rows[0] if c.startswith("NDVI_")]
    x = np.array([[float(r[c]) if r[c] not in ("", "nan") else np.nan for c in cols] for r in rows])
    x = x[np.all(np.isfinite(x), axis=1)]
    casa = tomllib.loads((ROOT / "models/casa/zhu2007.toml").read_text())
    grass = next(t for t in casa["type"] if t["name"] == "grassland")
    f = casa_fpar(x, casa["fpar"], grass)
    m, sd = x.mean(1), x.std(1, ddof=1)
    fm, fsd = f.mean(1), f.std(1, ddof=1)
    print(f"{x.shape[0]} points x {x.shape[1]} scenarios; NDVI sd median {np.median(sd):.4f}")
    print("ndvi_range,points,ndvi_sd_median,fpar_rel_sd_median")
    for lo, hi in [(-1.0, 0.3), (0.3, 0.5), (0.5, 0.634), (0.634, 1.0)]:
        s = (m > lo) & (m <= hi)
        print(f"{lo}..{hi},{s.sum()},{np.median(sd[s]):.4f},{np.median(fsd[s] / fm[s]):.4f}")
    anomaly = x - m[:, None]
    shared = anomaly.mean(0).std(ddof=1)
    c = np.corrcoef(anomaly)
    corr = c[np.triu_indices(len(c), 1)].mean()
    print(f"shared by the scene: sd {shared:.4f} NDVI; mean correlation of two points' errors {corr:.3f}")


if __name__ == "__main__":
    main()
