#!/usr/bin/env bash
# Benchmark (not a test) of the whole chain against the numpy peer, side by side in one run, alternating:
#   ../shared/peer/make_stack.py --size SIZE --seed 7 makes the SYNTHETIC Korean stack (12 monthly Sentinel-2
#   L2A scenes with SCL, land cover, monthly climate on EPSG:4326, a 1 km emission lattice on EPSG:5179);
#   "same products": 7 indices x 12 months, CASA, lattice (what `carbon_ref.py chain` writes);
#   "end products":  monthly NDVI, CASA, lattice;
#   the end products at 1 thread against 2 threads (parallel efficiency), and the end products with 100 Monte
#   Carlo draws (npp and balance --draws 100) against the deterministic run (issue 22's cost: at most 15x).
# Prints medians of RUNS runs (default 3): wall time, CPU time, peak RSS, and the ratios.
# Usage: scripts/bench-chain.sh [SIZE] [RUNS]      (BENCH_DIR to choose the work folder)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2048}; RUNS=${2:-3}
PEER=${CARBONMAP_PEER:-../shared/peer}
PY=/usr/bin/python3   # Debian's python3-gdal and python3-numpy
bash scripts/ensure-deps.sh time python3-gdal python3-numpy
cargo build --release --locked --quiet
BIN=$PWD/target/release/carbonmap
work=${BENCH_DIR:-/tmp/carbonmap-chain-$SIZE}
stack=$work/stack
mkdir -p "$work"
if [ ! -f "$stack/manifest.json" ]; then
  $PY "$PEER/make_stack.py" --out "$stack" --size "$SIZE" --seed 7 >/dev/null 2>&1
fi

bash scripts/peer-view.sh "$stack" "$work"

SEVEN=NDVI,EVI,EVI2,SAVI,NIRv,kNDVI,NDWI
cm_chain() { # INDICES THREADS OUT [DRAWS]
  local out=$3
  local mc=()
  if [ -n "${4:-}" ]; then mc=(--draws "$4" --uncertainty "$work/uncertainty.toml" --seed 1); fi
  rm -rf "$out"
  "$BIN" --quiet --threads "$2" indices --stack "$work/stack.toml" --out "$out/indices" \
    --index "$1" --period month --stats median
  "$BIN" --quiet --threads "$2" npp --ndvi "$out/indices" --landcover "$stack/landcover.tif" \
    --legend "$work/legend.toml" --drivers "$work/drivers.toml" --year 2023 --out "$out/npp" "${mc[@]}"
  "$BIN" --quiet --threads "$2" balance --sink "$out/npp/sequestration_tCO2_ha_2023.tif" \
    --lattice "$stack/emissions_lattice.tif" --lattice-unit "t CO2 cell-1 yr-1" --out "$out/balance" "${mc[@]}"
}
peer_chain() {
  rm -rf "$1"
  $PY "$PEER/carbon_ref.py" chain --stack-dir "$stack" --out-dir "$1" 2>/dev/null
}
# The draws' cost does not depend on the spreads; these are the shapes of a real file (models/uncertainty/).
cat > "$work/uncertainty.toml" <<'TOML'
name = "bench-chain"
correlation = 0.3
[[parameter]]
target = "npp"
vegetation_type = "*"
sd = 0.15
source = "benchmark shape only"
[[parameter]]
target = "rh"
sd = 0.2
source = "benchmark shape only"
[[parameter]]
target = "emissions"
sd = 0.1
source = "benchmark shape only"
[[parameter]]
target = "sequestration"
sd = 0.1
source = "benchmark shape only"
TOML
export -f cm_chain peer_chain
export BIN PY PEER work stack

measure() { # NAME COMMAND... -> appends "NAME wall cpu rss_kb" to $work/times.txt
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/one.txt" bash -c "$*"
  read -r wall user sys rss < "$work/one.txt"
  echo "$name $wall $(echo "$user + $sys" | bc) $rss" >> "$work/times.txt"
}

: > "$work/times.txt"
for run in $(seq "$RUNS"); do
  echo "run $run of $RUNS ..." >&2
  measure peer "peer_chain $work/peer"
  measure same "cm_chain $SEVEN 2 $work/cm"
  measure end "cm_chain NDVI 2 $work/cm"
  measure end1 "cm_chain NDVI 1 $work/cm"
  measure draws "cm_chain NDVI 2 $work/cm 100"
done
# The decode floor: every input band read once (2 processes of gdalinfo -checksum).
/usr/bin/time -f "%e" -o "$work/floor.txt" bash -c \
  "ls $stack/*.tif | xargs -P 2 -n 1 gdalinfo -checksum >/dev/null"

$PY - "$work/times.txt" "$work/floor.txt" "$SIZE" "$RUNS" <<'PY'
import sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    n, w, c, r = line.split()
    rows.setdefault(n, []).append((float(w), float(c), int(r)))
floor = float(open(sys.argv[2]).read().split()[-1])
size, runs = sys.argv[3], sys.argv[4]
med = {n: tuple(st.median(x[i] for x in v) for i in range(3)) for n, v in rows.items()}
print(f"chain benchmark: {size} x {size} px, 12 months, medians of {runs} alternating runs, 2 cores")
print(f"{'work':<44} {'wall s':>8} {'cpu s':>8} {'peak RSS MiB':>13} {'vs numpy':>9}")
label = {"peer": "numpy reference (carbon_ref.py chain)",
         "same": "carbonmap same products (7 idx, 2 threads)",
         "end": "carbonmap end products (NDVI, 2 threads)",
         "end1": "carbonmap end products (NDVI, 1 thread)",
         "draws": "carbonmap end products, 100 draws (2 thr)"}
pw = med["peer"][0]
for n in ["peer", "same", "end", "end1", "draws"]:
    w, c, r = med[n]
    print(f"{label[n]:<44} {w:8.2f} {c:8.2f} {r/1024:13.0f} {pw/w:8.2f}x")
print(f"{'decode floor (gdalinfo -checksum, 2 procs)':<44} {floor:8.2f}")
print(f"100 draws / deterministic end products: {med['draws'][0]/med['end'][0]:.2f}x wall (issue 22: at most 15x)")
print(f"end products / decode floor: {med['end'][0]/floor:.2f}x;  parallel efficiency (1 thread / 2 threads): {med['end1'][0]/med['end'][0]:.2f}")
PY
