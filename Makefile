# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both install a pinned virtualenv (.venv, constraints.txt) first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
AIRFLOW := $(VENV)/bin/airflow
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean constraints faults

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job: a zygote plus a zygote-backed dag-processor on SQLite and Airflow's example DAGs.
run: $(STAMP)
	$(PY) -m zygote.demo

# The whole suite; pytest exits non-zero (5) when no test ran, and that fails the target.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Production-fault scenarios (issue 12): real dag-processors under symlink swaps, stalls, outages, a
# frozen dag-processor, fork failures and a soak beside stock Airflow. Deselected from `make test`.
faults: $(STAMP)
	$(PY) -m pytest -m faults tests/faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check zygote protocol tests
	$(VENV)/bin/ruff format --check zygote protocol tests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix zygote protocol tests
	$(VENV)/bin/ruff format zygote protocol tests

# Stock vs zygote, side by side, on a generated corpus. Not a test.
bench: $(STAMP)
	$(PY) -m zygote.bench.corpus bench-results/corpus
	$(AIRFLOW) zygote bench --dags bench-results/corpus --rounds 5 --output bench-results/bench.json

# Refresh the pins after changing dependencies in pyproject.toml.
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^airflow-zygote' > constraints.txt

clean:
	rm -rf $(VENV) bench-results .pytest_cache .mypy_cache .ruff_cache
