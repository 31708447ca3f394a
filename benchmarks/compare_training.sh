#!/usr/bin/env bash
# SPMamba against the TF-GridNet baseline: same demo corpus, crops, optimiser, seed and
# training-time budget, through the public commands only. Stages (run in order; each one
# resumes where it stopped, so the experiment can be split over several shorter jobs):
#
#   benchmarks/compare_training.sh prepare                   # demo corpus (CPU, parallel)
#   benchmarks/compare_training.sh train spmamba [MINUTES]   # train up to MINUTES of training time
#   benchmarks/compare_training.sh train tfgridnet [MINUTES] #   (default BUDGET), then test
#   benchmarks/compare_training.sh report                    # plot, then check (below)
#   benchmarks/compare_training.sh plot                      #   curves PNG and summary JSON
#   benchmarks/compare_training.sh check                     #   export SPMamba, separate, score
#   benchmarks/compare_training.sh all                       # everything above
#
# Each model's train stage and SPMamba's check can run on a machine of their own: `plot` needs
# only each experiment's train_log.txt and test_results.csv. At the defaults (4 h of mixtures,
# 19 training minutes) prepare + train + test + check take about 27 minutes on one H100 machine
# with 16 CPU cores; the same seed makes the same corpus on every machine.
#
# Settings (environment): DATA, RESULTS, BUDGET (minutes per model), HOURS (training hours of
# mixtures), EPOCH_SIZE (mixtures between validations), PRECISION, SEED, WORKERS, DEVICE, and
# EXTRA_ARGS (more train.py overrides for both models), SPMAMBA_ARGS, TFGRIDNET_ARGS (for one).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data/echo2mix-compare}
RESULTS=${RESULTS:-results/compare}
BUDGET=${BUDGET:-19}
HOURS=${HOURS:-4}
EPOCH_SIZE=${EPOCH_SIZE:-250}
PRECISION=${PRECISION:-bf16}
SEED=${SEED:-1234}
WORKERS=${WORKERS:-$(nproc)}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}

experiment() { echo "$RESULTS/$1/$SEED"; }

prepare() {
    spmamba-prepare-demo --out "$DATA" --hours-train "$HOURS" --hours-valid 0.05 --hours-test 0.05 \
        --seed 0 --num-workers "$WORKERS" --no-progress
    # one checksum of every mixture, source and target WAV: runs on different machines can show
    # that they trained and tested on the same files
    (cd "$DATA" && find train valid test -name '*.wav' | sort | xargs md5sum | md5sum | cut -d' ' -f1) \
        | tee "$DATA/mixtures.md5"
}

train() {  # MODEL [MINUTES]
    local own="${1^^}_ARGS"
    "$PYTHON" train.py "hparams/$1.yaml" --data_folder "$DATA" --output_folder "$(experiment "$1")" \
        --seed "$SEED" --precision "$PRECISION" --max_train_minutes "${2:-$BUDGET}" \
        --train_epoch_size "$EPOCH_SIZE" --N_epochs 100000 --ckpt_interval_minutes 0 --device "$DEVICE" \
        ${EXTRA_ARGS:-} ${!own:-}
}

plot() {
    "$PYTHON" benchmarks/plot_training.py --out "$RESULTS/valid_si_snri.png" \
        "SPMamba=$(experiment spmamba)" "TF-GridNet=$(experiment tfgridnet)" | tee "$RESULTS/summary.json"
}

check() {
    PYTHON=$PYTHON benchmarks/check_export.sh "$(experiment spmamba)" "$DATA" "$RESULTS/spmamba" "$DEVICE"
}

case "${1:-}" in
    prepare) prepare ;;
    train) train "$2" "${3:-$BUDGET}" ;;
    report) plot; check ;;
    plot) plot ;;
    check) check ;;
    all) prepare; train spmamba; train tfgridnet; plot; check ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
esac
