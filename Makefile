# The two commands a new machine needs: `make serve` (install and start the web chat on the
# default model) and `make test` (install and run the tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: install install-test browser serve chat test test-fast route-eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test browser

# Headless Chromium for the web-page tests, from Debian's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

serve: install
	$(BIN)/babelbot model prepare
	$(BIN)/babelbot serve --host $(HOST) --port $(PORT)

chat: install
	$(BIN)/babelbot chat

test: install-test
	$(BIN)/python -m pytest -q

# Everything but the real model and the browser: seconds.
test-fast: install-test
	$(BIN)/python -m pytest -q -m "not real_model and not browser"

route-eval: install
	$(BIN)/babelbot eval router --out results/router

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
