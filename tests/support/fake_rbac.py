"""RBAC for the fake API server (tests/support/fake_k8s.py): who is asking, and do the Roles allow it.

The real authorizer, reduced to what our objects use: Roles and RoleBindings in a
namespace (no ClusterRoles, no aggregation), bound to Users, ServiceAccounts or Groups
(an identity's own groups, ``system:serviceaccounts[:<ns>]`` and ``system:authenticated``), rules matched on API group, resource (with
``resource/subresource``), verb and ``resourceNames`` (which, as in the real authorizer,
can only match requests that name an object: get, update, patch, delete, never list or
create). Every request is recorded as a ``Call`` with its identity, so a test can check
what the launcher and each pod really do against what the Roles grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCHER_ROLE = REPO / "k8s" / "base" / "launcher-role.yaml"


@dataclass(frozen=True)
class Identity:
    """A user (the launcher's kubeconfig) or a pod's service account."""

    kind: str  # "User" or "ServiceAccount"
    name: str
    namespace: str = ""
    #: The groups the authenticator put the user in (a kubeconfig user's from its credentials).
    groups: tuple[str, ...] = ()

    @property
    def all_groups(self) -> tuple[str, ...]:
        """Its own groups and those every request of its kind carries, as the real authenticators add them."""
        implied = (("system:serviceaccounts", f"system:serviceaccounts:{self.namespace}")
                   if self.kind == "ServiceAccount" else ())
        return (*self.groups, *implied, "system:authenticated")

    @property
    def username(self) -> str:
        if self.kind == "ServiceAccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name


@dataclass(frozen=True)
class Call:
    """One request as the authorizer sees it, and its answer."""

    identity: Identity
    verb: str
    group: str
    resource: str  # with "/subresource" where there is one
    name: str
    namespace: str
    allowed: bool
    #: The pod whose mounted token made the call; "" for the launcher.
    pod: str = ""


def rule_allows(rule: dict[str, Any], verb: str, group: str, resource: str, name: str) -> bool:
    def has(values: Iterable[str], value: str) -> bool:
        return "*" in values or value in values

    if not (has(rule.get("apiGroups", []), group) and has(rule.get("resources", []), resource)
            and has(rule.get("verbs", []), verb)):
        return False
    names = rule.get("resourceNames")
    return not names or (bool(name) and name in names)


def subject_matches(subject: dict[str, Any], identity: Identity, namespace: str) -> bool:
    if subject.get("kind") == "ServiceAccount":
        return (identity.kind == "ServiceAccount" and subject.get("name") == identity.name
                and subject.get("namespace", namespace) == identity.namespace)
    if subject.get("kind") == "Group":
        return subject.get("name") in identity.all_groups
    return subject.get("kind") == identity.kind == "User" and subject.get("name") == identity.name


def rules_of(identity: Identity, namespace: str, roles: dict[str, dict], bindings: Iterable[dict]) -> list[dict]:
    """The rules every binding of ``namespace`` gives ``identity``, from the Roles of that namespace."""
    rules: list[dict] = []
    for binding in bindings:
        if any(subject_matches(s, identity, namespace) for s in binding.get("subjects", [])):
            role = roles.get(binding["roleRef"]["name"])
            if role is not None and binding["roleRef"].get("kind") == "Role":
                rules.extend(role.get("rules", []))
    return rules


def allows(rules: Iterable[dict], verb: str, group: str, resource: str, name: str) -> bool:
    return any(rule_allows(r, verb, group, resource, name) for r in rules)


def covers(held: list[dict], granted: list[dict]) -> bool:
    """Whether ``held`` rules allow everything ``granted`` rules do: RBAC's escalation check for a binding."""
    for rule in granted:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for name in rule.get("resourceNames") or [""]:
                        if not allows(held, verb, group, resource, name):
                            return False
    return True


def launcher_role() -> dict:
    """The Role of k8s/base that the people who run the launcher are bound to."""
    return yaml.safe_load(LAUNCHER_ROLE.read_text())
