# Two commands do everything on a fresh Debian machine:
#   make demo   - set up what the demo needs, then build a 3-node cluster of network namespaces,
#                 apply routes, ping
#   make test   - set up everything the tests need, then lint, type-check and run the whole suite
# and `sudo make install` puts nosdn on sudo's PATH (/usr/local/bin), so `sudo nosdn ...` runs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
#: What `nosdn lab demo` runs: ip, ping, the CNI plugins; nftables for doctor's firewall checks.
DEMO_DEBS := iproute2 iputils-ping containernetworking-plugins nftables
#: The tests also run the routing daemons (routers, --router labs), shells, Graphviz and
#: Prometheus (promtool, the lab's scrape test), and build and run the image
#: (tools/build-image.sh: debootstrap, umoci; tests/test_image.py: runc).
DEBS   := $(DEMO_DEBS) bird2 frr shellcheck busybox dash graphviz debootstrap umoci runc prometheus
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BINDIR ?= /usr/local/bin

.PHONY: setup debs demo-debs kube image demo install test lint unit bench clean

setup: $(VENV)/.installed debs

# nosdn alone (the demo) and nosdn with the test tools (everything else)
$(VENV)/.installed-base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

debs demo-debs: WANT = $(if $(filter demo-debs,$@),$(DEMO_DEBS),$(DEBS))
debs demo-debs:
	@missing=""; for p in $(WANT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(VENV)/.installed-base demo-debs
	$(SUDO) $(VENV)/bin/nosdn lab demo

# A link, not a copy: the venv stays the one install (`make clean` breaks it; re-run make demo).
install: $(VENV)/.installed-base
	ln -sfn "$(CURDIR)/$(VENV)/bin/nosdn" "$(BINDIR)/nosdn"
	@echo "nosdn is $(BINDIR)/nosdn -> $(CURDIR)/$(VENV)/bin/nosdn"

lint: setup
	$(PY) -m ruff format --check src tests bench
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy src
	$(VENV)/bin/lint-imports

unit: setup
	$(PY) -m pytest -q -m "not root"

# The real kube-apiserver, kubectl and kine for the tests, and helm for the chart's: built once
# per machine from the Go module proxy into ~/.cache/nosdn (tools/build-kube.sh,
# tools/build-helm.sh). Without Go the tier is skipped, said here and by pytest; under CI=true
# a missing Go is a failure.
kube:
	@if command -v go >/dev/null 2>&1; then tools/build-kube.sh >/dev/null && tools/build-helm.sh >/dev/null; \
	elif [ "$$CI" = true ]; then echo "CI: no Go toolchain for the real kube-apiserver tier" >&2; exit 1; \
	else echo "no Go toolchain: the real kube-apiserver tests will be skipped (install Go 1.26+)"; fi

# The nosdn OCI image for tests/test_image.py, without Docker: debootstrap + pip + umoci, cached
# in ~/.cache/nosdn/image keyed on its inputs (tools/build-image.sh; a first build took 337 s here,
# debootstrap 116-316 s of it). Needs root and a Debian mirror; under CI=true both are required.
image: setup
	@if [ "$$(id -u)" = 0 ]; then PYTHON=$(abspath $(PY)) tools/build-image.sh >/dev/null; \
	elif [ "$$CI" = true ]; then echo "CI: the image build needs root" >&2; exit 1; \
	else echo "not root: the image is not built and its tests are skipped"; fi

test: lint kube image
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/plan.py
	$(SUDO) $(PY) bench/apply.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
