# Quick start: `make demo` runs the main job, `make test` runs the test suite.
# Both create (or reuse) .venv with Python 3 and install the package with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test benchmark-scan

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/spmamba-demo --out demo_output

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q

benchmark-scan: $(VENV)/.installed
	$(PY) benchmarks/scan_cpu.py
