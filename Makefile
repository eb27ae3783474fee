# The two commands of the README, each setting up what it needs:
#   make demo   - train two small digits CNNs, compute a 2-D surface and a 1-D interpolation into ./runs/
#   make test   - the test suite
# Both create .venv with every package pinned by requirements/constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean browser kubectl

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(PY) examples/train_digits.py
	$(VENV)/bin/launcher submit examples/digits.yaml --local
	$(VENV)/bin/launcher submit examples/digits-interp.yaml --local

test: $(STAMP) browser kubectl
	MPLBACKEND=Agg $(PY) -m pytest

# The viewer's tests drive Debian's chromium (never a downloaded browser). Installed here
# when missing and apt-get is usable as root; otherwise those tests skip, naming why
# (or fail, with LANDSCAPE_REQUIRE_BROWSER=1 as CI sets it).
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the viewer tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "could not install chromium: the viewer's browser tests will be skipped"; \
	fi

# test_render runs `kubectl kustomize` on k8s/: Debian's kubectl, installed here when
# missing and apt-get is usable as root; otherwise those tests skip, naming why (or fail,
# with LANDSCAPE_REQUIRE_TOOLS=1 as CI sets it; hadolint comes with the dev extras).
kubectl:
	@if ! command -v kubectl >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's kubectl for the kustomize tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null; } \
			|| echo "could not install kubectl: the kustomize tests will be skipped"; \
	fi

clean:
	rm -rf $(VENV) runs
