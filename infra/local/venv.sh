#!/usr/bin/env bash
# Usage: infra/local/venv.sh VENV_DIR REQUIREMENTS_FILE
# Creates the virtualenv if needed and installs the requirements into it. The Makefile calls it
# only when the requirements changed since the venv's stamp file, so repeat runs are instant.
set -euo pipefail
venv=$1
requirements=$2
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# Quiet, no version-check chatter; PIP_FIND_LINKS and friends from the environment still apply.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --requirement "$requirements"
