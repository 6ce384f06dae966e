#!/usr/bin/env bash
# A season of carbonmap on a Slurm cluster: plan the shards here, one array task per shard, then the merge once
# every task succeeded.
#   examples/slurm/submit.sh season.toml [--tile-size 4096] [--season 2024] [-o OUT] [--var NAME=VALUE ...]
# `carbonmap plan` runs here first: it runs the stages every shard reads (a stack, a classifier's training) and
# writes OUT/shards.json; run this script inside `salloc` when those are heavy. The options after the config go
# to plan; all but --tile-size also to the shards and the merge. CARBONMAP names the binary (default: carbonmap
# on PATH); the #SBATCH lines of shard.sbatch and merge.sbatch (or SBATCH_* variables) set the resources.
# Prints the two job ids on its last line: "jobs SHARDS MERGE".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${CARBONMAP:-carbonmap}
config=$1
shift
season_args=()
plan_args=()
while [ $# -gt 0 ]; do
    case $1 in
    --tile-size) plan_args+=("$1" "$2"); shift 2 ;;
    --tile-size=*) plan_args+=("$1"); shift ;;
    *) season_args+=("$1"); shift ;;
    esac
done
summary=$("$bin" plan "$config" "${plan_args[@]}" "${season_args[@]}")
echo "$summary"
n=$(echo "$summary" | awk 'NR == 1 {print $1}')
shards=$(sbatch --parsable --array="0-$((n - 1))" "$here/shard.sbatch" "$config" "${season_args[@]}")
merge=$(sbatch --parsable --dependency="afterok:$shards" --kill-on-invalid-dep=yes \
    "$here/merge.sbatch" "$config" "${season_args[@]}")
echo "jobs $shards $merge"
