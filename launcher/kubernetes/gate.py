"""Stage gating: no GPU pod exists before prepare has succeeded.

The evaluate and merge Jobs are created with ``suspend: true``: the Job controller makes
no pod for a suspended Job, and does not count its ``activeDeadlineSeconds`` (it counts
from ``status.startTime``, which it sets when the Job resumes). The prepare pod, once
its work is in storage, releases them with one merge patch each (``landscape_job.runtime.release``),
through a Role of the run (``<run>-pods``) that allows exactly that:

* ``patch`` on ``jobs`` limited by ``resourceNames`` to this run's evaluate and merge Jobs
  (the prepare pod's release);
* ``get`` on ``jobs`` limited to this run's evaluate Job (the merge pod's watch, which ends
  merge as soon as evaluate fails, is deleted or is out of reach);
* ``create`` on ``events``: the run's stage transitions as Events on its Jobs
  (``landscape_job.runtime.events``), for ``kubectl describe`` and alerting.

``patch`` cannot be narrowed to the ``suspend`` field by RBAC: a pod holding it could also
change what a suspended Job still lets change (parallelism, deadline, scheduling
directives), of its own run only. A ValidatingAdmissionPolicy that lets this account's
patches touch nothing but ``spec.suspend`` and the queue label would close that, where an
admin wants it.

It is bound to the run's service account (``kubernetes.service_account``), not to a
per-run account: the pods keep the identity a cluster may tie cloud access to (workload
identity), and the pods of other runs under that account gain only the right to release
or read this run's Jobs, which they could already disturb through the shared storage and
S3 credentials. Both objects are dependents of the run's ConfigMap, itself a dependent of
the run's Jobs, so they go with the Jobs (``launcher.kubernetes.ownership``). Evaluate pods mount no token at all.

If prepare fails, nothing releases evaluate and merge: they stay suspended, without pods,
and the run reads as failed from prepare's ``Failed`` condition (``launcher status``,
``list``, ``submit --wait``); ``launcher cancel`` removes them with the run.

Under Kueue (``kubernetes.kueue_queue``, or a LocalQueue named ``default`` that submit's
preflight finds) Kueue owns ``suspend``: it admits a Job carrying the queue-name label by
un-suspending it, and its create-time webhook puts a Job *without* the label into the
namespace's ``default`` LocalQueue, where it would be admitted before prepare has run. So
evaluate and merge are created carrying the label with a queue that does not exist
(``HELD_QUEUE``): Kueue manages them and keeps them suspended and inadmissible ("LocalQueue
... doesn't exist"), and the label, which Kueue lets change only while a Job is suspended,
is what the release changes to the run's queue. Kueue then admits them under its quota, and
their deadlines count from admission.

Merge under Kueue is released not by prepare but by the evaluate pod that finishes the last
shard (``merge_release_env``; ``landscape_job.runtime.release.release_merge_when_done``): it
neither holds a pod nor quota while the shards run, and its deadline counts from the end of
evaluate. Those evaluate pods then mount the service-account token (the Role above lets it
patch the merge Job); without Kueue they mount none, and merge is released with evaluate and
watches it.
"""

from __future__ import annotations

import json
from typing import Any

from launcher.kubernetes.section import KubernetesSpec

#: Where the prepare pod finds what to release and how (``landscape_job.runtime.release`` reads it).
RELEASE_ENV = "LANDSCAPE_RELEASE"
#: The evaluate pods' ``LANDSCAPE_RELEASE_MERGE`` under Kueue: the merge Job and its patch.
MERGE_RELEASE_ENV = "LANDSCAPE_RELEASE_MERGE"
KUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The queue a gated Job waits in until released: no LocalQueue has this name, so Kueue admits nothing from it.
HELD_QUEUE = "landscape-held-until-released"
RBAC_API = "rbac.authorization.k8s.io/v1"


def release_patch(k8s: KubernetesSpec) -> dict[str, Any]:
    """The merge patch that releases a gated Job: un-suspend it, or under Kueue, hand it to the queue."""
    if k8s.kueue_queue:
        return {"metadata": {"labels": {KUEUE_LABEL: k8s.kueue_queue}}}
    return {"spec": {"suspend": False}}


def release_env(k8s: KubernetesSpec, names: dict[str, str]) -> dict[str, str]:
    """The prepare pod's ``LANDSCAPE_RELEASE``: the Jobs to release, in order, and the patch
    (under Kueue evaluate only: the last shard releases merge)."""
    jobs = [names["evaluate"]] if k8s.kueue_queue else [names["evaluate"], names["merge"]]
    return {"name": RELEASE_ENV, "value": json.dumps({"jobs": jobs, "patch": release_patch(k8s)}, sort_keys=True)}


def merge_release_env(k8s: KubernetesSpec, names: dict[str, str]) -> dict[str, str] | None:
    """The evaluate pods' ``LANDSCAPE_RELEASE_MERGE`` under Kueue; None without Kueue (prepare releases merge)."""
    if not k8s.kueue_queue:
        return None
    return {"name": MERGE_RELEASE_ENV, "value": json.dumps({"jobs": [names["merge"]], "patch": release_patch(k8s)},
                                                           sort_keys=True)}


def pods_role(metadata: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The run's Role: release evaluate and merge, read evaluate; nothing else."""
    return {"apiVersion": RBAC_API, "kind": "Role", "metadata": {**metadata, "name": names["pods"]},
            "rules": [
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["patch"],
                 "resourceNames": [names["evaluate"], names["merge"]]},
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"],
                 "resourceNames": [names["evaluate"]]},
                # the Released / ShardsFailed / Merged events on the run's Jobs (landscape_job.runtime.events);
                # RBAC cannot narrow create by name
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            ]}


def pods_role_binding(metadata: dict[str, Any], names: dict[str, str], k8s: KubernetesSpec) -> dict[str, Any]:
    """Binds the run's Role to the account its prepare and merge pods run as."""
    return {"apiVersion": RBAC_API, "kind": "RoleBinding", "metadata": {**metadata, "name": names["pods"]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names["pods"]},
            "subjects": [{"kind": "ServiceAccount", "name": k8s.service_account, "namespace": k8s.namespace}]}
