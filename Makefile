# Quick start:  make demo       (install + a short BDH fit and test on tiny Shakespeare)
#               make test       (install + the whole test suite: what CI runs)
#               make test-fast  (the edit loop: the unit tier, tests/unit/, under a minute)
PYTHON ?= python
# The CPU build; on a GPU machine use e.g. `make install TORCH=torch` to take your CUDA build.
TORCH ?= torch==2.13.0
DEMO_ROOT ?= lightning_logs/demo
# Local data (see README "Offline data"): ../shared/data when it is there, else the hub.
BDH_PL_DATA_DIR ?= $(shell [ -d ../shared/data ] && cd ../shared/data && pwd)
ifneq ($(BDH_PL_DATA_DIR),)
export BDH_PL_DATA_DIR
endif

.PHONY: install demo test test-fast test-integration lint

install:
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"

demo: install
	rm -rf $(DEMO_ROOT)
	$(PYTHON) -m bdh_pl fit --config configs/shakespeare.yaml --config configs/cpu.yaml --config configs/cpu/bdh.yaml \
		--trainer.default_root_dir $(DEMO_ROOT)
	$(PYTHON) -m bdh_pl test --config configs/shakespeare.yaml --config configs/cpu.yaml --config configs/cpu/bdh.yaml \
		--trainer.default_root_dir $(DEMO_ROOT) --ckpt_path $(DEMO_ROOT)/version_0/checkpoints/best.ckpt
	@cat $(DEMO_ROOT)/version_1/test_metrics.json

# Both tiers, tests/unit/ and tests/integration/ (pyproject's testpaths).
test: install
	$(PYTHON) -m pytest

# The unit tier: no process, no fit past a few steps, no compile, no tmpfs (tests/unit/conftest.py).
test-fast:
	$(PYTHON) -m pytest tests/unit

test-integration:
	$(PYTHON) -m pytest tests/integration

# The Python sources only: recent ruff also formats code blocks in Markdown, which the docs
# lay out by hand (aligned comments).
LINTED = bdh_pl tests benchmarks scripts
lint:
	ruff check $(LINTED) && ruff format --check $(LINTED)
