#!/usr/bin/env bash
# Every GPU measurement in one command, on a machine with one CUDA GPU (H100/H200 class, 80 GB):
#   OUT=out bash benchmarks/gpu_session.sh
# It writes a random Llama-2-7B-shaped bf16 model and runs benchmarks/gpu.py (the engine against the
# paper's loop, accuracy, the CLI), benchmarks/finish.py and benchmarks/overhead.py, then
# benchmarks/gpu_targets.py on their reports. Results in $OUT: gpu.json, finish.json, overhead.json,
# their logs, and gpu_report.md (each check met or not).
# Python: $PYTHON (default python3) with this project installed; a machine without a network can be
# given the wheels it lacks in .whl/, which are installed into .gpu/site first.
# benchmarks/compile_check.py need not run there: Triton compiles for sm_90 on any machine.
# A dry run on a CPU, at toy sizes, with this repository's .venv:
#   GPU_SESSION_TOY=1 TRITON_INTERPRET=1 OUT=/tmp/out bash benchmarks/gpu_session.sh
set -euo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
if [ "${GPU_SESSION_TOY:-0}" = 1 ]; then
  py=.venv/bin/python
  model=${TMPDIR:-/tmp}/lit_activation_gpu_bench/model  # the tiny model gpu.py --toy writes (before overhead.py)
  gpu_args=(--toy) finish_args=(--shape smollm2-135m --device cpu --repeats 1)
  overhead_args=(--model "$model" --dtype bfloat16 --device cpu --samples 2 --batch 2)
else
  py=${PYTHON:-python3}
  if compgen -G ".whl/*.whl" > /dev/null; then  # offline: the wheels that machine lacks
    mkdir -p .gpu/site
    "$py" -m pip install -q --no-index --no-deps --target .gpu/site .whl/*.whl
    mkdir -p ~/.cache/lit_activation/smollm2-135m && cp .whl/tokenizer*.json ~/.cache/lit_activation/smollm2-135m/ 2>/dev/null || true
  fi
  nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
  gpu_args=(--make-model /tmp/llama7b) finish_args=(--shape llama-2-7b --device cuda)
  overhead_args=(--model /tmp/llama7b --dtype bfloat16 --device cuda --samples 80 --batch 8)
fi
export PYTHONPATH="$PWD/.gpu/site:$PWD/benchmarks:${PYTHONPATH:-}"
# one dataset's Finding 1 finish on 6.5e9 means (about one engine batch: <= 1 s); cheap, so first
"$py" benchmarks/finish.py "${finish_args[@]}" --json "$out/finish.json" 2>&1 | tail -20 | tee "$out/finish.log" || true
# rows are printed and saved to gpu.json as they are measured: a run cut short keeps what it reached
"$py" benchmarks/gpu.py "${gpu_args[@]}" --json "$out/gpu.json" 2>&1 | tee "$out/gpu.log" || true
# the predict loop against the engine on the very same batches (after gpu.py: its results are kept if this fails)
"$py" benchmarks/overhead.py "${overhead_args[@]}" --json "$out/overhead.json" 2>&1 | tail -30 | tee "$out/overhead.log" || true
# the GPU report: each check met or not, and whether each kernel earned a default (from the three reports)
reports=(); for name in finish overhead; do [ -f "$out/$name.json" ] && reports+=(--"$name" "$out/$name.json"); done
"$py" benchmarks/gpu_targets.py "$out/gpu.json" "${reports[@]}" --output "$out/gpu_report.md" || true
