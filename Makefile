# Two entry points, both idempotent: `make run` (install + open the example night)
# and `make test` (install + check the import contracts + run the whole suite).
# .ci/run calls `make test`.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/eegvlm gui resources/example/SC4001-example-PSG.edf

test: $(STAMP)
	$(VENV)/bin/lint-imports  # the architecture contracts in pyproject.toml
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/viewer.py

.PHONY: install run test bench
