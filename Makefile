# Two entry points (README): `make run` (the main job) and `make test`. Both set up .venv first.
DATA ?= $(abspath ../shared/datasets)
export W2SLAB_DATA_DIR ?= $(DATA)

.PHONY: setup browser run test bench
setup: .venv/.w2slab-setup

.venv/.w2slab-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

# The report's end-to-end test opens it in a real headless Chromium (Debian package).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: setup
	.venv/bin/w2slab run
	.venv/bin/w2slab report

test: setup browser
	.venv/bin/python -m pytest -q

# Heavy measurements (about two hours on 2 cores); each writes benchmarks/out/*.json, two also regenerate docs/.
bench: setup
	cd benchmarks && ../.venv/bin/python bench_features.py && ../.venv/bin/python bench_experiment.py \
		&& ../.venv/bin/python bench_tasks.py && ../.venv/bin/python bench_supervisors.py \
		&& ../.venv/bin/python bench_sweep.py --sizes 32,64,128,256,512 && ../.venv/bin/python bench_finetune.py \
		&& ../.venv/bin/python bench_lm.py && ../.venv/bin/python bench_critiques.py \
		&& ../.venv/bin/python bench_selfimprove.py && ../.venv/bin/python bench_oversight.py \
		&& ../.venv/bin/python bench_redteam.py && ../.venv/bin/python bench_cai.py
