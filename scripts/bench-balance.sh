#!/usr/bin/env bash
# Benchmark of the fusion stage (not a test): a SYNTHETIC constant sink raster (default 8192 x 8192 px of 20 m
# on UTM 30N, south-west England) fused with the UK 20 km sector lattice (British National Grid, 10 sectors),
# so every pixel corner is transformed between CRSs and pixels straddle cell borders. Reports megapixels per
# second and peak resident memory. Usage: scripts/bench-balance.sh [SIZE] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-8192}; THREADS=${2:-$(nproc)}
DATA=${CARBONMAP_REAL_DATA:-../shared/real-data}
bash scripts/ensure-deps.sh time
cargo build --release --locked --quiet
work=${BENCH_DIR:-/tmp/carbonmap-bench-balance-$SIZE}
mkdir -p "$work"
x0=400000; y1=5763840; x1=$((x0 + 20 * SIZE)); y0=$((y1 - 20 * SIZE))
[ -f "$work/sink.tif" ] || gdal_create -q -of GTiff -outsize "$SIZE" "$SIZE" -bands 1 -ot Float32 -burn 2.5 \
  -a_srs EPSG:32630 -a_ullr "$x0" "$y1" "$x1" "$y0" -co TILED=YES -co COMPRESS=DEFLATE "$work/sink.tif"
rm -rf "$work/out"
/usr/bin/time -v -o "$work/time.txt" target/release/carbonmap --quiet --threads "$THREADS" balance \
  --sink "$work/sink.tif" --sink-unit "t CO2 ha-1 yr-1" \
  --lattice "$DATA/uk-emissions-20km/co2BySector_OSGB_20km.tif" --lattice-unit "Tg CO2 km-2 yr-1" \
  --out "$work/out"
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
python3 - "$SIZE" "$secs" "$rss_kb" "$THREADS" <<'PY'
import sys
size, secs, rss, threads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print(f"balance benchmark: {size}x{size} px sink (UTM 30N) x UK 20 km lattice (10 sectors, OSGB), {threads} threads")
print(f"  wall time      {secs:.1f} s")
print(f"  throughput     {size*size/1e6/secs:.2f} Mpixel/s (two passes over the sink)")
print(f"  peak memory    {rss / 1024:.0f} MiB")
PY
