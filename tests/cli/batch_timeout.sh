#!/usr/bin/env bash
# A partial batch goes out after timeout_ms: the input sends "a" and stays open, and only once
# "a" has come out as a batch of its own does it send "b" and end.
#   batch_timeout.sh SLUICE
set -u
dir=$(mktemp -d)
trap 'exec 3>&-; rm -rf "$dir"' EXIT
mkfifo "$dir/in"
"$1" run tests/cli/batch_timeout.yaml --quiet < "$dir/in" > "$dir/out" &
pid=$!
exec 3> "$dir/in"
echo a >&3
# Waits for the flush, not for a time: without the timeout this never ends (ctest's limit).
until grep -qx a "$dir/out"; do sleep 0.01; done
echo b >&3
exec 3>&-
wait "$pid" || { echo "sluice failed"; exit 1; }
if [ "$(cat "$dir/out")" != "$(printf 'a\nb')" ]; then
  echo "expected two batches, a and b; got:"
  cat "$dir/out"
  exit 1
fi
