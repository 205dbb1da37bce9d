# Two commands on a fresh clone (see README): `make report` and `make test`. Both create the virtual environment on
# first use. The venv lives outside the clone, keyed by the hash of requirements.txt, so fresh clones and CI reuse it;
# override its place with HCC_VENV_ROOT (or VENV for an exact folder).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
VENV_ROOT ?= $(or $(HCC_VENV_ROOT),$(HOME)/.cache/hcc_2p5d/venvs)
VENV ?= $(VENV_ROOT)/py311-$(REQ_HASH)
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help venv report smoke paper test lint lab bench bench-gpu

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.complete  ## create the pinned virtual environment (once per requirements.txt)

$(VENV)/.complete: requirements.txt
	@mkdir -p $(VENV_ROOT)
	@exec 9>$(VENV).lock; flock 9; \
	if [ ! -f $@ ]; then \
	  echo "Creating the environment in $(VENV) (first use only; a few minutes)"; \
	  rm -rf $(VENV) && $(PYTHON_BASE) -m venv $(VENV) && \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet -r requirements.txt && \
	  touch $@; \
	fi

report: venv  ## build the report on the embedded default cohort (191 synthetic patients, CPU)
	$(PY) -m hcc_utils run --params params/default.yaml

smoke: venv  ## the small CI book (a few minutes)
	$(PY) -m hcc_utils run --params params/smoke.yaml

paper: venv  ## the paper's full protocol (meant for a GPU)
	$(PY) -m hcc_utils run --params params/paper.yaml

test: venv  ## run the test suite (includes one end-to-end smoke book)
	$(PY) -m pytest

lint: venv  ## ruff over the package, tests, benchmarks and notebooks
	$(PY) -m ruff check hcc_utils tests benchmarks notebooks

bench: venv  ## the speed checks of benchmarks/ (several minutes; best on an otherwise idle machine)
	$(PY) benchmarks/synth.py
	$(PY) benchmarks/preprocess.py --n 12
	$(PY) benchmarks/cnn_throughput.py --size 64 --slices 1024 --batch-size 32
	$(PY) benchmarks/radiomics.py --patients 4
	$(PY) benchmarks/recipe.py --jobs 1

bench-gpu: venv  ## CNN training img/s and share of the ceiling at the paper's 224 px (on a GPU)
	$(PY) benchmarks/cnn_throughput.py --size 224 --batch-size 128

lab: venv  ## open the notebooks in JupyterLab (kernels: OpenMP threads sleep when idle, hcc_utils.threads)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m jupyter lab notebooks/
