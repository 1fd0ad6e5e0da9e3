#!/usr/bin/env bash
# Issue 11's GPU work as ONE prepared run (the device time of a session is short):
#   1. benchmarks/bench_gpu.py --device cuda       (the at-scale numbers, JSON)
#   2. the CUDA-parametrized tests                  (pytest -k cuda, slow ones included)
#   3. sftheory validate --device cuda on the checks with a CUDA route
# Usage, from the repository root on a machine with a CUDA GPU and the dependencies installed:
#   bash benchmarks/gpu_session.sh [OUT_DIR]          (default: $OUT, else benchmarks/results/gpu)
# Every step has its own timeout; a failing step does not stop the next. The exit status is the
# number of failed steps. The timeouts add up to 580 s (under one 600 s device command); the
# steps took about half of that on an H200.
set -u
OUT_DIR=${1:-${OUT:-benchmarks/results/gpu}}
PY=${PY:-python}
mkdir -p "$OUT_DIR"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
failed=0
step() {  # step NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT_DIR/$name.txt" 2>&1
  local rc=$?
  echo "[$name] rc=$rc in $(( $(date +%s) - t0 )) s (log: $OUT_DIR/$name.txt)"
  tail -n 25 "$OUT_DIR/$name.txt"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT_DIR/gpu.txt" 2>&1
cat "$OUT_DIR/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
step bench_gpu 300 "$PY" benchmarks/bench_gpu.py --device cuda --out "$OUT_DIR/bench_gpu.json" \
  --sections peak,empirical,mixture,sampling,cpu,fusion
step pytest_cuda 170 "$PY" -m pytest -q -p no:cacheprovider -m "slow or not slow" -k "cuda or nccl" -rs \
  tests/models/test_torch.py tests/models/test_torch_scale.py tests/models/test_torch_parity.py \
  tests/models/test_esf_3xtf32.py tests/models/test_esf_gemm.py tests/samplers/test_torch_route.py \
  tests/fusion/test_fusion_torch.py tests/fusion/test_fusion_draws.py tests/test_distributed.py
step validate_cuda 110 "$PY" -m sftheory.cli validate --device cuda --no-progress --no-figures \
  --only "core.kernels.parity,core.paths.per_point_times,core.samplers.routes" \
  --out "$OUT_DIR/validate"
exit "$failed"
