"""A pytest plugin that records each test's CPU seconds and wall seconds (docs/performance.md).

CPU is the pytest process's own plus that of every child process it has reaped (the launchers,
pods and workers a test starts, and theirs), so a test that runs a whole pipeline in processes
is charged for it. How the `slow` marker was drawn (pyproject.toml) and where the suite's time
goes; run it in one process (xdist workers would each need their own file):

    PYTHONPATH=benchmarks CPUPROF_OUT=/tmp/cpu.json MPLBACKEND=Agg .venv/bin/python -m pytest -p suite_cpu -n0
"""

from __future__ import annotations

import json
import os
import resource
import time

import pytest

_rows: list[tuple[str, float, float]] = []


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu(), time.monotonic()
    yield
    _rows.append((item.nodeid, round(_cpu() - cpu, 2), round(time.monotonic() - wall, 2)))


def pytest_sessionfinish(session) -> None:
    out = os.environ.get("CPUPROF_OUT")
    if out:
        with open(out, "w") as handle:
            json.dump(_rows, handle)
