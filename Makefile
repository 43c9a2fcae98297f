# Two set-up commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ocistore-installed
NATIVE := $(wildcard native/*.pyx native/*.pxd native/*.c native/*.h)

.PHONY: all venv build test lint typecheck stubtest docs pytest bench bench-compare run clean

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
	$(VENV)/bin/ruff check src tests benchmarks setup.py docs/api
	$(VENV)/bin/ruff format --check src tests benchmarks setup.py docs/api

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

# The API reference (docs/api/) from the docstrings, into build/docs/; any warning fails
# it. -E rereads every page each time, so a warning cannot hide in a cached page.
# Its >>> examples run in the test suite (tests/test_docs.py), on both cores.
docs: build
	$(VENV)/bin/sphinx-build -E -W --keep-going -q -b html docs/api build/docs

test: build lint typecheck stubtest docs pytest

# Benchmarks people can track (BENCHMARKS.md, "Tracking a regression"): `make bench`
# saves each run under $(BENCH_DIR) (git-ignored); `make bench-compare` runs the
# current tree against a saved run (BASELINE=0001, or the latest saved when unset)
# and prints each benchmark beside its baseline, with ratios. It saves nothing.
BENCH      ?= benchmarks
BENCH_DIR  ?= .benchmarks
BENCH_RUN  := $(VENV)/bin/pytest $(BENCH) -p no:randomly -p no:cacheprovider \
	--benchmark-storage=file://$(abspath $(BENCH_DIR)) \
	--benchmark-columns=min,median,mean,max,ops,rounds

bench: build
	$(BENCH_RUN) --benchmark-autosave $(BENCH_ARGS)

bench-compare: build
	$(BENCH_RUN) --benchmark-compare$(if $(BASELINE),=$(BASELINE)) \
	    --benchmark-group-by=fullname --benchmark-sort=name $(BENCH_ARGS)

run: build
	$(VENV)/bin/ocistore serve --addr 127.0.0.1:5000 --root ./data

clean:
	rm -rf build src/ocistore/_native/*.so native/_*.c .pytest_cache .mypy_cache .ruff_cache
