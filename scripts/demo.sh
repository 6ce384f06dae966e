#!/usr/bin/env bash
# Set up (GDAL when missing), build, and run carbonmap's main job on the SYNTHETIC samples in data-samples/.
# Outputs go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build --release --locked
bin=target/release/carbonmap
[ -f data-samples/stack.toml ] || bash scripts/make-samples.sh
"$bin" indices --stack data-samples/stack.toml --out out/demo/monthly --index NDVI,EVI,NIRv,kNDVI --period month
"$bin" indices --stack data-samples/stack.toml --out out/demo/season --index NDVI,EVI --period season --gap-fill
echo "demo outputs in out/demo/ (see indices_summary.csv in each folder)"
