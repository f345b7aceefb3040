#!/usr/bin/env bash
# Install the project into .venv and run the whole loop on the embedded defaults (SQLite, local
# folders under .orderflow/): export, the simulated ERP's acks (one rejection), the ack pass.
# Running it again sends nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.orderflow/dagster_home}"
mkdir -p "$DAGSTER_HOME"
exec .venv/bin/orderflow-exports demo
