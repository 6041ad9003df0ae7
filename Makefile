# Everything starts from a fresh machine: the first target that needs the virtualenv creates it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint sandbox bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the pipeline on the sandbox (Dagster UI on http://127.0.0.1:3000, schedule on, simulator on)
run: $(STAMP)
	$(BIN)/outreach-pipeline dev

## test: the whole test suite (unit, real HTTP against the sandbox, Dagster runs, Postgres)
test: $(STAMP)
	bash .ci/services
	$(BIN)/ruff check .
	$(BIN)/pytest -n 4 --dist loadfile --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .

## sandbox: only the two sandbox APIs, with the activity simulator
sandbox: $(STAMP)
	$(BIN)/outreach-pipeline sandbox up --simulate

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sandbox.py

clean:
	rm -rf $(VENV) .sandbox .dagster_home .pytest_cache .bench
