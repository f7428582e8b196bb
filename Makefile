# Two commands for a newcomer: `make run` and `make test`. Both build .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CAMPAIGN ?= campaigns/quickstart.toml

.PHONY: run test check venv system-deps bench clean

# The suite starts a throwaway PostgreSQL and drives the console in tmux: install them when absent
# (Debian/Ubuntu, as root; elsewhere install tmux and the PostgreSQL server binaries yourself).
system-deps:
	@command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux)
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| (apt-get update -qq && apt-get install -y -qq postgresql)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: the pinned CPU build; GPU servers bring their own build instead.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	# gp: the quickstart's GP sprint; jerex: the entity-relation campaigns; hf: the Trainer example;
	# postgres: the PostgreSQL tests.
	# A laptop that only attaches, approves and reads status needs none of them: `pip install .`
	$(PY) -m pip install -q -e '.[test,gp,jerex,hf,postgres]'
	touch $@

venv: $(VENV)/.installed

run: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/hpo-tui run $(CAMPAIGN)

# Static checks, run first by `make test`: lint and format (ruff), types (mypy, settings in
# pyproject.toml), and the import contracts (import-linter: the engine never imports the console).
check: venv
	$(VENV)/bin/ruff check engine tui tests benchmarks
	$(VENV)/bin/ruff format --check engine tui tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: venv system-deps check
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadgroup tests

bench: venv
	$(PY) -m benchmarks.efficiency --suite quick --seeds 3

clean:
	rm -rf $(VENV) runs
