# Two commands do all the set-up (see README):
#   make demo   - installs what is missing, then runs the main job (the detection demo)
#   make test   - installs what is missing, then runs the test suite
# The virtual environment lives in $(VENV) (default .venv; override with MMSGFORMER_VENV).
VENV ?= $(or $(MMSGFORMER_VENV),.venv)
PYTHON := $(VENV)/bin/python
export MMSGFORMER_VENV := $(abspath $(VENV))

.PHONY: setup demo seg-demo test

setup:
	bash tools/setup_env.sh

demo: setup
	bash tools/run_demo.sh

seg-demo: setup
	bash tools/run_seg_demo.sh

test: setup
	$(PYTHON) -m pytest -q tests
