# Quick start: `make demo` runs the main job, `make test` runs the test suite, `make test-fast` its
# fast tier (every test not marked slow: 1 to 1.5 minutes on 2 cores, for after each change).
# Both create (or reuse) .venv with Python 3 and install the package with the extras the targets use:
# data (corpus simulation: make demo), benchmark (make benchmark-scan) and test (make test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch pair the suite is run with here and in CI (setup.py accepts a range; README lists the pairs tried).
TESTED_TORCH := torch==2.11.0 torchaudio==2.11.0
BIN := $(VENV)/bin

# The demo: a download-free corpus, a small SPMamba trained briefly on the CPU, its test
# results, an exported model and one separated test mixture, all under results/demo/.
DEMO_DATA ?= data/echo2mix-demo
DEMO_EPOCHS ?= 4
DEMO_OVERRIDES := --experiment_name demo --seed 1234 --device cpu --N_epochs $(DEMO_EPOCHS) \
	--n_fft 256 --hop_length 128 --emb_dim 8 --emb_kernel_size 4 --num_blocks 2 --num_heads 2 \
	--attention_qk_dim 258 --d_state 4 --expand 1 --training_signal_len 16000 --batch_size 2 \
	--ckpt_interval_minutes 5

.PHONY: demo test test-fast benchmark-scan

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TESTED_TORCH)
	$(PY) -m pip install -q -e '.[data,benchmark,test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/spmamba-prepare-demo --out $(DEMO_DATA) --hours-train 0.1 --hours-valid 0.02 --hours-test 0.02
	$(PY) train.py hparams/spmamba.yaml --data_folder $(DEMO_DATA) $(DEMO_OVERRIDES)
	$(BIN)/spmamba-export results/demo/1234 --out results/demo/model --overwrite
	$(BIN)/spmamba-separate $(DEMO_DATA)/test/mix/test_000000.wav --model results/demo/model \
		--out results/demo/separated --overwrite
	@echo "Demo done: results/demo/1234/test_results.csv, results/demo/1234/test_plots/, results/demo/separated/"

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q -m "not slow"

benchmark-scan: $(VENV)/.installed
	$(PY) benchmarks/scan_cpu.py
