"""Whether the run's evaluate Job has given up on some shards, asked of the Kubernetes API.

The merge pod waits for shards in storage; a shard whose index exhausted its retries
will never come, and waiting out the merge deadline (days) for it helps nobody. So the
merge pod reads its evaluate Job's status, with its own service account (the Role in
k8s/base allows get on jobs), and fails at once naming the failed indexes. One GET with
the mounted token over the in-cluster TLS endpoint: no Kubernetes client library, which
``landscape_job`` does not depend on.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

JobReader = Callable[[], dict]


def job_failure(job: dict) -> str | None:
    """Why the Job's missing shards will never arrive, or None while they still may.

    Only ``Failed`` is terminal for the Job; ``failedIndexes`` lists indexes whose own
    retry budget (backoffLimitPerIndex) is spent, which no later pod will retry.
    """
    status = job.get("status") or {}
    failed = status.get("failedIndexes")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            reason = condition.get("reason") or "Failed"
            detail = f": {condition['message']}" if condition.get("message") else ""
            return f"the evaluate Job failed ({reason}{detail})" + (f"; failed indexes: {failed}" if failed else "")
    if failed:
        return f"evaluate Job indexes {failed} failed and will not be retried; see their pods' logs"
    return None


def job_reader(url: str, token_file: Path, ca_file: Path | None = None, timeout: float = 10.0) -> JobReader:
    """A function that GETs one Job as JSON; the token is re-read each time (it rotates)."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file and url.startswith("https") else None

    def read() -> dict:
        request = urllib.request.Request(url, headers={
            "Authorization": f"Bearer {token_file.read_text().strip()}", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.load(response)

    return read


def in_cluster_reader(job_name: str | None, namespace: str | None) -> JobReader | None:
    """The reader for this pod's evaluate Job, or None outside a cluster."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token = SERVICE_ACCOUNT / "token"
    if not (job_name and namespace and host and token.is_file()):
        return None
    host = f"[{host}]" if ":" in host else host
    url = f"https://{host}:{port}/apis/batch/v1/namespaces/{namespace}/jobs/{job_name}"
    return job_reader(url, token, SERVICE_ACCOUNT / "ca.crt")


def failure_check(reader: JobReader, log: Callable[[str], None]) -> Callable[[], str | None]:
    """Wraps a reader for the merge stage's wait: API hiccups are logged once, never fatal."""
    warned = False

    def check() -> str | None:
        nonlocal warned
        try:
            return job_failure(reader())
        except (OSError, urllib.error.URLError, ValueError) as err:
            if not warned:
                log(f"merge: cannot read the evaluate Job's status ({err}); waiting on storage alone")
                warned = True
            return None

    return check
