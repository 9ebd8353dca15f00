# The two commands of the README:  make demo  (main job)  and  make test  (test suite).
# Each creates or refreshes the virtualenv in .venv when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test pytest lint clean gpu-check

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/finetune_digits.py

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
