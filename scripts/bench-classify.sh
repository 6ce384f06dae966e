#!/usr/bin/env bash
# Benchmark of the land-cover classifier (not a test): train the README's Germany model (Sentinel-2 L1C,
# 12 features, 8 OSM classes, 100 trees per class) and predict the whole 1536 x 768 px scene. Reports the
# training time, prediction throughput and peak resident memory of each step.
# Usage: scripts/bench-classify.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
DATA=${CARBONMAP_REAL_DATA:-../shared/real-data}
bash scripts/ensure-deps.sh time
cargo build --release --locked --quiet
work=${BENCH_DIR:-/tmp/carbonmap-bench-classify}
rm -rf "$work"; mkdir -p "$work"
/usr/bin/time -v -o "$work/train.txt" target/release/carbonmap --quiet --threads "$THREADS" landcover train \
  --stack examples/germany/stack.toml --bands B,G,R,RE1,RE2,RE3,N,N2,S1,S2 --indices NDVI,NDWI --stats mean \
  --labels "$DATA/germany-s2-l1c/gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg" --label-field fclass \
  --block-size 500 --max-samples-per-class 1000 -o "$work/train"
/usr/bin/time -v -o "$work/predict.txt" target/release/carbonmap --quiet --threads "$THREADS" landcover predict \
  --stack examples/germany/stack.toml --model "$work/train/landcover.model.json" -o "$work/map"
python3 - "$work" "$THREADS" <<'PY'
import re, sys
work, threads = sys.argv[1], sys.argv[2]
def read(name):
    t = open(f"{work}/{name}.txt").read()
    w = re.search(r"Elapsed \(wall clock\).*: (.*)", t).group(1).split(":")
    secs = 0.0
    for p in w:
        secs = secs * 60 + float(p)
    rss = int(re.search(r"Maximum resident set size.*: (\d+)", t).group(1))
    return secs, rss / 1024
ts, tm = read("train")
ps, pm = read("predict")
px = 1536 * 768
print(f"classifier benchmark (Germany S2 L1C, 12 features, 8 classes x 100 trees), {threads} threads")
print(f"  train    {ts:.1f} s, peak memory {tm:.0f} MiB")
print(f"  predict  {ps:.1f} s for {px/1e6:.2f} Mpixel = {px/1e3/ps:.1f} kpixel/s, peak memory {pm:.0f} MiB")
PY
