#!/usr/bin/env bash
# Turn a training run into the shipped model and every table the model card quotes, in order:
#   export (ONNX, parity, compression choice) -> flip-averaging study on validation
#   -> calibrate on real phone photos (PAD validation) -> with flip averaging, when the
#   mirror is worth a second pass (validation) -> motion blur on validation -> risk
#   cut-offs and same-spot
#   variation on PAD, MILK10k and HAM10000 validation -> the cut-off rules cross-fitted on
#   validation -> the questions-a-doctor-asks study
#   (validation) -> evaluate on the test splits (risk_eval: cancer vs rest per domain)
#   -> each gate rule judged on PAD validation -> the gate on degraded and non-lesion images
#   (test split) -> speed -> blur study.
# Usage: [FLIP_AVERAGE=1] scripts/release_model.sh VERSION [RUN_DIR] [CONFIG]
# FLIP_AVERAGE=1 ships test-time flip averaging; set it only where flip_study.md (written
# by this script's second step, on validation) shows it helps.
set -euo pipefail
version=${1:?usage: scripts/release_model.sh VERSION [RUN_DIR] [CONFIG]}
run=${2:-runs/lite0_milk}
config=${3:-training/configs/lite0_milk.json}
model=inference/models/lesion_classifier.onnx

if [[ "${SKIP_EXPORT:-0}" != 1 ]]; then
  python -m training.export --checkpoint "$run/best.pt" --out "$run/export" --version "$version"
fi
python -m training.flip_study --config "$config" --model "$run/export/model.onnx" --out docs/evaluation
flip=()
if [[ "${FLIP_AVERAGE:-0}" == 1 ]]; then flip=(--flip-average); fi
python -m training.calibrate --config "$config" --model "$run/export/model.onnx" --out "$model" --version "$version" "${flip[@]}"
if [[ "${FLIP_AVERAGE:-0}" == 1 ]]; then
  python -m training.second_look --config "$config" --model "$model" --out docs/evaluation
fi
# What the motion-smear threshold's candidates rest on, at the calibrated gate (validation).
python -m training.motion_blur_study --config "$config" --model "$model" --out docs/evaluation
python -m training.risk_calibrate --config "$config" --model "$model" --out docs/evaluation \
  --scores-out "$run/val_scores.json"
python -m training.threshold_crossfit --scores "$run/val_scores.json" --model "$version" \
  --out docs/evaluation
python -m training.fusion --config "$config" --scores "$run/val_scores.json" --out docs/evaluation
python -m training.risk_eval --config "$config" --model "$model" --split test --out docs/evaluation
python -m training.evaluate --config "$config" --model "$model" --out docs/evaluation
python -m training.gate_rules --config "$config" --model "$model" --out docs/evaluation
python -m training.gate_eval --config "$config" --model "$model" --out docs/evaluation --split val
python -m training.gate_eval --config "$config" --model "$model" --out docs/evaluation --split test
cp "$run/export/export_report.json" docs/evaluation/export_report.json
python scripts/benchmark.py --model-dir "$run/export" | tee docs/evaluation/benchmark.md
python -m training.blur_study --config "$config" --model "$model" --out docs/evaluation
