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
# NPP, Rh, NEP and sequestration for June-August 2024 (the months with imagery), CASA and MOD17, from
# gap-filled monthly NDVI medians (the July cloud is filled in time from June and August), the synthetic land-cover map (ESA WorldCover codes) and the synthetic station climate.
"$bin" indices --stack data-samples/stack.toml --out out/demo/ndvi-filled --index NDVI --period month --stats median --gap-fill
for model in casa mod17; do
  "$bin" npp --model "$model" --ndvi out/demo/ndvi-filled --landcover data-samples/landcover_worldcover.tif \
    --legend esa-worldcover --drivers data-samples/drivers.toml --year 2024 --months 6-8 --monthly \
    --out "out/demo/npp-$model"
done
echo "demo outputs in out/demo/ (indices_summary.csv, casa_summary_*.csv and mod17_summary_*.csv tables)"
# Net carbon balance: the CASA sink against the SYNTHETIC 1 km emission lattice (its bands declare
# "t CO2 km-2 yr-1"), with the SYNTHETIC two-district zones. The sink covers June-August only; it is declared
# as the year's figure on purpose here (an annual run needs NDVI for every month).
"$bin" balance --sink out/demo/npp-casa/sequestration_tCO2_ha_2024-06_2024-08.tif --sink-unit "t CO2 ha-1 yr-1" \
  --lattice data-samples/emissions_lattice_1km.tif --zones data-samples/zones.geojson --zone-fields town,district \
  --out out/demo/balance
echo "net balance in out/demo/balance/ (net_balance.png, zones_balance.csv, lattice_balance.csv)"
# Land cover from the imagery: a random forest trained on the SYNTHETIC WorldCover map with band and index
# features, assessed on 200 m blocks held out, then applied to the stack (class map, confidence, areas).
"$bin" landcover train --stack data-samples/stack.toml --bands B,G,R,N --indices NDVI,NDWI --stats median,max \
  --labels data-samples/landcover_worldcover.tif --legend esa-worldcover --block-size 200 --trees 50 \
  --out out/demo/landcover
"$bin" landcover predict --stack data-samples/stack.toml --model out/demo/landcover/landcover.model.json \
  --out out/demo/landcover/map
echo "land cover in out/demo/landcover/ (accuracy.json, map/landcover.tif, map/landcover_area.csv)"
