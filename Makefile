# Two commands do everything on a fresh Debian machine:
#   make demo   - set up, then build a 3-node cluster of network namespaces, apply routes, ping
#   make test   - set up, then lint, type-check and run the whole test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEBS   := iproute2 iputils-ping containernetworking-plugins nftables bird2 frr shellcheck busybox dash graphviz prometheus
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup debs kube demo test lint unit bench clean

setup: $(VENV)/.installed debs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: setup
	$(SUDO) $(VENV)/bin/nosdn lab demo

lint: setup
	$(PY) -m ruff format --check src tests bench
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy src
	$(VENV)/bin/lint-imports

unit: setup
	$(PY) -m pytest -q -m "not root"

# The real kube-apiserver, kubectl and kine for the tests: built once per machine from the Go
# module proxy into ~/.cache/nosdn (tools/build-kube.sh). Without Go the tier is skipped, said
# here and by pytest; under CI=true a missing Go is a failure.
kube:
	@if command -v go >/dev/null 2>&1; then tools/build-kube.sh >/dev/null; \
	elif [ "$$CI" = true ]; then echo "CI: no Go toolchain for the real kube-apiserver tier" >&2; exit 1; \
	else echo "no Go toolchain: the real kube-apiserver tests will be skipped (install Go 1.26+)"; fi

test: lint kube
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/plan.py
	$(SUDO) $(PY) bench/apply.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
