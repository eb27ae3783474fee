"""A fake Kubernetes API server on 127.0.0.1 that plays the Job controller, for the launcher's tests.

It answers the REST paths the launcher uses (ConfigMaps, Jobs, Pods, pod logs: create,
get, list by label selector, delete) with real-shaped objects and real error ``Status``
bodies and codes: 401 for a wrong token, 403 in a namespace marked forbidden, 404 for a
missing object or namespace, 409 AlreadyExists, 400 for fields unknown to the (simulated)
server version under ``fieldValidation=Strict``, 422 Invalid for objects a test marks
invalid. ``dryRun=All`` requests are checked like others, recorded, and stored nowhere.

As the Job controller (tests/support/fake_jobs.py: suspend, parallelism, deadlines, the pod
failure policy, the backoff limits, the validation and defaults of a real server) it runs
each Job's pods concurrently up to its ``parallelism``: the pod's ``command + args``
(``landscape-job <stage> ...``) as ``python -m landscape_job.cli <stage> ...`` (forked from an
interpreter that has imported torch already, as the local runner's stages are) with the rendered env, ``JOB_COMPLETION_INDEX`` for an Indexed Job, and the Secret of ``envFrom``
taken from this process's environment. Paths in the env under the pod's volume mounts (the
``/tmp`` emptyDir, the ConfigMap mounted for prepare) become host folders, as the mounts
would. A test may replace the pod runner with a script, and preempt a pod (``disrupt``).

As the authorizer (tests/support/fake_rbac.py) it knows who asks: the kubeconfig's token is the
user bound to the launcher Role of k8s/base; a pod that mounts its service-account token
(the kubelet's ``automountServiceAccountToken``) gets a token of its own, the CA of a TLS
endpoint of this server (``KUBERNETES_SERVICE_HOST``/``PORT``, as in a pod) and, in
``LANDSCAPE_SERVICE_ACCOUNT_DIR``, the folder the kubelet would mount. Every request is
checked against the Roles bound to its identity (k8s/base's, and the Roles and
RoleBindings created through the API), per verb and ``resourceNames``, recorded in
``calls``, and answered 403 where not allowed.

Deleting an object garbage-collects its dependents as the garbage collector does: by
``ownerReferences`` matched on ``uid``, a dependent is deleted once all its owners are gone
(it loses only the dangling references while one remains), and running processes are
killed. A finished Job with a short ``ttlSecondsAfterFinished`` (up to a minute) is
deleted that long after it ended, as the TTL-after-finished controller does.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import string
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import yaml

from landscape_job.forkserver import StageProcess, StageServer, shared

import fake_inventory
from fake_inventory import Inventory
from fake_jobs import JobRun, default_job, index_ranges, now, validate_job, validate_job_update
from fake_kueue import FakeKueue
from fake_rbac import Call, Identity, allows, covers, launcher_role, rules_of

__all__ = ["FakeCluster", "index_ranges", "now", "selector_matches"]

LOOPBACK = "127.0.0.1"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
#: The Job spec fields of a current server; a test removes some to play an older one.
JOB_SPEC_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "backoffLimitPerIndex", "completionMode", "completions",
                   "managedBy", "manualSelector", "maxFailedIndexes", "parallelism", "podFailurePolicy",
                   "podReplacementPolicy", "selector", "successPolicy", "suspend", "template",
                   "ttlSecondsAfterFinished"}
_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>batch|rbac\.authorization\.k8s\.io)/v1)/namespaces/"
                   r"(?P<ns>[a-z0-9-]+)/(?P<resource>configmaps|pods|jobs|roles|rolebindings|events)"
                   r"(?:/(?P<name>[a-z0-9.-]+)(?P<log>/log)?)?$")
#: A list across all namespaces (``kubectl get -A``, ``launcher list -A``).
_ALL_NAMESPACES_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>batch)/v1)/(?P<resource>configmaps|pods|jobs|events)$")
_KINDS = {"configmaps": "ConfigMap", "jobs": "Job", "pods": "Pod", "roles": "Role", "rolebindings": "RoleBinding",
          "events": "Event"}
_GROUPS = {"configmaps": "", "pods": "", "events": "", "jobs": "batch", "roles": "rbac.authorization.k8s.io",
           "rolebindings": "rbac.authorization.k8s.io"}
_API_VERSIONS = {"": "v1", "batch": "batch/v1", "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1"}

#: A pod runner: (fake, pod, env) -> exit code, or None to leave the pod running. Logs go to fake.append_log.
Runner = Callable[["FakeCluster", dict, dict], "int | None"]


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


def field_selector_matches(selector: str, obj: dict) -> bool:
    """``involvedObject.name=x`` and ``metadata.name=x`` terms, the field selectors the launcher sends."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        path, _, value = term.replace("==", "=").partition("=")
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if current != value:
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
                 runner: Runner | None = None, run_pods: bool = True, claims: dict[str, Path] | None = None,
                 rbac: bool = True):
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
        self.processes: dict[str, subprocess.Popen | StageProcess] = {}
        self.secret_env: dict[str, tuple[str, ...]] = {}
        self.requests: list[Request] = []
        #: Pods whose log a client reads, once its stream has sent what was there (the tail): what a test
        #: waits on before writing more, as a request is recorded before its stream has read anything.
        self.log_streams: list[str] = []
        self.dry_runs: list[Request] = []
        #: Every request as the authorizer saw it: who, what, allowed or not.
        self.calls: list[Call] = []
        self.rbac = rbac
        #: The launcher's user and its Role (k8s/base/launcher-role.yaml, bound as an overlay binds it).
        self.launcher = Identity("User", user)
        self.base_roles = {"landscape-launcher": launcher_role()}
        self.base_bindings = [{"roleRef": {"kind": "Role", "name": "landscape-launcher"},
                               "subjects": [{"kind": "User", "name": user}]}]
        self.tokens: dict[str, Identity] = {token: self.launcher}
        #: The pod each service-account token was mounted in.
        self.token_pods: dict[str, str] = {}
        self.lock = threading.RLock()
        self._version = 1000
        self.runs: dict[tuple[str, str], JobRun] = {}
        self.stopping = False
        #: Nodes, claims, classes, the version (tests/support/fake_inventory.py) and Kueue (tests/support/fake_kueue.py).
        self.inventory = Inventory()
        #: The Job controller's retry back-off base in seconds (tests/support/fake_jobs.py); 0: a retry starts at once.
        self.backoff_seconds = 0.0
        self.kueue = FakeKueue(self)
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._tls: ThreadingHTTPServer | None = None
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                          daemon=True)]

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
        self.stopping = True
        self.kueue.wake()  # its thread sees ``stopping`` and ends
        for run in list(self.runs.values()):
            run.wake()  # as do the Job controllers' threads
        with self.lock:
            for process in self.processes.values():
                process.kill()
        for server in filter(None, (self._server, self._tls)):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        for run in list(self.runs.values()):
            run.thread.join(timeout=10)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no Job has a pod at work or one to start: every Job ended, suspended, or waiting only on
        pods its runner left running."""
        deadline = time.monotonic() + timeout
        while any(run.busy for run in list(self.runs.values())):
            if time.monotonic() > deadline:
                raise TimeoutError("the fake Job controller is still busy")
            time.sleep(0.05)

    # -- the pods' view of the API: a TLS endpoint and service-account tokens ----------------

    def _tls_endpoint(self) -> tuple[int, Path]:
        """Starts (once) the TLS listener pods reach, with a self-signed certificate for 127.0.0.1."""
        folder = self.work_dir / "apiserver-tls"
        with self.lock:
            if self._tls is None:
                folder.mkdir(parents=True, exist_ok=True)
                subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                "-nodes", "-keyout", str(folder / "key.pem"), "-out", str(folder / "ca.crt"),
                                "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                               check=True, capture_output=True)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(folder / "ca.crt", folder / "key.pem")
                server = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
                server.daemon_threads = True
                server.fake = self  # type: ignore[attr-defined]
                server.socket = context.wrap_socket(server.socket, server_side=True)
                self._tls = server
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                self._threads.append(thread)
                thread.start()
            return self._tls.server_address[1], folder / "ca.crt"

    def _mount_token(self, pod: dict) -> dict[str, str]:
        """What the kubelet gives a pod that mounts its service-account token: the folder and the API's address."""
        spec, ns, name = pod["spec"], pod["metadata"]["namespace"], pod["metadata"]["name"]
        if spec.get("automountServiceAccountToken") is False:
            return {}
        account = spec.get("serviceAccountName") or "default"
        port, ca = self._tls_endpoint()
        token = f"sa-{uuid.uuid4().hex}"
        with self.lock:
            self.tokens[token] = Identity("ServiceAccount", account, ns)
            self.token_pods[token] = name
        folder = self.work_dir / "serviceaccount" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "token").write_text(token)
        (folder / "ca.crt").write_bytes(ca.read_bytes())
        (folder / "namespace").write_text(ns)
        return {"KUBERNETES_SERVICE_HOST": LOOPBACK, "KUBERNETES_SERVICE_PORT": str(port),
                "LANDSCAPE_SERVICE_ACCOUNT_DIR": str(folder)}

    # -- the authorizer ------------------------------------------------------------------

    def _rules(self, identity: Identity, ns: str) -> list[dict]:
        roles = {name: role for (r, n, name), role in self.objects.items() if r == "roles" and n == ns}
        bindings = [b for (r, n, _), b in self.objects.items() if r == "rolebindings" and n == ns]
        return rules_of(identity, ns, {**self.base_roles, **roles}, [*self.base_bindings, *bindings])

    def _authorize(self, identity: Identity, verb: str, group: str, resource: str, name: str, ns: str,
                   pod: str = "") -> None:
        with self.lock:
            allowed = not self.rbac or allows(self._rules(identity, ns), verb, group, resource, name)
            self.calls.append(Call(identity, verb, group, resource, name, ns, allowed, pod))
        if not allowed:
            resource_name, _, sub = resource.partition("/")
            qualified = f"{resource_name}.{group}" if group else resource_name
            named = f' "{name}"' if name else ""
            subresource = f' subresource "{sub}"' if sub else ""
            raise ApiError(403, "Forbidden", f'{qualified}{named} is forbidden: User "{identity.username}" cannot '
                           f'{verb} resource "{resource_name}"{subresource} in API group "{group}" in the '
                           f'namespace "{ns}"', {"name": name, "group": group, "kind": resource_name})

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

    def touch(self, obj: dict) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        if obj.get("kind") == "Job":
            self.kueue.job_touched(obj)

    # -- the API -----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None,
               headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """Returns (status, JSON object or text, extra headers); raises ApiError."""
        request = Request(method, path, query, body)
        with self.lock:
            self.requests.append(request)
        token = (headers.get("authorization") or "").removeprefix("Bearer ")
        identity = self.tokens.get(token)
        if identity is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        answer = fake_inventory.handle(self, identity, method, path, body)
        if answer is not None:
            return (201 if method == "POST" else 200), answer, {}
        every = _ALL_NAMESPACES_PATH.match(path)
        if every and method == "GET" and (every["resource"] == "jobs") == bool(every["group"]):
            with self.lock:
                return 200, self._list(every["resource"], every["group"] or "", None, query), {}
        match = _PATH.match(path)
        if not match or _GROUPS[match["resource"]] != (match["group"] or ""):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name = match["ns"], match["resource"], match["name"]
        group = match["group"] or ""
        verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(
            method, "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list"))
        self._authorize(identity, verb, group, resource + ("/log" if match["log"] else ""), name or "", ns,
                        self.token_pods.get(token, ""))
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
                return 200, self._list(resource, group, ns, query), {}
            obj = self.objects.get((resource, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found',
                               {"name": name, "group": group, "kind": resource})
            if method == "GET" and match["log"]:
                return 200, ("log", ns, name, query), {}
            if method == "GET":
                return 200, copy.deepcopy(obj), {}
            if method == "PATCH" and resource == "jobs":
                return 200, self._patch_job(ns, name, obj, body or {}, headers, dry_run), {}
            if method == "PATCH" and resource == "configmaps":
                return 200, self._patch_config_map(ns, name, obj, body or {}, headers, dry_run), {}
            if method == "DELETE":
                propagation = query.get("propagationPolicy") or (body or {}).get("propagationPolicy") or "Background"
                if not dry_run:
                    self._delete(resource, ns, name)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "group": group, "kind": resource,
                                         "uid": obj["metadata"]["uid"]}, "propagationPolicy": propagation}, {}
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")

    def _patch_job(self, ns: str, name: str, job: dict, patch: dict, headers: dict[str, str], dry_run: bool) -> dict:
        """A JSON merge patch (or a strategic one, the same for the fields we patch) of a Job."""
        if not (headers.get("content-type") or "").startswith(("application/merge-patch+json",
                                                               "application/strategic-merge-patch+json")):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
        patched = _merge_patch(copy.deepcopy(job), patch)
        errors = (validate_job_update(job["spec"], patched["spec"]) + validate_job(patched["spec"])
                  + self.kueue.check_update(job, patched))
        if errors:
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: '
                           + ", ".join(f"{field}: {message}" for field, message in errors),
                           {"name": name, "group": "batch", "kind": "Job",
                            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in errors]})
        if dry_run:
            return patched
        self.objects[("jobs", ns, name)] = patched
        self.touch(patched)
        if (ns, name) in self.runs:
            self.runs[(ns, name)].kick()
        self.kueue.wake()
        return copy.deepcopy(patched)

    def _patch_config_map(self, ns: str, name: str, config_map: dict, patch: dict, headers: dict[str, str],
                          dry_run: bool) -> dict:
        """A JSON merge patch of a ConfigMap; an immutable one keeps its data (422), its metadata may change
        (labels, ``ownerReferences``), as ``ValidateConfigMapUpdate`` allows."""
        if not (headers.get("content-type") or "").startswith("application/merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
        patched = _merge_patch(copy.deepcopy(config_map), patch)
        for field in ("uid", "name", "namespace", "creationTimestamp"):
            patched["metadata"][field] = config_map["metadata"].get(field)
        if config_map.get("immutable"):
            changed = [f for f in ("data", "binaryData", "immutable") if patched.get(f) != config_map.get(f)]
            if changed:
                raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: '
                               + ", ".join(f"{f}: Forbidden: field is immutable when `immutable` is set"
                                           for f in changed),
                               {"name": name, "kind": "ConfigMap", "causes": [
                                   {"reason": "FieldValueForbidden", "field": f,
                                    "message": "Forbidden: field is immutable when `immutable` is set"}
                                   for f in changed]})
        if dry_run:
            return patched
        self.objects[("configmaps", ns, name)] = patched
        self.touch(patched)
        return copy.deepcopy(patched)

    def _list(self, resource: str, group: str, ns: str | None, query: dict[str, str]) -> dict:
        """A list by label selector (and, for events, ``fieldSelector=involvedObject.name=...``);
        ``ns`` None: every namespace."""
        items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                 if r == resource and (ns is None or n == ns)
                 and selector_matches(query.get("labelSelector", ""), o["metadata"].get("labels") or {})
                 and field_selector_matches(query.get("fieldSelector", ""), o)]
        for item in items:
            item.pop("kind", None), item.pop("apiVersion", None)
        return {"kind": f"{_KINDS[resource]}List", "apiVersion": _API_VERSIONS[group],
                "metadata": {"resourceVersion": str(self._version)}, "items": items}

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
            default_job(body.setdefault("spec", {}))
            self.kueue.on_create(ns, body)
            errors = validate_job(body["spec"])
            if errors:
                raise ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: '
                               + ", ".join(f"{field}: {message}" for field, message in errors),
                               {"name": name, "group": group, "kind": kind, "causes": [
                                   {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in errors]})
        if kind == "RoleBinding":
            self._check_escalation(ns, name, body)
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
                self.runs[(ns, name)] = JobRun(self, ns, name)
                self.runs[(ns, name)].start()
            if kind == "Job":
                self.kueue.wake()
        return copy.deepcopy(obj)

    def _check_escalation(self, ns: str, name: str, binding: dict) -> None:
        """RBAC's escalation check: whoever binds a Role must hold what it grants (or the Role must exist)."""
        ref = binding.get("roleRef", {})
        role = self.objects.get(("roles", ns, ref.get("name", "")))
        if role is None:
            raise ApiError(404, "NotFound", f'roles.rbac.authorization.k8s.io "{ref.get("name")}" not found',
                           {"name": ref.get("name"), "group": "rbac.authorization.k8s.io", "kind": "roles"})
        if self.rbac and not covers(self._rules(self.launcher, ns), role.get("rules", [])):
            raise ApiError(403, "Forbidden", f'rolebindings.rbac.authorization.k8s.io "{name}" is forbidden: user '
                           f'"{self.user}" is attempting to grant RBAC permissions not currently held')

    def _delete(self, resource: str, ns: str, name: str) -> None:
        """Deletes the object, then collects its dependents as the garbage collector does (background
        propagation): a dependent whose owners are all gone is deleted, one with an owner left loses only
        its references to the absent ones. Owners are matched by ``uid`` in the dependent's namespace
        (an owner deleted and recreated under its name is another object)."""
        with self.lock:
            obj = self.objects.pop((resource, ns, name), None)
            if obj is None:
                return
            if resource == "pods" and name in self.processes:
                self.processes[name].kill()
            if resource == "jobs":
                self.kueue.wake()
                if (ns, name) in self.runs:
                    self.runs[(ns, name)].wake()  # its controller kills what runs and ends
            uid = obj["metadata"]["uid"]
            for key, other in list(self.objects.items()):
                refs = other["metadata"].get("ownerReferences") or []
                if key[1] != ns or not any(ref.get("uid") == uid for ref in refs) or key not in self.objects:
                    continue
                alive = [ref for ref in refs if ref.get("uid") in self._uids(ns)]
                if alive:
                    other["metadata"]["ownerReferences"] = alive
                    self.touch(other)
                else:
                    self._delete(*key)

    def _uids(self, ns: str) -> set[str]:
        return {o["metadata"]["uid"] for (_, n, _), o in self.objects.items() if n == ns}

    def expire(self, ns: str, name: str, ttl: float) -> None:
        """The TTL-after-finished controller: deletes the finished Job ``ttl`` seconds from now (background
        propagation: its pods, and what it alone owns, go with it). A Job deleted or recreated meanwhile
        is left be. TTLs longer than a test (over a minute) are not timed."""
        with self.lock:
            job = self.objects.get(("jobs", ns, name))
        if job is None or ttl > 60:
            return
        uid = job["metadata"]["uid"]

        def fire() -> None:
            with self.lock:
                current = self.objects.get(("jobs", ns, name))
                if current is not None and current["metadata"]["uid"] == uid and not self.stopping:
                    self._delete("jobs", ns, name)

        timer = threading.Timer(ttl, fire)
        timer.daemon = True
        timer.start()

    # -- pods that wait, and events (for launcher status) --------------------------------

    def add_event(self, kind: str, name: str, reason: str, message: str, type_: str = "Warning",
                  namespace: str = "landscape") -> None:
        """A core/v1 Event about an object, as the kubelet, scheduler or Job controller records one."""
        with self.lock:
            event_name = f"{name}.{uuid.uuid4().hex[:16]}"
            self.objects[("events", namespace, event_name)] = self._stamp({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": event_name},
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
                "reason": reason, "message": message, "type": type_, "count": 1,
                "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "fake"}}, namespace)

    def hold_waiting(self, name: str, reason: str, message: str, namespace: str = "landscape") -> None:
        """Leaves the pod Pending with its container waiting (``ImagePullBackOff``, ``CreateContainerConfigError``
        ...), and the kubelet's Warning event; for an image, the message names it as the kubelet does."""
        with self.lock:
            pod = self.objects.get(("pods", namespace, name))
            if pod is None:
                return
            image = pod["spec"]["containers"][0].get("image", "")
            pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                             "containerStatuses": [{"name": "landscape", "ready": False, "restartCount": 0,
                                                    "image": image, "state": {"waiting": {
                                                        "reason": reason, "message": message}}}]}
            self.touch(pod)
        self.add_event("Pod", name, "Failed", message,
                       namespace=namespace)

    def hold_unschedulable(self, name: str, message: str, namespace: str = "landscape") -> None:
        """Leaves the pod Pending with no node: PodScheduled=False, reason Unschedulable, the scheduler's
        message, and its FailedScheduling event."""
        with self.lock:
            pod = self.objects.get(("pods", namespace, name))
            if pod is None:
                return
            pod["status"] = {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastTransitionTime": now()}]}
            self.touch(pod)
        self.add_event("Pod", name, "FailedScheduling", message, namespace=namespace)

    # -- the kubelet's side of a Job's pods (tests/support/fake_jobs.py drives them) ---------------

    def new_pod(self, ns: str, job_name: str, spec: dict, index: int | None) -> str:
        """Creates a Job's pod, as the Job controller does, and returns its name."""
        with self.lock:
            job = self.objects[("jobs", ns, job_name)]
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
                                     "uid": job["metadata"]["uid"], "controller": True,
                                     "blockOwnerDeletion": True}]},
                "spec": template["spec"], "status": {"phase": "Pending"}}, ns)
            self.objects[("pods", ns, name)] = pod
            self.logs[name] = ""
            return name

    def kill_pod(self, ns: str, name: str, why: str, delete: bool = False) -> None:
        """Ends a pod the controller gives up on (deadline, Job failed, suspended): its process killed,
        the pod Failed, or deleted."""
        with self.lock:
            process = self.processes.get(name)
            if process is not None:
                process.kill()
            pod = self.objects.get(("pods", ns, name))
            if pod is not None and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                self._set_pod(ns, name, "Failed", {"terminated": {"exitCode": 137, "reason": "Error",
                                                                  "message": why, "finishedAt": now()}})
            if delete:
                self.objects.pop(("pods", ns, name), None)

    def disrupt(self, name: str, reason: str = "PreemptionByScheduler", namespace: str = "landscape") -> None:
        """Preempts a running pod as the scheduler (or an eviction) does: the ``DisruptionTarget``
        condition first, then the container killed; the pod ends Failed (exit 137)."""
        with self.lock:
            pod = self.objects[("pods", namespace, name)]
            pod["status"].setdefault("conditions", []).append({
                "type": "DisruptionTarget", "status": "True", "reason": reason,
                "message": "Kubernetes Scheduler: preempting to accommodate a higher priority pod",
                "lastTransitionTime": now()})
            self.touch(pod)
            process = self.processes.get(name)
        if process is not None:
            process.kill()

    def evict(self, name: str, message: str, reason: str = "TerminationByKubelet", grace: float = 1.0,
              namespace: str = "landscape", block: bool = True) -> None:
        """Evicts a running pod as the kubelet does under node pressure: the ``DisruptionTarget`` condition
        (reason ``TerminationByKubelet``, the eviction's message), SIGTERM, and SIGKILL ``grace`` seconds later
        (the kubelet's hard-eviction grace period); its Evicted event.

        ``block`` False: returns once SIGTERM is sent, the SIGKILL after ``grace`` left to a thread, for a
        caller the pod itself waits on (a storage proxy holding the pod's request)."""
        with self.lock:
            pod = self.objects[("pods", namespace, name)]
            pod["status"].setdefault("conditions", []).append({
                "type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": now()})
            self.touch(pod)
            process = self.processes.get(name)
        self.add_event("Pod", name, "Evicted", message, namespace=namespace)
        if process is None:
            return
        process.terminate()

        def kill_after_grace() -> None:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()

        if block:
            kill_after_grace()
        else:
            threading.Thread(target=kill_after_grace, daemon=True, name=f"evict-{name}").start()

    def _set_pod(self, ns: str, name: str, phase: str, state: dict) -> None:
        with self.lock:
            pod = self.objects.get(("pods", ns, name))
            if pod is not None:
                conditions = pod["status"].get("conditions")
                pod["status"] = {"phase": phase, "startTime": now(), "containerStatuses": [
                    {"name": "landscape", "ready": phase == "Running", "restartCount": 0, "state": state}]}
                if conditions:
                    pod["status"]["conditions"] = conditions
                self.touch(pod)

    def run_pod(self, ns: str, name: str) -> int | None:
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
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "").startswith("metadata.labels['"):
                label = item["valueFrom"]["fieldRef"]["fieldPath"][len("metadata.labels['"):-2]
                env[item["name"]] = pod["metadata"]["labels"].get(label, "")
        index = pod["metadata"]["annotations"].get(INDEX_KEY)
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = index
        env["HOSTNAME"] = pod["spec"].get("hostname", pod["metadata"]["name"])
        env.update(self._mount_token(pod))
        return env


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a JSON merge patch applied to ``target``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _pod_server(env: dict) -> StageServer:
    """This pytest process's stage server for the fake's pods (landscape_job.forkserver), started with
    what a pod's environment sets of an interpreter's start-up (PYTHON*): a pod that differs starts afresh."""
    base = {k: v for k, v in env.items() if k.startswith("PYTHON")}
    return shared({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **base})


def run_subprocess(fake: FakeCluster, pod: dict, env: dict) -> int:
    """Runs the container's ``landscape-job`` command as ``python -m landscape_job.cli``; its output is the log.

    Without ``command`` the image's ENTRYPOINT runs: NVIDIA's script, which execs ``landscape-job``.
    The process is forked from an interpreter that has imported torch already (the local runner's stage
    server): the same argv, environment, folder, output, exit code and signals, without ~2 s of start-up a pod.
    """
    container = pod["spec"]["containers"][0]
    command = (container.get("command") or ["landscape-job"]) + container.get("args", [])
    name = pod["metadata"]["name"]
    if not command or command[0] != "landscape-job":
        fake.append_log(name, f"exec: {command[:1]} not found in the image\n")
        return 127
    read, write = os.pipe()
    try:
        process = _pod_server(env).start(command[1:], env, stdout=write, cwd=env.get("HOME"))
    finally:
        os.close(write)  # the pod holds it now: EOF once it (and anything it started) has exited
    with fake.lock:
        fake.processes[name] = process
    with open(read, encoding="utf-8", errors="replace") as output:
        for line in output:
            fake.append_log(name, line)
    code = process.wait()
    with fake.lock:
        fake.processes.pop(name, None)
    return 128 - code if code < 0 else code  # killed by a signal: 128 + its number, as a container runtime says


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
            if len(text) > sent:
                try:
                    self.wfile.write(text[sent:].encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client stopped following (`logs -f` ended): as a real API server, say nothing
                sent = len(text)
            if first:
                first = False
                with fake.lock:
                    fake.log_streams.append(name)
            if not follow or ended:
                return
            time.sleep(0.05)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve
