"""The CRDs in crds/, the samples in docs/samples/ and the generated docs/api.md, without a cluster.

What needs an apiserver (CEL rules, defaulting, explain) is in tests/integration/test_crd_validation.py.
Here: the files parse, the CRDs have the names, subresources and columns the operator and the
kubectl plugin rely on, every field is documented, every sample only uses fields and values the
schema allows (a small structural validator catches typos before a cluster does), and
docs/api.md matches the CRDs.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
SAMPLES = REPO / "docs" / "samples"
GEN_DOCS = REPO / "hack" / "gen-api-docs.py"

EXPECTED_SAMPLES = {
    "modelexport-pytorch-onnx.yaml",
    "modelexport-onnx-quantize.yaml",
    "modelexport-tensorflow-tflite.yaml",
    "modeldeployment-triton-gpu.yaml",
    "modeldeployment-triton-cpu.yaml",
    "modeldeployment-canary.yaml",
    "modeldeployment-exportref-parity.yaml",
    "modeldeployment-torchserve.yaml",
    "modeldeployment-tfserving.yaml",
}


def load_crds() -> dict[str, dict[str, Any]]:
    crds = {}
    for f in sorted(CRD_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if d]
        assert len(docs) == 1, f"{f.name}: expected exactly one document, found {len(docs)}"
        crds[docs[0]["spec"]["names"]["kind"]] = docs[0]
    return crds


CRDS = load_crds()


def schema_of(kind: str) -> dict[str, Any]:
    (version,) = CRDS[kind]["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its field path (array items as `[]`)."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], path + "{}")


def field_paths(kind: str) -> set[str]:
    return {p for p, _ in walk(schema_of(kind)) if p}


# ---------------------------------------------------------------------------------------- CRDs


def test_both_crds_are_present_with_the_fixed_names():
    assert set(CRDS) == {"ModelExport", "ModelDeployment"}
    for kind, short in (("ModelExport", "mex"), ("ModelDeployment", "mdep")):
        crd = CRDS[kind]
        spec = crd["spec"]
        plural = kind.lower() + "s"
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"]["name"] == f"{plural}.modelpilot.io"
        assert spec["group"] == "modelpilot.io"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["plural"] == plural
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["modelpilot"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"]["status"] == {}


def test_modeldeployment_scale_subresource_points_at_replicas_and_selector():
    (version,) = CRDS["ModelDeployment"]["spec"]["versions"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    paths = field_paths("ModelDeployment")
    assert {"spec.replicas", "status.replicas", "status.selector"} <= paths
    assert "scale" not in CRDS["ModelExport"]["spec"]["versions"][0]["subresources"]


@pytest.mark.parametrize("kind,columns", [
    ("ModelDeployment", [("Phase", ".status.phase"), ("Stable", ".status.stableRevision"),
                         ("Canary", ".status.canaryRevision"), ("Weight", ".status.weights.canary"),
                         ("Ready", ".status.readyReplicas"), ("Age", ".metadata.creationTimestamp")]),
    ("ModelExport", [("Phase", ".status.phase"), ("Job", ".status.jobName"), ("Age", ".metadata.creationTimestamp")]),
])
def test_printer_columns(kind, columns):
    (version,) = CRDS[kind]["spec"]["versions"]
    got = [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert got == columns
    # A column whose path is not in the schema would always be empty.
    paths = field_paths(kind)
    for _, json_path in columns:
        if not json_path.startswith(".metadata"):
            assert json_path.lstrip(".") in paths, json_path


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_field_has_a_description(kind):
    # kubectl explain and docs/api.md show these; an undocumented field is a hole in both.
    missing = []
    for path, node in walk(schema_of(kind)):
        if path in ("", "metadata"):  # the apiserver forbids describing metadata itself
            continue
        if path.endswith("[]") or path.endswith("{}"):
            continue  # array items and map values are described by their field
        if not str(node.get("description", "")).strip():
            missing.append(path)
    assert not missing, f"{kind}: fields without a description: {missing}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind):
    # Structural: every node has a type (or is int-or-string), objects declare their fields.
    problems = []
    for path, node in walk(schema_of(kind)):
        if node.get("x-kubernetes-int-or-string"):
            continue
        if "type" not in node:
            problems.append(f"{path}: no type")
        if node.get("type") == "object" and not (
            "properties" in node or "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
        ):
            problems.append(f"{path}: object without properties")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
        for req in node.get("required", []):
            if req not in node.get("properties", {}):
                problems.append(f"{path}: required field {req} is not declared")
    assert not problems, problems


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_cel_rule_has_a_message_naming_a_field(kind):
    rules = [(p, r) for p, n in walk(schema_of(kind)) for r in n.get("x-kubernetes-validations", [])]
    assert rules, f"{kind}: no CEL rules"
    for path, r in rules:
        msg = r.get("message") or r.get("messageExpression")
        assert msg, f"{path}: rule {r['rule']!r} has no message"
        # The message names a field (something like `model.format` or `metadata.name`) ...
        assert re.search(r"[a-zA-Z]+(\[\])?\.[a-zA-Z]+", msg), f"{path}: message names no field: {msg}"
        # ... and a fieldPath, when given, points at a declared field.
        if "fieldPath" in r:
            target = (path + r["fieldPath"]).lstrip(".")
            assert target in field_paths(kind), f"{path}: fieldPath {r['fieldPath']} is not a field"
        if "reason" in r:
            assert r["reason"] in {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"}, r["reason"]


def test_strings_and_lists_used_by_rules_are_bounded():
    # The apiserver rejects a CRD whose estimated CEL cost is over budget; unbounded lists and
    # strings under a rule are what blow it. Keep every list and free string in spec bounded.
    for kind in CRDS:
        for path, node in walk(schema_of(kind)):
            if not path.startswith("spec"):
                continue
            if node.get("type") == "array":
                assert "maxItems" in node, f"{kind} {path}: list without maxItems"
            if node.get("type") == "string" and "format" not in node and "enum" not in node:
                assert "maxLength" in node, f"{kind} {path}: string without maxLength"


def test_the_four_analysis_schemas_are_identical():
    # CRDs cannot share definitions, so the analysis schema is written out four times.
    # Apart from the description they must stay the same: the operator parses one shape.
    spec = schema_of("ModelDeployment")["properties"]["spec"]["properties"]["rollout"]["properties"]
    copies = {
        "rollout.analysis": spec["analysis"],
        "rollout.canary.steps[].analysis": spec["canary"]["properties"]["steps"]["items"]["properties"]["analysis"],
        "rollout.blueGreen.prePromotionAnalysis": spec["blueGreen"]["properties"]["prePromotionAnalysis"],
        "rollout.abTest.analysis": spec["abTest"]["properties"]["analysis"],
    }

    def strip(n):
        n = copy.deepcopy(n)
        n.pop("description", None)
        return n

    first = strip(copies["rollout.analysis"])
    for where, node in copies.items():
        assert strip(node) == first, f"{where} differs from rollout.analysis"


# Field paths from docs/api-contract.md that the operator and the exporter parse. Removing or
# renaming one breaks them, so it must be a deliberate change here too.
CONTRACT_FIELDS = {
    "ModelExport": [
        "spec.source.uri", "spec.source.format", "spec.source.pytorch.loader", "spec.source.pytorch.factory",
        "spec.source.secretRef.name", "spec.source.endpoint",
        "spec.inputs[].name", "spec.inputs[].dtype", "spec.inputs[].shape",
        "spec.targets[].name", "spec.targets[].format", "spec.targets[].opset",
        "spec.targets[].quantization.mode", "spec.targets[].quantization.calibration.uri",
        "spec.targets[].quantization.calibration.synthetic", "spec.targets[].quantization.calibration.samples",
        "spec.targets[].quantization.keepIOTypes", "spec.targets[].quantization.perChannel",
        "spec.targets[].optimization.level", "spec.targets[].pruning.method", "spec.targets[].pruning.amount",
        "spec.validation.atol", "spec.validation.rtol", "spec.validation.samples", "spec.validation.samplesUri",
        "spec.validation.warnOnly", "spec.output.uri", "spec.image", "spec.nodePool", "spec.resources.requests",
        "spec.resources.limits", "spec.backoffLimit", "spec.activeDeadlineSeconds", "spec.ttlSecondsAfterFinished",
        "status.phase", "status.conditions[].type", "status.observedGeneration", "status.jobName", "status.startTime",
        "status.completionTime", "status.message", "status.artifacts[].name", "status.artifacts[].format",
        "status.artifacts[].uri", "status.artifacts[].sha256", "status.artifacts[].sizeBytes",
        "status.artifacts[].maxAbsError", "status.artifacts[].latencyMs", "status.artifacts[].sourceLatencyMs",
        "status.artifacts[].top1Agreement", "status.artifacts[].validated", "status.manifestUri",
    ],
    "ModelDeployment": [
        "spec.model.exportRef.name", "spec.model.exportRef.target", "spec.model.uri", "spec.model.format", "spec.model.name",
        "spec.runtime.kind", "spec.runtime.image", "spec.runtime.maxBatchSize", "spec.runtime.dynamicBatching.enabled",
        "spec.runtime.dynamicBatching.maxQueueDelayMicroseconds", "spec.runtime.dynamicBatching.preferredBatchSizes",
        "spec.runtime.instances", "spec.runtime.args", "spec.runtime.env[].name", "spec.runtime.env[].value",
        "spec.replicas", "spec.autoscaling.minReplicas", "spec.autoscaling.maxReplicas", "spec.autoscaling.metrics[].type",
        "spec.autoscaling.metrics[].name", "spec.autoscaling.metrics[].targetAverageUtilization",
        "spec.autoscaling.metrics[].targetAverageValue", "spec.autoscaling.metrics[].targetValue",
        "spec.placement.nodePool", "spec.placement.gpu.count", "spec.placement.gpu.product", "spec.placement.gpu.migProfile",
        "spec.placement.resources.requests", "spec.placement.resources.limits",
        "spec.rollout.strategy", "spec.rollout.canary.steps[].setWeight", "spec.rollout.canary.steps[].pause.duration",
        "spec.rollout.canary.steps[].analysis.metrics[].name", "spec.rollout.blueGreen.autoPromotionEnabled",
        "spec.rollout.blueGreen.autoPromotionSeconds", "spec.rollout.blueGreen.scaleDownDelaySeconds",
        "spec.rollout.blueGreen.previewReplicas", "spec.rollout.blueGreen.prePromotionAnalysis.metrics",
        "spec.rollout.shadow.percent", "spec.rollout.shadow.duration", "spec.rollout.shadow.compare",
        "spec.rollout.abTest.match.headers[].name", "spec.rollout.abTest.match.headers[].value",
        "spec.rollout.abTest.match.headers[].type", "spec.rollout.abTest.match.cookie.name",
        "spec.rollout.abTest.match.cookie.value", "spec.rollout.abTest.weight", "spec.rollout.abTest.duration",
        "spec.rollout.abTest.analysis.metrics", "spec.rollout.analysis.interval", "spec.rollout.analysis.initialDelay",
        "spec.rollout.analysis.failureLimit", "spec.rollout.analysis.consecutiveErrorLimit",
        "spec.rollout.analysis.inconclusiveLimit", "spec.rollout.analysis.metrics[].name",
        "spec.rollout.analysis.metrics[].query", "spec.rollout.analysis.metrics[].successCondition",
        "spec.rollout.analysis.metrics[].failureCondition", "spec.rollout.analysis.metrics[].thresholdRange.min",
        "spec.rollout.analysis.metrics[].thresholdRange.max", "spec.rollout.analysis.metrics[].judge.type",
        "spec.rollout.analysis.metrics[].judge.baselineQuery", "spec.rollout.analysis.metrics[].judge.canaryQuery",
        "spec.rollout.analysis.metrics[].judge.minSamples", "spec.rollout.analysis.metrics[].judge.confidence",
        "spec.rollout.analysis.metrics[].judge.direction", "spec.rollout.progressDeadlineSeconds",
        "spec.traffic.router", "spec.traffic.gateway.parentRefs[].name", "spec.traffic.gateway.parentRefs[].namespace",
        "spec.traffic.gateway.parentRefs[].sectionName", "spec.traffic.gateway.hostnames", "spec.traffic.istio.gateways",
        "spec.traffic.istio.hosts", "spec.traffic.port", "spec.revisionHistoryLimit",
        "status.phase", "status.conditions[].type", "status.conditions[].status", "status.conditions[].reason",
        "status.conditions[].message", "status.conditions[].observedGeneration", "status.conditions[].lastTransitionTime",
        "status.observedGeneration", "status.stableRevision", "status.canaryRevision", "status.currentStep",
        "status.weights.stable", "status.weights.canary", "status.weights.mirror", "status.weights.achieved",
        "status.revisions[].revision", "status.revisions[].hash", "status.revisions[].modelDigest",
        "status.revisions[].created", "status.revisions[].outcome", "status.endpoint", "status.replicas",
        "status.readyReplicas", "status.selector", "status.pauseReason", "status.analysis",
    ],
}


@pytest.mark.parametrize("kind", sorted(CONTRACT_FIELDS))
def test_every_contract_field_is_in_the_crd(kind):
    missing = sorted(set(CONTRACT_FIELDS[kind]) - field_paths(kind))
    assert not missing, f"{kind}: fields of docs/api-contract.md missing from the CRD: {missing}"


def test_status_analysis_is_free_form():
    node = schema_of("ModelDeployment")["properties"]["status"]["properties"]["analysis"]
    assert node.get("x-kubernetes-preserve-unknown-fields") is True


# ------------------------------------------------------------------- structural sample validator


def validate(value: Any, node: dict[str, Any], path: str) -> list[str]:
    """Check value against a CRD schema node the way the apiserver's OpenAPI pass would
    (unknown fields, types, enums, required, bounds, patterns); CEL rules are left to the
    integration tests. Returns the problems, each starting with the field path."""
    errs: list[str] = []
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            return [f"{path}: expected an integer or a string, got {value!r}"]
        if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
            errs.append(f"{path}: {value!r} does not match {node['pattern']}")
        return errs
    t = node.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if t in checks and not checks[t](value):
        return [f"{path}: expected {t}, got {type(value).__name__} {value!r}"]
    if "enum" in node and value not in node["enum"]:
        errs.append(f"{path}: {value!r} is not one of {node['enum']}")
    if t in ("integer", "number"):
        if "minimum" in node and (value <= node["minimum"] if node.get("exclusiveMinimum") else value < node["minimum"]):
            errs.append(f"{path}: {value} is below the minimum {node['minimum']}")
        if "maximum" in node and (value >= node["maximum"] if node.get("exclusiveMaximum") else value > node["maximum"]):
            errs.append(f"{path}: {value} is above the maximum {node['maximum']}")
    if t == "string":
        if "pattern" in node and not re.search(node["pattern"], value):
            errs.append(f"{path}: {value!r} does not match {node['pattern']}")
        if len(value) > node.get("maxLength", len(value)) or len(value) < node.get("minLength", 0):
            errs.append(f"{path}: length {len(value)} is out of bounds")
    if t == "array":
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
            errs.append(f"{path}: {len(value)} items is out of bounds")
        for i, item in enumerate(value):
            errs += validate(item, node.get("items", {}), f"{path}[{i}]")
    if t == "object":
        props = node.get("properties")
        for req in node.get("required", []):
            if req not in value:
                errs.append(f"{path}.{req}: required field is missing")
        for key, v in value.items():
            if props is not None and key in props:
                errs += validate(v, props[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                errs += validate(v, node["additionalProperties"], f"{path}.{key}")
            elif not node.get("x-kubernetes-preserve-unknown-fields") and path != "metadata":
                errs.append(f"{path}.{key}: unknown field (not in the {path or 'top-level'} schema)")
    return errs


def validate_object(doc: dict[str, Any]) -> list[str]:
    kind = doc.get("kind")
    if kind not in CRDS:
        return [f"kind {kind!r} is not a modelpilot kind"]
    if doc.get("apiVersion") != "modelpilot.io/v1alpha1":
        return [f"apiVersion {doc.get('apiVersion')!r} is not modelpilot.io/v1alpha1"]
    errs = []
    schema = schema_of(kind)
    for key, value in doc.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key not in schema["properties"]:
            errs.append(f"{key}: unknown top-level field")
        else:
            errs += validate(value, schema["properties"][key], key)
    for req in schema.get("required", []):
        if req not in doc:
            errs.append(f"{req}: required field is missing")
    return errs


def load_sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / name).read_text(encoding="utf-8"))


def test_the_expected_samples_exist():
    assert EXPECTED_SAMPLES <= {p.name for p in SAMPLES.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_sample_is_valid_and_documented(name):
    text = (SAMPLES / name).read_text(encoding="utf-8")
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert text.startswith("#") and len(" ".join(header)) > 60, f"{name}: needs a comment header saying what it shows"
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len(docs) == 1, f"{name}: one object per sample"
    doc = docs[0]
    # Tests apply samples into their own namespace.
    assert "namespace" not in doc["metadata"], f"{name}: samples must not set metadata.namespace"
    assert name.startswith(doc["kind"].lower() + "-"), f"{name}: file name should start with the kind"
    assert validate_object(doc) == []
    # Model locations follow the documented schemes, so the samples are copy-paste ready.
    uris = re.findall(r"\b(?:uri|samplesUri): (\S+)", text)
    assert uris or "exportRef" in doc["spec"].get("model", {}), f"{name}: no model location"
    assert all(re.match(r"^(file:///|pvc://|s3://|gs://|https?://)", u) for u in uris), uris


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["spec"]["rollout"].__setitem__("stratgy", "canary"), "spec.rollout.stratgy: unknown field"),
    (lambda d: d["spec"]["runtime"].__setitem__("kind", "onnxruntime"), "spec.runtime.kind: 'onnxruntime' is not one of"),
    (lambda d: d["spec"].__setitem__("replicas", "2"), "spec.replicas: expected integer"),
    (lambda d: d["spec"]["placement"]["gpu"].__setitem__("migProfile", "1g10gb"), "spec.placement.gpu.migProfile: '1g10gb' does not match"),
    (lambda d: d["spec"].pop("runtime"), "spec.runtime: required field is missing"),
    (lambda d: d["spec"]["placement"]["resources"]["limits"].__setitem__("memory", "16 GB"), "spec.placement.resources.limits.memory"),
])
def test_the_sample_validator_catches_mistakes(mutate, expected):
    # The validator above must be able to fail, or the sample test proves nothing.
    doc = load_sample("modeldeployment-triton-gpu.yaml")
    mutate(doc)
    errs = validate_object(doc)
    assert any(e.startswith(expected) for e in errs), errs


def test_samples_show_what_they_promise():
    gpu = load_sample("modeldeployment-triton-gpu.yaml")["spec"]
    assert gpu["runtime"]["kind"] == "triton" and gpu.get("rollout", {}).get("strategy", "direct") == "direct"
    assert gpu["placement"]["nodePool"] == "gpu-a100"
    assert gpu["placement"]["gpu"] == {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}
    cpu = load_sample("modeldeployment-triton-cpu.yaml")["spec"]
    assert cpu["runtime"]["kind"] == "triton" and cpu["placement"]["nodePool"] == "cpu" and "gpu" not in cpu["placement"]
    canary = load_sample("modeldeployment-canary.yaml")["spec"]
    assert canary["traffic"]["router"] == "gatewayAPI" and canary["traffic"]["gateway"]["parentRefs"]
    steps = canary["rollout"]["canary"]["steps"]
    assert canary["rollout"]["strategy"] == "canary"
    assert any("pause" in s for s in steps) and any("analysis" in s for s in steps)
    assert load_sample("modeldeployment-torchserve.yaml")["spec"]["runtime"]["kind"] == "torchserve"
    tfs = load_sample("modeldeployment-tfserving.yaml")["spec"]
    assert tfs["runtime"]["kind"] == "tfserving" and tfs["model"]["format"] == "savedmodel"
    assert load_sample("modelexport-pytorch-onnx.yaml")["spec"]["source"]["format"] == "pytorch"
    exported = load_sample("modeldeployment-exportref-parity.yaml")["spec"]
    assert exported["model"]["exportRef"] == {"name": load_sample("modelexport-pytorch-onnx.yaml")["metadata"]["name"], "target": "onnx"}
    assert exported["rollout"]["parityCheck"]["enabled"] is True
    assert load_sample("modelexport-onnx-quantize.yaml")["spec"]["source"]["format"] == "onnx"
    tfl = load_sample("modelexport-tensorflow-tflite.yaml")["spec"]
    assert tfl["source"]["format"] == "tensorflow" and any(t["format"] == "tflite" for t in tfl["targets"])


# ------------------------------------------------------------------------------- docs/api.md


def run_gen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GEN_DOCS), *args], capture_output=True, text=True, timeout=60)


def test_api_docs_are_current():
    r = run_gen("--check")
    assert r.returncode == 0, r.stderr + "\n(run `python3 hack/gen-api-docs.py` to regenerate docs/api.md)"


def test_api_docs_check_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "api.md"
    stale.write_text((REPO / "docs" / "api.md").read_text(encoding="utf-8").replace("mdep", "mdp", 1))
    r = run_gen("--check", "--output", str(stale))
    assert r.returncode == 1 and "stale" in r.stderr


def test_api_docs_cover_every_field_and_rule(tmp_path):
    out = tmp_path / "api.md"
    assert run_gen("--output", str(out)).returncode == 0
    text = out.read_text(encoding="utf-8")
    for kind in CRDS:
        for path, node in walk(schema_of(kind)):
            if path.startswith(("spec", "status")) and not path.endswith(("[]", "{}")):
                assert f"`{path}`" in text, f"{kind} {path} is not in docs/api.md"
        for _, node in walk(schema_of(kind)):
            for r in node.get("x-kubernetes-validations", []):
                assert " ".join(r["rule"].split()).replace("|", "\\|") in text, r["rule"]
                if "message" in r:
                    assert " ".join(r["message"].split()).replace("|", "\\|") in text, r["message"]
