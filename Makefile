# The two commands of the README, each setting up what it needs:
#   make demo   - train two small digits CNNs, compute a 2-D surface and a 1-D interpolation into ./runs/
#   make test   - the test suite
# Both create .venv with every package pinned by requirements/constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(PY) examples/train_digits.py
	$(VENV)/bin/launcher submit examples/digits.yaml --local
	$(VENV)/bin/launcher submit examples/digits-interp.yaml --local

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest

clean:
	rm -rf $(VENV) runs
