#!/usr/bin/env bash
# Creates .venv at the repository root and installs rnnlab into it (./rnnlab runs this for you).
# Idempotent: a second run re-uses the venv and installs nothing new.
#   bash setup.sh                     # CPU: pins torch==2.13.0 first (a CPU build), then rnnlab[dev,sweep]
#   RNNLAB_TORCH=system bash setup.sh # keep the torch (e.g. a CUDA build) already installed for python3
#   bash setup.sh --if-needed         # silent, and does nothing, when .venv was set up from these very
#                                     # setup.sh and pyproject.toml (what ./rnnlab calls before each command)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# A venv made with RNNLAB_TORCH=system stays one: re-running must not pin a CPU torch over a CUDA one.
if grep -qs "include-system-site-packages = true" .venv/pyvenv.cfg; then DEFAULT_TORCH=system; else DEFAULT_TORCH=pin; fi
TORCH=${RNNLAB_TORCH:-$DEFAULT_TORCH}
STAMP=.venv/.rnnlab-setup   # what the venv was set up from: a change to either file sets up again
WANT="$TORCH $(cat setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" = --if-needed ] && [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup.sh: creating .venv (torch: $TORCH) and installing rnnlab into it"
    if [ "$TORCH" = system ]; then
        "$PY" -m venv --system-site-packages .venv   # sees the system's torch
    else
        "$PY" -m venv .venv
    fi
fi
if [ "$TORCH" != system ]; then
    # Pinned first: an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
        || .venv/bin/pip install -q torch==2.13.0
fi
.venv/bin/pip install -q -e ".[dev,sweep]"
.venv/bin/python -c "import rnnlab, torch; print(f'rnnlab ready: torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
echo "$WANT" > "$STAMP"
