#!/usr/bin/env bash
# Turn a training run into the shipped model and its evaluation, in order:
#   export (ONNX, parity, compression choice) -> calibrate on validation -> evaluate on test
#   -> quality-gate evaluation -> speed benchmark.
# Usage: scripts/release_model.sh VERSION [RUN_DIR] [CONFIG]
set -euo pipefail
version=${1:?usage: scripts/release_model.sh VERSION [RUN_DIR] [CONFIG]}
run=${2:-runs/lite0}
config=${3:-training/configs/lite0.json}
model=inference/models/lesion_classifier.onnx

python -m training.export --checkpoint "$run/best.pt" --out "$run/export" --version "$version"
python -m training.calibrate --config "$config" --model "$run/export/model.onnx" --out "$model" --version "$version"
python -m training.evaluate --config "$config" --model "$model" --out docs/evaluation
python -m training.gate_eval --config "$config" --model "$model" --out docs/evaluation
cp "$run/export/export_report.json" docs/evaluation/export_report.json
python scripts/benchmark.py --model-dir "$run/export" | tee docs/evaluation/benchmark.md
