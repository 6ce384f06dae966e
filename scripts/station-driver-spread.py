#!/usr/bin/python3
"""How wrong a run's climate drivers are when they come from a weather station some way off (issue 22's
"climate driver errors by variable"), measured on two Met Office stations: the drivers one station gives a
run, against what the other station recorded over the same months.

Input: ../shared/real-data/climate-uk-stations (Met Office historic station data, Open Government Licence v3):
Yeovilton (51.006 N, 2.641 W), the Exeter demo's drivers (~70 km from Exeter), and Camborne (50.218 N,
5.327 W), both monthly 1978-09 .. 2021-05. Their distance is printed; it is about three times Exeter's from
Yeovilton, so the errors below are on the large side for the Exeter demo.

A driver's error in carbonmap is drawn once per run, the same in every month (src/pipeline/npp/driver_error.rs).
So the error measured here is of a run's period: for every year both stations cover the period's months, the
period's mean temperature at Yeovilton minus Camborne's (K), and the ratio of the period's total rain and of
its mean global radiation (sunshine hours through Angstrom-Prescott, models/climate.toml's a = 0.25, b = 0.50,
with one day length for both stations, so only the sunshine differs). The error's sd is the root mean square
of the years' differences: the stations' mean offset (a place's climate differs from its station's in a way
the run does not know) and their year-to-year disagreement together. Relative errors are the RMS of the
ratio's logarithm (a relative sd).

Usage: station-driver-spread.py DATA_DIR [MONTHS, e.g. 6-7]; prints one line per driver and period.
"""
import csv
import math
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIONS = {"yeovilton": (51.006, -2.641), "camborne": (50.218, -5.327)}


def read(path):
    """(year, month) -> row of one station's monthly table."""
    with open(path, newline="") as f:
        return {(int(r["year"]), int(r["month"])): r for r in csv.DictReader(f)}


def num(row, col):
    v = row.get(col, "")
    return float(v) if v not in ("", None) else None


def day_length_h(lat_deg, month):
    """FAO-56 eq. 34 (N = 24 / pi x omega_s) at the middle of a month of a non-leap year."""
    j = [15, 46, 74, 105, 135, 166, 196, 227, 258, 288, 319, 349][month - 1]
    dec = 0.409 * math.sin(2 * math.pi * j / 365 - 1.39)
    ws = math.acos(-math.tan(math.radians(lat_deg)) * math.tan(dec))
    return 24 / math.pi * ws


def distance_km(a, b):
    """Great-circle distance on a sphere of radius 6371 km."""
    (la1, lo1), (la2, lo2) = [(math.radians(x), math.radians(y)) for x, y in (a, b)]
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def period_values(table, year, months, lat, ap):
    """The period's mean temperature, total rain and mean Angstrom-Prescott radiation factor, or None."""
    t, p, r = [], [], []
    for m in months:
        row = table.get((year, m))
        if row is None:
            return None
        tx, tn, rain, sun = (num(row, c) for c in ("tmax_degC", "tmin_degC", "rain_mm", "sun_hours"))
        if None in (tx, tn, rain, sun):
            return None
        t.append((tx + tn) / 2)
        p.append(rain)
        days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        n_over_big_n = sun / days / day_length_h(lat, m)
        r.append(ap["angstrom_a"] + ap["angstrom_b"] * n_over_big_n)
    return sum(t) / len(t), sum(p), sum(r) / len(r)


def spread(data, months):
    """Per driver: (mean difference, RMS, years) of Yeovilton against Camborne over `months`."""
    ap = tomllib.loads((ROOT / "models" / "climate.toml").read_text())["radiation"]
    y = read(Path(data) / "climate-uk-stations" / "yeovilton_monthly.csv")
    c = read(Path(data) / "climate-uk-stations" / "camborne_monthly.csv")
    lat = (STATIONS["yeovilton"][0] + STATIONS["camborne"][0]) / 2
    diffs = {"temperature": [], "precipitation": [], "radiation": []}
    for year in sorted({k[0] for k in y}):
        a, b = period_values(y, year, months, lat, ap), period_values(c, year, months, lat, ap)
        if a is None or b is None or b[1] <= 0:
            continue
        diffs["temperature"].append(a[0] - b[0])
        diffs["precipitation"].append(math.log(a[1] / b[1]))
        diffs["radiation"].append(math.log(a[2] / b[2]))
    out = {}
    for k, v in diffs.items():
        mean = sum(v) / len(v)
        rms = math.sqrt(sum(x * x for x in v) / len(v))
        out[k] = (mean, rms, len(v))
    return out


def main():
    data = sys.argv[1]
    periods = [sys.argv[2]] if len(sys.argv) > 2 else ["6-7", "1-12"]
    print(f"stations {distance_km(STATIONS['yeovilton'], STATIONS['camborne']):.0f} km apart")
    for per in periods:
        m0, m1 = (int(x) for x in per.split("-"))
        months = list(range(m0, m1 + 1))
        for k, (mean, rms, n) in spread(data, months).items():
            unit = "K" if k == "temperature" else "relative (log ratio)"
            print(f"months {per}: {k} mean {mean:+.4f} rms {rms:.4f} {unit} over {n} years")


if __name__ == "__main__":
    main()
