#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install the project into it: the one install
# procedure of the repository. scripts/test.sh calls it with no arguments (editable, test tools);
# deploy/Dockerfile calls it with the pinned set and a plain install:
#
#   scripts/install.sh                                         # .venv, -e ".[test]"
#   ORDERFLOW_VENV=/opt/orderflow/venv scripts/install.sh -c deploy/constraints.txt .
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ORDERFLOW_VENV:-.venv}
if [ $# -eq 0 ]; then set -- -e ".[test]"; fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$@"
