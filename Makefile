# The two commands a fresh machine needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_JOURNAL ?= var/paper-demo.sqlite
DEMO_URL := sqlite:///$(DEMO_JOURNAL)
# What `dta` reads when given no --config (config/dta.toml, then /etc/dta/dta.toml).
LOCAL_CONFIG ?= config/dta.toml

.PHONY: run test bench soak lint clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Paper daemon on the bundled real EURUSD M15 bars, replayed at full speed through the live cycle.
# The demo journal is started fresh each time so the summary covers the whole file.
# The README's next commands (`dta status`, `dta trace ...`) take no flags: they read
# $(LOCAL_CONFIG), which this writes once from the example with the demo journal.
run: $(STAMP) $(LOCAL_CONFIG)
	mkdir -p var
	rm -f $(DEMO_JOURNAL) $(DEMO_JOURNAL)-wal $(DEMO_JOURNAL)-shm
	$(BIN)/dta run --mode paper --config config/dta.example.toml --journal-url $(DEMO_URL)
	@grep -qF 'url = "$(DEMO_URL)"' $(LOCAL_CONFIG) || echo "note: $(LOCAL_CONFIG) is your \
	own settings file, so dta commands read its journal; add --journal-url $(DEMO_URL) \
	to read the demo's"

# The example's settings with the demo journal, (re)written when the example changes so
# that it stays what `make run` ran with; a file of your own there (without the first
# line below) is never touched (git ignores it; delete ours to have it written again).
MARK := \# Written by `make run` from config/dta.example.toml, with the demo journal.
$(LOCAL_CONFIG): config/dta.example.toml
	@if [ -f $@ ] && ! grep -qxF '$(MARK)' $@; then exit 0; fi; \
	{ echo '$(MARK)'; \
	  echo '# Edits are lost when the example changes: copy it under another name for yours.'; \
	  sed 's|^url = "sqlite:///var/dta/journal.sqlite"|url = "$(DEMO_URL)"|' $<; } > $@.tmp; \
	if grep -qF 'url = "$(DEMO_URL)"' $@.tmp; then mv $@.tmp $@; else rm -f $@.tmp; \
	  echo "$< has no journal url line to point at $(DEMO_URL)"; exit 1; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The bench extra brings smartmoneyconcepts (numba, pandas) for the SMC comparison only.
# The crash-safety test with 500 SIGKILLs per variant instead of the suite's 50: ccxt spot, ccxt
# spot with each long's OCO at the exchange (spot-protect), the MT5 bridge and the USD-M swap with
# its stops and targets at the exchange, each on SQLite and (with DTA_TEST_DATABASE_URL)
# PostgreSQL; ~2 min per variant for spot, spot-protect and MT5, ~3.5 for the swap.
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
