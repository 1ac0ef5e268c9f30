"""The chart's RBAC rules against the one table of kinds (operator/modelpilot/kinds.py): every kind
the operator reads or writes is granted exactly the verbs the table says it uses, and the chart
grants nothing on a kind the table does not know."""

from __future__ import annotations

from modelpilot.kinds import KINDS

from .conftest import template

# Granted for Kopf itself, not for a kind the operator reconciles: resource discovery.
KOPF_ONLY = {("apiextensions.k8s.io", "customresourcedefinitions")}


def _grants(*sets: str) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over the chart's ClusterRoles."""
    out: dict[tuple[str, str], set[str]] = {}
    for obj in template(*sets):
        if obj["kind"] != "ClusterRole":
            continue
        for rule in obj["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def test_every_kind_gets_exactly_the_verbs_it_uses() -> None:
    grants = _grants("watchNamespaces={team-a}")
    for k in KINDS:
        assert grants.get((k.group, k.plural)) == set(k.verbs), f"{k.kind}: chart grants {grants.get((k.group, k.plural))}, uses {k.verbs}"
        if k.status_verbs:
            assert grants.get((k.group, f"{k.plural}/status")) == set(k.status_verbs), k.kind


def test_the_chart_grants_nothing_the_table_does_not_know() -> None:
    known = {(k.group, k.plural) for k in KINDS} | {(k.group, f"{k.plural}/status") for k in KINDS if k.status_verbs}
    unknown = set(_grants("watchNamespaces={team-a}")) - known - KOPF_ONLY
    assert not unknown, f"the chart grants access to kinds kinds.py does not list: {sorted(unknown)}"
