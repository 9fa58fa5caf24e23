# The two set-up commands of the README. Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rdopt demo --out demo-output

# Tests run in TEST_WORKERS processes (pytest-xdist; files kept whole so module fixtures are built once), one torch
# thread each.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/lint-imports
	RDOPT_TEST_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) demo-output .pytest_cache
