# valor-data: `make install`, `make test`, then `make demo` (the whole job, offline).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=
WORKDIR ?=
VERIFY_ARGS ?=
DEMO_DIR ?= demo-work
DEMO_ARGS ?=
CURATION_ARGS ?=

.PHONY: install test lint bench verify-splits demo curation

install: $(BIN)/valor-data

$(BIN)/valor-data: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch first, so that the train extra does not pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[train,ray,dev]"
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check valor_data tests bench

# Every CPU benchmark (bench/gpu.py is for a lent GPU, bench/curation.py is `make curation`, bench/presampled.py a helper)
bench: install
	@for script in $(filter-out bench/gpu.py bench/curation.py bench/presampled.py,$(wildcard bench/*.py)); do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; done

# Prove a built dataset's invariants: make verify-splits WORKDIR=path/to/workdir [VERIFY_ARGS=--full]
verify-splits: install
	@test -n "$(WORKDIR)" || { echo "usage: make verify-splits WORKDIR=path/to/workdir"; exit 2; }
	$(BIN)/valor-data verify-splits $(WORKDIR) $(VERIFY_ARGS)

# The whole job offline on a synthetic AudioSet-style corpus: make demo [DEMO_DIR=...] [DEMO_ARGS="--preset small"]
demo: install
	$(BIN)/valor-data demo $(DEMO_DIR) $(DEMO_ARGS)

# The curation loop, closed (issue 17), on synthetic clips: train on the captioned benchmark part,
# pseudo-caption the uncaptioned pool (valor-data caption), score + filter, retrain with it; prints
# both models' validation R@K: make curation [CURATION_ARGS="--pool 240 --steps 240 --out DIR"]
curation: install
	$(BIN)/python bench/curation.py $(CURATION_ARGS)
