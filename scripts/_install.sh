# Sourced by scripts/setup.sh and scripts/floors.sh (not run by itself).
#
#   pip_into PYTHON ARGS...   # `pip install ARGS` into PYTHON's environment
#
# It uses uv when uv is available (a fresh virtual environment fills in ~10 s from uv's cache,
# against ~4 min for pip: most of `make test`'s setup time on a fresh clone), else pip. uv reads
# none of pip's configuration, so this hands it the machine's: find-links, index URLs and
# constraint files from `pip config list` (files and PIP_* variables alike), pip's certificate
# bundle, and pip's rule of taking the best version across all indexes. If uv fails for any
# reason the same install is retried with pip, which stays the reference.

_pip_config_values() {  # _pip_config_values PYTHON KEY -> the values of KEY, one per line
  "$1" -m pip config list 2>/dev/null |
    sed -n "s/^[^.]*\.$2='\(.*\)'\$/\1/p" | tr ' ' '\n' | awk 'NF && !seen[$0]++'
}

_uv() {  # the uv command to use, or nothing
  if command -v uv >/dev/null 2>&1; then
    echo uv
  elif "$PY" -m uv --version >/dev/null 2>&1; then
    echo "$PY -m uv"
  fi
}

pip_into() {
  local target=$1
  shift
  local uv_cmd
  uv_cmd=$(_uv)
  if [ -n "$uv_cmd" ] && [ -z "${ENVKIT_NO_UV:-}" ]; then
    # No --compile-bytecode (pip compiles every installed file: ~4 min of the ~4.5 min pip takes
    # for envkit's extras here); Python compiles what is imported, once, when it may write
    # bytecode (make test and scripts/test.sh unset PYTHONDONTWRITEBYTECODE for that reason).
    local flags=(--python "$target" --index-strategy unsafe-best-match --quiet)
    local value
    while read -r value; do [ -n "$value" ] && flags+=(--find-links "$value"); done \
      < <(_pip_config_values "$PY" find-links)
    while read -r value; do [ -n "$value" ] && flags+=(--index-url "$value"); done \
      < <(_pip_config_values "$PY" index-url | head -1)
    while read -r value; do [ -n "$value" ] && flags+=(--extra-index-url "$value"); done \
      < <(_pip_config_values "$PY" extra-index-url)
    while read -r value; do [ -f "$value" ] && flags+=(--constraint "$value"); done \
      < <(_pip_config_values "$PY" constraint)
    local cert
    cert=$(_pip_config_values "$PY" cert | head -1)
    if SSL_CERT_FILE=${cert:-${SSL_CERT_FILE:-}} $uv_cmd pip install "${flags[@]}" "$@"; then
      return 0
    fi
    echo "install: uv failed; the same install with pip" >&2
  fi
  "$target" -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }
  return "${PIPESTATUS[0]}"
}
