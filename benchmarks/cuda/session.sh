#!/usr/bin/env bash
# Every GPU check of pidkd in one run, for a session that is lent a GPU machine (about 8 minutes on an H200):
#   1. the CUDA tests (tests marked gpu: fit's CUDA path, TensorBatches, pid_batch(device="cuda"));
#   2. benchmarks/torch_batch.py: batches of PIDs and pid_from_samples, default solver against device="cuda";
#   3. benchmarks/cuda/run.py, eager section: fit against a plain PyTorch loop, teacher cached and not.
# Each part has its own time limit, so that one slow part cannot use up a lease.
# Results go to $OUT (default docs/benchmarks): torch_batch.{md,json}, cuda.{md,json}, and gpu_tests.log.
# Run from the repository root:  OUT=$OUT bash benchmarks/cuda/session.sh
set -uo pipefail
out="${OUT:-docs/benchmarks}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/distill/test_distill.py tests/distill/test_data.py \
    tests/estimators/test_torch_solver.py 2>&1 | tee "$out/gpu_tests.log" | tail -5
timeout 300 python3 benchmarks/torch_batch.py --out "$out" 2>&1 | tail -20
timeout 240 python3 benchmarks/cuda/run.py --sections eager --batches 64 256 --out "$out" 2>&1 | tail -30
