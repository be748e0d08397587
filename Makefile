# zerolab: every entry point. `make scenario NAME=...` and `make test` do all the set-up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NAME ?=
ENGINE ?= compose
WRK2 ?=
# A checkout of the article's C servers (github.com/shuveb/zerohttpd) built with its own `make all`:
# `make images ZEROHTTPD=...` puts them in zerolab/zerohttpd; `make test ZEROHTTPD=...` runs them.
ZEROHTTPD ?=
RUN ?=
DURATION ?=
REPEATS ?=
FRESH ?=
ACCEPT_WEAKER ?=
# Compose projects the tests create start with this, so a failed run can be swept away.
export ZL_PROJECT_PREFIX ?= zl
A ?=
B ?=
# Load generators the loadgen image must carry. Debian's wrk is always there; oha is built with
# cargo (about ten minutes, once per machine) only when listed: `make images TOOLS=oha`.
# `make scenario` and `make verify` take the scenario's own tools, `make test` takes oha too.
DEFAULT_TOOLS := wrk
TOOLS ?= $(DEFAULT_TOOLS)
# The tools of scenario NAME; the defaults when `lab tools` fails (a missing or invalid NAME),
# so that `lab scenario` is the one to explain what is wrong.
scenario_tools = $(or $(shell out="$$($(PY) -m lab tools "$(NAME)" 2>/dev/null)" && echo "$$out"),$(DEFAULT_TOOLS))
# `make lock`: the lock tool, installed into .venv by that target only.
UV_VERSION := 0.13.9
UPGRADE ?=

.PHONY: help venv lock images scenario verify report report-check compare test test-unit bench-server bench-harness bench-noise cleanup clean swarm-lab swarm-lab-down test-swarm

help:
	@echo "make scenario NAME=<scenario> [ENGINE=compose|swarm] [FRESH=1]  run a scenario end to end"
	@echo "make test                      unit, integration and container tests"
	@echo "make images [WRK2=/path/wrk2] [TOOLS=oha] [ZEROHTTPD=/path/zerohttpd]  build the images"
	@echo "make verify NAME=<scenario>    bring an environment up, check it with testinfra, tear down"
	@echo "make report [RUN=<dir>]        HTML report and plots of the latest (or given) results"
	@echo "make report-check [RUN=<dir>]  the same, then loaded offline in headless Chromium: errors, screenshot.png"
	@echo "make compare A=<dir> B=<dir>   two results side by side"
	@echo "make bench-server [C_SERVERS=dir]  requests/second of each architecture on the host"
	@echo "make bench-harness             seconds the harness adds to every run"
	@echo "make bench-noise [REPEATS=6] [DURATION=10] [BACKLOG=n]  spread of one cell and false-positive rate of compare"
	@echo "make swarm-lab [NODES=3]       a multi-node swarm test bed on this machine (prints its DOCKER_HOST)"
	@echo "make swarm-lab-down            remove the test bed"
	@echo "make test-swarm                scenarios across the test bed's nodes, and the loss of a node"
	@echo "make cleanup                   remove the containers, networks and volumes the lab left behind (its own label only)"
	@echo "make lock [UPGRADE=1]          regenerate the hashed lock files from the .in files"

# The virtual environment is rebuilt only when the pins change. Every package, also those pulled
# in, is pinned with its hashes in requirements.txt: pip refuses anything else.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# To change a pin: edit requirements.in or docker/requirements-*.in, run `make lock`, commit the
# .in and .txt files together. Pins the .in files do not name are kept as they are in the .txt
# files unless UPGRADE=1. The host's lock holds for any Python 3.11+ on any system; the images'
# for Debian bookworm's CPython 3.11.2 on x86_64 (glibc 2.36), wheels only.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade,)
IMAGE_TARGET = --python-version 3.11.2 --python-platform x86_64-manylinux_2_36 --only-binary :all:

lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV_COMPILE) --universal --python-version 3.11 requirements.in -o requirements.txt
	$(UV_COMPILE) $(IMAGE_TARGET) docker/requirements-server.in -o docker/requirements-server.txt
	$(UV_COMPILE) $(IMAGE_TARGET) docker/requirements-loadgen.in -o docker/requirements-loadgen.txt

images: venv
	WRK2="$(WRK2)" ZEROHTTPD="$(ZEROHTTPD)" PYTHON="$(PY)" TOOLS="$(TOOLS)" bash docker/build-images.sh

# Target-specific, so that the images these build carry the tools the scenario (or the tests) use.
scenario verify: TOOLS = $(scenario_tools)
test: TOOLS = wrk oha

scenario: images
	$(PY) -m lab scenario "$(NAME)" --engine "$(ENGINE)" $(if $(FRESH),--fresh,) $(if $(DURATION),--duration $(DURATION),) $(if $(REPEATS),--repeats $(REPEATS),) $(if $(ACCEPT_WEAKER),--accept-weaker-cpu-limits,)

verify: images
	$(PY) -m lab verify "$(NAME)"

report: venv
	$(PY) -m lab report $(if $(RUN),"$(RUN)",)

# Debian's chromium and chromium-driver load it with no network; any console error or failed load
# fails, and the screenshot of the main view is left beside the report.
report-check: venv
	$(PY) -m lab report $(if $(RUN),"$(RUN)",) --check-in-browser

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

bench-noise: images
	$(PY) bench/bench_noise.py $(if $(REPEATS),--repeats $(REPEATS)) $(if $(DURATION),--duration $(DURATION)) $(if $(BACKLOG),--backlog $(BACKLOG))

# The multi-node Swarm test bed (lab/swarmlab.py, docs/swarm.md): its node image is built only here.
NODES ?= 3
swarm-lab: images
	IMAGES=swarm-node PYTHON="$(PY)" bash docker/build-images.sh
	$(PY) -m lab.swarmlab up --nodes $(NODES)

swarm-lab-down: venv
	$(PY) -m lab.swarmlab down

test-swarm: TOOLS = wrk oha
test-swarm: images
	IMAGES=swarm-node PYTHON="$(PY)" bash docker/build-images.sh
	ZL_PROJECT_PREFIX=zltest $(PY) -m pytest tests/swarm -q -p no:cacheprovider; rc=$$?; \
	  $(PY) -m lab cleanup --prefix zltest; exit $$rc

cleanup: venv
	$(PY) -m lab cleanup --prefix zl

clean:
	rm -rf $(VENV) build .pytest_cache
