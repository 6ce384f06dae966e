#!/usr/bin/env bash
# Benchmark of per-zone accounting at township scale (not a test): a SYNTHETIC constant sink raster (default
# 2048 x 2048 px of 20 m on UTM 30N, south-west England) fused with the UK 20 km sector lattice, with N x N
# (default 200 x 200 = 40,000) SYNTHETIC township quads whose shared edges wiggle (24 vertices a quad), in four
# levels: province > city > county > township (4 / 100 / 1,600 / 40,000 zones). Reports wall time and peak
# resident memory at 1 and at 2 threads. Usage: scripts/bench-zones.sh [SIZE] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2048}; N=${2:-200}
DATA=${CARBONMAP_REAL_DATA:-../shared/real-data}
PY=/usr/bin/python3   # Debian's python3-gdal
bash scripts/ensure-deps.sh time python3-gdal
cargo build --release --locked --quiet
work=${BENCH_DIR:-/tmp/carbonmap-bench-zones-$SIZE-$N}
mkdir -p "$work"
x0=400000; y1=5763840; x1=$((x0 + 20 * SIZE)); y0=$((y1 - 20 * SIZE))
[ -f "$work/sink.tif" ] || gdal_create -q -of GTiff -outsize "$SIZE" "$SIZE" -bands 1 -ot Float32 -burn 2.5 \
  -a_srs EPSG:32630 -a_ullr "$x0" "$y1" "$x1" "$y0" -co TILED=YES -co COMPRESS=DEFLATE "$work/sink.tif"
[ -f "$work/zones.gpkg" ] || $PY - "$work/sink.tif" "$work/zones.gpkg" "$N" <<'PY'
import sys, math
from osgeo import gdal, ogr, osr
ds = gdal.Open(sys.argv[1]); out = sys.argv[2]; n = int(sys.argv[3])
gt = ds.GetGeoTransform(); x0, y0 = gt[0], gt[3]
dx = ds.RasterXSize * gt[1] / n; dy = ds.RasterYSize * gt[5] / n
def corner(i, j):  # jittered inside, straight on the border
    jx = 0.0 if i in (0, n) else 0.25 * math.sin(i * 12.9898 + j * 78.233)
    jy = 0.0 if j in (0, n) else 0.25 * math.sin(i * 39.346 + j * 11.135)
    return (x0 + (i + jx) * dx, y0 + (j + jy) * dy)
def edge(a, b):  # 5 points between two corners, the same for both quads that share the edge
    key = tuple(sorted([a, b])); pa, pb = corner(*key[0]), corner(*key[1]); pts = []
    for k in range(1, 6):
        t = k / 6.0
        w = 0.06 * math.sin(7.1 * k + key[0][0] * 3.3 + key[0][1] * 5.7 + key[1][0] + key[1][1] * 2.1)
        nx, ny = -(pb[1] - pa[1]), pb[0] - pa[0]
        pts.append((pa[0] + t * (pb[0] - pa[0]) + w * nx, pa[1] + t * (pb[1] - pa[1]) + w * ny))
    return pts if (a, b) == key else pts[::-1]
d = ogr.GetDriverByName('GPKG').CreateDataSource(out)
srs = osr.SpatialReference(); srs.ImportFromWkt(ds.GetProjection())
lyr = d.CreateLayer('zones', srs, ogr.wkbPolygon)
for f in ['province', 'city', 'county', 'township']:
    lyr.CreateField(ogr.FieldDefn(f, ogr.OFTString))
lyr.StartTransaction()
h, c, q = n // 2, max(n // 10, 1), max(n // 40, 1)
for i in range(n):
    for j in range(n):
        cs = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for k in range(4):
            ring.AddPoint_2D(*corner(*cs[k]))
            for p in edge(cs[k], cs[(k + 1) % 4]):
                ring.AddPoint_2D(*p)
        ring.AddPoint_2D(*corner(*cs[0]))
        poly = ogr.Geometry(ogr.wkbPolygon); poly.AddGeometry(ring)
        f = ogr.Feature(lyr.GetLayerDefn()); f.SetGeometry(poly)
        f['province'] = f'P{i // h}{j // h}'; f['city'] = f'C{i // c:02d}{j // c:02d}'
        f['county'] = f'K{i // q:03d}{j // q:03d}'; f['township'] = f'T{i:03d}{j:03d}'
        lyr.CreateFeature(f)
lyr.CommitTransaction()
PY
for threads in 1 2; do
  rm -rf "$work/out"
  /usr/bin/time -f "%e %M" -o "$work/time.txt" target/release/carbonmap --quiet --threads "$threads" balance \
    --sink "$work/sink.tif" --sink-unit "t CO2 ha-1 yr-1" \
    --lattice "$DATA/uk-emissions-20km/co2BySector_OSGB_20km.tif" --lattice-unit "Tg CO2 km-2 yr-1" \
    --zones "$work/zones.gpkg" --zone-fields province,city,county,township --out "$work/out" 2>/dev/null
  read -r secs rss < "$work/time.txt"
  echo "zones benchmark: ${SIZE}x${SIZE} px sink, $((N * N)) townships in 4 levels, $threads thread(s): $secs s, $((rss / 1024)) MiB"
done
