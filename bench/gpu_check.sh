#!/usr/bin/env bash
# The one-call GPU check: bench/gpu_check.sh OUT --export DIR (on a CUDA machine), or
# bench/gpu_check.sh OUT --dry (anywhere). What each step does: bench/gpu_check.py; how to run it: docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# the project's venv where there is one (make install), else the machine's python3 (a GPU image's torch)
default=python3
[ -x .venv/bin/python ] && default=.venv/bin/python
exec "${PYTHON:-$default}" -m bench.gpu_check "$@"
