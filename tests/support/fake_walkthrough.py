"""Prints the README's cluster walk-through, run for real against the fake API server and moto's S3.

    PYTHONPATH=.:tests python tests/support/fake_walkthrough.py

submit -> status (one shard's pod held Unschedulable, with a scheduler's message, as a
GPU-short cluster would) -> the pod scheduled -> wait -> pull, then the same commands on a
local run. The pods run the real ``landscape-job`` stages (tests/support/fake_k8s.py); names,
times and bucket differ per run. Not a test: the README quotes its output, labelled.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3

from conftest import SYNTHETIC, save_linear_checkpoint, write_spec
from fake_k8s import FakeCluster, run_subprocess
from launcher.cli import main as launcher
from s3server import start_moto

SCHEDULER_MESSAGE = ("0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
                     "{node-role.kubernetes.io/control-plane: }. preemption: 0/4 nodes are available: "
                     "2 No preemption victims found for incoming pod.")


def show(*argv: str) -> int:
    print(f"$ launcher {shlex.join(argv)}", flush=True)
    with contextlib.redirect_stderr(sys.stdout):
        code = launcher(list(argv))
    sys.stdout.flush()
    print(f"# (exit {code})\n", flush=True)
    return code


def _shard_0_done(fake: FakeCluster) -> bool:
    """Prepare's Job complete and evaluate's index 0 counted complete by the controller."""
    jobs = {j["metadata"]["labels"].get("landscape.stage"): j for j in fake.of("jobs")}
    prepare, evaluate = jobs.get("prepare"), jobs.get("evaluate")
    complete = any(c["type"] == "Complete" for c in (prepare or {}).get("status", {}).get("conditions") or [])
    return complete and (evaluate or {}).get("status", {}).get("completedIndexes") == "0"


def main() -> None:
    os.environ.update({"AWS_ACCESS_KEY_ID": "fake", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1", "MPLBACKEND": "Agg",
                       "OMP_NUM_THREADS": "1"})
    server, endpoint = start_moto()
    bucket = f"landscapes-{uuid.uuid4().hex[:6]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    released = threading.Event()

    def runner(fake: FakeCluster, pod: dict, env: dict) -> int | None:
        if env.get("JOB_COMPLETION_INDEX") == "1" and not released.is_set():
            fake.hold_unschedulable(pod["metadata"]["name"], SCHEDULER_MESSAGE)
            released.wait(300)
            fake.add_event("Pod", pod["metadata"]["name"], "Scheduled", "Successfully assigned the pod", "Normal")
        return run_subprocess(fake, pod, env)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chdir(work)
        save_linear_checkpoint(work / "a.pt", 0)
        spec = {"name": "demo", "model": {"arch": "mlp", "checkpoint": "a.pt", "kwargs": {"hidden": []}},
                "data": {"dataset": "synthetic", "options": dict(SYNTHETIC)},
                "grid": {"x": "-1:1:5", "y": "-0.5:0.5:4"}, "compute": {"shards": 2, "precision": "fp64"}}
        write_spec(work, {**spec, "storage": "runs"}, "local.yaml")
        write_spec(work, {**spec, "storage": {"url": f"s3://{bucket}/runs", "endpoint_url": endpoint,
                                              "addressing_style": "path"},
                          "kubernetes": {"gpus": 0, "s3_secret": "landscape-s3"}}, "surface.yaml")
        with FakeCluster(work / "cluster", runner=runner) as fake:
            fake.secret_from_environ("landscape-s3")
            os.environ["KUBECONFIG"] = str(fake.write_kubeconfig(work / "kubeconfig"))
            show("submit", "surface.yaml", "--run-id", "demo-20261130-020000")
            while not (any(p["status"].get("conditions") for p in fake.of("pods")) and _shard_0_done(fake)):
                time.sleep(0.2)  # shard 1 held, as on a cluster short of GPUs; prepare and shard 0 done
            show("status", "demo-20261130-020000")
            released.set()
            show("wait", "demo-20261130-020000", "--timeout", "600", "--interval", "1")
            show("pull", "demo-20261130-020000", "./out")
            show("list")
        del os.environ["KUBECONFIG"]
        print("# local runs: no cluster, no kubeconfig\n")
        show("submit", "local.yaml", "--local", "--run-id", "demo-local", "--workers", "2")
        show("list", "--storage", "runs")
        show("status", "runs/demo-local")
        show("logs", "demo-local", "--stage", "evaluate", "--tail", "1")
        show("pull", "runs/demo-local", "./out-local")
    server.stop()


if __name__ == "__main__":
    main()
