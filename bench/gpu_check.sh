#!/bin/sh
# The prepared GPU check (docs/benchmarks.md, section 12), its one entry point: checks the environment,
# then runs bench/gpu_check.py, which prints one table. On a CUDA machine it needs the CUDA
# build of torch in .venv (README, "Quick start"); `--device cpu` runs the same code path at tiny
# sizes (the test suite does, tests/test_gpu_check.py). Arguments go to gpu_check.py.
#
#   bench/gpu_check.sh                 # one GPU, full sizes; within 8 minutes
#   bench/gpu_check.sh --device cpu
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
    echo "gpu_check: $PY not found: run 'make setup' first (or set PYTHON)" >&2
    exit 2
fi
# One process, every thread of the machine for the loader's workers and the CPU side of the step.
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE
# The batch search allocates ever larger steps: growable segments keep the freed memory usable.
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
# Bounded, so the check never holds a lent GPU longer than its slot; rows print as measured.
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" bench/gpu_check.py "$@"
