"""Every field in crds/ has an effect: each leaf of each CRD's spec and status is mapped to the
modules that own its subtree, and one of those modules must read (or, for status, write) the field
by name: the JSON name as a string, or the typed view's attribute (`.snake_case`, parsed in api/).
The parsers in api/ are not owners: a field that is parsed and then never used fails too. A new
field that no code reads, or code that stops reading one, fails here with the field and the
modules that should have it. What a field does is tested where the module is; this test
keeps the API and the code from drifting apart (issue 14).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .test_crds import CRDS, schema_of, walk

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
OP, EX = "operator/modelpilot", "exporters/modelpilot_exporters"

# (path prefix, modules owning that subtree), longest prefix wins. `*` stands for any one field
# name: the five analysis blocks share one schema and one reader.
READERS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "ModelDeployment": [
        ("spec.model", (f"{OP}/render.py", f"{OP}/runtimes/*.py", f"{OP}/rollout/*.py")),
        ("spec.model.exportRef", (f"{OP}/render.py", f"{OP}/rollout/*.py")),
        ("spec.model.limits", (f"{OP}/render.py",)),
        ("spec.runtime", (f"{OP}/render.py", f"{OP}/runtimes/*.py")),
        ("spec.replicas", (f"{OP}/rollout/*.py",)),
        ("spec.revisionHistoryLimit", (f"{OP}/rollout/*.py",)),
        ("spec.autoscaling", (f"{OP}/render.py", f"{OP}/rollout/model.py")),
        ("spec.placement", (f"{OP}/placement.py", f"{OP}/render.py")),
        ("spec.traffic", (f"{OP}/traffic/*.py", f"{OP}/render.py")),
        ("spec.rollout", (f"{OP}/rollout/*.py",)),
        ("spec.rollout.blueGreen", (f"{OP}/rollout/*.py", f"{OP}/traffic/*.py")),
        ("spec.rollout.shadow", (f"{OP}/rollout/steps.py", f"{OP}/comparator/objects.py")),
        ("spec.rollout.abTest.match", (f"{OP}/traffic/*.py",)),
        ("spec.rollout.analysis", (f"{OP}/analysis/*.py",)),
        ("spec.rollout.*.analysis", (f"{OP}/analysis/*.py",)),
        ("spec.rollout.canary.steps[].analysis", (f"{OP}/analysis/*.py",)),
        ("spec.rollout.blueGreen.prePromotionAnalysis", (f"{OP}/analysis/*.py",)),
        ("status", (f"{OP}/rollout/*.py",)),
        ("status.conditions", (f"{OP}/conditions.py",)),
        ("status.control", (f"{OP}/rollout/control.py", f"{OP}/cli.py")),
        ("status.analysis", (f"{OP}/analysis/*.py", f"{OP}/rollout/*.py")),
    ],
    "ModelExport": [
        ("spec", (f"{EX}/spec.py",)),  # the exporter's own parser and the pipeline behind it (tests/exporters)
        ("spec.image", (f"{OP}/export/job.py",)),
        ("spec.resources", (f"{OP}/export/job.py",)),
        ("spec.nodePool", (f"{OP}/export/job.py",)),
        ("spec.backoffLimit", (f"{OP}/export/job.py",)),
        ("spec.activeDeadlineSeconds", (f"{OP}/export/job.py",)),
        ("spec.ttlSecondsAfterFinished", (f"{OP}/export/job.py",)),
        ("spec.source.secretRef", (f"{OP}/export/job.py",)),
        ("spec.output.secretRef", (f"{OP}/export/job.py",)),
        ("status", (f"{OP}/export/plan.py",)),
        ("status.artifacts", (f"{OP}/export/plan.py", f"{EX}/manifest.py")),
        ("status.conditions", (f"{OP}/conditions.py",)),
    ],
}


def leaves(kind: str) -> list[str]:
    """spec and status fields without children (a list of scalars counts once, as the list)."""
    out = []
    for path, node in walk(schema_of(kind)):
        if not path.startswith(("spec.", "status.")) or path.endswith(("[]", "{}")):
            continue
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        if not node.get("properties") and not items.get("properties"):
            out.append(path)
    return out


def _matches(prefix: str, path: str) -> bool:
    pattern = re.escape(prefix).replace(r"\*", r"[A-Za-z]+")
    return re.match(pattern + r"(\.|\[|$)", path) is not None


def readers(kind: str, path: str) -> tuple[str, ...]:
    found = [(p, mods) for p, mods in READERS[kind] if _matches(p, path)]
    return max(found, key=lambda x: len(x[0]))[1] if found else ()


def _source(pattern: str) -> str:
    return "".join(p.read_text() for p in sorted(ROOT.glob(pattern)))


def field_name(path: str) -> str:
    return re.split(r"[.\[\]{}]+", path.rstrip("[]{}"))[-1]


# Typed-view attributes that are not the field's name in snake_case.
ATTRIBUTES = {"maxQueueDelayMicroseconds": "max_queue_delay_us"}


def reads(source: str, name: str) -> bool:
    """`source` reads JSON field `name`: as a string, or as the typed view's snake_case attribute."""
    attr = ATTRIBUTES.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return bool(re.search(rf"""["']{re.escape(name)}["']""", source) or re.search(rf"\.{attr}\b", source))


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_field_is_read_by_the_code_that_owns_it(kind: str) -> None:
    problems = []
    for path in leaves(kind):
        mods = readers(kind, path)
        if not mods:
            problems.append(f"{path}: no module owns it (add it to READERS)")
            continue
        name = field_name(path)
        if not any(reads(_source(m), name) for m in mods):
            problems.append(f"{path}: none of {', '.join(mods)} reads {name!r}")
    assert not problems, f"{kind}: fields without an effect:\n" + "\n".join(problems)


def test_the_check_fails_for_a_field_nobody_reads() -> None:
    """The walk sees a leaf added to the schema, and the check names it (the test can fail)."""
    assert "spec.rollout.shadow.maxComparisonsPerSecond" in leaves("ModelDeployment")
    assert readers("ModelDeployment", "spec.rollout.shadow.compareEverything") == (
        f"{OP}/rollout/steps.py", f"{OP}/comparator/objects.py")
    assert not reads(_source(f"{OP}/comparator/objects.py"), "compareEverything")
    assert reads("x = md.rollout.shadow.max_comparisons_per_second", "maxComparisonsPerSecond")
    assert not reads('"parsed only": sh.get("maxComparisonsPerSecondX")', "maxComparisonsPerSecond")
    assert readers("ModelDeployment", "spec.rollout.analysis.metrics[].query") == (f"{OP}/analysis/*.py",)
    assert readers("ModelDeployment", "spec.unknownBlock.x") == ()
