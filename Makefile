# churnml: `make run` builds everything on the default data, `make test` runs the suite.
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

.PHONY: run test params venv bench bench-quality lint clean

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]" 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c "import churnml, lightgbm, mlflow, dvc, duckdb, pandera"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## Compose conf/ (Hydra) into params.yaml, the file DVC tracks.
params: $(STAMP)
	$(BIN)/churnml params

run: params
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

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
