"""Prints ``launcher doctor`` against the fake API server: a ready cluster and a broken one (docs/cluster.md).

    PYTHONPATH=tests:. python tests/support/fake_doctor.py

The clusters are tests/support/fake_clusters.py's; the spec is examples/cifar10-resnet56.yaml in its
old shape (8 CPUs and 32 GiB a 1-GPU pod), queued in team-a, with the nvidia runtime class.
Not a test: docs/cluster.md quotes its output, labelled as captured from the fake server.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import yaml

from fake_clusters import broken_cluster, ready_cluster
from fake_k8s import FakeCluster
from launcher.cli import main as launcher

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    import os

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        example = yaml.safe_load((REPO / "examples" / "cifar10-resnet56.yaml").read_text())
        example["kubernetes"] = {**example["kubernetes"], "kueue_queue": "team-a", "runtime_class": "nvidia",
                                 "cpu": "8", "memory": "32Gi"}
        spec = work / "cifar.yaml"
        spec.write_text(yaml.safe_dump(example, sort_keys=False))
        for title, shape in (("a ready cluster", ready_cluster), ("a broken cluster", broken_cluster)):
            with FakeCluster(work / title.replace(" ", "-"), run_pods=False) as fake:
                os.environ["KUBECONFIG"] = str(fake.write_kubeconfig(work / "kubeconfig"))
                shape(fake)
                print(f"# {title}\n$ launcher doctor cifar.yaml", flush=True)
                with contextlib.redirect_stderr(sys.stdout):
                    code = launcher(["doctor", str(spec)])
                print(f"# (exit {code})\n", flush=True)


if __name__ == "__main__":
    main()
