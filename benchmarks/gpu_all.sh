#!/usr/bin/env bash
# Every GPU figure the issues ask for, in one run, each part time-capped so that one slow
# part cannot eat the others' time (the lent GPU gives a session 15 minutes in all).
#   bash benchmarks/gpu_all.sh            # on the GPU machine, from the repository root
# Prints each table; JSON lands in benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
PY=${PYTHON:-python}
run() {  # run <seconds> <label> <command...>
  local cap=$1 label=$2; shift 2
  echo "=== $label (cap ${cap}s) ==="
  timeout "$cap" "$@" || echo "=== $label: exit $? ==="
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# First, in seconds: device bugs. Every encoder family x every injection kind, forward,
# backward and generate on CUDA (tiny random configs; ~1 min with laion_clap, which is last).
run 120 "Device smoke: every encoder family x injection kind on CUDA" \
  $PY benchmarks/gpu_smoke.py --device cuda
run 150 "MERT-330M-shaped bf16 extraction: plain loop vs batched-by-length + compile" \
  $PY benchmarks/extraction.py --gpu
run 200 "Llama-7B-shaped generate: plain vs static cache + compile, batch 1 and 16" \
  $PY benchmarks/gpu_generate.py
run 200 "Training step: MERT-330M + Llama-7B LoRA r16 bf16 batch 8, MFU, QLoRA memory" \
  $PY benchmarks/train_throughput.py --gpu
run 90 "Eval speed: one multiple-choice question at a time vs batched (batch 64), identical answers" \
  $PY benchmarks/eval_speed.py --device cuda --items 256 --batch-size 64 --rounds 1
