# Two entry points (README): `make run` (the main job) and `make test`. Both set up .venv first.
DATA ?= $(abspath ../shared/datasets)
export W2SLAB_DATA_DIR ?= $(DATA)

.PHONY: setup run test bench
setup: .venv/.w2slab-setup

.venv/.w2slab-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

run: setup
	.venv/bin/w2slab run

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/run_all.py
