# Two entry points: `make demo` and `make test`. Both create .venv, install a
# CPU torch wheel (override: make test TORCH_SPEC="torch" or a CUDA index) and
# the project; `make test` adds the test extras (pytest, playwright, ray) and
# LeRobot (below), which the demo does not need. Both are idempotent: each
# install step has its own stamp, so a second run skips what is installed.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
DEV_STAMP   := $(VENV)/.installed-dev
# LeRobot for the tests of LeRobot checkpoints (tests/test_lerobot.py). No LeRobot release admits a
# torch >= 2.11, and PyPI's torchvision does not import beside the CPU torch 2.13.0 wheel, so the test
# environment takes a torch / torchvision / torchcodec set that import together, LeRobot itself without
# its pins (--no-deps) and, from requirements/lerobot.txt, the dependencies its policies and
# lerobot-train import. Users install the `lerobot` extra instead and let pip choose torch (README).
LEROBOT_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1 torchcodec==0.17.0
LEROBOT_SPEC       ?= lerobot==0.4.4
LEROBOT_STAMP      := $(VENV)/.installed-lerobot
DEMO_OUT    ?= probe-demo
DEMO_ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup setup-dev setup-lerobot demo test browser ffmpeg clean

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

setup-lerobot: $(LEROBOT_STAMP)

# LeRobot and what its policies need (see LEROBOT_SPEC above); draccus ships a top-level `tests`
# package that would shadow this project's tests/, so it is removed
$(LEROBOT_STAMP): $(DEV_STAMP) requirements/lerobot.txt
	$(BIN)/python -m pip install -q $(LEROBOT_TORCH_SPEC)
	$(BIN)/python -m pip install -q --no-deps "$(LEROBOT_SPEC)"
	$(BIN)/python -m pip install -q -r requirements/lerobot.txt
	$(BIN)/python -c "import importlib.metadata as m, pathlib, shutil; d = m.distribution('draccus'); \
	  p = pathlib.Path(d.locate_file('tests')); \
	  any(str(f).startswith('tests/') for f in d.files or []) and p.is_dir() and shutil.rmtree(p)"
	$(BIN)/python -c "import lerobot.policies.factory, torchvision, torchcodec"
	touch $(LEROBOT_STAMP)

# Debian's Chromium for the browser tests (report and dashboard). Best effort:
# the browser tests skip with a clear reason where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	    echo "note: could not install chromium; browser tests will be skipped"; \
	  else echo "note: chromium not found; browser tests will be skipped"; fi; }

# Debian's FFmpeg libraries, which torchcodec (LeRobot's video decoder, used by lerobot-train and its
# dataset class in the tests) loads. Best effort, like the browser.
ffmpeg:
	@ldconfig -p 2>/dev/null | grep -q libavcodec || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q --no-install-recommends ffmpeg >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends ffmpeg >/dev/null 2>&1)) || \
	    echo "note: could not install ffmpeg; the lerobot-train test will fail to decode video"; \
	  else echo "note: FFmpeg libraries not found; the lerobot-train test needs them (apt-get install ffmpeg)"; fi; }

demo: setup
	$(BIN)/probe demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: setup-dev setup-lerobot browser ffmpeg
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
