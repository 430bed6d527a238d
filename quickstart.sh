#!/usr/bin/env bash
# The main job, offline on a fresh machine: build .venv if needed, then train an FCN on a procedural
# Cityscapes-layout data set that kseg writes itself, validate it, export a SavedModel and predict an
# overlay. Everything lands in runs/quickstart/ (delete it to start afresh; rerunning resumes/reuses it).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q -e .
fi
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python recipes/train.py --flagfile=recipes/quickstart.flags "$@"
echo "Overlay: runs/quickstart/predictions/*_overlay.png  SavedModel: runs/quickstart/export/1  Metrics: runs/quickstart/metrics.json"
