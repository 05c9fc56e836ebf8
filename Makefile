# Two commands on a fresh machine: `make up` runs a cluster, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: up host-packages test test-unit lint bench clean cri-stubs python-client-e2e

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

# What `up` uses from the host: the venv, the nftables data plane (kernel DNAT), containerd with
# runc and the CNI plugins (pods as real containers), busybox (the pause image is built from it),
# nginx (the process runtime's `nginx` image). On Debian as root the missing ones are installed,
# and said so; elsewhere they are named, and `up` falls back to what works without them (the
# process runtime, the userspace data plane).
HOST_PACKAGES := python3-venv nftables nginx-light containerd runc containernetworking-plugins busybox-static

host-packages:
	@missing=""; for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "• installing$$missing (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "• not installed:$$missing (apt-get install$$missing); pocketkube falls back to what works without them (pocketkube doctor tells more)"; \
	fi

up: host-packages $(STAMP)
	$(VENV)/bin/pocketkube up

# Every test: unit, integration, e2e and soak (markers and timeouts are in pyproject.toml). A
# test whose prerequisite is missing (nginx, root, nft, ...) skips here and fails under CI=true.
test: $(STAMP)
	$(VENV)/bin/pytest -q tests

# The fast, self-contained tests only (seconds): for the edit-test loop.
test-unit: $(STAMP)
	$(VENV)/bin/pytest -q -m unit tests

# Style and the import layers (.importlinter).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

# The official Python client's own e2e suite (kubernetes-client/python `kubernetes/e2e_test`,
# not shipped on PyPI) against a fresh cluster: CLIENT_SRC is a checkout of that repository.
ifneq ($(filter python-client-e2e,$(MAKECMDGOALS)),)
ifeq ($(CLIENT_SRC),)
$(error usage: make python-client-e2e CLIENT_SRC=<a kubernetes-client/python checkout>)
endif
endif
python-client-e2e: $(STAMP)
	$(VENV)/bin/python scripts/python_client_e2e.py --client-src $(CLIENT_SRC)

# Regenerate the vendored CRI v1 stubs from the vendored api.proto (scripts/gen_cri.py tells how
# to vendor a new upstream version).
cri-stubs: $(STAMP)
	$(VENV)/bin/python scripts/gen_cri.py

bench: $(STAMP)
	$(VENV)/bin/python bench/apiserver.py
	$(VENV)/bin/python bench/rbac.py
	$(VENV)/bin/python bench/cluster.py
	$(VENV)/bin/python bench/dataplane.py --plane nftables
	$(VENV)/bin/python bench/dataplane.py --plane userspace
	$(VENV)/bin/python bench/traffic_counters.py --out bench/results-traffic-counters.txt
	$(VENV)/bin/python bench/cluster.py --runtime containerd
	$(VENV)/bin/python bench/dataplane.py --runtime containerd
	$(VENV)/bin/python bench/configmap_propagation.py
	$(VENV)/bin/python bench/tokens.py
	$(VENV)/bin/python bench/resources.py
	$(VENV)/bin/python bench/jobs.py --runtime containerd
	$(VENV)/bin/python bench/jobs.py --runtime process
	$(VENV)/bin/python bench/dns.py
	$(VENV)/bin/python bench/ingress.py
	$(VENV)/bin/python bench/ingress.py --runtime containerd
	$(VENV)/bin/python bench/streams.py
	$(VENV)/bin/python bench/ui.py --out bench/results-ui.txt
	$(VENV)/bin/python bench/etcd_store.py --out bench/results-etcd-store.txt
	$(VENV)/bin/python bench/streams_apiserver.py
	$(VENV)/bin/python bench/scale.py --procs 2 --nodes 10  # full size: POCKETKUBE_SCALE_PROCS=10 POCKETKUBE_SCALE_NODES=100

clean:
	rm -rf $(VENV) build src/*.egg-info
