# Vigil: two commands on a fresh machine (only PyPI needed):
#   make run    venv + pinned deps + assets, then the dashboard on config.yaml
#   make test   same setup, then the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
CONFIG ?= config.yaml
PYTEST_ARGS ?=

.PHONY: run test venv assets gpu check clean-venv bench

run: venv assets
	$(PY) main.py run --config $(CONFIG)

test: venv assets
	$(PY) -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

# Reinstall only when the pins change. With `make gpu` done, onnxruntime (CPU) is
# left out: onnxruntime and onnxruntime-gpu install the same module and clash.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23"
	if [ -f $(VENV)/.gpu ]; then \
	  grep -v '^onnxruntime==' requirements.txt > $(VENV)/req-gpu.txt; \
	  sed 's/^-r requirements.txt/-r req-gpu.txt/' requirements-dev.txt > $(VENV)/req-dev-gpu.txt; \
	  $(PIP) install -q -r $(VENV)/req-dev-gpu.txt -c constraints.txt; \
	else \
	  $(PIP) install -q -r requirements-dev.txt -c constraints.txt; \
	fi
	touch $(STAMP)

assets: venv
	$(PY) main.py assets --config $(CONFIG)

check: venv
	$(PY) main.py check-config $(CONFIG)

# Swap the CPU onnxruntime for onnxruntime-gpu (uninstall first: both ship the
# `onnxruntime` module and keeping both breaks the import).
gpu: venv
	$(PIP) uninstall -y onnxruntime onnxruntime-gpu || true
	$(PIP) install -q onnxruntime-gpu==1.31.1
	touch $(VENV)/.gpu
	$(PY) -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"

clean-venv:
	rm -rf $(VENV)
