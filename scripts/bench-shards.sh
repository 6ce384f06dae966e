#!/usr/bin/env bash
# Benchmark (not a test) of sharding: the demo season (without its scenario) on SYNTHETIC samples of SIZE x SIZE
# px, run whole, then planned in 1, 4 and 16 shards (tiles of SIZE, SIZE/2, SIZE/4 px), every shard run one
# after another on this machine, merged, and compared with the whole run value for value (rasters) and byte
# for byte (zone and lattice tables). Prints wall time and peak memory of the whole run, of each plan, shard
# and merge: the cost model of README "Scale-out".
# Usage: scripts/bench-shards.sh [SIZE]      (default 4096; BENCH_DIR to choose the work folder)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-4096}
[ $((SIZE % 1024)) -eq 0 ] || { echo "SIZE must be a multiple of 1024 (shards of SIZE/4 px on the 256-px tiles)" >&2; exit 2; }
bash scripts/ensure-deps.sh time python3-gdal python3-numpy
cargo build --release --locked --quiet
BIN=$PWD/target/release/carbonmap
work=${BENCH_DIR:-/tmp/carbonmap-shards-$SIZE}
rm -rf "$work"
mkdir -p "$work"
"$BIN" --quiet samples --size "$SIZE" --out "$work/samples" >/dev/null
cut=$(grep -n '^# A scenario against' examples/demo/season.toml | cut -d: -f1)
head -n $((cut - 1)) examples/demo/season.toml |
  sed -e 's#samples = "../../data-samples"#samples = "samples"#' \
      -e 's#out = "../../out/demo-season/{season}"#out = "out/{season}"#' > "$work/season.toml"
cd "$work"
timed() { # LABEL COMMAND...: wall seconds and peak RSS (MiB) of one command
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o time.txt "$@" >/dev/null 2>log.txt || { cat log.txt; exit 1; }
  read -r s kib < time.txt
  printf '%-34s %8.1f s %8.0f MiB\n' "$label" "$s" "$((kib / 1024))"
}
echo "carbonmap $("$BIN" --version | cut -d' ' -f2), $SIZE x $SIZE px, $(nproc) cores"
timed "whole run" "$BIN" --quiet run season.toml -o whole/2024
for tile in "$SIZE" $((SIZE / 2)) $((SIZE / 4)); do
  o=s$tile/2024
  timed "plan (tiles of $tile px)" "$BIN" --quiet plan season.toml --tile-size "$tile" -o "$o"
  n=$(/usr/bin/python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['shards']))" "$o/shards.json")
  for i in $(seq 0 $((n - 1))); do
    timed "  shard $i of $n" "$BIN" --quiet run season.toml -o "$o" --shard "$i"
  done
  timed "merge of $n" "$BIN" --quiet merge season.toml -o "$o"
  /usr/bin/python3 "$OLDPWD/scripts/compare-seasons.py" whole/2024 "$o"
done
