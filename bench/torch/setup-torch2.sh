#!/usr/bin/env bash
# PyTorch 2 for the model benchmark (bench/model.ts): a virtual environment at bench/torch/.venv
# with the CPU wheel this image keeps in /opt/wheels (no network needed for torch itself).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
wheel=$(ls /opt/wheels/torch-2*cpu*.whl 2>/dev/null | head -1 || true)
if [ -n "$wheel" ]; then .venv/bin/pip install -q "$wheel" numpy; else .venv/bin/pip install -q torch numpy; fi
.venv/bin/python -c "import torch; print('torch', torch.__version__)"
