"""Shared fixtures: small runs whose every input is built in the test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest

# One intra-op thread in every process of the suite (these workers and what they start; the local
# runner still sets its stages' own): make test runs 4 workers on 2 cores, where each process's
# OpenMP threads spin against the others'. Measured on tests/surface, run and models (-n 4): 185 s
# of CPU and 97 s wall with torch's default, 97 s and 54 s with one thread. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Idle OpenMP threads sleep instead of spinning (libgomp's OMP_WAIT_POLICY) in the processes the tests start:
# the local runner gives each stage its share of the cores (two threads for one worker on two cores), and on
# these runs' tiny kernels, with other processes on the cores, the spinning is most of their CPU (a
# 5-checkpoint series shard: 19.5 and 41 s of CPU with two spinning threads at load 5, 1.1 and 1.3 s with two
# passive ones, 0.7 s with one). How threads wait changes no result. Set before torch loads, so that these
# workers' own threads (conftest.run_all with workers runs stages at the runner's thread counts) sleep too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import yaml  # noqa: E402

from landscape_job.models import build_model  # noqa: E402
from landscape_job.spec.sections import Spec
from landscape_job.spec.parse import load_spec
from landscape_job.storage import Storage  # noqa: E402

#: A softmax regression on a small synthetic set: a model whose loss surface the tests
#: can compute independently in numpy.
SYNTHETIC = {"shape": [6], "classes": 3, "train_size": 96, "test_size": 40, "seed": 3}


def save_linear_checkpoint(path: Path, seed: int, hidden: list[int] | None = None) -> Path:
    torch.manual_seed(seed)
    model = build_model("mlp", SYNTHETIC["classes"], (6,), {"hidden": hidden or []})
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def save_cnn_checkpoint(path: Path, seed: int, input_shape=(1, 8, 8), classes: int = 4) -> Path:
    """A CNN with BatchNorm and non-trivial running statistics."""
    torch.manual_seed(seed)
    model = build_model("cnn", classes, input_shape, {"channels": [4, 6]})
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *input_shape) * 2 + 0.5)
    torch.save(model.state_dict(), path)
    return path


#: Set by CI (.ci/run): a test that needs an outside tool (kubectl, hadolint) fails when
#: the tool is missing instead of skipping, so a CI image without it cannot pass quietly.
REQUIRE_TOOLS_ENV = "LANDSCAPE_REQUIRE_TOOLS"


def missing_tool(reason: str) -> NoReturn:
    """Skips the test naming the missing tool, or fails it where ``LANDSCAPE_REQUIRE_TOOLS`` is set."""
    if os.environ.get(REQUIRE_TOOLS_ENV):
        pytest.fail(f"{REQUIRE_TOOLS_ENV} is set but {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the ``browser`` fixture is a ``browser`` test, wherever it is written.

    The long ones run first: pytest-xdist hands tests out in this order, and a run whose last test is a
    minute-long one ends with every other worker idle for that minute. So the groups that must share one
    worker (the Slurm cluster's tests, the notebook kernel's: minutes in a row) lead, then the ``slow``
    tests, then the rest in the order they are written (the sort is stable, and the same on every worker).
    """
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: 0 if item.get_closest_marker("xdist_group") else
               1 if item.get_closest_marker("slow") else 2)


@pytest.fixture(autouse=True)
def _metric_tables_restored():
    """Each test leaves the metric tables as it found them: a token task's spec registers perplexity
    for the rest of its process, and under xdist any test may come next in that process."""
    from landscape_job.spec import metrics, series_metrics

    tables = (metrics.METRICS, series_metrics.SERIES_METRICS)
    before = [{item.key for item in table.registered()} for table in tables]
    yield
    for table, keys in zip(tables, before):
        for item in table.registered():
            if item.key not in keys:
                table.unregister(item.key)


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's standalone S3 server on 127.0.0.1, one for the whole session."""
    from s3server import start_moto

    server, url = start_moto()
    yield url
    server.stop()


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, busy CPU
    (OpenMP threads spin against other processes); restored after the test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def linear_spec(tmp_path: Path) -> dict[str, Any]:
    """A valid 2-D spec for softmax regression; tests mutate it."""
    for name, seed in (("a.pt", 0), ("b.pt", 1), ("c.pt", 2)):
        save_linear_checkpoint(tmp_path / name, seed)
    return {
        "name": "linear",
        "model": {"arch": "mlp", "checkpoint": "a.pt", "kwargs": {"hidden": []}},
        "data": {"dataset": "synthetic", "options": dict(SYNTHETIC)},
        "directions": {"type": "random", "seed": 7, "norm": "filter", "ignore": "none"},
        "grid": {"x": "-1:1:5", "y": "-0.5:0.5:4"},
        "compute": {"shards": 1, "precision": "fp64", "batch_size": 32, "checkpoint_every": 3},
        # PNG only: the default outputs' PDFs (fontTools subsets a font per file) are half of a merge's
        # CPU and no test of this spec reads them; the tests of the outputs name the formats they check.
        "plot": {"formats": ["png"]},
        "storage": "runs",
    }


def write_spec(folder: Path, raw: dict[str, Any], name: str = "surface.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def spec_from(folder: Path, raw: dict[str, Any]) -> Spec:
    return load_spec(write_spec(folder, raw))


def run_all(run: Storage, shards: int, workers: int | None = None) -> None:
    """prepare, every shard, merge (no figures): in-process, the local backend's order.

    With ``workers``, each stage runs at the torch thread count that ``launcher submit --local --workers
    <workers>`` gives its process (``launcher.local.runner``: prepare and merge all the cores, each evaluate
    worker its share), so that its numbers are a local run's wherever a thread count could change a
    reduction's order and a value's last bits. A launcher run costs ~3 s of CPU more per stage process (each
    imports torch); its storage holds the same surface, shards and manifest (not its logs, lease or
    local.json). Without, every stage runs at this process's thread count."""
    from landscape_job import stages
    from launcher.local.runner import available_cores, local_workers, worker_threads

    quiet = lambda _msg: None  # noqa: E731
    threads = torch.get_num_threads()

    def at(count: int) -> None:
        if workers is not None:
            torch.set_num_threads(count)

    try:
        at(available_cores())
        stages.prepare(run, log=quiet)
        at(worker_threads(local_workers(shards, workers)))
        for shard in range(shards):
            stages.evaluate(run, shard, log=quiet)
        at(available_cores())
        stages.merge(run, log=quiet, plots=False)
    finally:
        torch.set_num_threads(threads)


def checkpointed_points(run: Storage, shard: int, num_shards: int) -> int:
    """How many points a worker's checkpoint segments hold (0 when none)."""
    import numpy as np

    from landscape_job.run.shards import read_shard, segment_prefix

    indices = [read_shard(run.get(k), k).indices for k in run.list(segment_prefix(shard, num_shards))]
    return len(np.unique(np.concatenate(indices))) if indices else 0


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A real one-node Slurm (``tests/support/slurm_cluster.py``) for the session; ``SLURM_CONF`` points the
    launcher's ``sbatch``, ``scontrol`` and ``scancel`` at it. Needs Debian's ``slurm-wlm`` and
    ``munge`` (``make slurm`` installs them) and root (slurmd); skips naming what is missing, or fails
    where ``LANDSCAPE_REQUIRE_TOOLS`` is set."""
    from slurm_cluster import missing_tools, start_cluster

    missing = missing_tools()
    if missing:
        missing_tool(f"Slurm is not installed ({', '.join(missing)} missing): make slurm installs Debian's "
                     f"slurm-wlm and munge")
    if os.getuid() != 0:
        missing_tool("the test Slurm cluster runs slurmd, which needs root")
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    previous = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous

