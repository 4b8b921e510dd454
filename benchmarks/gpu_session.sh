#!/usr/bin/env bash
# What a session lent the GPU machine runs there (one call of the device tool), after preparing here:
#   ../shared/gpu/fetch-wheels.sh .whl            # the wheels that machine lacks, and this project's own
#   then: run `bash benchmarks/gpu_session.sh` on the device with carry [".whl"]; results land in $OUT
# It installs the wheels into .gpu/site (no network there), writes a random Llama-2-7B-shaped bf16 model
# and runs benchmarks/gpu.py, whose table and JSON are the README's GPU figures.
set -euo pipefail
out=${OUT:-/tmp/out}
mkdir -p .gpu/site "$out"
python3 -m pip install -q --no-index --no-deps --target .gpu/site .whl/*.whl
export PYTHONPATH="$PWD/.gpu/site:$PWD/benchmarks:${PYTHONPATH:-}"
mkdir -p ~/.cache/lit_activation/smollm2-135m && cp .whl/tokenizer*.json ~/.cache/lit_activation/smollm2-135m/ 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 benchmarks/gpu.py --make-model /tmp/llama7b --json "$out/gpu.json" 2>&1 | tee "$out/gpu.log"
# one dataset's Finding 1 finish on 6.5e9 means (issue 16: about one engine batch, <= 1 s)
python3 benchmarks/finish.py --shape llama-2-7b --device cuda 2>&1 | tail -20 | tee "$out/finish.log" || true
# the predict loop against the engine on the very same batches (after gpu.py: its results are kept if this fails)
python3 benchmarks/overhead.py --model /tmp/llama7b --dtype bfloat16 --device cuda --samples 80 --batch 8 --json "$out/overhead.json" 2>&1 | tail -30 | tee "$out/overhead.log" || true
