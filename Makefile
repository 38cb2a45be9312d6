# Two entry points: `make demo` and `make test`. Both create .venv, install a
# CPU torch wheel (override: make test TORCH_SPEC="torch" or a CUDA index) and
# the project; `make test` adds the test extras (pytest, playwright, ray), which
# the demo does not need. Both are idempotent: each install step has its own
# stamp, so a second run skips what is installed.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
DEV_STAMP   := $(VENV)/.installed-dev
DEMO_OUT    ?= probe-demo
DEMO_ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup setup-dev demo test browser clean

setup: $(STAMP)

setup-dev: $(DEV_STAMP)

# the project and torch: all that `probe demo` and the other commands need
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

# the test extras on top (pytest, playwright, ray)
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(DEV_STAMP)

# Debian's Chromium for the browser tests (report and dashboard). Best effort:
# the browser tests skip with a clear reason where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	    echo "note: could not install chromium; browser tests will be skipped"; \
	  else echo "note: chromium not found; browser tests will be skipped"; fi; }

demo: setup
	$(BIN)/probe demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: setup-dev browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
