#!/usr/bin/env bash
# A model that separates in one short GPU run: SPMamba under hparams/spmamba-8k-quick.yaml on
# two-speaker demo mixtures, through the public commands only. TASK picks the corpus: clean8k
# (default; clean 8 kHz mixtures, the published 8 kHz model) or noisy16k (the demo's noisy
# reverberant 16 kHz mixtures, the published 16 kHz STFT: n_fft 512, hop 128, 2 s crops).
# Stages (each resumes):
#
#   benchmarks/quick_separation.sh prepare            # the TASK's demo corpus (CPU, parallel)
#   benchmarks/quick_separation.sh train [MINUTES]    # the quick recipe for MINUTES (default BUDGET), then test
#   benchmarks/quick_separation.sh ablation [MINUTES] # fixed mixtures / dynamic mixing / + augmentation,
#                                                     #   ABLATION minutes each (default 8)
#   benchmarks/quick_separation.sh versus [MINUTES]   # SPMamba and TF-GridNet under the recipe, ABLATION
#                                                     #   minutes each
#   benchmarks/quick_separation.sh learning [MINUTES] # learning per minute: the recipe / SI-SNR loss /
#                                                     #   batch 8 / 1 s crops, ABLATION minutes each
#   benchmarks/quick_separation.sh voices [MINUTES]   # espeak-ng's voices against --voice-variety wide,
#                                                     #   ABLATION minutes each, both also scored on REAL
#                                                     #   and on the espeak-ng test split
#   benchmarks/quick_separation.sh curriculum [CLEAN] [MINUTES]  # TASK=noisy16k, clean to noisy: the
#                                                     #   network first trains CLEAN minutes (default 7)
#                                                     #   on the clean 8 kHz corpus (CLEAN_DATA), then
#                                                     #   starts the noisy run of MINUTES (default BUDGET
#                                                     #   - CLEAN) from that model (train.py --init_from)
#   benchmarks/quick_separation.sh profile            # the TASK's train.py step under SpeechBrain's
#                                                     #   profiler, where its GPU waits (trace_gaps.py),
#                                                     #   beside the model alone (profile_step.py)
#   benchmarks/quick_separation.sh warmup [curriculum|learning] # compile the models' graphs on a tiny
#                                                     #   corpus (beside prepare), so timed runs start warm;
#                                                     #   with `curriculum` or `learning`, only its graphs
#   benchmarks/quick_separation.sh plot               # curves PNG and summary JSON
#   benchmarks/quick_separation.sh check              # export, spmamba-separate, SepformerSeparation;
#                                                     #   with REAL, the model scored on it too
#   benchmarks/quick_separation.sh all                # prepare, train, plot, check
#
# Settings (environment): TASK, DATA, RESULTS, BUDGET (training minutes, default 25), ABLATION, HOURS
# (training hours of fixed mixtures, default 2), VOICES (synthetic speakers, default 400), VARIETY
# (the corpus's --voice-variety, default espeak), REAL (for `voices` and `check`: a recorded-speech test
# set made by spmamba-prepare-real at the TASK's rate, with --preset noisy for noisy16k), CLEAN_DATA (for `curriculum`: the clean 8 kHz corpus,
# default data/demo-clean8k, made by TASK=clean8k DATA=CLEAN_DATA ... prepare; CLEAN_ARGS and NOISY_ARGS:
# train.py overrides for its clean phase or its noisy run only, e.g. NOISY_ARGS='--lr 0.001'), SEED,
# WORKERS, DEVICE, GPUS (train.py on that many GPUs through torchrun, default 1; batch_size is per
# GPU), MODEL (hparams file name, default spmamba-8k-quick), MODEL_ARGS (TF-GridNet under
# the same recipe in `train`: MODEL_ARGS='--sequence_layer !ref <blstm>' with its own RESULTS folder),
# COMPILE (1, the default on a GPU: torch.compile the mask net, SpeechBrain's --compile; a run that
# fails compiled trains again eager, marked by `eager_fallback` in its folder and in the summary
# JSON) and EXTRA_ARGS (more train.py overrides). One 30-minute GPU machine holds prepare, train,
# plot and check with BUDGET=21 (TASK=noisy16k, whose prepare takes about 40 s alone on 16 cores:
# BUDGET=22 beside warmup), or prepare and warmup side by side and then `versus 6` (about 19 minutes
# of wall time), `ablation 6.5` (about 26) or `learning 4` (about 21); after prepare, `voices 5`
# takes about 21 (the wide corpus 1.1, warm-up 1, each arm 1.5 beyond its minutes, the four scorings
# about 4) and `profile` about 5.5; with TASK=noisy16k, both corpora and `warmup curriculum` side by
# side take about 2.5 minutes, then `curriculum C N` about C + N + 3.2 and plot and check 0.7.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"  # the curriculum runs its clean phase as TASK=clean8k
cd "$(dirname "$0")/.."

TASK=${TASK:-clean8k}
case "$TASK" in
    clean8k) CORPUS=(--preset clean --sample-rate 8000); TASK_ARGS=(); RATE=8000; STFT=(--n-fft 256 --hop-length 64) ;;
    noisy16k) CORPUS=(--sample-rate 16000); RATE=16000; STFT=(--n-fft 512 --hop-length 128)
              TASK_ARGS=(--sample_rate 16000 --n_fft 512 --hop_length 128 --training_signal_len 32000) ;;
    *) echo "TASK must be clean8k or noisy16k, got '$TASK'" >&2; exit 2 ;;
esac
DATA=${DATA:-data/demo-$TASK}
RESULTS=${RESULTS:-results/quick-$TASK}
BUDGET=${BUDGET:-25}
ABLATION=${ABLATION:-8}
HOURS=${HOURS:-2}
VOICES=${VOICES:-400}
VARIETY=${VARIETY:-espeak}
SEED=${SEED:-1234}
WORKERS=${WORKERS:-$(nproc)}
DEVICE=${DEVICE:-cuda}
GPUS=${GPUS:-1}
case "$GPUS" in
    '' | *[!0-9]* | 0) echo "GPUS must be a whole number of GPUs, got '$GPUS'" >&2; exit 2 ;;
esac
if [ "$GPUS" -gt 1 ] && [ "$DEVICE" = cpu ]; then echo "GPUS=$GPUS needs DEVICE=cuda" >&2; exit 2; fi
COMPILE=${COMPILE:-$([ "$DEVICE" = cpu ] && echo 0 || echo 1)}
MODEL=${MODEL:-spmamba-8k-quick}
PYTHON=${PYTHON:-python3}

experiment() { echo "$RESULTS/$1/$SEED"; }

prepare() {
    spmamba-prepare-demo --out "$DATA" "${CORPUS[@]}" --voice-variety "$VARIETY" --hours-train "$HOURS" \
        --hours-valid 0.2 --hours-test 0.2 --num-voices "$VOICES" --seed 0 --num-workers "$WORKERS" --no-progress
}

COMPILED=(--compile --compile_module_keys masknet)  # SpeechBrain's torch.compile of the mask net
TFGRIDNET=(--sequence_layer '!ref <blstm>')          # the same recipe with BLSTMs: TF-GridNet
AUGMENTED=(--use_speedperturb True --use_rand_shift True --use_wavedrop True)  # SpeechBrain's augmentations
SI_SNR=(--loss '!name:spmamba_sb.losses.pit_si_snr_loss')  # the scale-invariant loss instead of the paper's SNR
BATCH8=(--batch_size 8)
CROP1S=(--training_signal_len "$RATE")  # 1 s crops: half the step, twice the steps

train() {  # NAME MINUTES [overrides...]: compiled where COMPILE=1; a run that fails compiled trains
           # again eager, said on stderr and marked by a file `eager_fallback` in its experiment folder
    if [ "$COMPILE" = 1 ]; then
        run_train "$@" "${COMPILED[@]}" && return
        echo "quick_separation.sh: '$1' failed compiled; it trains again eager (fewer steps in its minutes)" >&2
        mkdir -p "$(experiment "$1")"
        echo "the compiled run failed; this run is eager" > "$(experiment "$1")/eager_fallback"
    fi
    run_train "$@"
}

run_train() {  # NAME MINUTES [overrides...]
    local name=$1 minutes=$2
    shift 2
    local overrides=(${MODEL_ARGS:-} ${EXTRA_ARGS:-} "$@") task=() i
    for ((i = 0; i < ${#TASK_ARGS[@]}; i += 2)); do  # an override of a task setting replaces it
        [[ " ${overrides[*]} " == *" ${TASK_ARGS[i]} "* ]] || task+=("${TASK_ARGS[@]:i:2}")
    done
    local launch=("$PYTHON")
    if [ "$GPUS" -gt 1 ]; then  # one process per GPU, the SpeechBrain way (NCCL: each on its own GPU)
        launch+=(-m torch.distributed.run --standalone --nproc_per_node "$GPUS")
    fi
    "${launch[@]}" train.py "hparams/$MODEL.yaml" --data_folder "$DATA" --output_folder "$(experiment "$name")" \
        --seed "$SEED" --max_train_minutes "$minutes" --device "$DEVICE" ${task[@]+"${task[@]}"} \
        ${overrides[@]+"${overrides[@]}"}
}

curves() {  # PNG JSON LABEL=EXPERIMENT...: validation curves of the experiments, and their summary
    local png=$1 json=$2
    shift 2
    mkdir -p "$RESULTS"
    "$PYTHON" benchmarks/plot_training.py --out "$RESULTS/$png" "$@" | tee "$RESULTS/$json"
}

ablation() {  # MINUTES
    train fixed "$1" --dynamic_mixing False
    train dynamic "$1"
    train dynamic-augmented "$1" "${AUGMENTED[@]}"
    curves ablation.png ablation.json "fixed=$(experiment fixed)" "dynamic mixing=$(experiment dynamic)" \
        "dynamic mixing + augmentation=$(experiment dynamic-augmented)"
}

versus() {  # MINUTES
    train spmamba "$1"
    train tfgridnet "$1" "${TFGRIDNET[@]}"
    curves versus.png versus.json "SPMamba=$(experiment spmamba)" "TF-GridNet=$(experiment tfgridnet)"
}

learning() {  # MINUTES
    train recipe "$1"
    train si-snr "$1" "${SI_SNR[@]}"
    train batch8 "$1" "${BATCH8[@]}"
    train crop1s "$1" "${CROP1S[@]}"
    curves learning.png learning.json "recipe=$(experiment recipe)" "SI-SNR loss=$(experiment si-snr)" \
        "batch 8=$(experiment batch8)" "1 s crops=$(experiment crop1s)"
}

voices() {  # MINUTES: the recipe on espeak-ng's voices (DATA) and on the wide variety (DATA-wide), each
           # model then scored on the recorded-speech set REAL and on the espeak-ng test split (one
           # test set for both arms; each train run's own test stage scores its own voices)
    if [ -z "${REAL:-}" ]; then echo "voices needs REAL, a test set made by spmamba-prepare-real" >&2; exit 2; fi
    VARIETY=wide DATA="$DATA-wide" prepare
    if [ "$COMPILE" = 1 ]; then tiny_corpus; warm_tiny recipe; fi  # neither arm spends its minutes compiling
    train espeak "$1"
    DATA="$DATA-wide" train wide "$1"
    for arm in espeak wide; do
        spmamba-export "$(experiment "$arm")" --out "$RESULTS/$arm/model" --overwrite
        spmamba-evaluate "$REAL/test.csv" --model "$RESULTS/$arm/model" --out "$RESULTS/$arm/real" --overwrite \
            --device "$DEVICE" --quiet
        spmamba-evaluate "$DATA/test.csv" --model "$RESULTS/$arm/model" --out "$RESULTS/$arm/espeak-test" \
            --overwrite --device "$DEVICE" --quiet
    done
    curves voices.png voices.json "espeak-ng voices=$(experiment espeak)" "wide variety=$(experiment wide)"
}

# The clean phase's network at 8 kHz has the 16 kHz network's shapes: attention_qk_dim 258 gives each
# attention head 2 channels over 129 bins, as 512 does over 257 bins (train.py carries the
# attention's per-bin norms from 8 to 16 kHz bin by bin in Hz).
CLEAN_PHASE=(--attention_qk_dim 258)

curriculum() {  # CLEAN MINUTES: clean 8 kHz for CLEAN minutes, then the noisy run from its model
    if [ "$TASK" != noisy16k ]; then echo "curriculum is for TASK=noisy16k, got '$TASK'" >&2; exit 2; fi
    local clean="$RESULTS/clean-phase"
    TASK=clean8k DATA="${CLEAN_DATA:-data/demo-clean8k}" RESULTS="$clean" \
        MODEL_ARGS="${MODEL_ARGS:-} ${CLEAN_PHASE[*]} ${CLEAN_ARGS:-}" \
        bash "$SELF" train "$1"
    spmamba-export "$clean/$MODEL/$SEED" --out "$clean/model" --overwrite
    train "$MODEL" "$2" --init_from "$clean/model" ${NOISY_ARGS:-}
}

profile() {  # 10 steps of warm-up (the compile among them) and 5 profiled, then the model alone at
             # the same shapes: the difference is what train.py adds to a step
    train profile 5 --profile_training --profile_warmup 10 --profile_steps 5 --train_epoch_size 80 --N_epochs 1
    mkdir -p "$RESULTS"
    "$PYTHON" benchmarks/trace_gaps.py "$(experiment profile)"/profiler_logs/*.pt.trace.json | tee "$RESULTS/trace_gaps.json"
    local compiled=()
    if [ "$COMPILE" = 1 ]; then compiled=(--compile); fi
    "$PYTHON" benchmarks/profile_step.py --backends triton "${STFT[@]}" --sample-rate "$RATE" --seconds 2 --batches 4 \
        ${compiled[@]+"${compiled[@]}"} | tee "$RESULTS/profile_step.json"
}

tiny_corpus() {  # the warm-up runs' corpus: the task's mixtures, tiny
    spmamba-prepare-demo --out "$RESULTS/warmup/data" "${CORPUS[@]}" --hours-train 0.03 --hours-valid 0.01 \
        --hours-test 0.01 --num-voices 20 --seed 0 --num-workers "$WORKERS" --no-progress
}

warm_tiny() {  # NAME [overrides...]: 20 compiled steps on the tiny corpus, for the compile cache
    local name=$1
    shift
    DATA="$RESULTS/warmup/data" RESULTS="$RESULTS/warmup" run_train "$name" 5 --train_epoch_size 80 --N_epochs 1 \
        "${COMPILED[@]}" "$@"
}

warmup() {  # 20 compiled steps of each model on a tiny corpus, side by side: PyTorch's compile cache
            # keeps the graphs, so no timed run spends its minutes on a cold compile (speed perturbation
            # shortens the crop, so the augmented arm has graphs of its own, as have the batch and crop
            # arms of `learning`, warmed after the first three)
    if [ "$COMPILE" != 1 ]; then echo "COMPILE=0: nothing to warm up"; return; fi
    local runs=()
    if [ "${1:-}" = curriculum ]; then  # the clean phase's 8 kHz graphs and the noisy run's
        TASK=clean8k RESULTS="$RESULTS/clean-phase" MODEL_ARGS="${MODEL_ARGS:-} ${CLEAN_PHASE[*]}" bash "$SELF" warmup-one &
        runs+=($!)
        tiny_corpus
        warm_tiny "$MODEL"
        for run in "${runs[@]}"; do wait "$run"; done
        return
    fi
    tiny_corpus
    warm_tiny spmamba & runs+=($!)  # `learning` needs only its arms (its SI-SNR arm has the recipe's graphs)
    if [ "${1:-}" != learning ]; then
        warm_tiny spmamba-augmented "${AUGMENTED[@]}" & runs+=($!)
        warm_tiny tfgridnet "${TFGRIDNET[@]}" & runs+=($!)
        for run in "${runs[@]}"; do wait "$run"; done
        runs=()  # then the learning arms' shapes (five 16 kHz runs at once overflow an 80 GB GPU)
    fi
    warm_tiny batch8 "${BATCH8[@]}" & runs+=($!)
    warm_tiny crop1s "${CROP1S[@]}" & runs+=($!)
    for run in "${runs[@]}"; do wait "$run"; done
}

plot() {
    curves valid_si_snri.png summary.json "$MODEL=$(experiment "$MODEL")"
}

check() {  # with REAL, the exported model is also scored on the recorded-speech set
    PYTHON=$PYTHON benchmarks/check_export.sh "$(experiment "$MODEL")" "$DATA" "$RESULTS" "$DEVICE"
    if [ -n "${REAL:-}" ]; then
        spmamba-evaluate "$REAL/test.csv" --model "$RESULTS/model" --out "$RESULTS/real" --overwrite \
            --device "$DEVICE" --quiet
    fi
}

case "${1:-}" in
    prepare) prepare ;;
    train) train "$MODEL" "${2:-$BUDGET}" ;;
    ablation) ablation "${2:-$ABLATION}" ;;
    versus) versus "${2:-$ABLATION}" ;;
    learning) learning "${2:-$ABLATION}" ;;
    voices) voices "${2:-$ABLATION}" ;;
    profile) profile ;;
    curriculum) curriculum "${2:-7}" "${3:-$((BUDGET - ${2:-7}))}" ;;
    warmup) warmup "${2:-}" ;;
    warmup-one) if [ "$COMPILE" = 1 ]; then tiny_corpus; warm_tiny "$MODEL"; fi ;;
    plot) plot ;;
    check) check ;;
    all) prepare; train "$MODEL" "$BUDGET"; plot; check ;;
    *) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$SELF"; exit 2 ;;
esac
