#!/usr/bin/env bash
# Makes envkit's Docker sandboxes usable on a Debian/Ubuntu machine, idempotently:
#   1. installs docker.io, debootstrap and bubblewrap if missing (apt-get update only then);
#   2. starts the Docker daemon detached if none answers (log: $DOCKERD_LOG), waits up to 60 s;
#   3. builds the sandbox image once (`envkit sandbox build`; skipped when it exists).
# Run as root: `sudo bash scripts/install_docker.sh`. Takes < 2 s when everything is there.
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/envkit-dockerd.log}"
PYTHON_SET="${PYTHON:-}"
PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" -ne 0 ]; then
  echo "install_docker.sh: run as root (sudo bash $0)" >&2
  exit 1
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then
    echo "started docker with systemctl"
  else
    echo "starting dockerd (log: $DOCKERD_LOG) ..."
    # overlay2 is the fast driver; if the daemon dies with it, retry with its default driver.
    setsid nohup dockerd --storage-driver=overlay2 >>"$DOCKERD_LOG" 2>&1 </dev/null &
    pid=$!
    retried=0
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    if [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null && [ "$retried" -eq 0 ]; then
      echo "dockerd exited with overlay2; retrying with the default storage driver ..."
      setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
      pid=$!
      retried=1
    fi
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "the Docker daemon did not come up within 60 s; last lines of $DOCKERD_LOG:" >&2
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
fi

# Under sudo, PATH may not hold the envkit you installed: pass PYTHON=$(which python) then.
if [ -n "${PYTHON_SET:-}" ]; then
  "$PYTHON" -m envkit.cli sandbox build
elif command -v envkit >/dev/null 2>&1; then
  envkit sandbox build
elif "$PYTHON" -c "import envkit" >/dev/null 2>&1; then
  "$PYTHON" -m envkit.cli sandbox build
else
  echo "install_docker.sh: Docker is ready, but envkit is not importable by $PYTHON;" >&2
  echo "  run: sudo PYTHON=\$(which python) bash $0   (or: envkit sandbox build)" >&2
  exit 1
fi
