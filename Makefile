# Every target creates .venv itself: a fresh clone needs only Python 3.11+ and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser chaos

# Two distributions, one repository: the engine (pyproject.toml, src/procession) and the
# reference system (credit-contracts/pyproject.toml, credit-contracts/src/credit_contracts).
$(STAMP): pyproject.toml credit-contracts/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]' -e ./credit-contracts
	touch $(STAMP)

demo: $(STAMP)
	rm -f demo.db demo.db-wal demo.db-shm
	$(BIN)/credit-contracts demo --contracts 10000 --db sqlite:///demo.db

lint: $(STAMP)
	$(BIN)/ruff check src credit-contracts/src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

browser:
	./scripts/install-browser.sh

test: $(STAMP) lint browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long chaos run (tests/chaos, marked chaos_long): PostgreSQL required. CHAOS_SEED=N
# replays another schedule; its figures are printed as `chaos figures: ...` lines.
chaos: $(STAMP)
	CHAOS_LONG=1 $(BIN)/python -m pytest tests/chaos -m chaos_long -s -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/scenario.py

clean:
	rm -rf $(VENV) *.db *.db-wal *.db-shm
