#!/usr/bin/env bash
# One set-up command: creates .venv at the repository root and installs rnnlab into it.
# Idempotent: a second run re-uses the venv and installs nothing new.
#   bash setup.sh                     # CPU: pins torch==2.13.0 first (a CPU build), then rnnlab[dev]
#   RNNLAB_TORCH=system bash setup.sh # keep the torch (e.g. a CUDA build) already installed for python3
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if [ "${RNNLAB_TORCH:-pin}" = system ]; then
        "$PY" -m venv --system-site-packages .venv   # sees the system's torch
    else
        "$PY" -m venv .venv
    fi
fi
if [ "${RNNLAB_TORCH:-pin}" != system ]; then
    # Pinned first: an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
        || .venv/bin/pip install -q torch==2.13.0
fi
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/python -c "import rnnlab, torch; print(f'rnnlab ready: torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
