#!/usr/bin/env bash
# Benchmark of the indices stage (not a test): a large SYNTHETIC stack (default 8192 x 8192 px, 12 dates,
# 4 reflectance bands + SCL) composited to yearly NDVI median/mean/max. Reports megapixels per second
# (pixel-dates) and peak resident memory. Usage: scripts/bench-indices.sh [SIZE] [DATES] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-8192}; DATES=${2:-12}; THREADS=${3:-$(nproc)}
bash scripts/ensure-deps.sh time
cargo build --release --locked --quiet
work=${BENCH_DIR:-/tmp/carbonmap-bench-$SIZE}
mkdir -p "$work"
target/release/carbonmap bench-stack --out "$work/stack" --size "$SIZE" --dates "$DATES" >/dev/null
rm -rf "$work/out"
/usr/bin/time -v -o "$work/time.txt" target/release/carbonmap --quiet --threads "$THREADS" indices \
  --stack "$work/stack/stack.toml" --out "$work/out" --index NDVI --period year --stats median,mean,max
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
python3 - "$SIZE" "$DATES" "$secs" "$rss_kb" "$THREADS" <<'PY'
import sys
size, dates, secs, rss, threads = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
mp = size * size * dates / 1e6
print(f"indices benchmark: {size}x{size} px, {dates} dates, NDVI yearly median/mean/max, {threads} threads")
print(f"  wall time      {secs:.1f} s")
print(f"  throughput     {mp / secs:.1f} Mpixel-dates/s ({size*size/1e6/secs:.2f} Mpixel/s of output)")
print(f"  peak memory    {rss / 1024:.0f} MiB (limit 1024 MiB)")
PY
