# Two set-up commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ocistore-installed
NATIVE := $(wildcard native/*.pyx native/*.pxd native/*.c native/*.h)

.PHONY: all venv build test lint typecheck stubtest pytest bench run clean

all: test

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q --group dev -e .
	touch $(STAMP)

venv: $(STAMP)

# Rebuild the native core in place when its sources changed (a no-op otherwise).
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks setup.py
	$(VENV)/bin/ruff format --check src tests benchmarks setup.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The native modules' .pyi stubs must match what the compiled modules expose
# (names, parameters, defaults, final classes); every native/<name>.pyx is checked.
STUBTEST_MODULES := $(patsubst native/%.pyx,ocistore._native.%,$(wildcard native/*.pyx))
stubtest: build
ifeq ($(OCISTORE_NO_EXTENSIONS),1)
	@echo "stubtest: nothing to check (OCISTORE_NO_EXTENSIONS=1 builds no native modules)"
else
	$(PY) -m mypy.stubtest $(STUBTEST_MODULES)
endif

pytest: build
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: build lint typecheck stubtest pytest

bench: build
	$(VENV)/bin/pytest benchmarks -p no:randomly --benchmark-columns=min,median,mean,max,ops,rounds $(BENCH_ARGS)

run: build
	$(VENV)/bin/ocistore serve --addr 127.0.0.1:5000 --root ./data

clean:
	rm -rf build src/ocistore/_native/*.so native/_*.c .pytest_cache .mypy_cache .ruff_cache
