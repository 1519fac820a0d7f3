#!/usr/bin/env bash
# Builds mamba-ssm and causal-conv1d against the torch already in the environment (CUDA machine only).
# --no-build-isolation: they must compile against the installed torch, not a fresh one from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
"$PYTHON" -m pip install packaging ninja wheel setuptools
MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE \
    "$PYTHON" -m pip install --no-build-isolation -r requirements-gpu.txt
"$PYTHON" -c "from recmodels.ops import available_backends; print('scan backends:', available_backends())"
