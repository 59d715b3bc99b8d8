# Vigil: two commands on a fresh machine (only PyPI needed):
#   make run    venv + pinned runtime deps (requirements.txt) + assets, then the dashboard
#   make test   the same plus the test/bench deps and the `cluster` extra (requirements-dev.txt,
#               which includes requirements-cluster.txt: Ray), then the whole test suite
#   make cluster  only the `cluster` extra, for `main.py run --cluster ...` (see README, Cluster)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CLUSTER_STAMP := $(VENV)/.installed-cluster
CONFIG ?= config.yaml
PYTEST_ARGS ?=

.PHONY: run test venv venv-dev cluster assets gpu check clean-venv bench

run: venv assets
	$(PY) main.py run --config $(CONFIG)

test: venv-dev assets
	$(PY) -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

venv-dev: $(DEV_STAMP)

cluster: $(CLUSTER_STAMP)

# Reinstall only when the pins change. With `make gpu` done, onnxruntime (CPU) is
# left out: onnxruntime and onnxruntime-gpu install the same module and clash.
$(STAMP): requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23"
	if [ -f $(VENV)/.gpu ]; then \
	  grep -v '^onnxruntime==' requirements.txt > $(VENV)/req-gpu.txt; \
	  $(PIP) install -q -r $(VENV)/req-gpu.txt -c constraints.txt; \
	else \
	  $(PIP) install -q -r requirements.txt -c constraints.txt; \
	fi
	touch $(STAMP)

# requirements-dev.txt starts with -r requirements.txt (its pins are installed already)
$(DEV_STAMP): $(STAMP) requirements-dev.txt requirements-cluster.txt
	sed -e '/^-r requirements.txt/d' -e 's#^-r #-r ../#' requirements-dev.txt > $(VENV)/req-dev-only.txt
	$(PIP) install -q -r $(VENV)/req-dev-only.txt -c constraints.txt
	touch $(DEV_STAMP) $(CLUSTER_STAMP)

$(CLUSTER_STAMP): $(STAMP) requirements-cluster.txt
	$(PIP) install -q -r requirements-cluster.txt -c constraints.txt
	touch $(CLUSTER_STAMP)

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
