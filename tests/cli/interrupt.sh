#!/usr/bin/env bash
# SIGINT drains: runs an endless pipeline into a file, interrupts it once output has appeared,
# and checks the exit code (130), that every line written is whole, and that the run said it
# drained, and neither exited at once nor gave up on the drain. With `twice`, a second SIGINT
# comes while the drain is still running (use a pipeline whose drain takes a while), and the
# run must say it exits at once, still on whole lines.
#   interrupt.sh SLUICE PIPELINE [twice]
set -u
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$1" run "$2" --quiet > "$out" 2> "$err" &
pid=$!
while [ ! -s "$out" ]; do sleep 0.01; done
kill -INT "$pid"
if [ "${3:-}" = twice ]; then
  # Once the first is taken (two pending SIGINTs would merge into one).
  while ! grep -q 'draining' "$err"; do sleep 0.01; done
  kill -INT "$pid"
fi
wait "$pid"
code=$?
if [ "$code" != 130 ]; then
  echo "exit code $code, expected 130"
  exit 1
fi
if grep -qvE '^[0-9]+$' "$out" || [ "$(tail -c 1 "$out" | od -An -c | tr -d ' ')" != '\n' ]; then
  echo "a torn or foreign line in the output"
  exit 1
fi
if [ "${3:-}" = twice ] && ! grep -q 'interrupted again, exiting now' "$err"; then
  echo "the second signal did not exit at once; stderr was:"
  cat "$err"
  exit 1
fi
if [ "${3:-}" != twice ] && [ "$(cat "$err")" != 'sluice: interrupted, draining (again to exit at once)' ]; then
  echo "one signal did not drain to the end; stderr was:"
  cat "$err"
  exit 1
fi
echo "$(wc -l < "$out") whole lines before the run ended"
