"""Storage requests (and time) one progress poll makes, at several shard counts (docs/performance.md).

    python benchmarks/poll_requests.py [8 256 1024]

Writes, under a temporary file:// run, a run mid-way: every shard with its progress record,
its progress tally key (landscape_job.run.tally) and three checkpoint segments. Then counts
the requests of one poll of each reader with a counting Storage wrapper: the launcher's
(``submit --wait`` and cluster ``status``: ``read_progress``), a stored run's ``status`` /
``wait`` (``read_stored_status``) and the Python handle (``Run.status``'s points done). Run
it with another checkout first on PYTHONPATH to measure that code on the same objects.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from landscape_job.run.records import ProgressRecord
from landscape_job.run.shards import progress_key, segment_key
from landscape_job.spec.parse import parse_spec
from landscape_job.storage import run_storage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from counting_storage import Counting  # noqa: E402 - the tests' request counter


def measure(folder: Path, shards: int) -> dict[str, tuple[int, float]]:
    from launcher.api import Run
    from launcher.backends.local import LocalBackend
    from launcher.commands.cluster_run import read_progress
    from launcher.backends.local import read_stored_status

    spec = parse_spec({"name": "poll", "model": {"arch": "mlp", "checkpoint": "a.pt"},
                       "data": {"dataset": "synthetic"}, "grid": {"x": "-1:1:101", "y": "-1:1:101"},
                       "compute": {"shards": shards}, "storage": str(folder / str(shards))}, base_dir=folder,
                      check_files=False)
    run = run_storage(spec.storage, "r")
    run.put("spec.yaml", spec.to_yaml().encode())
    for shard in range(shards):
        progress = ProgressRecord(shard=shard, num_shards=shards, done=3, total=5, state="running", rate=1.5,
                                  host="node", device="cuda:0")
        run.put(progress_key(shard, shards), progress.to_json())
        try:
            from landscape_job.run.tally import TallyWriter
            TallyWriter(run, shard, shards).write(progress)
        except ImportError:  # a checkout without the tally
            pass
        for first in range(3):
            run.put(segment_key(shard, shards, first), b"segment")
    handle = Run(spec, "r", LocalBackend())
    readers = {"launcher (submit --wait, cluster status)": lambda s: read_progress(s, shards),
               "stored run status / wait": lambda s: read_stored_status("r", s),
               "Python handle": lambda s: (setattr(handle, "storage", s), handle._points_done())}
    result = {}
    for name, read in readers.items():
        counting = Counting(run)
        began = time.perf_counter()
        read(counting)
        result[name] = (len(counting.calls), round((time.perf_counter() - began) * 1000, 1))
    return result


if __name__ == "__main__":
    counts = [int(a) for a in sys.argv[1:]] or [8, 256, 1024]
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps({n: measure(Path(folder), n) for n in counts}, indent=1))
