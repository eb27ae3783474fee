"""The prepare pod's last step on a cluster: release the run's evaluate and merge Jobs.

They were created suspended, so no GPU pod waits on prepare (``launcher.kubernetes.gate``). Once
prepare's output is in storage, this patches each of them with the patch the launcher
rendered into ``LANDSCAPE_RELEASE`` (``{"spec": {"suspend": false}}``, or under Kueue the
queue-name label that hands them to Kueue), through the run's Role. Patching twice is
harmless, so a retried prepare pod may release again.

A release that fails is prepare's failure (exit 1, retried): without it the run would
never go on. A Job that is gone (404) means the run was cancelled; a refusal (403), a Role
missing or not bound to the pod's service account.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Mapping

from landscape_job.base.errors import StageError
from landscape_job.runtime.events import post_event
from landscape_job.runtime.kube import MERGE_PATCH, ApiError, in_cluster, job_path

RELEASE_ENV = "LANDSCAPE_RELEASE"
#: Under Kueue, what the evaluate pod finishing the last shard releases (merge), in the same form.
MERGE_RELEASE_ENV = "LANDSCAPE_RELEASE_MERGE"
#: Tries of one patch against an API server that does not answer (it restarts, say).
TRIES = 5


def release_next_stages(log: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                        environ: Mapping[str, str] = os.environ, env_name: str = RELEASE_ENV) -> None:
    """Releases the Jobs ``LANDSCAPE_RELEASE`` (or ``env_name``) names; nothing to do where it is unset (a local run)."""
    raw = environ.get(env_name)
    if not raw:
        return
    plan = json.loads(raw)
    namespace = environ.get("LANDSCAPE_NAMESPACE", "")
    api = in_cluster(environ)
    if api is None:
        raise StageError(f"prepare: {env_name} is set but this pod has no service-account token to release "
                         f"{', '.join(plan['jobs'])} with (automountServiceAccountToken?)")
    for name in plan["jobs"]:
        for attempt in range(TRIES):
            try:
                api.request("PATCH", job_path(namespace, name), plan["patch"], MERGE_PATCH)
                break
            except ApiError as err:
                if err.code == 404:
                    raise StageError(f"prepare: job {name} is gone (the run was cancelled?): {err.message}") from None
                if err.code == 403:
                    raise StageError(f"prepare: not allowed to release job {name}: {err.message}; the run's Role "
                                     f"and RoleBinding (<run>-pods) must exist and name this pod's service "
                                     f"account") from None
                if attempt == TRIES - 1 or err.code < 500 and err.code != 429:
                    raise StageError(f"prepare: releasing job {name} failed: {err}") from None
            except OSError as err:
                if attempt == TRIES - 1:
                    raise StageError(f"prepare: cannot reach the Kubernetes API to release job {name}: {err}") \
                        from None
            sleep(2.0 ** attempt)
        log(f"prepare: released job {name}")
        post_event(name, "Released", f"released by pod {environ.get('HOSTNAME', '?')}: its stage may start", log,
                   environ=environ)
