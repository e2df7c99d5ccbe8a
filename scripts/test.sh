#!/usr/bin/env bash
# What `make test` runs after setup: the whole test suite, then the floors job.
#
# The learning tests (pytest marker `learning`: SmolLM2-135M trains for ~10-15 minutes and keeps
# both cores busy) run in a second pytest process beside the others, whose tests mostly wait on
# Docker, subprocesses and local servers; run one after the other they would add their whole
# time to the suite's. Their report is printed at the end (and kept in .envkit/test-learning.log).
# Exit status: non-zero when any test of either process or of the floors job failed.
#
#   bash scripts/test.sh             # what make test runs
#   python3 -m pytest                # the same tests in one process, one after the other
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p .envkit
log=.envkit/test-learning.log

"$PY" -m pytest -q -s -p no:cacheprovider -m learning --durations=5 >"$log" 2>&1 &
learning=$!
# Interrupted (Ctrl-C, a CI time limit): stop the learning run too, then leave.
trap 'kill "$learning" 2>/dev/null; wait "$learning" 2>/dev/null; exit 130' INT TERM

"$PY" -m pytest -q -m "not learning" --durations=25 --durations-min=5
suite=$?
PYTHON="$PY" bash scripts/floors.sh
floors=$?

if kill -0 "$learning" 2>/dev/null; then
  echo "== waiting for the learning tests (running since the suite started; log: $log)"
fi
wait "$learning"
learned=$?
echo "== the learning tests, run beside the suite:"
cat "$log"

echo "== make test: suite exit $suite, floors exit $floors, learning exit $learned"
[ "$suite" -eq 0 ] && [ "$floors" -eq 0 ] && [ "$learned" -eq 0 ]
