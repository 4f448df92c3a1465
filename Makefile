# Two commands from a fresh clone: `make demo` and `make test`. Each installs the environment the
# first time (and again whenever pyproject.toml changes). See README.md.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# written after a complete install, so an interrupted one is redone rather than trusted
STAMP := $(VENV)/.installed

.PHONY: install system-tools demo test

install: system-tools  ## venv + clinrelease with its test and generator extras (+ dciodvfy and chromium for the tests)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install -e ".[test,dask,generator]"
	$(BIN)/pip install --no-deps "random-face==2021.7.21.1"
	touch $(STAMP)

$(STAMP): pyproject.toml
	$(MAKE) install

# Orthanc's own service is stopped and disabled: the DICOMweb tests start their servers on free loopback ports
system-tools:  ## optional Debian tools the tests use when present: dicom3tools (dciodvfy), chromium, Orthanc with DICOMweb and Python plugins
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools chromium orthanc orthanc-dicomweb orthanc-python >/dev/null \
	   && { systemctl disable --now orthanc >/dev/null 2>&1 || { service orthanc stop; update-rc.d orthanc disable; } >/dev/null 2>&1 || true; }) \
	  || echo "warning: could not install dicom3tools/chromium/orthanc; the tests that need them will be skipped"; \
	else echo "note: not root or no apt-get; install dicom3tools, chromium, orthanc, orthanc-dicomweb and orthanc-python yourself to run every test"; fi

# exit 1 means an item was quarantined: the release is complete all the same, so it is verified
demo: $(STAMP)  ## release the built-in demo set into demo-release/, then verify its signed audit log
	$(BIN)/clinrelease demo demo-release || [ $$? -eq 1 ]
	$(BIN)/clinrelease audit verify demo-release/release --key demo-release/keys/signing.pub

test: $(STAMP)  ## the whole suite; ARGS="tests/test_items.py -x" narrows it
	$(BIN)/python -m pytest -n 2 -q $(ARGS)
