#!/usr/bin/env bash
# A pipeline that has taken what it needs ends at once, although its input, a pipe kept open,
# has nothing more to read: the read waiting on it gives up when the source stops. With a
# blocking read the run would last until the writer closes the pipe, 60 s later, past the
# test's timeout.
#   lines_blocked.sh SLUICE PIPELINE
set -u
dir=$(mktemp -d)
fifo=$dir/input
mkfifo "$fifo"
{ printf 'a\nb\nc\n'; exec sleep 60; } > "$fifo" &
writer=$!
trap 'kill "$writer" 2>/dev/null; rm -rf "$dir"' EXIT
out=$("$1" run "$2" --quiet < "$fifo")
code=$?
if [ "$code" != 0 ]; then
  echo "exit code $code, expected 0"
  exit 1
fi
if [ "$out" != $'a\nb' ]; then
  echo "output was: $out"
  exit 1
fi
