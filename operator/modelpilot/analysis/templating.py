"""Substitution of `{{placeholder}}` variables in analysis queries.

A query names the objects of the rollout it judges through placeholders, filled in from the
rollout context. Unknown placeholders, and placeholders the context cannot fill (for example
`{{canaryRevision}}` when no canary exists), are an error that names the metric and the field, so a
typo never silently turns into a query that matches nothing (which would read as "no data").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

# `{{ name }}`: whitespace inside the braces is allowed, as in Flagger's templates.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

#: Every placeholder a query may use, with what it stands for (also used by docs and errors).
PLACEHOLDERS: Final[dict[str, str]] = {
    "namespace": "namespace of the ModelDeployment",
    "name": "name of the ModelDeployment",
    "service": "the entry Service, <name>",
    "stableRevision": "revision number of the stable revision",
    "canaryRevision": "revision number of the revision under test",
    "stableService": "Service of the stable revision, <name>-r<stableRevision>",
    "canaryService": "Service of the revision under test, <name>-r<canaryRevision>",
    "revision": "canaryRevision; in a judge's baselineQuery: stableRevision",
}

#: Which side a query is rendered for: `{{revision}}` means the stable revision in a baseline query.
CANARY: Final = "canary"
BASELINE: Final = "baseline"


class TemplateError(ValueError):
    """A query uses a placeholder that is unknown or that the context cannot fill."""


def variables(ctx: Mapping[str, Any], side: str = CANARY) -> dict[str, str]:
    """The placeholder values for a rollout context; absent context keys are left out."""
    name = ctx.get("name")
    stable = ctx.get("stableRevision")
    canary = ctx.get("canaryRevision")
    out: dict[str, str] = {}
    if ctx.get("namespace") is not None:
        out["namespace"] = str(ctx["namespace"])
    if name is not None:
        out["name"] = str(name)
        out["service"] = str(name)
    if stable is not None:
        out["stableRevision"] = str(stable)
        if name is not None:
            out["stableService"] = f"{name}-r{stable}"
    if canary is not None:
        out["canaryRevision"] = str(canary)
        if name is not None:
            out["canaryService"] = f"{name}-r{canary}"
    revision = stable if side == BASELINE else canary
    if revision is not None:
        out["revision"] = str(revision)
    return out


def placeholders(query: str) -> list[str]:
    """The placeholder names a query uses, in order of first use."""
    seen: list[str] = []
    for m in _PLACEHOLDER.finditer(query):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def check(query: str, where: str) -> None:
    """Raise TemplateError if `query` uses a placeholder that does not exist at all."""
    unknown = [p for p in placeholders(query) if p not in PLACEHOLDERS]
    if unknown:
        raise TemplateError(
            f"{where}: unknown placeholder {', '.join('{{' + p + '}}' for p in unknown)}; "
            f"known: {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)}")


def render(query: str, ctx: Mapping[str, Any], where: str, side: str = CANARY) -> str:
    """`query` with every placeholder substituted from `ctx`.

    `where` names the field for error messages, e.g. `metrics[error-rate].query`.
    """
    check(query, where)
    values = variables(ctx, side)
    missing = [p for p in placeholders(query) if p not in values]
    if missing:
        raise TemplateError(
            f"{where}: {', '.join('{{' + p + '}}' for p in missing)} cannot be filled in here "
            f"(the rollout has no {', '.join(missing)})")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], query)
