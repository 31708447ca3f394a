#!/usr/bin/env bash
# Export a trained experiment and check the model folder on the test split's first mixture:
# spmamba-separate and SpeechBrain's SepformerSeparation must give the same result.
#
#   benchmarks/check_export.sh EXPERIMENT DATA OUT [DEVICE]   # writes OUT/model, OUT/separated,
#                                                             #   OUT/exported_model.json
set -euo pipefail
experiment=$1 data=$2 out=$3 device=${4:-cuda}
mixture="$data/test/mix/test_000000.wav"
spmamba-export "$experiment" --out "$out/model" --overwrite
spmamba-separate "$mixture" --model "$out/model" --out "$out/separated" --overwrite --device "$device"
"${PYTHON:-python3}" "$(dirname "$0")/check_exported_model.py" "$out/model" "$data/test.csv" test_000000 \
    --separated "$out"/separated/test_000000_s*.wav --device "$device" | tee "$out/exported_model.json"
