# make run: set up and serve on 0.0.0.0:8000 (rooms.server.workers running rooms.server.fast:
# uvicorn and picows with graceful shutdown; in-memory layer, SQLite), as in production: DEBUG
# off, a secret key of this checkout's own.
# make test: set up, start the services the tests need, run every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
HOST ?= 0.0.0.0
PORT ?= 8000
# What run and serve show the network: no debug page (DEBUG off, even if the shell has it
# on), a key made on the first run into SECRET_KEY_FILE (ignored by git), and only the
# loopback names unless ALLOWED_HOSTS names others. `manage.py runserver` keeps DEBUG on.
SECRET_KEY_FILE ?= $(CURDIR)/.secret_key
ALLOWED_HOSTS ?= localhost,127.0.0.1,[::1]
run serve: export DEBUG := 0
run serve: export SECRET_KEY_FILE := $(SECRET_KEY_FILE)
run serve: export ALLOWED_HOSTS := $(ALLOWED_HOSTS)

.PHONY: run serve test lint bench crowd soak services screenshot failover-demo

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUN_STAMP): requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

$(SECRET_KEY_FILE):
	umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@.new
	mv $@.new $@

run: $(RUN_STAMP) $(SECRET_KEY_FILE)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) -m rooms.server.workers --host $(HOST) --port $(PORT)

# N server processes on one port, rooms shared through Redis: make serve WORKERS=4 REDIS_URL=...
WORKERS ?= 2
serve: $(RUN_STAMP) $(SECRET_KEY_FILE)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) -m rooms.server.workers --workers $(WORKERS) --host $(HOST) --port $(PORT)

services:
	scripts/services.sh

# TEST_WORKERS processes (pytest-xdist) take the tests a whole file at a time, each on a
# Redis database of its own (tests/parallel.py): on two cores two take 6 minutes, three 4.6
# but at a load that made timing-bound tests fail now and then, four are slower
# (BENCHMARKS.md, "The test suite"). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(DEV_STAMP) services
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(DEV_STAMP) services
	$(PY) -m bench $(BENCH_ARGS)

# 22,000 connections on two worker processes through Redis (BENCHMARKS.md, Crowd); more with
# CROWD_ARGS="--connections 100000" (a worker and a generator per 15,000 connections).
crowd: $(DEV_STAMP) services
	$(PY) -m bench.crowd $(CROWD_ARGS)

# Three hosts (network namespaces, as root; loopback addresses otherwise) share one Redis;
# one dies by SIGKILL mid-conversation and its clients resume elsewhere (docs/scaling.md).
failover-demo: $(DEV_STAMP)
	$(PY) -m tests.failover $(FAILOVER_ARGS)

# Minutes of steady load on loopback: memory flat, nothing lost (docs/operations.md).
soak: $(DEV_STAMP)
	$(PY) scripts/soak.py $(SOAK_ARGS)

# Retake docs/screenshot.png (the README's picture of a room) with the browser test.
screenshot: $(DEV_STAMP) services
	UPDATE_SCREENSHOT=1 $(PY) -m pytest tests/test_browser.py -k screenshot -q
