# bitbudget — every target creates .venv and installs the pinned dependencies when missing or stale.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
NATIVE := build/native/libbitbudget_solvers.so

.PHONY: run test test-fast bench lint venv clean

venv: $(STAMP) $(NATIVE)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# torch first (from the machine's wheel cache), then sam2 built against it without CUDA
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation sam2==1.1.0
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# the solvers' compiled kernels (optional: without a C compiler the numpy code runs instead)
$(NATIVE): solvers/backends/_native.c solvers/backends/native.py | $(STAMP)
	$(BIN)/python -m solvers.backends.native

run: $(STAMP) $(NATIVE)
	$(BIN)/bitbudget serve --host $(HOST) --port $(PORT) --dev

test: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP) $(NATIVE)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check profiling solvers searchsvc tests bench
	$(BIN)/mypy profiling solvers searchsvc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
