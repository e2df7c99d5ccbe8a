# The two commands of the README:
#   make demo   installs what is missing, then trains a LoRA adapter on a bundled env (CPU ok)
#   make test   installs what is missing (Python packages, Docker engine, sandbox image), runs the tests
PY ?= python3
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh --docker

demo: setup
	$(PY) -m envkit.cli eval Arithmetic-v0 --model smollm2-135m --num-tasks 8 --group-size 4 --max-tokens 32 --kwarg operators='"+*"' --kwarg max_turns=1

test: setup
	$(PY) -m pytest -q --durations=20

lint:
	ruff check . && ruff format --check .

bench:
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done
