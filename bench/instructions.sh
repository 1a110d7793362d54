#!/bin/sh
# Instructions an event for one of sluice_rss's one-thread W1 variants, counted by callgrind:
# the count does not depend on the machine's speed mode, so it shows a change of a few percent
# that timings on this machine cannot. It runs the variant at N and 2N events and divides the
# difference by N, which leaves out start-up and shutdown. Needs valgrind (Debian: valgrind).
# T is W1's threshold, 2^62 unless given.
#   bench/instructions.sh BUILD_DIR VARIANT N [T]
set -eu
build=$1 variant=$2 n=$3 threshold=${4:-}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
# The run must succeed (sluice_rss checks the sum) and report a count, or there is no figure.
count() {
  log=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$build/bench/sluice_rss" "$variant" "$1" ${threshold:+"$threshold"} 2>&1 >/dev/null) ||
    { echo "instructions.sh: $variant $1 failed:" >&2; echo "$log" >&2; exit 1; }
  collected=$(echo "$log" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  [ -n "$collected" ] || { echo "instructions.sh: no instruction count from valgrind" >&2; exit 1; }
  echo "$collected"
}
first=$(count "$n")
second=$(count $((2 * n)))
echo "$variant${threshold:+ (T = $threshold)} $(awk -v a="$first" -v b="$second" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }') instructions/event"
