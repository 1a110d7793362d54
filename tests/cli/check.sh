#!/usr/bin/env bash
# Runs the real sluice binary and checks what it did:
#   check.sh EXIT STDOUT STDERR -- COMMAND...
# EXIT is the expected exit code; STDOUT and STDERR are files the output must equal exactly,
# or - to skip that comparison. STDOUT as sorted:FILE compares the lines sorted, for pipelines
# whose sinks interleave (partitions, broadcast): every line must be there, in any order.
set -u
expected_exit=$1 expected_stdout=$2 expected_stderr=$3
shift 4
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" > "$out" 2> "$err"
code=$?
status=0
if [ "$code" != "$expected_exit" ]; then
  echo "exit code $code, expected $expected_exit"
  status=1
fi
case "$expected_stdout" in
  -) ;;
  sorted:*) LC_ALL=C sort "$out" | diff -u "${expected_stdout#sorted:}" - || status=1 ;;
  *) diff -u "$expected_stdout" "$out" || status=1 ;;
esac
if [ "$expected_stderr" != - ] && ! diff -u "$expected_stderr" "$err"; then status=1; fi
if [ "$status" != 0 ]; then
  echo "--- stderr was:"
  cat "$err"
fi
exit "$status"
