#!/usr/bin/env bash
# Regenerate data-samples/: a SYNTHETIC Sentinel-2 L2A stack (4 dates, one on another CRS, one with a
# cloud). Deterministic: the same files every time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo run --release --locked --quiet -- samples --out data-samples --size 96
