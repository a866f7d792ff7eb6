# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both install a pinned virtualenv (.venv, constraints.txt) first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
AIRFLOW := $(VENV)/bin/airflow
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean constraints faults containers corpus

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job: a zygote plus a zygote-backed dag-processor on SQLite and Airflow's example DAGs.
run: $(STAMP)
	$(PY) -m zygote.demo

# Two pytest-xdist workers, one test file at a time each (--dist loadfile: a module's shared zygote
# and the fault modules' ordered scenarios stay in one process). Most of the suite waits on real
# processes, so two fit 2 cores: make test 13:40 -> 11:20, make faults ~20 -> 12:40 here.
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
PYTEST_DIST := -n $(PYTEST_WORKERS) --dist loadfile

# The whole suite; pytest exits non-zero when no test ran (5; 3 from xdist when -m deselects every
# test), and that fails the target.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_DIST) $(PYTEST_ARGS)

# Production-fault scenarios (issue 12): real dag-processors under symlink swaps, stalls, outages, a
# frozen dag-processor, fork failures and a soak beside stock Airflow. Deselected from `make test`.
faults: $(STAMP)
	$(PY) -m pytest -m faults $(PYTEST_DIST) tests/faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check zygote protocol tests
	$(VENV)/bin/ruff format --check zygote protocol tests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix zygote protocol tests
	$(VENV)/bin/ruff format zygote protocol tests

# Stock vs zygote, side by side, on a generated corpus (or CORPUS=DIR, e.g. tests/corpora/providers). Not a test.
CORPUS ?= bench-results/corpus
BENCH_ARGS ?= --rounds 5
bench: $(STAMP)
	test "$(CORPUS)" != bench-results/corpus || $(PY) -m zygote.bench.corpus bench-results/corpus
	$(AIRFLOW) zygote bench --dags $(CORPUS) $(BENCH_ARGS) --output bench-results/bench.json

# The image from deploy/Dockerfile and the sidecar run for real in podman: the compose file, the pair's
# checks on it and the Kubernetes manifest through play kube (tests/deploy/test_containers.py). Installs
# podman, runc, mmdebstrap and eatmydata (apt) and podman-compose and uv (in build/containers/tools)
# when missing; builds a stand-in base image (deploy/standin/) since no image registry is reachable;
# caches the Debian rootfs in build/containers. Needs root. .ci/run runs it after `make test`.
CONTAINERS_WORK := $(CURDIR)/build/containers
containers: $(STAMP)
	command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null \
		&& command -v eatmydata >/dev/null \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc mmdebstrap eatmydata; }
	test -x $(CONTAINERS_WORK)/tools/bin/podman-compose -a -x $(CONTAINERS_WORK)/tools/bin/uv \
		|| { $(PYTHON) -m venv --without-pip $(CONTAINERS_WORK)/tools \
		&& $(PY) -m pip --python $(CONTAINERS_WORK)/tools/bin/python install --quiet podman-compose==1.6.0 uv==0.13.9; }
	WORK=$(CONTAINERS_WORK) deploy/standin/build.sh
	ZYGOTE_CONTAINERS_WORK=$(CONTAINERS_WORK) $(PY) -m pytest -m containers tests/deploy $(PYTEST_ARGS)

# Stock vs zygote on DAGs built from the Amazon, Google and cncf-kubernetes providers (tests/corpora).
# Installs the providers extra first (a large download); not part of `make test`.
corpus: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,providers]"
	$(PY) -m pytest -m corpus tests/corpora $(PYTEST_ARGS)

# Refresh the pins after changing dependencies in pyproject.toml.
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^airflow-zygote' > constraints.txt

clean:
	rm -rf $(VENV) bench-results .pytest_cache .mypy_cache .ruff_cache
