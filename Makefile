# The two commands a fresh machine needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_JOURNAL ?= var/paper-demo.sqlite

.PHONY: run test bench soak lint clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Paper daemon on the bundled real EURUSD M15 bars, replayed at full speed through the live cycle.
# The demo journal is started fresh each time so the summary covers the whole file.
run: $(STAMP)
	mkdir -p var
	rm -f $(DEMO_JOURNAL) $(DEMO_JOURNAL)-wal $(DEMO_JOURNAL)-shm
	$(BIN)/dta run --mode paper --config config/dta.example.toml \
		--journal-url sqlite:///$(DEMO_JOURNAL)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The bench extra brings smartmoneyconcepts (numba, pandas) for the SMC comparison only.
# The crash-safety test with 500 SIGKILLs per variant instead of the suite's 50: ccxt and the
# MT5 bridge, each on SQLite and (with DTA_TEST_DATABASE_URL) PostgreSQL; ~2 min per variant.
# Then the daemon state machine with 2,000 examples (split over its venues) instead of the suite's 200.
soak: $(STAMP)
	DTA_SOAK_KILLS=500 $(BIN)/python -m pytest -q -p no:cacheprovider tests/reliability/test_crash_safety.py -s
	DTA_STATE_MACHINE_EXAMPLES=2000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/reliability/test_daemon_state_machine.py

# The bench extra is (re)installed whenever pyproject.toml changes, as the dev one is.
bench: $(STAMP) $(VENV)/.bench-stamp
	$(BIN)/python -m benchmarks

$(VENV)/.bench-stamp: pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.bench-stamp

# ruff, mypy --strict on the packages, and the import contract (pyproject's
# [tool.importlinter]): runbooks -> executor -> (strategies | ensemble | guardrails) -> domain.
lint: $(STAMP)
	$(BIN)/ruff check domain executor strategies ensemble guardrails runbooks tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
