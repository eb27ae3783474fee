"""The cluster commands: ``submit`` (without ``--local``), ``status``, ``logs``, ``list``, ``cancel``, ``pull``.

    launcher submit surface.yaml [--wait] [--server-dry-run] [-n NS] [--context C]
    launcher status <run>            # Jobs, per-shard progress, failed shards with their last log lines
    launcher logs <run> [--shard I] [--stage prepare|evaluate|merge] [-f]
    launcher list                    # the runs in the namespace
    launcher cancel <run>            # deletes the run's ConfigMap; its Jobs and pods go with it
    launcher pull <run|storage-url> [DIR] [--shards]

``submit`` checks everything it can before it makes anything: the spec, the inputs (when
they are on this machine), the storage (one read), then the server itself with a dry-run
create of every object (RBAC, validation, a run id already taken). Only then does it write
``spec.yaml`` to the run's prefix and create the ConfigMap and, owned by it, the Jobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from landscape_job.errors import USER_ERROR_EXIT, StageError, UserError
from landscape_job.storage import Storage, open_storage, run_storage

from launcher.render import CONTAINER, RUN_LABEL, STAGE_LABEL, STAGES, check_run_id, object_names, run_selector

if TYPE_CHECKING:  # the kubernetes client loads only for the commands that talk to a cluster
    from launcher.cluster import Cluster

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
LOG_LINES = 10


# -- parsers ------------------------------------------------------------------------------

def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", help="namespace (default: the spec's kubernetes.namespace, or the "
                                                  "context's for commands without a spec, else landscape)")


def add_submit_options(submit: argparse.ArgumentParser) -> None:
    """The cluster options of ``launcher submit`` (the parser itself lives in ``launcher.cli``)."""
    add_cluster_options(submit)
    submit.add_argument("--server-dry-run", action="store_true",
                        help="have the API server check every object; create nothing, write nothing")
    submit.add_argument("--wait", action="store_true", help="follow the run until merge completes or a stage fails")
    submit.add_argument("--interval", type=float, default=5.0, help="seconds between polls with --wait")


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Adds status, logs, list, cancel and pull; returns their handlers by command name."""
    status = sub.add_parser("status", help="a run's Jobs, per-shard progress and failed shards")
    status.add_argument("run")
    status.add_argument("--storage", help="the runs' storage base URL (default: the one in the run's ConfigMap)")
    add_cluster_options(status)

    logs = sub.add_parser("logs", help="the logs of a run's pods")
    logs.add_argument("run")
    logs.add_argument("--stage", choices=STAGES)
    logs.add_argument("--shard", type=int, help="the evaluate pod of this shard")
    logs.add_argument("-f", "--follow", action="store_true", help="stream one pod's log")
    logs.add_argument("--tail", type=int, default=None, help="last lines only")
    add_cluster_options(logs)

    runs = sub.add_parser("list", help="the runs in the namespace")
    add_cluster_options(runs)

    cancel = sub.add_parser("cancel", help="delete a run's objects (its storage is kept)")
    cancel.add_argument("run")
    cancel.add_argument("--cascade", choices=["background", "foreground"], default="background",
                        help="foreground: the ConfigMap goes only after its Jobs and pods")
    add_cluster_options(cancel)

    pull = sub.add_parser("pull", help="download a run's surface.h5, plots and report")
    pull.add_argument("run", help="a run id, or the run's storage URL (s3://bucket/runs/<run>, file:///...)")
    pull.add_argument("dir", nargs="?", type=Path, help="destination folder (default: ./<run id>)")
    pull.add_argument("--shards", action="store_true", help="the shard files too")
    pull.add_argument("--storage", help="the runs' storage base URL (default: the spec's, or the run's ConfigMap)")
    pull.add_argument("--spec", type=Path, help="take the storage URL and options (endpoint, ...) from this spec")
    add_cluster_options(pull)
    return {"status": run_status, "logs": run_logs, "list": run_list, "cancel": run_cancel, "pull": run_pull}


# -- small readers of server objects ------------------------------------------------------

def _indexes(text: str | None) -> list[int]:
    """``"1,3-5"`` (an Indexed Job's completedIndexes / failedIndexes) -> [1, 3, 4, 5]."""
    result: list[int] = []
    for part in (text or "").split(","):
        if part:
            low, _, high = part.partition("-")
            result.extend(range(int(low), int(high or low) + 1))
    return result


def _condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Complete or Failed condition if the Job has ended. FailureTarget, SuccessCriteriaMet and
    the like come earlier, while pods may still be running: they are not an end."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition
    return None


def _state(job: dict[str, Any]) -> str:
    condition = _condition(job)
    if condition:
        return condition["type"]
    if (job.get("spec") or {}).get("suspend"):
        return "Suspended"
    return "Running" if (job.get("status") or {}).get("active") else "Pending"


def _jobs_by_stage(cluster: Cluster, run_id: str) -> dict[str, dict[str, Any]]:
    jobs = cluster.list_jobs(run_selector(run_id))
    return {j["metadata"]["labels"].get(STAGE_LABEL, "?"): j for j in jobs}


def _pod_index(pod: dict[str, Any]) -> int | None:
    meta = pod["metadata"]
    value = (meta.get("labels") or {}).get(INDEX_KEY) or (meta.get("annotations") or {}).get(INDEX_KEY)
    return int(value) if value is not None else None


def _exit_code(pod: dict[str, Any]) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return terminated.get("exitCode")
    return None


def _spec_of(config_map: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((config_map.get("data") or {}).get("spec.yaml") or "{}") or {}


def _storage_of(raw: object, base_dir: Path) -> tuple[str, dict[str, str]]:
    """A spec's ``storage`` value (a URL, or a mapping with ``url`` and options) as (url, options)."""
    url, options = (raw.get("url"), {k: v for k, v in raw.items() if k != "url"}) if isinstance(raw, dict) \
        else (raw, {})
    if not isinstance(url, str) or not url:
        raise UserError("storage: the spec names no storage; give --storage")
    if "://" not in url:
        url = "file://" + str((base_dir / url).expanduser().resolve())
    return url, options


def _connect(args: argparse.Namespace, namespace: str | None = None) -> Cluster:
    from launcher.cluster import Cluster

    return Cluster.connect(args.kubeconfig, args.context, args.namespace or namespace)


def _check_run(run_id: str) -> None:
    try:
        check_run_id(run_id)
    except UserError as err:
        raise UserError(str(err).replace("--run-id: expected", f"run id {run_id!r}: expected", 1)) from None


def _run_config_map(cluster: Cluster, run_id: str) -> dict[str, Any]:
    name = object_names(run_id, 1)["spec"]
    config_map = cluster.get_config_map(name)
    if config_map is None:
        raise UserError(f"run {run_id}: no configmap {name} in namespace {cluster.namespace} (launcher list shows "
                        f"the runs there; -n picks another namespace)")
    return config_map


def _progress(run: Storage, shards: int) -> dict[int, Any]:
    """The shards' ``.progress.json`` records that exist and parse, by shard."""
    from landscape_job.records import ProgressRecord
    from landscape_job.shards import progress_key

    keys = set(run.list("shards/"))
    result = {}
    for shard in range(shards):
        key = progress_key(shard, shards)
        if key in keys:
            try:
                result[shard] = ProgressRecord.from_json(run.get(key))
            except (KeyError, ValueError, TypeError):
                pass
    return result


# -- submit -------------------------------------------------------------------------------

def _check_inputs_here(spec: Any) -> str:
    """``check_inputs`` where the model and data files are on this machine; on a cluster they may be pod paths."""
    from landscape_job.inputs import check_reachable, is_remote
    from landscape_job.preflight import check_inputs

    check_reachable(spec)  # one HEAD per s3:// or https:// input: a missing object fails here, not in a pod
    paths = [spec.model.checkpoint, *spec.directions.targets, spec.directions.file, spec.data.root]
    absent = [p for p in paths if p and not is_remote(p) and not os.path.exists(p)]
    if absent:
        return f"inputs not checked here: {absent[0]} is not on this machine (a path inside the pods?)"
    check_inputs(spec)
    return "inputs checked on this machine: the model builds, the checkpoints fit it, the data loads"


def run_submit(args: argparse.Namespace) -> None:
    from landscape_job.spec import load_spec

    from launcher.k8s_spec import parse_kubernetes
    from launcher.local import check_storage, new_run_id, open_run
    from launcher.render import render_run, with_owner
    from launcher.render_cli import default_run_id

    if args.workers is not None:
        raise UserError("--workers: only with --local")
    # Checkpoint and data paths of a cluster spec are pod paths: checked here only if present
    # (_check_inputs_here), else by the pods themselves (exit 2, the index fails at once).
    spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
    k8s = parse_kubernetes(spec.kubernetes)
    if args.namespace:
        k8s = dataclasses.replace(k8s, namespace=args.namespace)
    render_run(spec, args.run_id or default_run_id(spec.name), k8s)  # every render mistake before any I/O
    print(_check_inputs_here(spec), file=sys.stderr)
    check_storage(spec)
    cluster = _connect(args, k8s.namespace)
    try:
        run_id = args.run_id or new_run_id(spec.name, spec.storage, spec.storage_options)
        objects = render_run(spec, run_id, k8s)
        names = object_names(run_id, spec.compute.shards)
        taken = f"run {run_id} already exists in namespace {k8s.namespace}; choose another --run-id"
        # The server checks every object (RBAC, validation, names) before anything exists or is written.
        checked = cluster.create(objects[0], dry_run=True, on_409=taken)
        dry_uid = checked["metadata"].get("uid") or "00000000-0000-0000-0000-000000000000"
        for job in objects[1:]:
            cluster.create(with_owner(job, "ConfigMap", names["spec"], dry_uid), dry_run=True, on_409=taken)
        if args.server_dry_run:
            print(f"server dry run: the API server at {cluster.host} accepts the ConfigMap and {len(objects) - 1} "
                  f"Jobs of run {run_id} in namespace {k8s.namespace}; nothing was created or written")
            return
        run = open_run(spec, run_id)
        uid = cluster.create(objects[0], on_409=taken)["metadata"]["uid"]
        try:
            for job in objects[1:]:
                cluster.create(with_owner(job, "ConfigMap", names["spec"], uid), on_409=taken)
        except (UserError, StageError) as err:
            try:
                cluster.delete_config_map(names["spec"])
                undone = "the objects already created were deleted again"
            except (UserError, StageError):
                undone = f"delete what was created with: kubectl delete configmap {names['spec']} -n {k8s.namespace}"
            raise type(err)(f"{err} ({undone})") from None
        ns = k8s.namespace
        print(f"run {run_id}: {spec.grid.size} points in {spec.compute.shards} shards, namespace {ns}, "
              f"storage {run.url}\n"
              f"  kubectl get jobs,pods -n {ns} -l {run_selector(run_id)}\n"
              f"  launcher status {run_id} -n {ns}\n"
              f"  launcher pull {run_id} -n {ns}", flush=True)
        if args.wait:
            _follow(cluster, run, run_id, spec.compute.shards, spec.grid.size, args.interval)
    finally:
        cluster.close()


def _failure(job: dict[str, Any], stage: str) -> str:
    condition = _condition(job) or {}
    failed = _indexes((job.get("status") or {}).get("failedIndexes"))
    shards = f"; failed shards: {', '.join(map(str, failed))}" if failed else ""
    return f"the {stage} Job failed ({condition.get('reason', '?')}: {condition.get('message', '')}){shards}"


def _follow(cluster: Cluster, run: Storage, run_id: str, shards: int, points: int, interval: float) -> None:
    """Polls the Jobs and the shards' progress until merge completes (returns) or a Job fails (StageError)."""
    from launcher.local import ProgressBar

    bar = ProgressBar(points, sys.stderr)
    try:
        _poll(cluster, run, run_id, shards, points, interval, bar)
    except KeyboardInterrupt:
        print(f"\nstopped following; run {run_id} goes on in the cluster (launcher status {run_id})", file=sys.stderr)
        raise


def _poll(cluster: Cluster, run: Storage, run_id: str, shards: int, points: int, interval: float, bar: Any) -> None:
    from landscape_job.stages import REPORT_KEY, SURFACE_KEY

    while True:
        jobs = _jobs_by_stage(cluster, run_id)
        done = sum(p.done for p in _progress(run, shards).values())
        bar.update(done)
        if not jobs:
            raise StageError(f"run {run_id}: its Jobs are gone (cancelled?)")
        for stage in STAGES:
            if stage in jobs and _state(jobs[stage]) == "Failed":
                bar.update(done, final=True)
                raise StageError(f"run {run_id}: {_failure(jobs[stage], stage)}; see launcher status {run_id}. "
                                 f"To resume: launcher cancel {run_id}, then submit again with --run-id {run_id}")
        if "merge" in jobs and _state(jobs["merge"]) == "Complete":
            bar.update(points, final=True)
            print(f"done: {run.url}/{SURFACE_KEY}\n      {run.url}/plots/\n      {run.url}/{REPORT_KEY}")
            return
        time.sleep(interval)


# -- status, logs, list, cancel -----------------------------------------------------------

def _format_seconds(seconds: float | None) -> str:
    from launcher.local import _format_seconds as fmt

    return fmt(seconds)


def _job_line(stage: str, job: dict[str, Any] | None) -> str:
    if job is None:
        return f"  {stage:<9} (gone: deleted, or removed after ttlSecondsAfterFinished)"
    status = job.get("status") or {}
    state = _state(job)
    condition = _condition(job)
    details = [f"{condition.get('reason', '')}: {condition.get('message', '')}"] if condition else []
    if stage == "evaluate":
        total = (job.get("spec") or {}).get("completions") or 0
        done = len(_indexes(status.get("completedIndexes")))
        failed = _indexes(status.get("failedIndexes"))
        active = status.get("active") or 0
        details.insert(0, f"{done}/{total} shards complete" + (f", {active} running" if active else "")
                       + (f", failed: {', '.join(map(str, failed))}" if failed else ""))
    return f"  {stage:<9} {state:<9}  {'; '.join(details)}".rstrip()


def _failed_pods(cluster: Cluster, run_id: str, jobs: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The latest failed pod of each failed shard, and of a failed prepare or merge Job."""
    wanted: dict[tuple[str, int | None], str] = {}
    for stage, job in jobs.items():
        if stage == "evaluate":
            for index in _indexes((job.get("status") or {}).get("failedIndexes")):
                wanted[(stage, index)] = f"shard {index}"
        elif _state(job) == "Failed":
            wanted[(stage, None)] = stage
    if not wanted:
        return []
    latest: dict[tuple[str, int | None], dict[str, Any]] = {}
    for pod in cluster.list_pods(run_selector(run_id)):
        key = (pod["metadata"]["labels"].get(STAGE_LABEL, "?"), _pod_index(pod))
        if key in wanted and (pod.get("status") or {}).get("phase") == "Failed":
            if key not in latest or pod["metadata"]["creationTimestamp"] > latest[key]["metadata"]["creationTimestamp"]:
                latest[key] = pod
    return [(what, latest.get(key, {})) for key, what in wanted.items()]


def run_status(args: argparse.Namespace) -> None:
    _check_run(args.run)
    cluster = _connect(args)
    try:
        raw = _spec_of(_run_config_map(cluster, args.run))
        url, options = _storage_of(raw.get("storage"), Path.cwd())
        shards = int((raw.get("compute") or {}).get("shards", 1))
        base = args.storage or url
        run = run_storage(base, args.run, options if base.startswith("s3://") else None)
        jobs = _jobs_by_stage(cluster, args.run)
        print(f"run {args.run}  namespace {cluster.namespace}  storage {run.url}")
        for stage in STAGES:
            print(_job_line(stage, jobs.get(stage)))
        progress = _progress(run, shards)
        done = sum(p.done for p in progress.values())
        rate = sum(p.rate for p in progress.values() if p.state == "running")
        print(f"shards: {len(progress)} of {shards} started, {done} points done"
              + (f", {rate:.2f} points/s" if rate else ""))
        for shard in sorted(progress)[:50]:
            p = progress[shard]
            print(f"  shard {shard:>4}  {p.done}/{'?' if p.total is None else p.total} points  {p.rate:.2f}"
                  f" points/s  ETA {_format_seconds(p.eta_s) if p.state != 'done' else '-'}  "
                  f"{p.state} on {p.host} ({p.device})")
        if len(progress) > 50:
            print(f"  ... {len(progress) - 50} more shards")
        for what, pod in _failed_pods(cluster, args.run, jobs):
            if not pod:
                print(f"{what} failed; its pod is gone, and its log with it")
                continue
            name = pod["metadata"]["name"]
            code = _exit_code(pod)
            why = " (a mistake in the spec or its inputs: not retried)" if code == USER_ERROR_EXIT else ""
            print(f"{what} failed: pod {name}, exit code {code}{why}; last lines of its log:")
            try:
                for line in cluster.pod_log(name, CONTAINER, tail=LOG_LINES):
                    print(f"    {line}")
            except UserError as err:
                print(f"    ({err})")
    finally:
        cluster.close()


def run_logs(args: argparse.Namespace) -> None:
    stage = args.stage or ("evaluate" if args.shard is not None else None)
    if args.shard is not None and stage != "evaluate":
        raise UserError("--shard: only with --stage evaluate (the default with --shard)")
    _check_run(args.run)
    cluster = _connect(args)
    try:
        selector = run_selector(args.run) + (f",{STAGE_LABEL}={stage}" if stage else "")
        latest: dict[tuple[int, int], dict[str, Any]] = {}
        for pod in cluster.list_pods(selector):
            index = _pod_index(pod)
            if args.shard is not None and index != args.shard:
                continue
            key = (STAGES.index(pod["metadata"]["labels"].get(STAGE_LABEL, "prepare")), index or 0)
            if key not in latest or pod["metadata"]["creationTimestamp"] > latest[key]["metadata"]["creationTimestamp"]:
                latest[key] = pod
        if not latest:
            what = f" for shard {args.shard}" if args.shard is not None else f" in stage {stage}" if stage else ""
            raise UserError(f"run {args.run}: no pods{what} in namespace {cluster.namespace} (not started yet, "
                            f"or removed with their Job; see launcher status {args.run})")
        pods = [latest[k] for k in sorted(latest)]
        if args.follow and len(pods) > 1:
            raise UserError("-f: follows one pod; give --shard I or --stage prepare|merge")
        for pod in pods:
            name = pod["metadata"]["name"]
            if len(pods) > 1:
                print(f"==> {name} <==", flush=True)
            for line in cluster.pod_log(name, CONTAINER, tail=args.tail, follow=args.follow):
                print(line, flush=args.follow)
    finally:
        cluster.close()


def run_list(args: argparse.Namespace) -> None:
    cluster = _connect(args)
    try:
        config_maps = cluster.list_runs()
        jobs: dict[str, dict[str, dict[str, Any]]] = {}
        for job in cluster.list_jobs("app.kubernetes.io/part-of=landscape"):
            labels = job["metadata"]["labels"]
            jobs.setdefault(labels.get(RUN_LABEL, "?"), {})[labels.get(STAGE_LABEL, "?")] = job
        if not config_maps:
            print(f"no runs in namespace {cluster.namespace}")
            return
        print(f"{'RUN':<40} {'STATUS':<10} {'SHARDS':<9} {'CREATED':<21} STORAGE")
        for cm in sorted(config_maps, key=lambda c: c["metadata"].get("creationTimestamp", "")):
            run_id = cm["metadata"]["labels"].get(RUN_LABEL, "?")
            stages = jobs.get(run_id, {})
            states = {s: _state(j) for s, j in stages.items()}
            state = ("Failed" if "Failed" in states.values() else states.get("merge") if stages else "(no jobs)")
            evaluate = stages.get("evaluate")
            shards = (f"{len(_indexes((evaluate.get('status') or {}).get('completedIndexes')))}/"
                      f"{evaluate['spec'].get('completions')}" if evaluate else "-")
            raw = _spec_of(cm)
            url = raw.get("storage", {}).get("url") if isinstance(raw.get("storage"), dict) else raw.get("storage")
            print(f"{run_id:<40} {state:<10} {shards:<9} {cm['metadata'].get('creationTimestamp', ''):<21} "
                  f"{str(url).rstrip('/')}/{run_id}")
    finally:
        cluster.close()


def run_cancel(args: argparse.Namespace) -> None:
    _check_run(args.run)
    cluster = _connect(args)
    try:
        name = object_names(args.run, 1)["spec"]
        cluster.delete_config_map(name, propagation=args.cascade.capitalize(),
                                  on_404=f"run {args.run}: no configmap {name} in namespace {cluster.namespace} "
                                         f"(launcher list shows the runs there)")
        print(f"run {args.run} cancelled: deleted configmap {name}; its Jobs and pods are garbage-collected. "
              f"Its storage is kept: submit again with --run-id {args.run} to resume")
    finally:
        cluster.close()


# -- pull ---------------------------------------------------------------------------------

def _pull_source(args: argparse.Namespace) -> tuple[Storage, str]:
    """The run's storage and id, from a storage URL, --storage, --spec, or the run's ConfigMap."""
    spec_url, options = None, {}
    if args.spec:
        if not args.spec.is_file():
            raise UserError(f"--spec {args.spec}: file not found")
        raw = yaml.safe_load(args.spec.read_text()) or {}
        spec_url, options = _storage_of(raw.get("storage") if isinstance(raw, dict) else None,
                                        args.spec.parent.resolve())
    if "://" in args.run:
        url = args.run.rstrip("/")
        return open_storage(url, options if url.startswith("s3://") else None), url.rsplit("/", 1)[-1]
    _check_run(args.run)
    base = args.storage or spec_url
    if base is None:
        cluster = _connect(args)
        try:
            base, options = _storage_of(_spec_of(_run_config_map(cluster, args.run)).get("storage"), Path.cwd())
        finally:
            cluster.close()
    return run_storage(base, args.run, options if base.startswith("s3://") else None), args.run


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def run_pull(args: argparse.Namespace) -> None:
    from landscape_job.stages import REPORT_KEY, SPEC_KEY, SURFACE_KEY

    run, run_id = _pull_source(args)
    available = set(run.list())
    if SURFACE_KEY not in available:
        raise UserError(f"{run.url}: no {SURFACE_KEY} (yet): the run has not merged; see launcher status {run_id}")
    keys = [k for k in (SURFACE_KEY, REPORT_KEY, SPEC_KEY) if k in available]
    keys += sorted(k for k in available if k.startswith("plots/") or (args.shards and k.startswith("shards/")))
    dest = args.dir or Path(run_id)
    tty, size = sys.stderr.isatty(), 0
    for n, key in enumerate(keys, 1):
        data = run.get(key)
        path = dest / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        size += len(data)
        line = f"pull: {n}/{len(keys)} objects, {_size(size)} from {run.url} -> {dest}"
        if tty:
            print("\r" + line, end="\n" if n == len(keys) else "", file=sys.stderr, flush=True)
        elif n == len(keys):
            print(line, file=sys.stderr)
    print(dest / SURFACE_KEY)
