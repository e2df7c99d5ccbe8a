#!/usr/bin/env bash
# What `make test` runs after setup: the whole test suite and the floors job.
#
# Two chains run side by side:
#   * the suite without the learning test (most of its tests wait on Docker, subprocesses and
#     local servers, so it leaves CPU to spare);
#   * the learning test (pytest marker `learning`: SmolLM2-135M trains for ~10-15 minutes and
#     keeps both cores busy), then the floors job (scripts/floors.sh: the trainer and policy tests
#     on the lowest declared versions).
# One after the other they would add their times; side by side the longer chain sets the pace.
# The second chain's reports are printed at the end (and kept in .envkit/test-*.log).
# Exit status: non-zero when any test of either chain failed.
#
#   bash scripts/test.sh             # what make test runs
#   python3 -m pytest                # the same tests in one process, one after the other
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p .envkit
learning_log=.envkit/test-learning.log
floors_log=.envkit/test-floors.log
rm -f .envkit/test-learning.rc .envkit/test-floors.rc

(
  "$PY" -m pytest -q -s -p no:cacheprovider -m learning --durations=5 >"$learning_log" 2>&1
  echo $? >.envkit/test-learning.rc
  PYTHON="$PY" bash scripts/floors.sh >"$floors_log" 2>&1
  echo $? >.envkit/test-floors.rc
) &
chain=$!
# Interrupted (Ctrl-C, a CI time limit): stop the second chain too, then leave.
trap 'pkill -TERM -P "$chain" 2>/dev/null; kill "$chain" 2>/dev/null; wait "$chain"; exit 130' INT TERM

"$PY" -m pytest -q -m "not learning" --durations=25 --durations-min=5
suite=$?

if kill -0 "$chain" 2>/dev/null; then
  echo "== waiting for the learning test and the floors job (logs: $learning_log, $floors_log)"
fi
wait "$chain"
learned=$(cat .envkit/test-learning.rc 2>/dev/null || echo 1)
floors=$(cat .envkit/test-floors.rc 2>/dev/null || echo 1)
echo "== the learning test, run beside the suite:"
cat "$learning_log"
echo "== the floors job, run after it:"
cat "$floors_log"

echo "== make test: suite exit $suite, learning exit $learned, floors exit $floors"
[ "$suite" -eq 0 ] && [ "$learned" -eq 0 ] && [ "$floors" -eq 0 ]
