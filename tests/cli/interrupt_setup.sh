#!/usr/bin/env bash
# SIGINT while the run is still setting up (here, its file sink blocks opening a FIFO that no
# one reads yet) exits at once with 130: nothing has run, and there is no graph to drain yet.
#   interrupt_setup.sh SLUICE
set -u
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/fifo"
cat > "$dir/pipeline.yaml" <<YAML
stages:
  numbers:
    type: range
    to: 5
  out:
    type: file
    path: $dir/fifo
    subscribe_to: numbers
YAML
"$1" run "$dir/pipeline.yaml" > /dev/null 2> "$dir/err" &
pid=$!
# Until the run blocks opening the FIFO (bounded: 10 s).
for _ in $(seq 1000); do
  grep -q wait_for_partner "/proc/$pid/wchan" 2>/dev/null && break
  sleep 0.01
done
kill -INT "$pid"
# Lets a run that did not exit open its file, rather than hang the test.
timeout 5 cat "$dir/fifo" > /dev/null 2>&1 &
wait "$pid"
code=$?
if [ "$code" != 130 ] || ! grep -q 'interrupted, exiting now' "$dir/err"; then
  echo "exit code $code, expected 130 with 'interrupted, exiting now'; stderr was:"
  cat "$dir/err"
  exit 1
fi
echo "interrupted during set-up: exit 130"
