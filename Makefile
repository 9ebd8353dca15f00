# The two commands of the README:  make demo  (main job)  and  make test  (test suite).
# Both create or refresh the virtualenv in .venv when pyproject.toml or constraints.txt change:
# `make demo` installs only what the demo needs (the package and scikit-learn: no dev tools, no
# Triton, no CUDA wheels), without bytecode: the demo's first run writes the bytecode of just
# the modules it imports (it unsets PYTHONDONTWRITEBYTECODE, which these machines set, for
# itself only), so .venv stays near 1.2 GB. `make test` adds the dev extra (transformers,
# pytest, linters, torchconvquality, and Triton where a GPU may use it) and compiles the whole
# .venv, as pip would: without bytecode every test process would compile torch from source.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
BASE   := $(VENV)/.base
STAMP  := $(VENV)/.installed

.PHONY: venv demo test pytest lint clean gpu-check

$(BASE): pyproject.toml constraints.txt
	@echo "installing filterwatch and the demo's dependencies into $(VENV) (CPU torch; about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PIP) --no-compile -e '.[examples]'
	touch $(BASE)

$(STAMP): $(BASE)
	@echo "installing the dev tools into $(VENV) (transformers, pytest, linters; about two minutes)"
	$(PIP) -e '.[dev]'
	@echo "compiling the virtualenv's bytecode (the tests import far more than the demo)"
	@# like pip, skip the few files that do not compile under this Python (torch's py312 tests)
	$(PY) -c 'import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)' $(VENV)/lib
	touch $(STAMP)

venv: $(STAMP)

demo: $(BASE)
	env -u PYTHONDONTWRITEBYTECODE $(PY) examples/finetune_digits.py

test: lint pytest

pytest: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# On a machine with a CUDA GPU (never in CI): the CUDA tests and the GPU benchmark, <= 5 min.
# It uses the machine's own python3 with torch (GPU build), lightning and triton installed.
gpu-check:
	PYTHONPATH=src timeout 300 python3 benchmarks/gpu_check.py --out $${OUT:-gpu-check}

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
