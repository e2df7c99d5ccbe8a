#!/usr/bin/env bash
# What `make test` runs after setup: the whole test suite and the floors job.
#
# Two chains run side by side:
#   * the suite, without the learning test and tests/test_models.py;
#   * tests/test_models.py, the learning test (pytest marker `learning`: SmolLM2-135M trains for
#     ~20 minutes beside the suite), then the floors job (scripts/floors.sh: the trainer and
#     policy tests on the lowest declared versions).
# One after the other they would add their times; side by side the longer chain sets the pace.
# Both keep the two cores busy (~92% measured), so the chains are balanced to end together; only
# less work makes make test faster. The end prints both chains' times and the CPU busy share.
# The second chain's reports are printed at the end (and kept in .envkit/test-*.log).
# Exit status: non-zero when any test of either chain failed.
#
#   bash scripts/test.sh             # what make test runs
#   python3 -m pytest                # the same tests in one process, one after the other
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The tests start dozens of Python subprocesses that import torch, transformers, trl and litellm:
# let Python cache their bytecode (uv, which setup.sh installs with, compiles none at install).
unset PYTHONDONTWRITEBYTECODE
# Both chains train torch models at the same time: with torch's default (a thread per core) each,
# twice as many busy threads as cores spin against each other. One thread per chain trained a
# pair of processes 1.4-2.1x faster here (benchmarks/bench_threads.py). Tests that want more set
# it themselves; set OMP_NUM_THREADS yourself to override.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
mkdir -p .envkit
learning_log=.envkit/test-learning.log
floors_log=.envkit/test-floors.log
rm -f .envkit/test-learning.rc .envkit/test-floors.rc .envkit/test-chain2.s

# How busy the machine's CPUs were (from /proc/stat): tells whether the two chains are CPU-bound
# (near 100%: only less work makes make test faster) or wait on I/O, Docker and servers.
cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat 2>/dev/null || echo "0 0"; }
read -r busy0 idle0 < <(cpu_ticks)
start=$SECONDS

# The second chain also takes tests/test_models.py (SmolLM2 itself: ~1.5 min, which converts the
# model the learning test then loads), so that both chains end at about the same time.
(
  {
    "$PY" -m pytest -q -p no:cacheprovider --durations=5 tests/test_models.py
    models=$?
    "$PY" -m pytest -q -s -p no:cacheprovider -m learning --durations=5
    learning=$?
    [ "$models" -eq 0 ] && [ "$learning" -eq 0 ]
  } >"$learning_log" 2>&1
  echo $? >.envkit/test-learning.rc
  PYTHON="$PY" bash scripts/floors.sh >"$floors_log" 2>&1
  echo $? >.envkit/test-floors.rc
  echo $((SECONDS - start)) >.envkit/test-chain2.s
) &
chain=$!
# Interrupted (Ctrl-C, a CI time limit): stop the second chain too, then leave.
trap 'pkill -TERM -P "$chain" 2>/dev/null; kill "$chain" 2>/dev/null; wait "$chain"; exit 130' INT TERM

"$PY" -m pytest -q -m "not learning" --ignore=tests/test_models.py --durations=25 \
  --durations-min=5
suite=$?
suite_s=$((SECONDS - start))

if kill -0 "$chain" 2>/dev/null; then
  echo "== waiting for the learning test and the floors job (logs: $learning_log, $floors_log)"
fi
wait "$chain"
learned=$(cat .envkit/test-learning.rc 2>/dev/null || echo 1)
floors=$(cat .envkit/test-floors.rc 2>/dev/null || echo 1)
echo "== tests/test_models.py and the learning test, run beside the suite:"
cat "$learning_log"
echo "== the floors job, run after it:"
cat "$floors_log"

read -r busy1 idle1 < <(cpu_ticks)
busy=$((busy1 - busy0)); idle=$((idle1 - idle0))
echo "== times: suite ${suite_s} s, second chain $(cat .envkit/test-chain2.s 2>/dev/null || echo ?) s," \
  "both $((SECONDS - start)) s; CPUs busy" \
  "$((100 * busy / (busy + idle > 0 ? busy + idle : 1)))% of the time ($(getconf _NPROCESSORS_ONLN) cores)"
echo "== make test: suite exit $suite, learning exit $learned, floors exit $floors"
[ "$suite" -eq 0 ] && [ "$learned" -eq 0 ] && [ "$floors" -eq 0 ]
