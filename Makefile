# `make run` and `make test` set up .venv first when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The machine sets PYTHONDONTWRITEBYTECODE=1; imports without bytecode are ~2x slower.
unexport PYTHONDONTWRITEBYTECODE
export OMP_NUM_THREADS ?= 2
# Idle OpenMP threads sleep instead of spinning: 6% slower on an idle 2-core machine, 46%
# faster when another process competes for the cores (measured on the base stage).
export OMP_WAIT_POLICY ?= PASSIVE
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
# The real benchmark files: ../shared/data beside the checkout, resolved once to an absolute
# path so that every subprocess and run workspace (git worktrees, test copies) finds the same.
SHARED_DATA := $(abspath $(CURDIR)/../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export R1FLOW_SHARED_DATA ?= $(SHARED_DATA)
endif

.PHONY: setup run test browser reliability clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq -U pip
	$(PY) -m pip install -qq -c constraints-cpu.txt -e '.[test]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/r1flow run

test: setup browser
	$(PY) -m pytest -q

# The browser tests (Prefect's and MLflow's UIs) drive Debian's chromium. Under CI=true it is
# installed when missing (as root, with apt); elsewhere those tests skip, saying how to get it.
browser:
ifeq ($(CI),true)
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { \
	  echo "installing chromium and chromium-driver (apt) for the browser tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "could not install chromium: the browser tests will fail"; }
endif

# The fault tests alone (they also run in `make test`), writing their table.
reliability: setup
	$(PY) -m pytest -q -m fault --reliability-table docs/RELIABILITY.md

clean:
	rm -rf artifacts .cache
