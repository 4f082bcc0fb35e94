# Set-up and main jobs. Each target creates .venv, installs what is needed, then runs.
# torch is pinned to 2.13.0 unless one is already importable (e.g. a CUDA build on a GPU box).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

bench: $(STAMP)
	$(PY) benchmarks/ops.py

clean:
	rm -rf $(VENV) demo-out
