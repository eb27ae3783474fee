"""The few Kubernetes API requests a pod makes itself, with its own service-account token.

No Kubernetes client library (``landscape_job`` does not depend on one): one JSON request
over the in-cluster TLS endpoint, the CA and token the kubelet mounts, the token re-read
each time (it rotates). The prepare pod releases the next stages with it
(``landscape_job.runtime.release``); the merge pod reads its evaluate Job (``landscape_job.runtime.jobwatch``).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

#: Where the kubelet mounts a pod's service-account token, CA and namespace.
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: Another place for that folder: the test double of the kubelet (tests/support/fake_k8s.py) mounts it there.
SERVICE_ACCOUNT_ENV = "LANDSCAPE_SERVICE_ACCOUNT_DIR"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """An HTTP error answer of the API server: ``code`` and the server's message."""

    def __init__(self, code: int, message: str):
        super().__init__(f"HTTP {code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class InCluster:
    """The API server as this pod reaches it."""

    base: str
    token_file: Path
    ca_file: Path | None = None
    timeout: float = 10.0

    def request(self, method: str, path: str, body: dict | None = None, content_type: str = "application/json") -> dict:
        """One request; the answer's JSON. Raises ``ApiError`` for an HTTP error, OSError when unreachable."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token_file.read_text().strip()}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read() or b"{}").get("message") or err.reason
            except ValueError:
                message = err.reason
            raise ApiError(err.code, " ".join(str(message).split())[:300]) from None


def in_cluster(environ: Mapping[str, str] = os.environ) -> InCluster | None:
    """The API as seen from this pod, or None outside a pod (or in one without a token)."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    folder = Path(environ.get(SERVICE_ACCOUNT_ENV) or SERVICE_ACCOUNT)
    if not host or not (folder / "token").is_file():
        return None
    host = f"[{host}]" if ":" in host else host
    ca = folder / "ca.crt"
    return InCluster(f"https://{host}:{port}", folder / "token", ca if ca.is_file() else None)


def job_path(namespace: str, name: str) -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
