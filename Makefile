# churnml: `make run` builds everything on the default data, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/constraints.txt | cksum | cut -d' ' -f1)
EXTRAS ?= dev,spark
# No telemetry, no update checks: nothing leaves the machine.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test params venv bench bench-quality lint clean mlflow-ui

# One line per step with its time, and pip's own "Collecting/Installing" lines as progress (a cold install
# of the pins takes a few minutes; from pip's cache about 1.5 min).
$(STAMP): pyproject.toml requirements/constraints.txt
	@start=$$(date +%s); \
	echo "==> [1/3] .venv: $(PYTHON) -m venv $(VENV)"; \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || exit 1; \
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location'; \
	echo "==> [2/3] installing the pinned stack (.[$(EXTRAS)], requirements/constraints.txt)"; \
	set -o pipefail; \
	$(BIN)/python -m pip install --progress-bar off -c requirements/constraints.txt -e ".[$(EXTRAS)]" 2>&1 \
	  | grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed|ERROR)' \
	  | sed -u -e 's/^Successfully installed.*/done/' -e 's/^/    /' || exit 1; \
	echo "==> [3/3] checking the imports"; \
	$(BIN)/python -c "import churnml, lightgbm, mlflow, dvc, duckdb, pandera" || exit 1; \
	rm -f $(VENV)/.installed-* && touch $@; \
	echo "==> installed in $$(( $$(date +%s) - start )) s; activate with: source $(VENV)/bin/activate"

venv: $(STAMP)

## Compose conf/ (Hydra) into params.yaml, the file DVC tracks.
params: $(STAMP)
	$(BIN)/churnml params

run: params
	@start=$$(date +%s); \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro || exit 1; \
	echo "==> pipeline ran in $$(( $$(date +%s) - start )) s"
	@$(BIN)/churnml summary

## The MLflow UI on the local store, telemetry off (http://127.0.0.1:5000).
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

## The suite with branch coverage of churnml (the total is the last line of the table) and the 15 slowest tests.
## Two xdist workers, a whole test file each (--dist loadfile: module fixtures such as the pipeline run and the
## Spark session are built once), in the order tests/conftest.py gives (the long files first; xdist would
## otherwise start with the files holding the most tests); TEST_WORKERS=0 runs in one process.
## Each worker single-threaded (OpenMP, OpenBLAS, MKL): two workers on two cores are already one process per core,
## and a second thread per LightGBM or BLAS call makes every parallel region wait for a descheduled thread (a
## small survival fit took 7x longer so; benchmarks/README.md). LightGBM follows OMP_NUM_THREADS (model.lgbm.n_jobs=0).
## The pipelines' stage scripts run in a warm interpreter per worker (tests/warm; CHURNML_TEST_WARM=0 turns it off).
TEST_WORKERS ?= 2
TEST_THREADS ?= 1
test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) OPENBLAS_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  --cov --cov-report=term --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src pipelines tests benchmarks
	$(BIN)/ruff format --check src pipelines tests benchmarks
	$(BIN)/lint-imports

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quality: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/quality.py $(BENCH_ARGS)

## Remove what the pipeline wrote: the list is `churnml paths` (conf/'s paths and the local MLflow store).
clean:
	$(BIN)/churnml paths | xargs rm -rf --
	git checkout -q -- models/.gitkeep 2>/dev/null || true
