#!/usr/bin/env bash
# carbonmap's view of a stack made by ../shared/peer/make_stack.py: a stack manifest (stack.toml), a legend for
# its 5 land-cover classes (legend.toml) and a drivers file (drivers.toml), written into OUT.
# Usage: scripts/peer-view.sh STACK_DIR OUT
set -euo pipefail
stack=$(cd "$1" && pwd); out=$2
mkdir -p "$out"
{
  echo 'sensor = "sentinel2-l2a"'
  for f in "$stack"/s2_*.tif; do
    d=$(basename "$f" .tif); d=${d#s2_}
    printf '[[scene]]\ndate = "%s"\nfile = "%s"\n' "$d" "$f"
  done
} > "$out/stack.toml"
cat > "$out/legend.toml" <<'TOML'
product = "peer-stack"
name = "make_stack.py land cover (SYNTHETIC)"
citation = "../shared/peer/make_stack.py manifest.json classes"
nodata = [0]
[[class]]
code = 1
name = "forest"
vegetation_type = "mixed_forest"
color = "#008000"
[[class]]
code = 2
name = "cropland"
vegetation_type = "cropland"
color = "#ffff00"
[[class]]
code = 3
name = "grassland"
vegetation_type = "grassland"
color = "#90ee90"
[[class]]
code = 4
name = "urban"
vegetation_type = "urban"
color = "#ff0000"
[[class]]
code = 5
name = "water"
vegetation_type = "water"
color = "#0000ff"
TOML
cat > "$out/drivers.toml" <<TOML
step = "month"
[raster.tmean]
file = "$stack/climate_T.tif"
unit = "degC"
[raster.precip]
file = "$stack/climate_P.tif"
unit = "mm"
[raster.srad]
file = "$stack/climate_SOL.tif"
unit = "MJ m-2"
TOML

