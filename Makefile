# The two commands of the README:
#   make demo   installs what is missing, then trains a LoRA adapter on a bundled env (CPU ok)
#   make test   installs what is missing (Python packages, Docker engine, sandbox image), runs the
#               tests and the floors job (trainer + policy tests on the lowest declared versions);
#               the learning test and the floors job run beside the rest (scripts/test.sh)
PY ?= python3
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Python may cache bytecode (setup.sh installs with uv, which compiles none; scripts/_install.sh).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh --docker

demo: setup
	$(PY) -m envkit.cli train Arithmetic-v0 --model smollm2-135m -k 'operators=+*' -k max_turns=1 --steps 20 --groups-per-step 2 --max-new-tokens 32 --eval-every 10 --out runs/demo --overwrite

test: setup
	PYTHON=$(PY) bash scripts/test.sh

lint:
	ruff check . && ruff format --check .

bench:
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done
