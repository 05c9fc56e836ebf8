# Two commands on a fresh machine: `make up` runs a cluster, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: up test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/pocketkube up

test: $(STAMP)
	$(VENV)/bin/pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(VENV)/bin/python bench/apiserver.py
	$(VENV)/bin/python bench/cluster.py
	$(VENV)/bin/python bench/dataplane.py --plane nftables
	$(VENV)/bin/python bench/dataplane.py --plane userspace

clean:
	rm -rf $(VENV) build src/*.egg-info
