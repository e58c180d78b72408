#!/usr/bin/env bash
# Repeat `make test` from fresh clones of one commit, as the issues' "N times in a row" ask.
#   scripts/repeat_test.sh COUNT [ci|primary] [COMMIT]     (default: 5 ci HEAD)
# Each run clones this repository into a temporary directory, checks out COMMIT and runs
# `make test` (with CI=true for the matrix); results go to .ws/repeat/results.txt, one line per
# run, logs next to it. Run it on an otherwise idle machine: the suite's flood and fault tests
# measure rates on 2 cores.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
count="${1:-5}"; mode="${2:-ci}"; commit="$(git -C "$ROOT" rev-parse --short "${3:-HEAD}")"
out="$ROOT/.ws/repeat"; mkdir -p "$out"
for i in $(seq 1 "$count"); do
  dir="$(mktemp -d /tmp/portal-repeat-XXXX)"
  git clone -q "$ROOT" "$dir" && git -C "$dir" checkout -q "$commit"
  start=$(date +%s)
  if [[ "$mode" == ci ]]; then (cd "$dir" && CI=true make test) > "$out/run-$commit-$i.log" 2>&1; rc=$?
  else (cd "$dir" && make test) > "$out/run-$commit-$i.log" 2>&1; rc=$?; fi
  summary=$(grep -E '^=+ .*(passed|failed)' "$out/run-$commit-$i.log" | tr '\n' ' ')
  echo "$(date -Is) $commit $mode run $i rc=$rc $(( $(date +%s) - start )) s $summary" | tee -a "$out/results.txt"
  rm -rf "$dir"
  [[ $rc -eq 0 ]] || break
done
