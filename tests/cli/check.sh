#!/usr/bin/env bash
# Runs the real sluice binary and checks what it did:
#   check.sh EXIT STDOUT STDERR -- COMMAND...
# EXIT is the expected exit code; STDOUT and STDERR are files the output must equal exactly,
# or - to skip that comparison.
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
if [ "$expected_stdout" != - ] && ! diff -u "$expected_stdout" "$out"; then status=1; fi
if [ "$expected_stderr" != - ] && ! diff -u "$expected_stderr" "$err"; then status=1; fi
if [ "$status" != 0 ]; then
  echo "--- stderr was:"
  cat "$err"
fi
exit "$status"
