# zerolab: every entry point. `make scenario NAME=...` and `make test` do all the set-up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NAME ?=
ENGINE ?= compose
WRK2 ?=
RUN ?=
DURATION ?=
FRESH ?=
ACCEPT_WEAKER ?=
# Compose projects the tests create start with this, so a failed run can be swept away.
export ZL_PROJECT_PREFIX ?= zl
A ?=
B ?=

.PHONY: help venv images scenario verify report compare test test-unit bench-server bench-harness cleanup clean

help:
	@echo "make scenario NAME=<scenario> [ENGINE=compose|swarm] [FRESH=1]  run a scenario end to end"
	@echo "make test                      unit, integration and container tests"
	@echo "make images [WRK2=/path/wrk2]  build the server, redis and loadgen images"
	@echo "make verify NAME=<scenario>    bring an environment up, check it with testinfra, tear down"
	@echo "make report [RUN=<dir>]        HTML report and plots of the latest (or given) results"
	@echo "make compare A=<dir> B=<dir>   two results side by side"
	@echo "make bench-server [C_SERVERS=dir]  requests/second of each architecture on the host"
	@echo "make bench-harness             seconds the harness adds to every run"
	@echo "make cleanup                   remove every zerolab container, network and volume left behind"

# The virtual environment is rebuilt only when the pins change.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

images: venv
	WRK2="$(WRK2)" PYTHON="$(PY)" bash docker/build-images.sh

scenario: images
	$(PY) -m lab scenario "$(NAME)" --engine "$(ENGINE)" $(if $(FRESH),--fresh,) $(if $(DURATION),--duration $(DURATION),) $(if $(ACCEPT_WEAKER),--accept-weaker-cpu-limits,)

verify: images
	$(PY) -m lab verify "$(NAME)"

report: venv
	$(PY) -m lab report $(if $(RUN),"$(RUN)",)

compare: venv
	$(PY) -m lab compare "$(A)" "$(B)"

test-unit: venv
	$(PY) -m pytest tests/unit -q

# Unit tests, integration tests on real Redis, servers and containers, and the testinfra
# checks; whatever a failing test left behind is removed before make returns.
test: images
	ZL_PROJECT_PREFIX=zltest $(PY) -m pytest tests -q -p no:cacheprovider; rc=$$?; \
	  $(PY) -m lab cleanup --prefix zltest; exit $$rc

bench-server: venv
	$(PY) bench/bench_server.py $(if $(C_SERVERS),--c-servers $(C_SERVERS))

bench-harness: images
	$(PY) bench/bench_harness.py

cleanup: venv
	$(PY) -m lab cleanup --prefix zl

clean:
	rm -rf $(VENV) build .pytest_cache
