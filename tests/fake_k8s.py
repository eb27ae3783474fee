"""A fake Kubernetes API server on 127.0.0.1 that plays the Job controller, for the launcher's tests.

It answers the REST paths the launcher uses (ConfigMaps, Jobs, Pods, pod logs: create,
get, list by label selector, delete) with real-shaped objects and real error ``Status``
bodies and codes: 401 for a wrong token, 403 in a namespace marked forbidden, 404 for a
missing object or namespace, 409 AlreadyExists, 400 for fields unknown to the (simulated)
server version under ``fieldValidation=Strict``, 422 Invalid for objects a test marks
invalid. ``dryRun=All`` requests are checked like others, recorded, and stored nowhere.

As the Job controller it runs each created Job's pods one at a time, in creation order
(prepare, evaluate index 0..N-1, merge): the pod's ``command + args`` (``landscape-job
<stage> ...``) as ``python -m landscape_job.cli <stage> ...`` with the rendered env,
``JOB_COMPLETION_INDEX`` for an Indexed Job, and the Secret of ``envFrom`` taken from this
process's environment. Paths in the env under the pod's volume mounts (the ``/tmp``
emptyDir, the ConfigMap mounted for prepare) become host folders, as the mounts would.
It applies the pod failure policy and the backoff limits, keeps
pods and their logs, and sets the Job's status the way the controller does (``active``,
``completedIndexes``, ``failedIndexes``, ``FailureTarget``/``SuccessCriteriaMet`` before
``Failed``/``Complete``). A test may replace the pod runner with a script.

Deleting an object garbage-collects its dependents (by ``ownerReferences``), as the
garbage collector does, and kills their running processes.
"""

from __future__ import annotations

import copy
import json
import os
import queue
import random
import re
import string
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import yaml

LOOPBACK = "127.0.0.1"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
#: The Job spec fields of a current server; a test removes some to play an older one.
JOB_SPEC_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "backoffLimitPerIndex", "completionMode", "completions",
                   "managedBy", "manualSelector", "maxFailedIndexes", "parallelism", "podFailurePolicy",
                   "podReplacementPolicy", "selector", "successPolicy", "suspend", "template",
                   "ttlSecondsAfterFinished"}
_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>batch)/v1)/namespaces/(?P<ns>[a-z0-9-]+)/"
                   r"(?P<resource>configmaps|pods|jobs)(?:/(?P<name>[a-z0-9.-]+)(?P<log>/log)?)?$")
_KINDS = {"configmaps": "ConfigMap", "jobs": "Job", "pods": "Pod"}

#: A pod runner: (fake, pod, env) -> exit code, or None to leave the pod running. Logs go to fake.append_log.
Runner = Callable[["FakeCluster", dict, dict], "int | None"]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def index_ranges(indexes: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5", as the Job controller writes completedIndexes."""
    parts, items = [], sorted(set(indexes))
    while items:
        start = end = items.pop(0)
        while items and items[0] == end + 1:
            end = items.pop(0)
        parts.append(str(start) if start == end else f"{start}-{end}")
    return ",".join(parts)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict | None


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "details": details or {}, "code": code}


class FakeCluster:
    """Use as a context manager; ``url`` is its API endpoint, ``write_kubeconfig`` points a client at it."""

    def __init__(self, work_dir: Path, *, namespaces=("landscape", "default"), forbidden=(), token="fake-token",
                 user="alice", unknown_job_fields=(), invalid: dict[str, list[tuple[str, str]]] | None = None,
                 runner: Runner | None = None, run_pods: bool = True, claims: dict[str, Path] | None = None):
        self.work_dir = work_dir
        self.namespaces, self.forbidden = set(namespaces) | set(forbidden), set(forbidden)
        self.token, self.user = token, user
        self.job_fields = JOB_SPEC_FIELDS - set(unknown_job_fields)
        self.invalid = invalid or {}
        self.runner = runner or run_subprocess
        self.run_pods = run_pods
        self.claims = claims or {}
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.logs: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.secret_env: dict[str, tuple[str, ...]] = {}
        self.requests: list[Request] = []
        self.dry_runs: list[Request] = []
        self.lock = threading.RLock()
        self._version = 1000
        self._jobs: queue.Queue = queue.Queue()
        self._stopping = False
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                          daemon=True),
                         threading.Thread(target=self._controller, daemon=True)]

    # -- set-up ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: Path, namespace: str | None = None, token: str | None = None,
                         server: str | None = None) -> Path:
        context: dict[str, Any] = {"cluster": "fake", "user": "alice"}
        if namespace:
            context["namespace"] = namespace
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": server or self.url}}],
            "users": [{"name": "alice", "user": {"token": token or self.token}}],
            "contexts": [{"name": "fake", "context": context}]}))
        return path

    def secret_from_environ(self, name: str, prefixes: tuple[str, ...] = ("AWS_",)) -> None:
        """A Secret whose keys are this process's variables with these prefixes, read when a pod starts."""
        self.secret_env[name] = prefixes

    def __enter__(self) -> "FakeCluster":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self._jobs.put(None)
        with self.lock:
            for process in self.processes.values():
                process.kill()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until the controller has nothing queued or in hand."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("the fake Job controller is still busy")
            time.sleep(0.05)

    # -- the store ---------------------------------------------------------------------

    def get(self, resource: str, name: str, namespace: str = "landscape") -> dict | None:
        with self.lock:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def of(self, resource: str) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(o) for (r, _, _), o in self.objects.items() if r == resource]

    def append_log(self, pod: str, text: str) -> None:
        with self.lock:
            self.logs[pod] = self.logs.get(pod, "") + text

    def end_pod(self, name: str, exit_code: int, namespace: str = "landscape") -> None:
        """Ends a pod a runner left running (the Job's status is not revisited)."""
        self._set_pod(namespace, name, "Succeeded" if exit_code == 0 else "Failed", {"terminated": {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "finishedAt": now()}})

    def _stamp(self, obj: dict, namespace: str) -> dict:
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta.update({"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now(),
                     "resourceVersion": str(self._version), "generation": 1})
        return obj

    def _touch(self, obj: dict) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    # -- the API -----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None,
               headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """Returns (status, JSON object or text, extra headers); raises ApiError."""
        request = Request(method, path, query, body)
        with self.lock:
            self.requests.append(request)
        if headers.get("authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(path)
        if not match or (match["resource"] == "jobs") != bool(match["group"]):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name = match["ns"], match["resource"], match["name"]
        group = match["group"] or ""
        verb = {"POST": "create", "DELETE": "delete"}.get(method, "get" if name else "list")
        if ns in self.forbidden:
            subresource = ' subresource "log"' if match["log"] else ""
            qualified = f"{resource}.{group}" if group else resource
            named = f' "{name}"' if name else ""
            raise ApiError(403, "Forbidden", f'{qualified}{named} is forbidden: User "{self.user}" cannot {verb} '
                           f'resource "{resource}"{subresource} in API group "{group}" in the namespace "{ns}"',
                           {"name": name or "", "group": group, "kind": resource})
        dry_run = query.get("dryRun") == "All"
        if dry_run:
            with self.lock:
                self.dry_runs.append(request)
        with self.lock:
            if method == "POST" and not name:
                return 201, self._create(ns, resource, group, body or {}, query, dry_run), {}
            if method == "GET" and not name:
                items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                         if r == resource and n == ns
                         and selector_matches(query.get("labelSelector", ""), o["metadata"].get("labels") or {})]
                for item in items:
                    item.pop("kind", None), item.pop("apiVersion", None)
                return 200, {"kind": f"{_KINDS[resource]}List", "apiVersion": "batch/v1" if group else "v1",
                             "metadata": {"resourceVersion": str(self._version)}, "items": items}, {}
            obj = self.objects.get((resource, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found',
                               {"name": name, "group": group, "kind": resource})
            if method == "GET" and match["log"]:
                return 200, ("log", ns, name, query), {}
            if method == "GET":
                return 200, copy.deepcopy(obj), {}
            if method == "DELETE":
                propagation = query.get("propagationPolicy") or (body or {}).get("propagationPolicy") or "Background"
                if not dry_run:
                    self._delete(resource, ns, name)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "group": group, "kind": resource,
                                         "uid": obj["metadata"]["uid"]}, "propagationPolicy": propagation}, {}
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")

    def _create(self, ns: str, resource: str, group: str, body: dict, query: dict[str, str], dry_run: bool) -> dict:
        kind = _KINDS[resource]
        if body.get("kind") != kind:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: expected {kind}")
        if ns not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
        name = body.get("metadata", {}).get("name", "")
        qualified = f"{kind}.{group}" if group else kind
        warnings = {}
        if kind == "Job":
            unknown = sorted(set(body.get("spec", {})) - self.job_fields)
            if unknown and query.get("fieldValidation") == "Strict":
                raise ApiError(400, "BadRequest", "strict decoding error: "
                               + ", ".join(f'unknown field "spec.{f}"' for f in unknown))
            for field in unknown:
                warnings[field] = body["spec"].pop(field)
        if name in self.invalid:
            causes = [{"reason": "FieldValueInvalid", "message": message, "field": field}
                      for field, message in self.invalid[name]]
            raise ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: '
                           + ", ".join(f"{c['field']}: {c['message']}" for c in causes),
                           {"name": name, "group": group, "kind": kind, "causes": causes})
        if (resource, ns, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{resource}{"." + group if group else ""} "{name}" already exists',
                           {"name": name, "group": group, "kind": resource})
        obj = self._stamp(copy.deepcopy(body), ns)
        if kind == "Job":
            uid = obj["metadata"]["uid"]
            selector = {"batch.kubernetes.io/controller-uid": uid}
            obj["spec"]["selector"] = {"matchLabels": selector}
            obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(
                {**selector, "controller-uid": uid, "batch.kubernetes.io/job-name": name, "job-name": name})
            obj["status"] = {}
        if not dry_run:
            self.objects[(resource, ns, name)] = obj
            if kind == "Job" and self.run_pods:
                self._jobs.put((ns, name))
        return copy.deepcopy(obj)

    def _delete(self, resource: str, ns: str, name: str) -> None:
        """Deletes the object and, as the garbage collector does, everything it owns."""
        obj = self.objects.pop((resource, ns, name), None)
        if obj is None:
            return
        if resource == "pods" and name in self.processes:
            self.processes[name].kill()
        uid = obj["metadata"]["uid"]
        for key, other in list(self.objects.items()):
            if any(ref.get("uid") == uid for ref in other["metadata"].get("ownerReferences", [])):
                self._delete(*key)

    # -- the Job controller ------------------------------------------------------------

    def _controller(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is None or self._stopping:
                    return
                self._run_job(*item)
            finally:
                self._jobs.task_done()

    def _job(self, ns: str, name: str) -> dict | None:
        return self.objects.get(("jobs", ns, name))

    def _update_job(self, ns: str, name: str, **status: Any) -> None:
        with self.lock:
            job = self._job(ns, name)
            if job is not None:
                job["status"].update(status)
                self._touch(job)

    def _run_job(self, ns: str, name: str) -> None:
        with self.lock:
            job = self._job(ns, name)
            if job is None:
                return
            spec = copy.deepcopy(job["spec"])
        indexed = spec.get("completionMode") == "Indexed"
        indexes = list(range(spec.get("completions", 1))) if indexed else [None]
        retries = spec.get("backoffLimitPerIndex", 6) if indexed else spec.get("backoffLimit", 6)
        self._update_job(ns, name, startTime=now(), active=0, succeeded=0, failed=0, ready=0,
                         **({"completedIndexes": "", "failedIndexes": ""} if indexed else {}))
        completed: list[int] = []
        failed_indexes: list[int] = []
        running = 0
        failed_pods = 0
        job_failure: tuple[str, str] | None = None
        for index in indexes:
            for attempt in range(retries + 1):
                with self.lock:
                    if self._job(ns, name) is None or self._stopping:
                        return
                    pod = self._new_pod(ns, name, spec, index)
                    self._update_job(ns, name, active=running + 1)
                exit_code = self._run_pod(ns, pod)
                if exit_code is None:  # left running
                    running += 1
                    break
                if exit_code == 0:
                    completed.append(index or 0)
                    self._update_job(ns, name, active=running, succeeded=len(completed),
                                     **({"completedIndexes": index_ranges(completed)} if indexed else {}))
                    break
                failed_pods += 1
                self._update_job(ns, name, active=running, failed=failed_pods)
                action = _failure_action(spec, exit_code)
                if action == "FailJob":
                    job_failure = ("PodFailurePolicy", f"Container landscape for pod {ns}/{pod} failed with exit "
                                                       f"code {exit_code} matching FailJob rule at index 1")
                    break
                if action == "FailIndex" or attempt == retries:
                    if indexed:
                        failed_indexes.append(index)
                        self._update_job(ns, name, failedIndexes=index_ranges(failed_indexes))
                    else:
                        job_failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
                    break
            if job_failure:
                break
        if running and not job_failure:
            return  # pods left running: the Job stays active
        if failed_indexes and not job_failure:
            job_failure = ("FailedIndexes", "Job has failed indexes")
        first, last = (("FailureTarget", "Failed") if job_failure else ("SuccessCriteriaMet", "Complete"))
        reason, message = job_failure or ("CompletionsReached", "Reached expected number of succeeded pods")
        conditions = [{"type": t, "status": "True", "reason": reason, "message": message,
                       "lastProbeTime": now(), "lastTransitionTime": now()} for t in (first, last)]
        extra = {"completionTime": now()} if not job_failure else {}
        self._update_job(ns, name, active=0, conditions=conditions, **extra)

    def _new_pod(self, ns: str, job_name: str, spec: dict, index: int | None) -> str:
        job = self._job(ns, job_name)
        template = copy.deepcopy(spec["template"])
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = f"{job_name}-{index}-{suffix}" if index is not None else f"{job_name}-{suffix}"
        meta = template.get("metadata", {})
        labels, annotations = dict(meta.get("labels", {})), dict(meta.get("annotations", {}))
        if index is not None:
            labels[INDEX_KEY] = annotations[INDEX_KEY] = str(index)
            template["spec"]["hostname"] = f"{job_name}-{index}"
        pod = self._stamp({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "generateName": f"{job_name}-", "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                 "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": template["spec"], "status": {"phase": "Pending"}}, ns)
        self.objects[("pods", ns, name)] = pod
        self.logs[name] = ""
        return name

    def _set_pod(self, ns: str, name: str, phase: str, state: dict) -> None:
        with self.lock:
            pod = self.objects.get(("pods", ns, name))
            if pod is not None:
                pod["status"] = {"phase": phase, "startTime": now(), "containerStatuses": [
                    {"name": "landscape", "ready": phase == "Running", "restartCount": 0, "state": state}]}
                self._touch(pod)

    def _run_pod(self, ns: str, name: str) -> int | None:
        with self.lock:
            pod = copy.deepcopy(self.objects[("pods", ns, name)])
        env = self._pod_env(pod)
        if env is None:
            return None
        self._set_pod(ns, name, "Running", {"running": {"startedAt": now()}})
        exit_code = self.runner(self, pod, env)
        if exit_code is not None:
            self.end_pod(name, exit_code, ns)
        return exit_code

    def _mounts(self, pod: dict) -> dict[str, Path] | None:
        """The container's mount paths -> host folders, as the kubelet sets them up; None if one cannot be.

        emptyDirs share one host folder (so caches carry over between pods), a configMap
        volume is a folder holding one file per key, a persistentVolumeClaim is the folder
        ``claims[<claim>]`` a test gave.
        """
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        mounts = {}
        for mount in pod["spec"]["containers"][0].get("volumeMounts", []):
            volume = volumes[mount["name"]]
            host = self.work_dir / "volumes" / name / mount["name"]
            if "emptyDir" in volume:
                host = self.work_dir / "emptydir" / mount["name"]
            elif "configMap" in volume:
                config_map = self.objects.get(("configmaps", ns, volume["configMap"]["name"]))
                if config_map is None:
                    self._set_pod(ns, name, "Pending", {"waiting": {"reason": "ContainerCreating"}})
                    return None
                host.mkdir(parents=True, exist_ok=True)
                for key, value in (config_map.get("data") or {}).items():
                    (host / key).write_text(value)
            elif "persistentVolumeClaim" in volume:
                host = self.claims[volume["persistentVolumeClaim"]["claimName"]]
            host.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/")] = host
        return mounts

    def _pod_env(self, pod: dict) -> dict[str, str] | None:
        """The container's environment as the kubelet builds it, with paths under its mounts made host
        paths; None if a Secret or a volume is missing (the pod then stays Pending)."""
        container = pod["spec"]["containers"][0]
        mounts = self._mounts(pod)
        if mounts is None:
            return None

        def host_path(value: str) -> str:
            for path in sorted(mounts, key=len, reverse=True):
                if value == path or value.startswith(path + "/"):
                    return str(mounts[path]) + value[len(path):]
            return value

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        for source in container.get("envFrom", []):
            secret = source.get("secretRef", {}).get("name")
            if secret not in self.secret_env:
                self._set_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], "Pending", {"waiting": {
                    "reason": "CreateContainerConfigError", "message": f'secret "{secret}" not found'}})
                return None
            env.update({k: v for k, v in os.environ.items() if k.startswith(self.secret_env[secret])})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = host_path(item["value"])
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                env[item["name"]] = pod["metadata"]["namespace"]
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = pod["metadata"]["name"]
        index = pod["metadata"]["annotations"].get(INDEX_KEY)
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = index
        env["HOSTNAME"] = pod["spec"].get("hostname", pod["metadata"]["name"])
        return env


def _failure_action(job_spec: dict, exit_code: int) -> str:
    """The first pod failure policy rule that matches the exit code, else Count."""
    for rule in (job_spec.get("podFailurePolicy") or {}).get("rules", []):
        codes = rule.get("onExitCodes")
        if codes:
            hit = exit_code in codes["values"]
            if hit == (codes.get("operator", "In") == "In"):
                return rule["action"]
    return "Count"


def run_subprocess(fake: FakeCluster, pod: dict, env: dict) -> int:
    """Runs the container's ``landscape-job`` command as ``python -m landscape_job.cli``; its output is the log.

    Without ``command`` the image's ENTRYPOINT runs: NVIDIA's script, which execs ``landscape-job``.
    """
    container = pod["spec"]["containers"][0]
    command = (container.get("command") or ["landscape-job"]) + container.get("args", [])
    name = pod["metadata"]["name"]
    if not command or command[0] != "landscape-job":
        fake.append_log(name, f"exec: {command[:1]} not found in the image\n")
        return 127
    process = subprocess.Popen([sys.executable, "-m", "landscape_job.cli", *command[1:]], env=env,
                               cwd=env.get("HOME"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with fake.lock:
        fake.processes[name] = process
    assert process.stdout is not None
    for line in process.stdout:
        fake.append_log(name, line)
    code = process.wait()
    with fake.lock:
        fake.processes.pop(name, None)
    return code


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        fake: FakeCluster = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            status, payload, headers = fake.handle(self.command, parts.path, query, body,
                                                   {k.lower(): v for k, v in self.headers.items()})
        except ApiError as err:
            return self._send(err.status["code"], err.status)
        except json.JSONDecodeError:
            return self._send(400, ApiError(400, "BadRequest", "invalid JSON in the request body").status)
        if isinstance(payload, tuple) and payload[0] == "log":
            return self._log(fake, *payload[1:])
        self._send(status, payload, headers)

    def _log(self, fake: FakeCluster, ns: str, name: str, query: dict[str, str]) -> None:
        with fake.lock:
            pod = fake.objects[("pods", ns, name)]
            if pod["status"].get("phase") == "Pending":
                reason = ((pod["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                          .get("reason", "ContainerCreating"))
                return self._send(400, ApiError(400, "BadRequest", f'container "landscape" in pod "{name}" is '
                                                f"waiting to start: {reason}").status)
        tail = int(query["tailLines"]) if "tailLines" in query else None
        follow = query.get("follow") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        first = True
        while True:
            with fake.lock:
                text = fake.logs.get(name, "")
                pod = fake.objects.get(("pods", ns, name))
                ended = pod is None or pod["status"].get("phase") in ("Succeeded", "Failed")
            if first and tail is not None:
                lines = text.splitlines(keepends=True)
                sent = len(text) - len("".join(lines[-tail:] if tail else []))
                first = False
            if len(text) > sent:
                try:
                    self.wfile.write(text[sent:].encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client stopped following (`logs -f` ended): as a real API server, say nothing
                sent = len(text)
            if not follow or ended:
                return
            time.sleep(0.05)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve
