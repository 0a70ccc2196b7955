#!/usr/bin/env bash
# The Python virtualenv of the test suite: reference client libraries (huggingface_hub, boto3,
# requests) and the SeaweedFS `weed` binary, pinned in scripts/requirements-test.txt.
# Sourced by scripts/services.sh (and through it by scripts/test.sh).
#
# ensure_python_venv: creates the venv at ${XDG_CACHE_HOME:-$HOME/.cache}/maas/venv if it is
# missing or broken (installing python3-venv with apt-get if no python3 >= 3.10 can make one),
# runs pip only when the sha256 of requirements-test.txt differs from the stamp kept in the
# venv, and exports MAAS_TEST_PYTHON (unless already set). PATH is left alone.

MAAS_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/maas/venv"
MAAS_PY_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-test.txt"
MAAS_VENV_STAMP="$MAAS_VENV/.maas-requirements.sha256"

# Helpers normally defined by services.sh, for when this file is sourced on its own.
declare -F log >/dev/null || log() { printf '[services] %s\n' "$*" >&2; }
declare -F apt_install >/dev/null || apt_install() {
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing $* with apt-get"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Prints a python3 (>= 3.10, which huggingface_hub needs) that can create a venv with pip.
python_for_venv() {
  local c
  for c in python3 python3.13 python3.12 python3.11 python3.10 /usr/bin/python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

venv_current() { # the venv works and was installed from this requirements file
  "$MAAS_VENV/bin/python" -c '' >/dev/null 2>&1 && [ "$(cat "$MAAS_VENV_STAMP" 2>/dev/null)" = "$1" ]
}

ensure_python_venv() {
  local want
  want=$(sha256sum "$MAAS_PY_REQUIREMENTS" | cut -d' ' -f1) || return 1
  if ! venv_current "$want"; then
    mkdir -p "$(dirname "$MAAS_VENV")"
    # One installer at a time (parallel runs of the test script); the fd is the subshell's only.
    (
      flock 9
      venv_current "$want" && exit 0
      if ! "$MAAS_VENV/bin/python" -c '' >/dev/null 2>&1; then
        local py
        py=$(python_for_venv) || { apt_install python3 python3-venv && py=$(python_for_venv); } ||
          { log "no python3 >= 3.10 with the venv module"; exit 1; }
        log "creating Python venv at $MAAS_VENV with $py"
        rm -rf "$MAAS_VENV"
        "$py" -m venv "$MAAS_VENV" || exit 1
      fi
      log "installing $(basename "$MAAS_PY_REQUIREMENTS") into the venv"
      rm -f "$MAAS_VENV_STAMP"
      "$MAAS_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        -r "$MAAS_PY_REQUIREMENTS" || { log "pip install failed"; exit 1; }
      echo "$want" >"$MAAS_VENV_STAMP"
    ) 9>"$(dirname "$MAAS_VENV")/venv.lock" || return 1
  fi
  export MAAS_TEST_PYTHON="${MAAS_TEST_PYTHON:-$MAAS_VENV/bin/python}"
  log "Python venv ready ($("$MAAS_VENV/bin/python" -V 2>&1), $MAAS_VENV)"
}
