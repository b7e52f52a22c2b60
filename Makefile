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

.PHONY: setup run test reliability clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq -U pip
	$(PY) -m pip install -qq -c constraints-cpu.txt -e '.[test]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/r1flow run

test: setup
	$(PY) -m pytest -q

# The fault tests alone (they also run in `make test`), writing their table.
reliability: setup
	$(PY) -m pytest -q -m fault --reliability-table docs/RELIABILITY.md

clean:
	rm -rf artifacts .cache
