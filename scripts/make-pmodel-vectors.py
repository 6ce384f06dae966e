#!/usr/bin/env python3
"""Reference vectors for carbonmap's P-model and SPLASH engines, computed with the reference implementation.

    python3 -m venv /tmp/pyr && /tmp/pyr/bin/pip install pyrealm==2.0.0
    /tmp/pyr/bin/python scripts/make-pmodel-vectors.py tests/data $CARBONMAP_REAL_DATA

Writes
- pmodel_grid.csv: the standard P-model (PModel: method_kphio="temperature", reference_kphio=0.081785,
  prentice14 optimal chi, wang17 Jmax limitation, simple Arrhenius; the "BRC" setup of Stocker et al. 2020)
  on a grid of drivers covering every branch: cold (kphio clipped to 0 below about -9 C), freezing, hot, dry
  (VPD up to 10 kPa), humid (VPD 0), low and high CO2, sea level to 5000 m (pressure), and m_j at or below the
  Wang et al. (2017) threshold c* = 0.41 (no Jmax solution: NaN GPP). Also the C4 pathway (method_optchi="c4"),
  and the Stocker et al. (2020) soil-moisture stress on a grid of soil moisture and aridity (meanalpha).
- splash_frpue.csv: SPLASH v1 (Davis et al. 2017) daily soil water, AET, PET and condensation at FR-Pue
  2007-2012 (latitude 43.7413, elevation 270 m, bucket 432.375 mm from FR-Pue_site_info.json; sunshine
  fraction 1 - ccov / 100, precipitation rain x 86400 mm d-1), spun up over the first year as pyrealm does,
  and the P-model GPP with the Stocker stress from that soil water (relative soil water at the start of each
  day, meanalpha = sum(AET) / sum(PET) over the series).
  pyrealm 2.0.0 builds DailyEvapFluxes without the model's bucket size, so its evaporative supply uses the
  default 150 mm whatever kWm is (splash.py: DailyEvapFluxes(solar=..., pa=..., tc=...)). SPLASH's supply is
  Cw x Wn / Wm with Wm the bucket (Davis et al. 2017, eq. 23 with the bucket of eq. 22); the vectors are made with
  that bucket (model.evap.kWm set to kWm), as carbonmap computes it. A second run at the default 150 mm needs
  no such patch and is written as splash_frpue_150.csv.
tests/pmodel_reference.rs reads these files.
"""
import csv
import itertools
import json
import os
import sys
import warnings

import numpy as np
import pyrealm
from pyrealm.core.calendar import Calendar
from pyrealm.pmodel import PModel, PModelEnvironment
from pyrealm.pmodel.functions import calc_soilmstress_stocker
from pyrealm.splash.splash import SplashModel

assert pyrealm.__version__ == "2.0.0", pyrealm.__version__
warnings.simplefilter("ignore")

out, real = sys.argv[1], sys.argv[2]
KPHIO = 0.081785


def r(x):
    return repr(float(x))


def pmodel(tc, vpd, co2, patm, fapar, ppfd, optchi="prentice14"):
    env = PModelEnvironment(
        tc=np.array(tc, float), vpd=np.array(vpd, float), co2=np.array(co2, float),
        patm=np.array(patm, float), fapar=np.array(fapar, float), ppfd=np.array(ppfd, float),
    )
    return env, PModel(env, method_kphio="temperature", reference_kphio=KPHIO, method_optchi=optchi)


# --- grid of drivers ---------------------------------------------------------------------------------------
temps = [-24.0, -12.0, -9.5, -5.0, 0.0, 0.5, 10.0, 25.0, 35.0, 45.0]
vpds = [0.0, 1.0, 300.0, 1500.0, 4000.0, 10000.0]
co2s = [180.0, 400.0, 800.0]
patms = [101325.0, 85000.0, 54000.0]  # sea level, ~1450 m, ~5000 m
rows = list(itertools.product(temps, vpds, co2s, patms))
tc, vpd, co2, patm = (np.array(c) for c in zip(*rows))
fapar = np.full(tc.shape, 0.7)
ppfd = np.full(tc.shape, 500.0)  # umol m-2 s-1 (daily mean)
with open(os.path.join(out, "pmodel_grid.csv"), "w") as f:
    f.write("pathway,tc_degc,vpd_pa,co2_ppm,patm_pa,fapar,ppfd_umol_m2_s,gammastar_pa,kmm_pa,ns_star,ca_pa,"
            "kphio,chi,mj,lue_gc_mol,gpp_ugc_m2_s\n")
    for path, optchi in (("C3", "prentice14"), ("C4", "c4")):
        env, m = pmodel(tc, vpd, co2, patm, fapar, ppfd, optchi)
        for i in range(len(tc)):
            f.write(",".join([path] + [r(a[i]) for a in (
                tc, vpd, co2, patm, fapar, ppfd, env.gammastar, env.kmm, env.ns_star, env.ca,
                np.broadcast_to(m.kphio.kphio, tc.shape), m.optchi.chi, np.broadcast_to(m.optchi.mj, tc.shape),
                m.lue, m.gpp)]) + "\n")

with open(os.path.join(out, "pmodel_stress.csv"), "w") as f:
    f.write("soilm,meanalpha,stress\n")
    for soilm, alpha in itertools.product([0.0, 0.05, 0.2, 0.45, 0.6, 0.6000001, 0.8, 1.0],
                                          [0.1, 0.5, 0.9, 1.0, 1.3]):
        s = calc_soilmstress_stocker(np.array([soilm]), np.array([alpha]))
        f.write(f"{r(soilm)},{r(alpha)},{r(s[0])}\n")

# --- SPLASH and GPP at FR-Pue -------------------------------------------------------------------------------
site = os.path.join(real, "fluxtower-fr-pue")
info = json.load(open(os.path.join(site, "FR-Pue_site_info.json")))["site_info"][0]
forcing = list(csv.DictReader(open(os.path.join(site, "FR-Pue_daily_forcing.csv"))))
col = lambda k: np.array([float(x[k]) for x in forcing])
dates = np.array([x["date"] for x in forcing], dtype="datetime64[D]")
n = len(dates)
sf = 1.0 - col("ccov") / 100.0
pn = col("rain") * 86400.0
tc = col("temp")


def splash_run(kwm, patch):
    shape = (n, 1)
    model = SplashModel(
        lat=np.full(shape, info["lat"]), elv=np.full(shape, info["elv"]), sf=sf.reshape(shape),
        tc=tc.reshape(shape), pn=pn.reshape(shape), dates=Calendar(dates), kWm=np.array([kwm]),
    )
    if patch:
        model.evap.kWm = np.array([kwm])
    wn0 = model.estimate_initial_soil_moisture(verbose=False)
    aet, wn, ro = model.calculate_soil_moisture(wn0)
    return model, wn0, aet[:, 0], wn[:, 0], ro[:, 0]


for kwm, patch, name in ((info["whc"], True, "splash_frpue.csv"), (150.0, False, "splash_frpue_150.csv")):
    model, wn0, aet, wn, ro = splash_run(kwm, patch)
    pet = model.evap.pet_d[:, 0]
    cond = model.evap.cond[:, 0]
    meanalpha = aet.sum() / pet.sum()
    wn_start = np.concatenate([[wn0[0]], wn[:-1]])
    soilm = wn_start / kwm
    stress = calc_soilmstress_stocker(soilm, np.full(n, meanalpha))
    env, m = pmodel(tc, col("vpd"), col("co2"), col("patm"), col("fapar"), col("ppfd") * 1e6)
    gpp_day = m.gpp * 86400.0 * 1e-6  # ug C m-2 s-1 -> g C m-2 d-1
    with open(os.path.join(out, name), "w") as f:
        f.write(f"# kwm_mm={r(kwm)} wn_spinup_mm={r(wn0[0])} meanalpha={r(meanalpha)}\n")
        f.write("date,wn_mm,aet_mm,pet_mm,cond_mm,runoff_mm,soilm,stress,gpp_unstressed_gc_m2_d,gpp_gc_m2_d\n")
        for i in range(n):
            f.write(",".join([str(dates[i])] + [r(a[i]) for a in (
                wn, aet, pet, cond, ro, soilm, stress, gpp_day, gpp_day * stress)]) + "\n")
