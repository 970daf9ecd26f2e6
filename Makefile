# Two commands do all the set-up (see README):
#   make demo   - installs what is missing, then runs the main job (the detection demo)
#   make test   - installs what is missing, then runs the test suite
#   make lint   - ruff: lint, import order and format check (configured in pyproject.toml)
# The virtual environment lives in $(VENV) (default .venv; override with MMSGFORMER_VENV), on the
# default OpenMMLab stack (requirements/onedl.txt; see docs/install.md).
#
#   make test-upstream - the suite on the other stack (requirements/upstream.txt), but for the files
#                        that import no OpenMMLab package (STACK_FREE_TESTS), in a
#                        second environment $(VENV_UPSTREAM) (default: in the cache beside the
#                        compiled mmcv wheels, so that fresh clones reuse it; override with
#                        MMSGFORMER_VENV_UPSTREAM)
#   make test-torch21  - the attention, backbone, checkpoint, classification and segmentation tests
#                        under torch 2.1.2, the oldest supported torch (upstream stack), in a third
#                        environment $(VENV21) (in the cache; override with MMSGFORMER_VENV_TORCH21)
VENV ?= $(or $(MMSGFORMER_VENV),.venv)
PYTHON := $(VENV)/bin/python
export MMSGFORMER_VENV := $(abspath $(VENV))

CACHE := $(or $(MMSGFORMER_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mmsgformer)
VENV_UPSTREAM ?= $(or $(MMSGFORMER_VENV_UPSTREAM),$(CACHE)/venv-upstream-torch2.14.1)
VENV21 ?= $(or $(MMSGFORMER_VENV_TORCH21),$(CACHE)/venv-torch2.1.2)
TORCH21_TESTS := tests/test_compat.py tests/test_attention.py tests/test_backbone.py \
	tests/test_checkpoint.py tests/test_classification.py tests/test_segmentation_configs.py

.PHONY: setup demo seg-demo lint test test-onedl setup-upstream test-upstream setup-torch21 test-torch21

setup:
	bash tools/setup_env.sh

demo: setup
	bash tools/run_demo.sh

seg-demo: setup
	bash tools/run_seg_demo.sh

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: setup
	$(PYTHON) -m pytest -q tests

test-onedl: test  # the default stack is OneDL's

setup-upstream:
	MMSGFORMER_VENV=$(abspath $(VENV_UPSTREAM)) MMSGFORMER_STACK=upstream bash tools/setup_env.sh

# The files that import no OpenMMLab package (the model's numerics and export, the benchmark,
# the docs) check the same code on the same torch under either stack; the second stack's run
# leaves them out (tests/test_openmmlab_install.py checks that they import none).
STACK_FREE_TESTS := tests/test_attention.py tests/test_backbone.py tests/test_memory_saving.py \
	tests/test_sizes.py tests/test_benchmark.py tests/test_docs.py

test-upstream: setup-upstream
	$(VENV_UPSTREAM)/bin/python -m pytest -q tests $(addprefix --ignore=,$(STACK_FREE_TESTS))

setup-torch21:
	MMSGFORMER_VENV=$(abspath $(VENV21)) MMSGFORMER_STACK=upstream MMSGFORMER_TORCH=2.1.2 \
		bash tools/setup_env.sh

test-torch21: setup-torch21
	$(VENV21)/bin/python -m pytest -q $(TORCH21_TESTS)
