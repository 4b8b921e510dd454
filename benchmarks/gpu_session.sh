#!/usr/bin/env bash
# What a session lent the GPU machine runs there (one call of the device tool), after preparing here:
#   ../shared/gpu/fetch-wheels.sh .whl            # the wheels that machine lacks, and this project's own
#   then: run `bash benchmarks/gpu_session.sh` on the device with carry [".whl"]; results land in $OUT
# It installs the wheels into .gpu/site (no network there), writes a random Llama-2-7B-shaped bf16 model
# and runs benchmarks/gpu.py (the README's GPU table), benchmarks/finish.py and benchmarks/overhead.py.
# benchmarks/compile_check.py is not run there: that machine's Triton (3.6, pinned by its torch 2.11)
# compiles for sm_90 here just the same, with the same ptxas (README, "On the build machine").
# Dry run here first, at toy sizes on the CPU with this venv (no wheels):
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
  py=python3
  mkdir -p .gpu/site
  "$py" -m pip install -q --no-index --no-deps --target .gpu/site .whl/*.whl
  mkdir -p ~/.cache/lit_activation/smollm2-135m && cp .whl/tokenizer*.json ~/.cache/lit_activation/smollm2-135m/ 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
  gpu_args=(--make-model /tmp/llama7b) finish_args=(--shape llama-2-7b --device cuda)
  overhead_args=(--model /tmp/llama7b --dtype bfloat16 --device cuda --samples 80 --batch 8)
fi
export PYTHONPATH="$PWD/.gpu/site:$PWD/benchmarks:${PYTHONPATH:-}"
# one dataset's Finding 1 finish on 6.5e9 means (issue 16: about one engine batch, <= 1 s); cheap, so first
"$py" benchmarks/finish.py "${finish_args[@]}" --json "$out/finish.json" 2>&1 | tail -20 | tee "$out/finish.log" || true
# rows are printed and saved to gpu.json as they are measured: a run cut short keeps what it reached
"$py" benchmarks/gpu.py "${gpu_args[@]}" --json "$out/gpu.json" 2>&1 | tee "$out/gpu.log" || true
# the predict loop against the engine on the very same batches (after gpu.py: its results are kept if this fails)
"$py" benchmarks/overhead.py "${overhead_args[@]}" --json "$out/overhead.json" 2>&1 | tail -30 | tee "$out/overhead.log" || true
# issue 16's targets, met or not, and whether each kernel earned a default (from the three reports)
reports=(); for name in finish overhead; do [ -f "$out/$name.json" ] && reports+=(--"$name" "$out/$name.json"); done
"$py" benchmarks/gpu_targets.py "$out/gpu.json" "${reports[@]}" 2>&1 | tee "$out/targets.md" || true
