#!/usr/bin/env bash
# README command 2: set up and run the test suite (offline; real model included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VOCE_CACHE_DIR="${VOCE_CACHE_DIR:-$PWD/.cache/voce}"
exec python -m pytest "$@"
