# The two commands of the README, each setting up what it needs:
#   make demo   - train two small digits CNNs, compute a 2-D surface and a 1-D interpolation into ./runs/
#   make test   - the test suite
#   make test-fast - the suite less its slow, browser and outside-tool tests (the edit loop)
#   make mutation - mutation testing of the guard and the science modules (docs/testing.md; not in CI)
# Each creates .venv with every package pinned by requirements/constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean browser kubectl slurm mutation mutation-science

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(PY) examples/train_digits.py
	$(VENV)/bin/launcher submit examples/digits.yaml --local
	$(VENV)/bin/launcher submit examples/digits-interp.yaml --local

# The suite on TEST_WORKERS pytest-xdist workers: most of its time is spent waiting on the processes it
# starts (launchers, pods, workers), so more workers than cores still shortens it. --dist loadgroup keeps
# each xdist_group on one worker: the Slurm tests with the session's one cluster, and the tests that share
# one costly start (the notebook's kernel, transformers' models, Chromium); `pytest -n0` runs in one process.
TEST_WORKERS ?= 4

# The project's modules byte-compiled first: the suite starts ~300 Python processes (launchers, pods,
# workers), and where PYTHONDONTWRITEBYTECODE is set (as on this project's development machines) each
# would compile what it imports again, ~0.13 s of CPU a process.
COMPILE := $(PY) -m compileall -q landscape_job launcher tests/support >/dev/null
# pytest itself with bytecode writing on (an empty PYTHONDONTWRITEBYTECODE is unset): it caches the test
# modules it has rewritten for its asserts, and rewriting them all again took each worker ~4 s of CPU
# of its ~10 s collection, every run.
PYTEST := MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE= $(PY) -m pytest

test: $(STAMP) browser kubectl slurm
	$(COMPILE)
	$(PYTEST) -n $(TEST_WORKERS) --dist loadgroup

# The edit loop: everything but the slow, browser and outside-tool tests (markers in pyproject.toml).
test-fast: $(STAMP)
	$(COMPILE)
	$(PYTEST) -n 2 --dist loadgroup -m "not slow and not browser and not tools"

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

# tests/slurm/test_slurm.py runs a real one-node Slurm (tests/support/slurm_cluster.py starts munged, slurmctld
# and slurmd with a generated slurm.conf): Debian's slurm-wlm and munge (22.05), installed here when
# missing and apt-get is usable as root; otherwise those tests skip, naming why (or fail, with
# LANDSCAPE_REQUIRE_TOOLS=1 as CI sets it). The packages' own services are not started.
slurm:
	@if ! { command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null 2>&1 \
			&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's slurm-wlm and munge for the Slurm tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } \
			|| echo "could not install slurm-wlm and munge: the Slurm tests will be skipped"; \
	fi

# Mutation testing of the guards (docs/testing.md): every refusal and recovery branch must
# have a test that fails when the branch is broken. Not in CI (tens of minutes on 2 cores).
# pyproject's [tool.mutmut] names the files and the tests; GUARDS the functions mutated.
GUARDS := \
	'landscape_job.run.collect.x_collect_shards__*' \
	'landscape_job.run.collect.x__check_shard__*' \
	'landscape_job.run.collect.x__set_aside__*' \
	'landscape_job.run.shards.*' \
	'landscape_job.run.records.x*ShardRecord*from_attrs__*' \
	'landscape_job.run.records.x*ProgressRecord*from_json__*' \
	'landscape_job.runtime.jobwatch.x_job_failure__*' \
	'landscape_job.runtime.jobwatch.x_failure_check__*' \
	'landscape_job.surface.losses.x__mse_sums__*' \
	'landscape_job.surface.losses.x__cross_entropy_sums__*' \
	'landscape_job.surface.losses.x_batch_loss_sums__*' \
	'launcher.kubernetes.render.x__job__*' \
	'launcher.kubernetes.render.x__disruption_rule__*' \
	'launcher.kubernetes.render.x__user_error_rule__*' \
	'landscape_job.storage.x_*' \
	'landscape_job.storage.base.*' \
	'landscape_job.storage.files.*' \
	'landscape_job.storage.location.x*StorageLocation*parse__*' \
	'landscape_job.storage.location.x_split_s3_url__*' \
	'landscape_job.storage.location.x__scheme_of__*'

# The science and runtime modules, whole (issue 26; docs/testing.md has the score per module and
# every survivor explained). `make mutation-science` runs these alone.
SCIENCE := \
	'landscape_job.series.tail_index.*' \
	'launcher.kubernetes.deadlines.*' \
	'landscape_job.runtime.release.*' \
	'launcher.kubernetes.gate.*' \
	'landscape_job.plots.levels.*' \
	'landscape_job.runtime.precision.*' \
	'landscape_job.runtime.memory.*' \
	'landscape_job.storage.retry.*' \
	'landscape_job.surface.hessian.*' \
	'landscape_job.surface.curvature.*' \
	'landscape_job.series.probe.*'

# mutants/ is made before mutmut starts: PYTHONPATH names it, and Python caches a PYTHONPATH
# folder that does not exist yet as nothing to import from, so a first run in a fresh folder
# imported the project from its editable install instead of mutmut's copy, recorded no test
# ("could not find any test case for any mutant") and needed a second invocation; the retry
# stays for any other first-run failure.
# OMP_NUM_THREADS=1: mutmut forks each mutant's worker from a process that has run torch
# (process_isolation = "fork" in pyproject.toml), safe with one intra-op thread.
MUTMUT := OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR)/mutants MPLBACKEND=Agg $(VENV)/bin/mutmut
# The score per module (docs/testing.md's table): killed / mutants of every module mutmut has results for.
SCORES := awk -F': ' '{ n = $$1; sub(/^ +/, "", n); sub(/\.[^.]*$$/, "", n); t[n]++; if ($$2 == "killed") k[n]++ } \
	END { for (m in t) printf "%-40s %5d mutants %5d killed %6.1f%%\n", m, t[m], k[m], 100 * k[m] / t[m] }'


mutation: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt 'mutmut>=3.8'
	mkdir -p mutants
	$(MUTMUT) run --max-children 2 $(GUARDS) $(SCIENCE) || $(MUTMUT) run --max-children 2 $(GUARDS) $(SCIENCE)
	$(MUTMUT) results
	$(MUTMUT) results --all true | $(SCORES) | sort

mutation-science: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt 'mutmut>=3.8'
	mkdir -p mutants
	$(MUTMUT) run --max-children 2 $(SCIENCE) || $(MUTMUT) run --max-children 2 $(SCIENCE)
	$(MUTMUT) results
	$(MUTMUT) results --all true | $(SCORES) | sort

clean:
	rm -rf $(VENV) runs mutants
