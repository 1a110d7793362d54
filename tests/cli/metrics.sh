#!/usr/bin/env bash
# --metrics writes a JSON line per stage, the last ones marked final with the run's totals;
# --progress draws a line of events/s per stage on stderr; stdout stays data only.
#   metrics.sh SLUICE
set -u
sluice=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$sluice" run pipelines/square_filter.yaml --quiet --progress --metrics "$dir/metrics.json" > "$dir/out" 2> "$dir/err" || exit 1
status=0
expect() {
  if ! grep -qF "$1" "$2"; then
    echo "missing in $2: $1"
    status=1
  fi
}
expect '"final":true,"stage":"numbers","events_in":0,"events_out":100,"discarded":0,"errors":0,' "$dir/metrics.json"
expect '"final":true,"stage":"square","events_in":100,"events_out":100,' "$dir/metrics.json"
expect '"final":true,"stage":"small","events_in":100,"events_out":31,' "$dir/metrics.json"
expect '"final":true,"stage":"out","events_in":31,"events_out":0,' "$dir/metrics.json"
for key in demand_owed demand_asked buffered busy_ms; do expect "\"$key\":" "$dir/metrics.json"; done
expect 'numbers ' "$dir/err"
expect '/s | square ' "$dir/err"
[ "$(wc -l < "$dir/out")" = 31 ] || { echo "stdout is not the 31 data lines"; status=1; }
# A stage id with a quote is escaped in the JSON.
"$sluice" run tests/cli/quoted_id.yaml --quiet --metrics "$dir/quoted.json" > /dev/null 2>&1 || exit 1
expect '"final":true,"stage":"say \"hi\"","events_in":0,"events_out":3,' "$dir/quoted.json"
exit $status
