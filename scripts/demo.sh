#!/usr/bin/env bash
# Set up (GDAL when missing), build, and run carbonmap's main job on the SYNTHETIC samples in data-samples/:
# the season config examples/demo/season.toml (monthly and seasonal indices, a land-cover classifier trained
# and applied, NPP/Rh/NEP/sequestration with CASA and MOD17, net balance per district, the run report).
# Outputs go to out/demo-season/2024/ (report.md, manifest.json, one folder per stage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build --release --locked
bin=target/release/carbonmap
[ -f data-samples/stack.toml ] || bash scripts/make-samples.sh
"$bin" check examples/demo/season.toml
"$bin" run examples/demo/season.toml "$@"
echo "run report: out/demo-season/2024/report.md (a second run finds every stage up to date)"
