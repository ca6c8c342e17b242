# Melanoma fusion study — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GPU ?= 0
# CPU: the lock file (exact versions, what the tests ran with); GPU: the ranges with the CUDA build of TensorFlow.
REQS := $(if $(filter 1,$(GPU)),<(grep -v "^tensorflow-cpu" requirements.txt) -r requirements-gpu.txt,requirements-lock.txt)
STAMP := $(VENV)/.installed-$(if $(filter 1,$(GPU)),gpu,cpu)
DEV_STAMP := $(VENV)/.installed-dev
# Data set for `make reproduce`: a params/<DATA>.yaml file (demo = the SYNTHETIC demo set).
DATA ?= demo
DATA_SIZE ?= 256
DATA_BENIGN ?= all
# `make data DATA_FORMAT=tfrecord` also writes patient-isolated TFRecord shards into data/isic2020-<size>-tfrec/.
DATA_FORMAT ?= jpeg
DATA_SHARDS ?= 15
# `make data DATA_EXTERNAL=isic2019` also fetches ISIC 2019's training data (external rows for train --external).
DATA_EXTERNAL ?=
# Test processes (pytest-xdist; one test file stays in one process, so module fixtures are built once).
# TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2
# Files are handed out longest first (tests/conftest.py LONGEST_FIRST), not by their number of tests.
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
# With several test processes each runs its numerical libraries on one thread: N processes x N threads on N cores
# fight for them (measured on 2 cores: the suite in 474 s instead of about 600 s). Set the variables to override.
TEST_THREADS := $(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
	OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} \
	TF_NUM_INTRAOP_THREADS=$${TF_NUM_INTRAOP_THREADS:-1} TF_NUM_INTEROP_THREADS=$${TF_NUM_INTEROP_THREADS:-1})
BENCH_ARGS ?= --sizes 96 --backbones cnn mobilenetv2 --n-images 512

.PHONY: help setup lock data demo-data reproduce html test test-fast fuzz probe bench lint notebooks clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: DATA=$(DATA) (params/<DATA>.yaml)  GPU=$(GPU) (1: CUDA build of TensorFlow)  TEST_WORKERS=$(TEST_WORKERS)"

$(STAMP): requirements.txt requirements-lock.txt requirements-gpu.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(filter 1,$(GPU)),$(PY) -m pip uninstall --yes --quiet tensorflow-cpu || true)
	$(PY) -m pip install --quiet -r $(REQS)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c "import matplotlib.pyplot"  # matplotlib builds its font cache once (~1 min on a new machine): here, not in the first notebook
	rm -f $(VENV)/.installed-*
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(STAMP) ## create .venv/ with the locked dependencies (requirements-lock.txt; GPU=1: the ranges + tensorflow[and-cuda])

lock: ## rewrite requirements-lock.txt from requirements.txt's ranges in a fresh virtual environment (internet or a package index)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -r requirements.txt
	{ sed -n '1,3p' requirements-lock.txt; .lock-venv/bin/python -m pip freeze | grep -v "^-e"; } > requirements-lock.txt.tmp
	mv requirements-lock.txt.tmp requirements-lock.txt && rm -rf .lock-venv

demo-data: $(STAMP) ## generate the SYNTHETIC demo data set in data/synthetic-demo/
	$(PY) -m melanoma_utils demo-data

data: $(STAMP) ## download the real ISIC 2020 data, resize once into data/isic2020-<size>/ (DATA_SIZE, DATA_BENIGN, DATA_FORMAT=tfrecord: + shards, DATA_EXTERNAL=isic2019; internet)
	$(PY) -m melanoma_utils fetch --size $(DATA_SIZE) $(if $(filter-out all,$(DATA_BENIGN)),--benign $(DATA_BENIGN)) $(foreach e,$(DATA_EXTERNAL),--external $(e))
	$(if $(filter tfrecord,$(DATA_FORMAT)),$(PY) -m melanoma_utils shard --metadata data/isic2020-$(DATA_SIZE)/train.csv --out data/isic2020-$(DATA_SIZE)-tfrec --shards $(DATA_SHARDS))

reproduce: $(STAMP) ## run the study's notebooks on params/$(DATA).yaml into reports/ (default: SYNTHETIC demo)
	$(PY) -m melanoma_utils reproduce --params params/$(DATA).yaml

# Report folder `make html` converts (the rendered notebooks are committed as .ipynb; HTML is built on demand).
REPORTS ?= reports/isic2020

html: $(STAMP) ## build HTML of the rendered notebooks in $(REPORTS) (not committed: the .ipynb are the record)
	$(PY) -c "from pathlib import Path; from melanoma_utils.cli.reproduce import render_html; [render_html(p, p.with_suffix('.html')) or print(p.with_suffix('.html')) for p in sorted(Path('$(REPORTS)').glob('*.ipynb'))]"

test: $(DEV_STAMP) ## run the test suite (slow notebook runs included; installs requirements-dev.txt: JAX, ruff, xdist)
	$(TEST_THREADS) $(PY) -m pytest $(PYTEST_PARALLEL)

test-fast: $(DEV_STAMP) ## run the tests without the slow ones (notebooks, multi-run training)
	$(TEST_THREADS) $(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow"

fuzz: $(DEV_STAMP) ## property-based tests of every input boundary with many more examples than `make test` (~1 min)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -p no:cacheprovider tests/test_fuzz.py

probe: $(DEV_STAMP) ## try 42 bad inputs and faults through the command line; PASS/FAIL each (~5 min)
	$(PY) scripts/probe_inputs.py

bench: $(STAMP) ## measure pipeline / training / prediction throughput into reports/bench/ (BENCH_ARGS=...)
	$(PY) scripts/bench.py $(BENCH_ARGS)

lint: $(DEV_STAMP) ## ruff on the package, tests, scripts and the notebooks' .py side
	$(PY) -m ruff check melanoma_utils tests scripts notebooks/*.py

notebooks: $(STAMP) ## after editing a notebook's .py or .ipynb outside JupyterLab: bring each pair back in step
	$(PY) -m jupytext --sync notebooks/*.ipynb

clean: ## remove caches and the SYNTHETIC demo outputs (never real data or committed reports)
	rm -rf .pytest_cache reports/demo data/synthetic-demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
