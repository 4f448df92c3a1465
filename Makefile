# One command to install, one to run the demo, one to test. See README.md.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-tools demo test

install: system-tools  ## venv + clinrelease with its test and generator extras (+ dciodvfy and chromium for the tests)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install -e ".[test,dask,generator]"
	$(BIN)/pip install --no-deps "random-face==2021.7.21.1"

system-tools:  ## optional Debian tools the tests use when present: dicom3tools (dciodvfy), chromium
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools chromium >/dev/null) \
	  || echo "warning: could not install dicom3tools/chromium; the tests that need them will be skipped"; \
	else echo "note: not root or no apt-get; install dicom3tools and chromium yourself to run every test"; fi

demo:
	$(BIN)/clinrelease demo demo-release

test:
	$(BIN)/python -m pytest -n 2 -q
