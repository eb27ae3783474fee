"""A pytest plugin that records each test's CPU seconds and wall seconds (docs/performance.md).

Each row is (test, own CPU, children's CPU, wall): own is the pytest process's, children's that of
every child process it has reaped (the launchers, pods and workers a test starts, and theirs), so
a test that runs a whole pipeline in processes is charged for it, and the two say whether a
test is slow in itself or in what it starts. How the `slow` marker was drawn (pyproject.toml)
and where the suite's time goes. Under pytest-xdist each worker writes its own file (the
worker's name is added to CPUPROF_OUT's):

    PYTHONPATH=benchmarks CPUPROF_OUT=/tmp/cpu.json MPLBACKEND=Agg .venv/bin/python -m pytest -p suite_cpu -n 4 --dist loadgroup
"""

from __future__ import annotations

import json
import os
import resource
import time

import pytest

_rows: list[tuple[str, float, float, float]] = []


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    yield
    _rows.append(
        (
            item.nodeid,
            round(_cpu(resource.RUSAGE_SELF) - own, 2),
            round(_cpu(resource.RUSAGE_CHILDREN) - children, 2),
            round(time.monotonic() - wall, 2),
        )
    )


def pytest_sessionfinish(session) -> None:
    out = os.environ.get("CPUPROF_OUT")
    if out:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            stem, dot, suffix = out.rpartition(".")
            out = f"{stem}-{worker}.{suffix}" if dot else f"{out}-{worker}"
        with open(out, "w") as handle:
            json.dump(_rows, handle)
