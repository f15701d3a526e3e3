# Every target creates .venv on first use, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Override for another CUDA build, e.g. make install TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url ..."
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Offline compute nodes: WHEELS=DIR installs from a folder `make wheelhouse WHEELS=DIR` wrote, with no index;
# SYSTEM_TORCH=1 builds the venv on the torch and torchvision that $(PYTHON) already imports (a module or container).
WHEELS ?=
SYSTEM_TORCH ?=
PYTEST_ARGS ?=
TORCH_ARGS := --torch-spec "$(TORCH_SPEC)" $(if $(SYSTEM_TORCH),--system-torch)

.PHONY: install wheelhouse lint test test-all test-gpu gpu-check demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) install/make_venv.py --venv $(VENV) $(TORCH_ARGS) $(if $(WHEELS),--wheels "$(WHEELS)")
	touch $@

# On a machine that reaches the package index, with the Python version the compute nodes have.
wheelhouse:
	@test -n "$(WHEELS)" || { echo "error: name the folder: make wheelhouse WHEELS=DIR" >&2; exit 2; }
	$(PYTHON) install/wheelhouse.py --out "$(WHEELS)" $(TORCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The suite runs in parallel, one worker a core (tests that share an expensive fixture are one xdist group).
# `make test`: every behaviour at small size, before every commit; `make test-all` adds the tests marked slow
# (real shapes, long end-to-end runs, learning at full length), as CI runs them.
PYTEST := $(BIN)/python -m pytest -q -n auto --dist loadgroup
test: lint
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-all: lint
	$(PYTEST) $(PYTEST_ARGS)

# The GPU paths only (bf16 extraction of real clips, training, NCCL torchrun, benchmarks, host syncs); on a
# machine with CUDA, with REAL_FIXTURES set for the real-clip test. Skipped (not failed) without a GPU.
test-gpu: install
	$(BIN)/python -m pytest -q -m gpu -rs $(PYTEST_ARGS)

# The GPU tests and every benchmark on the GPU, into one markdown report; one line and nothing run without CUDA.
gpu-check: install
	$(BIN)/cli gpu-check

demo: install
	$(BIN)/cli demo

bench: install
	$(BIN)/cli bench extract

clean:
	rm -rf $(VENV) demo-run .pytest_cache
