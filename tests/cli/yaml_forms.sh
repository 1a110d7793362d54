#!/usr/bin/env bash
# tests/cli/yaml_forms.yaml into a file that already holds a line: the line stays (append: yes),
# and 16 events follow it (count: 0x10).
set -eu
sluice=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo old > "$out"
OUT=$out "$sluice" run tests/cli/yaml_forms.yaml --quiet
expected=$(echo old; seq 1 16)
if [ "$(cat "$out")" != "$expected" ]; then
  echo "the file holds:"
  cat "$out"
  exit 1
fi
