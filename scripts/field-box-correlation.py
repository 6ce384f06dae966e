#!/usr/bin/python3
"""What a spatially correlated error (`length_km`, the field of src/pipeline/npp/field.rs) does to 1-degree boxes
of 20 km lattice cells: per knot spacing L, the sd of a box's mean relative to one cell's, and the correlation of
a box with its east (67 km away: a degree of longitude at 53 N) and north (111 km) neighbours, averaged over 200
random placements (seed 1). The field at a point is the bilinear blend of its four knots with the weights scaled
so their squares add up to one, so two points covary by the sum of their weights' products.

Usage: field-box-correlation.py [L_KM ...]   (default 50 100 150 200)
"""
import sys

import numpy as np


def weights(x, y, length):
    u, v = x / length, y / length
    i, j = np.floor(u), np.floor(v)
    fu, fv = u - i, v - j
    w = {(i, j): (1 - fu) * (1 - fv), (i + 1, j): fu * (1 - fv), (i, j + 1): (1 - fu) * fv, (i + 1, j + 1): fu * fv}
    n = np.sqrt(sum(a * a for a in w.values()))
    return {k: a / n for k, a in w.items() if a > 0}


def covariance(a, b):
    return sum(a[k] * b.get(k, 0.0) for k in a)


def box(x0, y0, length):
    """The weights of a 1-degree box's 3 x 5 cells of 20 km (60 km east-west by 100 km north-south)."""
    return [weights(x0 + 10 + 20 * i, y0 + 10 + 20 * j, length) for i in range(3) for j in range(5)]


def main():
    rng = np.random.default_rng(1)
    for length in [float(a) for a in sys.argv[1:]] or [50.0, 100.0, 150.0, 200.0]:
        sds, cors = [], []
        for _ in range(200):
            x0, y0 = rng.uniform(0, 1000, 2)
            a, east, north = box(x0, y0, length), box(x0 + 67, y0, length), box(x0, y0 + 111, length)
            var = lambda p, q: sum(covariance(s, t) for s in p for t in q) / (len(p) * len(q))
            va = var(a, a)
            sds.append(np.sqrt(va))
            cors.append((var(a, east) / np.sqrt(va * var(east, east)) + var(a, north) / np.sqrt(va * var(north, north))) / 2)
        print(f"L {length:g} km: a box's mean varies {np.mean(sds):.3f} x a cell's sd; neighbouring boxes correlate by {np.mean(cors):.3f}")


if __name__ == "__main__":
    main()
