#!/usr/bin/env bash
# The main job, on a fresh machine: creates .venv if missing, installs the
# project (JAX backend and the example extras) through the CI constraints,
# then runs `python -m keras_gsmooth.experiments` with KERAS_BACKEND=jax.
# Every argument is passed on to it (see `--help`); the default writes the
# CSV, the results table and the heatmaps to runs/main.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -c .ci/constraints.txt -e ".[jax,examples]"
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m keras_gsmooth.experiments "$@"
