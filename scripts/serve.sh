#!/usr/bin/env bash
# README command 1: set up and run the service on http://127.0.0.1:8000 (embedded defaults, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh serve
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
voce setup            # converts the bundled e5 encoder once (cached in ~/.cache/voce), verifies it, exports ONNX
exec voce serve "$@"
