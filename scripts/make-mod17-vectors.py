#!/usr/bin/env python3
"""Reference vectors for carbonmap's MOD17 engine, computed with the reference implementation.

    python3 -m venv /tmp/m17 && /tmp/m17/bin/pip install mod17==1.0.0
    /tmp/m17/bin/python scripts/make-mod17-vectors.py tests/data

Writes mod17_daily.csv (per PFT and day: drivers, daily GPP and leaf/fine-root maintenance respiration) and
mod17_annual.csv (per PFT and year: GPP, the three maintenance-respiration terms and NPP), using the BPLUT that
ships with the package (MOD17_BPLUT_CX.X_MERRA_NASA.csv, restored with mod17.utils.restore_bplut). The drivers
are random but seeded, and each PFT also gets days exactly on and around the Tmin and VPD ramp ends.
tests/mod17_reference.rs reads both files.

It also writes mod17_site_drivers.csv, a station table of two whole years (2001-2002) whose VPD comes from
specific humidity and pressure (MOD17.vpd, as MOD17 derives it from MERRA-2), and mod17_site_daily.csv /
mod17_site_annual.csv, the package's daily GPP and leaf/fine-root respiration and annual terms for every PFT on
that table: tests/site_mod17_reference.rs runs `carbonmap site` on it and compares the CSV files site writes.
"""
import os
import sys

import numpy as np
import mod17
from mod17 import MOD17, PFT_VALID
from mod17.utils import restore_bplut

assert mod17.__version__ == "1.0.0", mod17.__version__

out = sys.argv[1]
bplut = restore_bplut(os.path.join(os.path.dirname(mod17.__file__), "data", "MOD17_BPLUT_CX.X_MERRA_NASA.csv"))
rng = np.random.default_rng(20261121)
DAYS_PER_YEAR = 120
YEARS = (2001, 2002)

daily = open(os.path.join(out, "mod17_daily.csv"), "w")
daily.write("pft,year,day,fpar,tmin_degc,vpd_pa,par_mj_m2_d,lai,tmean_degc,gpp_gc_m2_d,r_leaf_gc_m2_d,r_froot_gc_m2_d\n")
annual = open(os.path.join(out, "mod17_annual.csv"), "w")
annual.write("pft,year,gpp_gc_m2,r_leaf_gc_m2,r_froot_gc_m2,r_livewood_gc_m2,npp_gc_m2\n")
for pft in PFT_VALID:
    params = {k: bplut[k][pft] for k in MOD17.required_parameters}
    model = MOD17(params)
    n = DAYS_PER_YEAR * len(YEARS)
    years = np.repeat(YEARS, DAYS_PER_YEAR)
    fpar = rng.uniform(0.2, 1.0, n)
    tmin = rng.uniform(-15.0, 22.0, n)
    vpd = rng.uniform(0.0, 5500.0, n)
    par = rng.uniform(2.0, 14.0, n)
    lai = rng.uniform(0.1, 3.5, n)
    tmean = tmin + rng.uniform(2.0, 12.0, n)
    # Ramp ends exactly, and just inside/outside them.
    edges_t = [params["tmin0"], params["tmin1"], params["tmin0"] - 1e-9, params["tmin1"] + 1e-9, params["tmin0"] + 0.5]
    edges_v = [params["vpd0"], params["vpd1"], params["vpd0"] - 1e-6, params["vpd1"] + 1e-6, params["vpd1"] - 1.0]
    tmin[: len(edges_t)] = edges_t
    vpd[: len(edges_v)] = edges_v
    gpp = model.daily_gpp(fpar, tmin, vpd, par)
    r_leaf, r_froot = model.daily_respiration(lai, tmean)
    for i in range(n):
        daily.write(
            f"{pft},{years[i]},{i % DAYS_PER_YEAR + 1},"
            + ",".join(repr(float(a[i])) for a in (fpar, tmin, vpd, par, lai, tmean, gpp, r_leaf, r_froot))
            + "\n"
        )
    # The annual functions are called on (T, 1) arrays (one pixel), their documented layout: with 1-D arrays
    # annual_npp broadcasts the live-wood term against the others and returns a (years, years) array. They are
    # called one year at a time: mod17 1.0.0 sums the live-wood Q10 term over every day passed in, not per year
    # (annual_respiration: np.power(Q10_livewood, (tmean - 20) / 10).sum(axis = 0) over the whole series), so
    # with several years its live-wood respiration of each year grows with the number of years. carbonmap sums
    # per year; on one year the two definitions coincide.
    col = lambda a: a.reshape(-1, 1)
    for y in YEARS:
        m = years == y
        ar_leaf, ar_froot, ar_live = model.annual_respiration(col(lai[m]), col(tmean[m]), col(years[m]))
        npp = model.annual_npp(
            col(fpar[m]), col(tmin[m]), col(vpd[m]), col(par[m]), col(lai[m]), col(tmean[m]), col(years[m]))
        row = [gpp[m].sum(), ar_leaf[0, 0], ar_froot[0, 0], ar_live[0, 0], npp[0, 0]]
        annual.write(f"{pft},{y}," + ",".join(repr(float(v)) for v in row) + "\n")
daily.close()
annual.close()


# --- a whole-year station table for `carbonmap site` ----------------------------------------------------------
rng = np.random.default_rng(20261130)
dates = np.arange(np.datetime64("2001-01-01"), np.datetime64("2003-01-01"))
n = len(dates)
years = dates.astype("datetime64[Y]").astype(int) + 1970
doy = (dates - dates.astype("datetime64[Y]")).astype(int)
season = np.sin(2 * np.pi * (doy - 100) / 365.0)
tmin = 4.0 + 12.0 * season + rng.normal(0, 3, n)
tmean = tmin + rng.uniform(3.0, 10.0, n)
fpar = np.clip(0.45 + 0.35 * season + rng.normal(0, 0.05, n), 0.05, 0.98)
lai = rng.uniform(0.2, 4.0, n)
par = np.clip(7.0 + 5.0 * season + rng.normal(0, 1.5, n), 0.5, 20.0)
ps = rng.uniform(80000.0, 102000.0, n)
svp = 610.7 * np.exp(17.38 * tmean / (239 + tmean))
rh = rng.uniform(0.2, 0.95, n)
avp = rh * svp
qv = 0.622 * avp / (ps - 0.379 * avp)  # inverse of MOD17.vpd's actual vapour pressure
vpd = MOD17.vpd(qv, ps, tmean)
with open(os.path.join(out, "mod17_site_drivers.csv"), "w") as f:
    f.write("date,fpar,lai,tmin_degc,tmean_degc,qv_kg_kg,ps_pa,par_mj_m2_d,vpd_pa_mod17\n")
    for i in range(n):
        f.write(f"{dates[i]}," + ",".join(repr(float(a[i])) for a in (fpar, lai, tmin, tmean, qv, ps, par, vpd)) + "\n")
sd = open(os.path.join(out, "mod17_site_daily.csv"), "w")
sd.write("pft,date,gpp_gc_m2_d,r_leaf_gc_m2_d,r_froot_gc_m2_d\n")
sa = open(os.path.join(out, "mod17_site_annual.csv"), "w")
sa.write("pft,year,gpp_gc_m2,r_leaf_gc_m2,r_froot_gc_m2,r_livewood_gc_m2,npp_gc_m2\n")
for pft in PFT_VALID:
    model = MOD17({k: bplut[k][pft] for k in MOD17.required_parameters})
    gpp = model.daily_gpp(fpar, tmin, vpd, par)
    r_leaf, r_froot = model.daily_respiration(lai, tmean)
    for i in range(n):
        sd.write(f"{pft},{dates[i]}," + ",".join(repr(float(a[i])) for a in (gpp, r_leaf, r_froot)) + "\n")
    col = lambda a: a.reshape(-1, 1)
    for y in (2001, 2002):
        m = years == y
        ar_leaf, ar_froot, ar_live = model.annual_respiration(col(lai[m]), col(tmean[m]), col(years[m]))
        npp = model.annual_npp(col(fpar[m]), col(tmin[m]), col(vpd[m]), col(par[m]), col(lai[m]), col(tmean[m]), col(years[m]))
        sa.write(f"{pft},{y}," + ",".join(repr(float(v)) for v in (gpp[m].sum(), ar_leaf[0, 0], ar_froot[0, 0], ar_live[0, 0], npp[0, 0])) + "\n")
sd.close()
sa.close()
