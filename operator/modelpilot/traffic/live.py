"""Reading live routing objects: find one among the observed, its split rule, the share a weight
is of a total, and a carrier's reason as a condition reason. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def share_percent(part: int | float, whole: int | float) -> int:
    """`part` of `whole` as a whole percent, nearer, ties up; never 0 or 100 unless it is."""
    if whole <= 0 or part <= 0:
        return 0
    if part >= whole:
        return 100
    pct = int((200 * part + whole) // (2 * whole))
    return min(max(pct, 1), 99)


def find_object(observed: Sequence[Mapping[str, Any]], kind: str, name: str, namespace: str | None = None) -> Mapping[str, Any] | None:
    """The object of `kind` called `name` (in `namespace`, when given)."""
    for obj in observed:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == kind and meta.get("name") == name and (namespace is None or meta.get("namespace") == namespace):
            return obj
    return None


def named_rule(rules: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """The rule called `name`, else the last one (the catch-all), else an empty rule."""
    return next((r for r in rules if r.get("name") == name), rules[-1] if rules else {})


_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def condition_reason(text: str | None, default: str) -> str:
    """`text` as a condition reason (metav1.Condition: CamelCase, at most 1024 characters), or
    `default` when it cannot be one."""
    return text if text and len(text) <= 1024 and _REASON.match(text) else default
