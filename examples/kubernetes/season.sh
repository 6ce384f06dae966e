#!/usr/bin/env bash
# A carbonmap season on Kubernetes, run by the CronJob's driver pod (cronjob.yaml): plan the shards, apply the
# Indexed Job of shards-job.yaml with the plan's shard count, wait for it, merge. The season's config is
# /data/season.toml on the shared volume (its [season] out on that volume too); CARBONMAP_SEASON picks a
# season (default: the config's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=${CARBONMAP_CONFIG:-/data/season.toml}
season_args=()
if [ -n "${CARBONMAP_SEASON:-}" ]; then season_args=(--season "$CARBONMAP_SEASON"); fi
summary=$(carbonmap plan "$config" --tile-size "${CARBONMAP_TILE_SIZE:-4096}" "${season_args[@]}")
echo "$summary"
export SHARDS=$(echo "$summary" | awk 'NR == 1 {print $1}')
export JOB=carbonmap-shards-$(date +%Y%m%d%H%M%S)
sed -e "s/\${JOB}/$JOB/g" -e "s/\${SHARDS}/$SHARDS/g" "$here/shards-job.yaml" | kubectl apply -f -
kubectl wait --for=condition=complete --timeout=48h "job/$JOB"
carbonmap merge "$config" "${season_args[@]}"
