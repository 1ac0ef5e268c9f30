"""Hypothesis strategies for ModelDeployment and ModelExport specs, read from the CRDs' own schemas.

Three families, each labelled so the campaign can count them:

- `schema`: a whole spec drawn from the structural schema (types, enums, patterns, bounds, required
  fields). The CEL rules are not modelled, so many of these are refused at admission: on purpose.
- `boundary`: a valid sample (docs/samples) with one field set to an edge the schema allows (its
  minimum, maximum, maxLength, an empty optional list, 0).
- `invalid`: a valid sample with one field set to what the schema or the apiserver refuses, or what
  only the operator can judge (below the minimum, over maxLength, a wrong type, an unknown field, a
  negative or malformed quantity, an interval of 0s).

(hypothesis-jsonschema does not run with current hypothesis releases; this walker covers the
OpenAPI subset the two CRDs use, and nothing else.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "docs" / "samples"
# Keep the test bed's load bounded: no generated spec asks kwok for more than this many pods.
MAX_PODS = 2
SIZE_FIELDS = ("replicas", "minReplicas", "maxReplicas", "previewReplicas")


def crd_spec_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / f"modelpilot.io_{plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _int_bounds(node: dict[str, Any]) -> tuple[int, int]:
    lo = node.get("minimum", -(2**31) if node.get("format") == "int32" else -(2**40))
    hi = node.get("maximum", 2**31 - 1 if node.get("format") == "int32" else 2**40)
    if node.get("exclusiveMinimum"):
        lo += 1
    if node.get("exclusiveMaximum"):
        hi -= 1
    return int(lo), int(hi)


QUANTITIES = st.sampled_from(["1", "100m", "2", "512Mi", "1Gi", "4Gi", "0.5"])


def from_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid for the structural schema `node` (CEL rules aside), small ones preferred."""
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(0, 8), QUANTITIES)
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return _object(node, depth)
    if kind == "array":
        lo = node.get("minItems", 0)
        hi = min(node.get("maxItems", 3), lo + 2)
        return st.lists(from_schema(node.get("items") or {}, depth + 1), min_size=lo, max_size=max(lo, hi))
    if kind == "integer":
        lo, hi = _int_bounds(node)
        return st.integers(max(lo, -5), max(min(hi, 100), max(lo, -5)))
    if kind == "number":
        return st.floats(max(node.get("minimum", -5), -5), min(node.get("maximum", 100), 100), allow_nan=False,
                         exclude_min=bool(node.get("exclusiveMinimum")), exclude_max=bool(node.get("exclusiveMaximum")))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return _string(node)
    return st.just({})  # x-kubernetes-preserve-unknown-fields and untyped nodes


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = node.get("minLength", 0), min(node.get("maxLength", 24), 24)
    if node.get("pattern"):
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= node.get("maxLength", 1 << 20))
    return st.text(st.characters(codec="ascii", categories=("L", "N")) | st.sampled_from("-_./:"), min_size=lo, max_size=max(lo, hi))


def _object(node: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    props = node.get("properties") or {}
    if not props:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            key = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
            return st.dictionaries(key, from_schema(extra, depth + 1), max_size=min(node.get("maxProperties", 2), 2))
        return st.just({})
    required = set(node.get("required") or [])
    optional = [k for k in props if k not in required]
    # Deep optional blocks are drawn less often: a spec with every block set is refused for one reason only.
    chosen = st.lists(st.sampled_from(optional), unique=True, max_size=max(1, 4 - depth)) if optional else st.just([])
    return chosen.flatmap(lambda keys: st.fixed_dictionaries({k: from_schema(props[k], depth + 1) for k in sorted(required | set(keys))}))


def leaves(node: dict[str, Any], path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every field path of the schema (array items as index 0), with its schema node."""
    out = [(path, node)] if path else []
    for key, child in (node.get("properties") or {}).items():
        out += leaves(child, path + (key,))
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        out += leaves(node["items"], path + (0,))
    return out


def edges(node: dict[str, Any], invalid: bool) -> list[Any]:
    """The values at and past the edges of what `node` allows."""
    if node.get("x-kubernetes-int-or-string"):
        return ["-1", "1e400", "abc", "-500m", 0] if invalid else [0, "0", "1m", "1Ei"]
    if "enum" in node:
        return ["NotAnEnumValue", 7] if invalid else list(node["enum"])
    kind = node.get("type")
    if kind in ("integer", "number"):
        lo, hi = _int_bounds(node)
        if invalid:
            vals = [lo - 1 if "minimum" in node else -(2**63), "12", 1.5 if kind == "integer" else "x"]
            return vals + ([hi + 1] if "maximum" in node else [2**63])
        return [lo if "minimum" in node else 0, hi if "maximum" in node else 2**31 - 1]
    if kind == "string":
        n = node.get("maxLength", 300)
        if invalid:
            vals = ["x" * (n + 1), 12, "has space\tand\nnewline", ""]
            if node.get("pattern") and "ms|s|m|h" in node["pattern"]:
                vals += ["0s", "0ms", "999ms", "99999999999999999999h"]
            return vals
        return ["a" * min(n, 253) if not node.get("pattern") else "0s" if "ms|s|m|h" in node["pattern"] else "a", "1s"]
    if kind == "array":
        m = node.get("maxItems")
        return (["notalist", [None]] + ([[{}] * (m + 1)] if m else [])) if invalid else [[]]
    if kind == "boolean":
        return ["yes", 1] if invalid else [True, False]
    if kind == "object":
        return ["notanobject", {"unknownField": 1}] if invalid else [{}]
    return [None]


def set_path(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for key, nxt in zip(path, path[1:]):
        if isinstance(key, int):
            if not isinstance(node, list):
                return
            if not node:
                node.append({} if not isinstance(nxt, int) else [])
            node = node[0]
        else:
            if not isinstance(node, dict):
                return
            if not isinstance(node.get(key), (dict, list)):
                node[key] = [] if isinstance(nxt, int) else {}
            node = node[key]
    last = path[-1]
    if isinstance(last, int):
        if isinstance(node, list):
            node[:1] = [value]
    elif isinstance(node, dict):
        node[last] = value


def bounded(spec: Any) -> Any:
    """The same spec with every replica count cut to MAX_PODS (a bound of the test bed, not of the input)."""
    if isinstance(spec, dict):
        return {k: (min(v, MAX_PODS) if k in SIZE_FIELDS and isinstance(v, int) and not isinstance(v, bool) else bounded(v))
                for k, v in spec.items()}
    if isinstance(spec, list):
        return [bounded(v) for v in spec]
    return spec


def samples(kind: str) -> list[dict[str, Any]]:
    prefix = "modeldeployment" if kind == "ModelDeployment" else "modelexport"
    return [yaml.safe_load(p.read_text())["spec"] for p in sorted(SAMPLES.glob(f"{prefix}-*.yaml"))]


def specs(kind: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(family, spec) for `kind`: whole schema draws, and samples with one boundary or invalid field."""
    schema = crd_spec_schema("modeldeployments" if kind == "ModelDeployment" else "modelexports")
    paths = leaves(schema)
    base = samples(kind)

    def mutate(invalid: bool) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        def with_value(spec: dict[str, Any], path: tuple[Any, ...], value: Any) -> tuple[str, dict[str, Any]]:
            doc = copy.deepcopy(spec)
            set_path(doc, path, value)
            return ("invalid" if invalid else "boundary", doc)

        return st.tuples(st.sampled_from(base), st.sampled_from(paths)).flatmap(
            lambda pick: st.sampled_from(edges(pick[1][1], invalid)).map(lambda v: with_value(pick[0], pick[1][0], v)))

    whole = from_schema(schema).map(lambda s: ("schema", s))
    return st.one_of(whole, mutate(False), mutate(True))
