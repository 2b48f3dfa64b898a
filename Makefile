# facebench: the two set-up commands are `make demo` and `make test` (README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
DEMO_DIR ?= demo-output

.PHONY: install test lint bench bench-full gpu-check fuzz demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch from local disk; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,onnx]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -n 2 tests

lint: install
	$(VENV)/bin/ruff check facebench protocols tests benchmarks
	$(VENV)/bin/ruff format --check facebench protocols tests benchmarks
	$(VENV)/bin/mypy

# Speed and memory as ratios against baselines timed in the same run (docs/performance.md).
bench: install
	$(PY) -m benchmarks

# IJB-C and MegaFace sizes (a 1,000,000-item gallery); see docs/performance.md for its time.
bench-full: install
	$(PY) -m benchmarks --size full

# On a machine with a CUDA GPU, with the python3 whose torch is built for it (the venv holds
# the CPU build): the GPU tests, then the CUDA paths against the CPU at IJB-C and MegaFace
# sizes (docs/performance.md, "On a GPU").
gpu-check:
	PYTHONPATH=. $(PYTHON) -m pytest -p no:cacheprovider -rs tests/test_gpu.py
	PYTHONPATH=. $(PYTHON) -m benchmarks.gpu_check

# The fuzz tests with many more examples than `make test` runs (docs/reliability.md).
fuzz: install
	FACEBENCH_FUZZ=long $(PY) -m pytest -n 2 -p no:warnings tests/test_fuzz_protocols.py tests/test_fuzz_store.py tests/test_fuzz_inputs.py

demo: install
	$(VENV)/bin/facebench demo --out $(DEMO_DIR) --overwrite

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
