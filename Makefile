# Every target creates .venv on first use, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Override for another CUDA build, e.g. make install TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url ..."
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: install lint test test-gpu demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The GPU paths only (bf16 extraction of real clips, training, NCCL torchrun, benchmarks, host syncs); on a
# machine with CUDA, with REAL_FIXTURES set for the real-clip test. Skipped (not failed) without a GPU.
test-gpu: install
	$(BIN)/python -m pytest -q -m gpu -rs $(PYTEST_ARGS)

demo: install
	$(BIN)/cli demo

bench: install
	$(BIN)/cli bench extract

clean:
	rm -rf $(VENV) demo-run .pytest_cache
