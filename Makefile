# mmrobot — set up, test, demo. Needs only Python >= 3.10 with venv and pip.
#   make demo    set up, then run the main job
#   make test    set up, then lint and run the tests (what CI runs)
#   make release set up, then reproduce policies/release/ from scratch (docs/release.md)
# Override the torch requirement where the default does not suit, e.g.
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# This project's machines carry a CPU wheel of exactly this version on disk; a plain
# `pip install torch` would pull a multi-GB CUDA build. Installed only when no torch is present.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench release clean system-deps

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[all,dev]"
	@touch $@

# Open3D's wheel loads libusb-1.0 at import. Install it where we can (root with apt-get);
# elsewhere say what to install. WordNet likewise, where we can.
system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libusb-1.0-0 (needed by Open3D)"; \
	    apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
	      (apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null); \
	  else \
	    echo "Open3D needs the system library libusb-1.0-0."; \
	    echo "Install it (Debian/Ubuntu: sudo apt-get install libusb-1.0-0) and run make again."; \
	    exit 1; \
	  fi; \
	fi
	@# WordNet 3.0's database: `mmrobot release` builds the policy's lexicon from it (not
	@# needed to run a policy). Best effort: without it only the release and one test need it.
	@if [ ! -f /usr/share/wordnet/index.noun ] && [ -z "$$WNSEARCHDIR" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing wordnet-base (the release builds its lexicon from WordNet)"; \
	    apt-get install -y -qq wordnet-base >/dev/null 2>&1 || \
	      (apt-get update -qq && apt-get install -y -qq wordnet-base >/dev/null) || true; \
	  else \
	    echo "note: make release needs WordNet 3.0 (sudo apt-get install wordnet-base)"; \
	  fi; \
	fi

# The main job: the released policy executes language instructions in MuJoCo through the
# control loop; prints a success table, writes out/demo.gif and out/loop_timing.png (into a
# new out/run-N/ when an earlier run's are there: runs never overwrite, docs/run.md).
demo: setup
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/mmrobot run launch/sim_demo.toml

# The released policy, from scratch: collect, train, evaluate (and the ONNX
# exports), then eval.json, curves.png and MODEL_CARD.md in policies/release/. Resumable:
# make release RELEASE_ARGS=--resume. At most 150 minutes on a 2-core machine.
RELEASE_ARGS ?=
release: setup
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/mmrobot release policies/release.toml $(RELEASE_ARGS)

lint: setup
	$(BIN)/ruff check mmrobot tests benchmarks
	$(BIN)/ruff format --check mmrobot tests benchmarks

test: setup lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	mkdir -p out/bench
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b --json out/bench/$$(basename $$b .py).json || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info .cache
