"""The launcher's one side-effecting seam over the Kubernetes API: a thin class over the official client.

Everything above it works on plain dicts (``launcher.kubernetes.render``); everything here is I/O.
Objects are checked against the client's models on the way out and come back as the
server's JSON (plain dicts again). Every create asks for ``fieldValidation=Strict``, so a
server older than the client refuses a field it does not know (``backoffLimitPerIndex``
before 1.28, say) instead of silently dropping it and running something else.

Every API error a user can cause (expired credentials, missing RBAC, a run id taken, an
object the server rejects, an unreachable server) becomes one ``UserError`` line that says
what to do; anything else becomes a ``StageError`` line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from landscape_job.base.errors import StageError, UserError
from launcher.kubernetes.pod_state import Event

try:  # the [launcher] extra: pods and local runs do without it
    import urllib3
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
except ImportError as _missing:  # pragma: no cover - the dev install has it
    raise UserError(f"the cluster commands need the Kubernetes client ({_missing.name} is not installed): "
                    "pip install 'landscape[launcher]'") from None

try:  # recent kubernetes clients check arguments with pydantic before sending; older ones do not
    from pydantic import ValidationError as ClientValidationError
except ImportError:  # pragma: no cover
    class ClientValidationError(Exception):  # type: ignore[no-redef]
        """Never raised."""

#: The namespace when neither -n, the spec nor the kubeconfig context names one (k8s/base's).
DEFAULT_NAMESPACE = "landscape"
#: The label every ConfigMap anchoring a run carries (with ``app.kubernetes.io/component=spec``).
RUNS_SELECTOR = "app.kubernetes.io/part-of=landscape,app.kubernetes.io/component=spec"
#: (connect, read) seconds: a black-holed API server fails in seconds, not minutes.
TIMEOUT = (10, 60)
#: Kueue's API group and version, as ``CustomObjectsApi`` takes them.
KUEUE = ("kueue.x-k8s.io", "v1beta1")
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_RESOURCES = {"ConfigMap": "configmaps", "Job": "jobs", "Role": "roles", "RoleBinding": "rolebindings"}


def _one_line(text: object, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def what_of(resource: str, name: str | None) -> str:
    return f"{resource} {name}" if name else resource


def _status_body(err: ApiException) -> dict[str, Any]:
    """The server's ``Status`` object of an error response (empty if the body is not one)."""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


class Cluster:
    """One API server, one namespace; each method is one request (or one stream)."""

    def __init__(self, api: client.ApiClient, namespace: str, context: str):
        self.api, self.namespace, self.context = api, namespace, context
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None,
                namespace: str | None = None) -> "Cluster":
        """From the kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) and ``--context``,
        or the pod's service account when there is no kubeconfig and the process runs in a pod.

        The namespace is ``namespace`` if given, else the context's, else ``landscape``.
        """
        path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        in_cluster = (not kubeconfig and not any(Path(p).expanduser().exists() for p in path.split(os.pathsep))
                      and "KUBERNETES_SERVICE_HOST" in os.environ)
        try:
            if in_cluster:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                ns = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if _SERVICE_ACCOUNT_NAMESPACE.exists() else None
                return cls(client.ApiClient(configuration), namespace or ns or DEFAULT_NAMESPACE, "(in-cluster)")
            contexts, current = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c["name"] == context), None) if context else current
            if chosen is None:
                names = ", ".join(sorted(c["name"] for c in contexts))
                raise UserError(f"--context {context}: no such context in the kubeconfig {path} (it has: {names})")
            api = config.new_client_from_config(config_file=path, context=chosen["name"])
        except ConfigException as err:
            raise UserError(f"kubeconfig {path}: {_one_line(err).rstrip('.')}; set KUBECONFIG or pass --kubeconfig / "
                            f"--context") from None
        ns = (chosen.get("context") or {}).get("namespace")
        return cls(api, namespace or ns or DEFAULT_NAMESPACE, chosen["name"])

    @property
    def host(self) -> str:
        return self.api.configuration.host

    def close(self) -> None:
        self.api.close()

    # -- one request, errors translated -------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, verb: str, resource: str, name: str | None = None,
              on_404: str | None = None, on_409: str | None = None, timeout: Any = TIMEOUT,
              missing_ok: bool = False, on_400: str | None = None, **kwargs: Any) -> Any:
        try:
            return fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        except ApiException as err:
            if missing_ok and err.status == 404 and (_status_body(err).get("details") or {}).get("kind") != "namespaces":
                return None
            if on_400 is not None and err.status == 400:
                raise UserError(f"{on_400}: {_one_line(_status_body(err).get('message') or err.reason)}") from None
            raise self._api_error(err, verb, resource, name, on_404, on_409) from None
        except ClientValidationError as err:
            problem = err.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise UserError(f"{what_of(resource, name)}: the Kubernetes client refuses {where}: {problem['msg']}") \
                from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise UserError(f"cannot reach the Kubernetes API at {self.host} (kubeconfig context {self.context}): "
                            f"{_one_line(reason, 160)}; check that the cluster is up and the context is right "
                            f"(--context, kubectl config current-context)") from None

    def _json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = self._call(fn, *args, **kwargs)
        return None if response is None else json.loads(response.data)

    def _api_error(self, err: ApiException, verb: str, resource: str, name: str | None,
                   on_404: str | None, on_409: str | None) -> Exception:
        status = _status_body(err)
        message = _one_line(status.get("message") or err.reason or "")
        what = what_of(resource, name)
        if err.status == 401:
            return UserError(f"unauthorized: the Kubernetes API at {self.host} rejected the credentials of "
                             f"kubeconfig context {self.context}; log in again or refresh the token")
        if err.status == 403:
            user = re.search(r'User "([^"]+)"', message)
            account = f"the account {user.group(1)}" if user else "your account"
            return UserError(f"forbidden: {account} cannot {verb} {resource} in namespace {self.namespace}; ask a "
                             f"cluster admin to bind you the landscape-launcher Role of k8s/base")
        if err.status == 404:
            details = status.get("details") or {}
            if details.get("kind") == "namespaces":
                return UserError(f"namespace {self.namespace} does not exist; create it with kubectl apply -k "
                                 f"k8s/base, or choose another with -n")
            return UserError(on_404 or f"{what} not found in namespace {self.namespace}")
        if err.status == 409:
            return UserError(on_409 or f"{what} already exists in namespace {self.namespace}")
        if err.status in (400, 422):
            causes = (status.get("details") or {}).get("causes") or []
            fields = ", ".join(sorted({c["field"] for c in causes if c.get("field")}))
            hint = ("; the cluster's Kubernetes may be too old for that field (check kubectl version)"
                    if "unknown field" in message else "")
            return UserError(f"the API server rejected {what}: {message}"
                             + (f" (fields: {fields})" if fields and fields not in message else "") + hint)
        return StageError(f"Kubernetes API at {self.host}: {verb} {what} failed: HTTP {err.status} "
                          f"{status.get('reason') or err.reason or ''}: {message}")

    # -- the requests the launcher makes ------------------------------------------------

    def create(self, obj: dict[str, Any], dry_run: bool = False, on_409: str | None = None) -> dict[str, Any]:
        """Creates a ConfigMap, Job, Role or RoleBinding as rendered; ``dry_run``: the server checks it all
        and stores nothing."""
        kind = obj["kind"]
        if kind not in _RESOURCES:
            raise ValueError(f"Cluster.create: unsupported kind {kind}")
        fn = {"ConfigMap": self.core.create_namespaced_config_map, "Job": self.batch.create_namespaced_job,
              "Role": self.rbac.create_namespaced_role,
              "RoleBinding": self.rbac.create_namespaced_role_binding}[kind]
        return self._json(fn, self.namespace, obj, field_validation="Strict", dry_run="All" if dry_run else None,
                          verb="create", resource=_RESOURCES[kind], name=obj["metadata"]["name"], on_409=on_409)

    def get_config_map(self, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None if there is none of that name."""
        return self._json(self.core.read_namespaced_config_map, name, self.namespace, verb="get",
                          resource="configmaps", name=name, missing_ok=True)

    def list_jobs(self, selector: str, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """The Jobs matching the label selector, in the namespace or (``all_namespaces``) everywhere."""
        if all_namespaces:
            return self._json(self.batch.list_job_for_all_namespaces, label_selector=selector,
                              verb="list", resource="jobs")["items"]
        return self._json(self.batch.list_namespaced_job, self.namespace, label_selector=selector,
                          verb="list", resource="jobs")["items"]

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        return self._json(self.core.list_namespaced_pod, self.namespace, label_selector=selector,
                          verb="list", resource="pods")["items"]

    def list_runs(self, selector: str = "", all_namespaces: bool = False) -> list[dict[str, Any]]:
        """The ConfigMaps that anchor runs, in the namespace or everywhere; ``selector``: more labels to match."""
        labels = RUNS_SELECTOR + (f",{selector}" if selector else "")
        if all_namespaces:
            return self._json(self.core.list_config_map_for_all_namespaces, label_selector=labels,
                              verb="list", resource="configmaps")["items"]
        return self._json(self.core.list_namespaced_config_map, self.namespace, label_selector=labels,
                          verb="list", resource="configmaps")["items"]

    def list_events(self, name: str) -> list[Event]:
        """The events about the object of that name (a Job, a pod), as ``kubectl describe`` shows them."""
        items = self._json(self.core.list_namespaced_event, self.namespace,
                           field_selector=f"involvedObject.name={name}", verb="list", resource="events")["items"]
        return [Event.from_api(item) for item in items]

    def delete_job(self, name: str, propagation: str = "Background") -> bool:
        """Deletes the Job and (by propagation) its pods; False if it was already gone."""
        # _json reads the reply: a response left unread would be reset on close, not returned to the pool
        return self._json(self.batch.delete_namespaced_job, name, self.namespace, propagation_policy=propagation,
                          verb="delete", resource="jobs", name=name, missing_ok=True) is not None

    def delete_rbac(self, selector: str) -> list[str]:
        """Deletes the Roles and RoleBindings that carry the labels (a run's own, if it was rendered one).

        Returns what was deleted, as ``kind/name``. A server without them or an account
        that may not list them leaves them be: an UserError names what is left.
        """
        deleted = []
        for kind, lister, deleter in (("role", self.rbac.list_namespaced_role, self.rbac.delete_namespaced_role),
                                      ("rolebinding", self.rbac.list_namespaced_role_binding,
                                       self.rbac.delete_namespaced_role_binding)):
            found = self._json(lister, self.namespace, label_selector=selector, verb="list",
                               resource=f"{kind}s", missing_ok=True)
            for item in (found or {}).get("items", []):
                name = item["metadata"]["name"]
                if self._json(deleter, name, self.namespace, verb="delete", resource=f"{kind}s", name=name,
                              missing_ok=True) is not None:
                    deleted.append(f"{kind}/{name}")
        return deleted

    def pod_log(self, name: str, container: str, tail: int | None = None, follow: bool = False,
                previous: bool = False) -> Iterator[str]:
        """The pod's log, line by line; ``follow`` streams until the container ends; ``previous``: the log
        of the container's previous run (before a restart)."""
        kwargs: dict[str, Any] = {"container": container, "follow": follow}
        if previous:
            kwargs["previous"] = True
        if tail is not None:
            kwargs["tail_lines"] = tail
        response = self._call(self.core.read_namespaced_pod_log, name, self.namespace, verb="get",
                              resource="pods/log", name=name, timeout=None if follow else TIMEOUT,
                              on_404=f"pod {name} not found in namespace {self.namespace} (deleted, or "
                                     f"removed after the Job's ttlSecondsAfterFinished)",
                              on_400=f"pod {name} has no log to show yet", **kwargs)
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StageError(f"the log stream of pod {name} broke off: {_one_line(err, 160)}") from None
        finally:
            response.release_conn()

    def delete_config_map(self, name: str, propagation: str = "Background", on_404: str | None = None,
                          missing_ok: bool = False) -> bool:
        """Deletes the ConfigMap; its dependents (a run's Role and RoleBinding) are garbage-collected.
        ``missing_ok``: False if it was already gone (the collector took it with the run's Jobs)."""
        return self._json(self.core.delete_namespaced_config_map, name, self.namespace, propagation_policy=propagation,
                          verb="delete", resource="configmaps", name=name, on_404=on_404,
                          missing_ok=missing_ok) is not None

    def patch_config_map(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the ConfigMap's metadata (an immutable one's data cannot change)."""
        return self._json(self.core.patch_namespaced_config_map, name, self.namespace, patch,
                          _content_type="application/merge-patch+json", verb="patch", resource="configmaps",
                          name=name)

    # -- what launcher doctor and submit's preflight read (launcher.kubernetes.inventory) ------

    def read(self, what: str, name: str | None = None) -> tuple[int, Any]:
        """One GET (a list where ``name`` is None) of a cluster fact, as (HTTP status, JSON or None).

        ``what`` names it: ``version``, ``nodes``, ``persistentvolumeclaims``, ``storageclasses``,
        ``runtimeclasses``, ``localqueues``, ``clusterqueues``. A 403 or a 404 is an answer here,
        not an error: doctor says what it could not read, and submit's preflight skips that check.
        Anything else (unreachable, 401, 5xx) is the usual one-line error.
        """
        custom = client.CustomObjectsApi(self.api)
        calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
            "version": (client.VersionApi(self.api).get_code, ()),
            "nodes": (self.core.list_node, ()),
            "persistentvolumeclaims": (self.core.read_namespaced_persistent_volume_claim, (name, self.namespace)),
            "storageclasses": (client.StorageV1Api(self.api).read_storage_class, (name,)),
            "runtimeclasses": (client.NodeV1Api(self.api).read_runtime_class, (name,)),
            "localqueues": ((custom.get_namespaced_custom_object, (*KUEUE, self.namespace, "localqueues", name))
                            if name else (custom.list_namespaced_custom_object,
                                          (*KUEUE, self.namespace, "localqueues"))),
            "clusterqueues": (custom.get_cluster_custom_object, (*KUEUE, "clusterqueues", name)),
        }
        fn, args = calls[what]
        try:
            response = fn(*args, _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as err:
            if err.status in (403, 404):
                return err.status, None
            raise self._api_error(err, "get", what, name, None, None) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise UserError(f"cannot reach the Kubernetes API at {self.host} (kubeconfig context {self.context}): "
                            f"{_one_line(reason, 160)}; check that the cluster is up and the context is right "
                            f"(--context, kubectl config current-context)") from None
        return 200, json.loads(response.data)

    def can_i(self, verb: str, resource: str, group: str = "", namespaced: bool = True) -> bool:
        """Whether this account may ``verb`` the ``resource`` (a SelfSubjectAccessReview, as ``kubectl auth can-i``)."""
        resource, _, subresource = resource.partition("/")
        attributes = {"verb": verb, "resource": resource, "group": group,
                      **({"namespace": self.namespace} if namespaced else {}),
                      **({"subresource": subresource} if subresource else {})}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        answer = self._json(client.AuthorizationV1Api(self.api).create_self_subject_access_review, body,
                            verb="create", resource="selfsubjectaccessreviews")
        return bool((answer.get("status") or {}).get("allowed"))
