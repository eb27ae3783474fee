"""A run as the cluster and its storage hold it, for the commands that name one.

Connecting with the CLI's cluster flags, checking a run id, finding the run's ConfigMap and
its Jobs, reading its shards' progress: the I/O that ``status``, ``logs``, ``cancel``,
``pull``, ``submit --wait`` and ``estimate --cluster`` have in common, so that each error a
user can meet here reads the same whichever command met it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape_job.base.errors import UserError
from landscape_job.storage.location import StorageLocation
from landscape_job.run.records import ProgressRecord
from landscape_job.run.tally import read_tallies
from landscape_job.storage import Storage

from launcher.kubernetes.names import STAGE_LABEL, object_names, run_selector

if TYPE_CHECKING:  # the kubernetes client loads only for the commands that talk to a cluster
    from launcher.kubernetes.cluster import Cluster


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The flags that choose a cluster and namespace; every command that connects takes the same ones."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", help="namespace (default: the spec's kubernetes.namespace, or the "
                                                  "context's for commands without a spec, else landscape)")


def connect(args: argparse.Namespace, namespace: str | None = None) -> Cluster:
    """The cluster the flags of ``add_cluster_options`` name; ``namespace``: the spec's, below ``-n``."""
    from launcher.kubernetes.cluster import Cluster

    return Cluster.connect(args.kubeconfig, args.context, args.namespace or namespace)


def run_config_map(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """The ConfigMap that anchors the run (it holds the spec); a UserError that says where to look if absent."""
    name = object_names(run_id, 1)["spec"]
    config_map = cluster.get_config_map(name)
    if config_map is None:
        raise UserError(f"run {run_id}: no configmap {name} in namespace {cluster.namespace} (launcher list shows "
                        f"the runs there; -n picks another namespace; a run's objects go with its Jobs, after "
                        f"ttlSecondsAfterFinished: its results stay in storage, give the run's storage URL)")
    return config_map


def jobs_by_stage(cluster: Cluster, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's Jobs by their stage label (prepare, evaluate, merge); a stage whose Job is gone is absent."""
    jobs = cluster.list_jobs(run_selector(run_id))
    return {j["metadata"]["labels"].get(STAGE_LABEL, "?"): j for j in jobs}


def read_progress(run: Storage, shards: int) -> dict[int, ProgressRecord]:
    """Every started shard's progress, by shard, from one listing of the progress tally
    (``landscape_job.run.tally``): O(1) requests a poll whatever the number of shards."""
    return read_tallies(run, shards)


def storage_of(raw: object, base_dir: Path) -> StorageLocation:
    """A stored spec's ``storage`` value (a URL, or a mapping with ``url`` and options), parsed.

    The ConfigMap's spec is normalised, so it always names its storage; one that does not
    was not written by us, and the user has to say where the run lives.
    """
    if raw is None:
        raise UserError("storage: the spec names no storage; give --storage")
    return StorageLocation.from_spec(raw, base_dir)
