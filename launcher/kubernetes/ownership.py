"""Who owns what in a run, so that all of its objects go away together, as the cluster's garbage collector does it.

The garbage collector deletes an object once *every* owner its ``ownerReferences`` name
(by ``uid``) is gone; with background propagation (kubectl's and the TTL controller's
default) it does so after the owner has been deleted. A run's objects form one tree:

    Job <run>-prepare ─┐
    Job <run>-evaluate ├─ own ─▶ ConfigMap <run>-spec ─ owns ─▶ Role, RoleBinding <run>-pods
    Job <run>-merge ───┘         (the run's anchor)
    (and each Job owns its pods, through the Job controller)

* The ConfigMap is created first: its create is the run's claim on the id (a 409 means
  the id is taken), and the prepare pod mounts it. The Role and RoleBinding are created as
  its dependents (``with_owner``), since it exists before them.
* The Jobs are created with no owner, then the ConfigMap is patched to be owned by all
  three (``owned_by_jobs``; metadata of an immutable ConfigMap may change, its data may
  not). So whatever removes the Jobs removes the run: ``launcher cancel``, ``kubectl
  delete jobs -l landscape.run=<run>``, or the TTL controller once each Job has been
  finished for ``kubernetes.ttl_seconds_after_finished`` (a week by default): the
  ConfigMap goes when the last Job goes, and the Role and RoleBinding with it.
* No cycle: the Jobs own nothing but their pods, and nothing owns the Jobs. The earlier
  design, Jobs owned by the ConfigMap, removed the whole run only when someone deleted the
  ConfigMap; a ConfigMap owned by the Jobs *and* owning them would be a cycle, which the
  collector resolves only in background propagation and which blocks a foreground
  delete forever. ``kubectl delete configmap <run>-spec`` now removes the spec, the Role
  and the RoleBinding, not the Jobs.
* The ConfigMap's references to the Jobs do not set ``blockOwnerDeletion``: a foreground
  delete of a Job need not wait for it, and setting it would need ``update`` on
  ``jobs/finalizers`` where the OwnerReferencesPermissionEnforcement plugin runs. The
  Role's and RoleBinding's references to the ConfigMap do (``configmaps/finalizers``).

Once the run's objects are gone its results stay in storage; ``status`` and ``pull`` read
them from the run's storage URL then. A run applied by ``launcher render | kubectl apply``
has no owner references at all (the owners' uids exist only once created):
``launcher cancel`` finds its objects by label.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

_API_VERSIONS = {"ConfigMap": "v1", "Secret": "v1", "Job": "batch/v1"}


def owner_reference(kind: str, name: str, uid: str, api_version: str | None = None,
                    block: bool = True) -> dict[str, Any]:
    """An owner reference to an object that exists (it has a ``uid``)."""
    if not uid:
        raise ValueError("owner_reference: the owner's UID is empty; create the owner first")
    version = api_version or _API_VERSIONS.get(kind)
    if version is None:
        raise ValueError(f"owner_reference: give api_version for kind {kind}")
    return {"apiVersion": version, "kind": kind, "name": name, "uid": uid, **({"blockOwnerDeletion": True} if block
                                                                               else {})}


def with_owner(obj: dict[str, Any], owner_kind: str, owner_name: str, owner_uid: str,
               owner_api_version: str | None = None) -> dict[str, Any]:
    """A copy of ``obj`` with an owner reference to an object that exists (the run's Role and RoleBinding
    to its ConfigMap; the estimate's Job to its ConfigMap). The owner must live in the object's namespace
    (owner references never cross namespaces). ``blockOwnerDeletion`` makes a foreground delete of the
    owner wait for the dependent; where the OwnerReferencesPermissionEnforcement admission plugin runs,
    setting it needs ``update`` on ``<owner resource>/finalizers`` (the launcher Role has configmaps')."""
    reference = owner_reference(owner_kind, owner_name, owner_uid, owner_api_version)
    result = copy.deepcopy(obj)
    metadata = result.setdefault("metadata", {})
    metadata["ownerReferences"] = [r for r in metadata.get("ownerReferences", []) if r.get("uid") != owner_uid] \
        + [reference]
    return result


def owned_by_jobs(jobs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The JSON merge patch that makes the run's ConfigMap a dependent of its Jobs (as the server returned
    them, with their uids): it goes, with what it owns, once every one of them is gone."""
    return {"metadata": {"ownerReferences": [
        owner_reference("Job", job["metadata"]["name"], job["metadata"]["uid"], block=False) for job in jobs]}}
