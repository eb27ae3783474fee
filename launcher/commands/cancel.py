"""``launcher cancel <run>``: stop a run; its storage stays, so submitting again with ``--run-id`` resumes it.

On the cluster it finds the run by its label (``landscape.run=<run>``), not only by its
ConfigMap: a run started with ``launcher render | kubectl apply`` has Jobs that no
ConfigMap owns. It deletes each of the run's Jobs (their pods go with them, by
``--cascade``), the run's own Roles and RoleBindings if it was rendered any, then the
ConfigMap. A local run (by id in ./runs, folder or URL): its launcher process and
workers are stopped if they still run (their pids are in the run's ``local.json``).
"""

from __future__ import annotations

import argparse

from landscape_job.base.errors import StageError, UserError

from launcher.commands.cluster_run import add_cluster_options, connect
from launcher.commands.run_ref import RunRef, add_run_arguments, resolve_run
from launcher.commands.stored_run import local_record, stored_spec
from launcher.local.record import CANCELLED, LOCAL_KEY, alive, here, stop
from launcher.kubernetes.names import object_names, run_selector

NAME = "cancel"


def add_parser(sub: argparse._SubParsersAction) -> None:
    cancel = sub.add_parser(NAME, help="stop a run: delete its Jobs and ConfigMap, or stop a local run's processes "
                                       "(its storage is kept)")
    add_run_arguments(cancel)
    cancel.add_argument("--cascade", choices=["background", "foreground"], default="background",
                        help="foreground: each Job goes only after its pods")
    add_cluster_options(cancel)


def run(args: argparse.Namespace) -> None:
    ref = resolve_run(args)
    if ref.storage is not None:
        return _cancel_stored(ref)
    cluster = connect(args)
    try:
        propagation = args.cascade.capitalize()
        jobs = cluster.list_jobs(run_selector(ref.run_id))
        names = object_names(ref.run_id, 1)
        config_map = cluster.get_config_map(names["spec"])
        if not jobs and config_map is None:
            raise UserError(f"run {ref.run_id}: no configmap {names['spec']} in namespace {cluster.namespace}, and "
                            f"no Jobs labelled {run_selector(ref.run_id)} (launcher list shows the runs there; -n "
                            f"picks another namespace)")
        deleted = [f"job/{j['metadata']['name']}" for j in jobs
                   if cluster.delete_job(j["metadata"]["name"], propagation)]
        try:
            deleted += cluster.delete_rbac(run_selector(ref.run_id))
        except UserError as err:  # an account that may not touch Roles: the run is stopped all the same
            print(f"note: the run's Roles, if any, are left: {err}")
        if config_map is not None:
            cluster.delete_config_map(names["spec"], propagation=propagation,
                                      on_404=f"run {ref.run_id}: configmap {names['spec']} went away meanwhile")
            deleted.append(f"configmap/{names['spec']}")
        print(f"run {ref.run_id} cancelled in namespace {cluster.namespace}: deleted {', '.join(deleted) or 'nothing'}"
              f"; their pods are garbage-collected. Its storage is kept: submit again with --run-id {ref.run_id} "
              f"to resume")
    finally:
        cluster.close()


def _cancel_stored(ref: RunRef) -> None:
    """Stops a local run's processes if they run; a run in storage with no live process is said so."""
    storage = ref.storage
    assert storage is not None
    stored_spec(storage)  # a folder that is no run: one line, exit 2
    record = local_record(storage)
    if record is None:
        raise UserError(f"run {ref.run_id}: {storage.url} has no {LOCAL_KEY}: not a local run; a run on the "
                        f"cluster is cancelled by its id (launcher cancel {ref.run_id} -n NAMESPACE)")
    if not here(record):
        raise UserError(f"run {ref.run_id} was started on host {record.host}, not here; cancel it there "
                        f"(its processes cannot be reached from this machine)")
    if not alive(record):
        print(f"run {ref.run_id} is not running (it {record.state if record.state != 'running' else 'stopped'}; "
              f"launcher pid {record.pid} on {record.host} is gone); nothing to cancel")
        return
    pids = stop(record)
    try:
        storage.put(LOCAL_KEY, record.ended(CANCELLED, "cancelled").to_json())
    except (StageError, OSError) as err:
        raise StageError(f"run {ref.run_id}: stopped, but its record could not be written: {err}") from None
    print(f"run {ref.run_id} cancelled: stopped {len(pids)} processes ({', '.join(map(str, pids))}). Its storage is "
          f"kept: submit again with --run-id {ref.run_id} to resume")
