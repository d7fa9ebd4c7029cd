#!/usr/bin/env bash
# Stage the finished runs of a long sweep for a commit: config.yaml and result.json of every run
# folder that has a result.json (never checkpoints, logs or unfinished folders), and sweep.json.
#   bash scripts/commit_finished_runs.sh results/asppunet_claim && git commit -m "..."
set -euo pipefail
dir="${1:?usage: scripts/commit_finished_runs.sh RESULTS_DIR}"
[ -d "$dir" ] || { echo "$dir: not a results folder" >&2; exit 2; }
n=0
for res in "$dir"/*/result.json; do
  [ -e "$res" ] || continue
  run="$(dirname "$res")"
  git add -f "$run/config.yaml" "$res"
  n=$((n + 1))
done
[ -e "$dir/sweep.json" ] && git add -f "$dir/sweep.json"
echo "staged $n finished run(s) of $dir"
