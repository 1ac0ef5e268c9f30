"""The CRDs against a real kube-apiserver: bad input is rejected at the door with the field named.

Each bad spec is a valid sample from docs/samples/ with one mistake, sent with
`kubectl create --dry-run=server`, so the apiserver runs the whole admission chain (OpenAPI schema,
defaulting, CEL rules, kubectl's strict field validation) and stores nothing. The test checks the
error names the offending field path and carries the rule's message, so a rule that stops firing,
or fires with a vague message, fails here. Also: every sample is accepted, defaults are applied,
the status and scale subresources take what the operator writes, and `kubectl explain` prints the
field descriptions.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
SAMPLES = REPO / "docs" / "samples"


def sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def crds(kubectl) -> None:
    """This checkout's CRDs, installed and established (a reused cluster may have older ones)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl("wait", "--for", "condition=established", "--timeout=60s", "-f", str(CRD_DIR))


@pytest.fixture
def dry_run(kubectl, namespace, crds) -> Callable[[dict], Any]:
    def run(doc: dict[str, Any], *extra: str):
        return kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", *extra,
                       input=yaml.safe_dump(doc), check=False)
    return run


# --------------------------------------------------------------------------------- bad specs
# (id, sample, mutation, strings the error must contain: the field path first, then the message).

def set_path(doc: dict, path: str, value: Any) -> dict:
    """Set a dotted path ('spec.targets.0.name'); value DELETE removes the key."""
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


DELETE = object()


def m(*changes: tuple[str, Any]) -> Callable[[dict], dict]:
    def apply(doc: dict) -> dict:
        for path, value in changes:
            set_path(doc, path, value)
        return doc
    return apply


def append(path: str, item: Any) -> Callable[[dict], dict]:
    def apply(doc: dict) -> dict:
        node: Any = doc
        for p in path.split("."):
            node = node[int(p)] if isinstance(node, list) else node[p]
        node.append(item)
        return doc
    return apply


CPU = "modeldeployment-triton-cpu"
GPU = "modeldeployment-triton-gpu"
CANARY = "modeldeployment-canary"
PT = "modelexport-pytorch-onnx"
ONNX = "modelexport-onnx-quantize"
TF = "modelexport-tensorflow-tflite"

BAD_SPECS = [
    # ---- ModelDeployment
    ("canary-weights-decrease", CANARY, m(("spec.rollout.canary.steps.3.setWeight", 5)),
     ["spec.rollout.canary.steps", "setWeight values must not decrease"]),
    ("two-model-sources", CPU, m(("spec.model.exportRef", {"name": "resnet50"})),
     ["spec.model", "exactly one source"]),
    ("no-model-source", CPU, m(("spec.model", {"name": "resnet"})),
     ["spec.model", "exactly one source"]),
    ("uri-without-format", CPU, m(("spec.model.format", DELETE)),
     ["spec.model.format", "Required value", "model.format is required with model.uri"]),
    ("format-with-exportRef", CPU, m(("spec.model", {"exportRef": {"name": "resnet50"}, "format": "onnx"})),
     ["spec.model.format", "Forbidden", "comes from the export"]),
    ("uri-bad-bucket", CPU, m(("spec.model.uri", "s3://Models_Bucket/resnet/model.onnx")),
     ["spec.model.uri", "bucket name"]),
    ("uri-unknown-scheme", CPU, m(("spec.model.uri", "ftp://models/resnet/model.onnx")),
     ["spec.model.uri", "should match"]),
    ("tfserving-cannot-serve-onnx", CPU, m(("spec.runtime.kind", "tfserving")),
     ["spec.model.format", "tfserving, which serves savedmodel only"]),
    ("mar-needs-torchserve", CPU, m(("spec.model.format", "mar")),
     ["spec.model.format", "needs runtime.kind torchserve"]),
    ("tflite-is-not-served", CPU, m(("spec.model.format", "tflite")),
     ["spec.model.format", "no runtime modelpilot renders can serve a TFLite model"]),
    ("unknown-runtime-kind", CPU, m(("spec.runtime.kind", "onnxruntime")),
     ["spec.runtime.kind", "Unsupported value", '"triton"']),
    ("preferred-batch-above-max", GPU, m(("spec.runtime.dynamicBatching.preferredBatchSizes", [8, 64])),
     ["spec.runtime.dynamicBatching.preferredBatchSizes", "at most runtime.maxBatchSize"]),
    ("replicas-negative", CPU, m(("spec.replicas", -1)),
     ["spec.replicas", "greater than or equal to 0"]),
    ("autoscaling-min-above-max", CPU, m(("spec.autoscaling", {"minReplicas": 5, "maxReplicas": 2})),
     ["spec.autoscaling.minReplicas", "less than or equal to autoscaling.maxReplicas"]),
    ("autoscaling-pods-metric-without-name", CPU,
     m(("spec.autoscaling", {"maxReplicas": 4, "metrics": [{"type": "pods", "targetAverageValue": "10"}]})),
     ["spec.autoscaling.metrics[0].name", "required for type pods"]),
    ("autoscaling-cpu-without-target", CPU,
     m(("spec.autoscaling", {"maxReplicas": 4, "metrics": [{"type": "cpu"}]})),
     ["spec.autoscaling.metrics[0]", "exactly one of targetAverageUtilization"]),
    ("migProfile-without-gpu-count", CPU, m(("spec.placement.gpu", {"migProfile": "1g.10gb"})),
     ["spec.placement.gpu.migProfile", "needs placement.gpu.count: 1"]),
    ("migProfile-bad-format", GPU, m(("spec.placement.gpu.migProfile", "1g10gb")),
     ["spec.placement.gpu.migProfile", "should match"]),
    ("gpu-product-without-count", GPU, m(("spec.placement.gpu.count", 0)),
     ["spec.placement.gpu.product", "count of at least 1"]),
    ("gpu-in-resources", CPU, lambda d: d["spec"]["placement"]["resources"]["limits"].update({"nvidia.com/gpu": 1}) or d,
     ["spec.placement.resources", "must not request GPUs"]),
    ("canary-block-with-strategy-direct", CPU,
     m(("spec.rollout", {"strategy": "direct", "canary": {"steps": [{"setWeight": 10}]}})),
     ["spec.rollout.canary", "Forbidden", "only allowed with rollout.strategy canary (strategy is direct)"]),
    ("canary-strategy-without-block", CPU, m(("spec.rollout", {"strategy": "canary"})),
     ["spec.rollout.canary", "Required value", "rollout.canary is required"]),
    ("blueGreen-block-with-canary-strategy", CANARY, m(("spec.rollout.blueGreen", {"autoPromotionEnabled": False})),
     ["spec.rollout.blueGreen", "Forbidden", "strategy is canary"]),
    ("canary-step-with-two-actions", CANARY, m(("spec.rollout.canary.steps.0", {"setWeight": 10, "pause": {}})),
     ["spec.rollout.canary.steps[0]", "exactly one of setWeight, pause or analysis"]),
    ("canary-weight-above-100", CANARY, m(("spec.rollout.canary.steps.0.setWeight", 150)),
     ["spec.rollout.canary.steps[0].setWeight", "less than or equal to 100"]),
    ("pause-duration-not-a-duration", CANARY, m(("spec.rollout.canary.steps.1.pause.duration", "2 minutes")),
     ["spec.rollout.canary.steps[1].pause.duration", "should match"]),
    ("analysis-with-no-metrics", CANARY, m(("spec.rollout.canary.steps.2.analysis.metrics", [])),
     ["spec.rollout.canary.steps[2].analysis.metrics", "at least 1 items"]),
    ("export-ttl-too-short-to-read-the-result", PT, m(("spec.ttlSecondsAfterFinished", 0)),
     ["spec.ttlSecondsAfterFinished", "greater than or equal to 60"]),
    ("analysis-interval-zero", CANARY, m(("spec.rollout.canary.steps.2.analysis.interval", "0s")),
     ["spec.rollout.canary.steps[2].analysis.interval", "interval must be at least 1s"]),
    ("analysis-interval-below-a-second", CANARY, m(("spec.rollout.canary.steps.2.analysis.interval", "999ms")),
     ["spec.rollout.canary.steps[2].analysis.interval", "interval must be at least 1s"]),
    ("background-analysis-without-metrics", CANARY, m(("spec.rollout.analysis", {"interval": "1m"})),
     ["spec.rollout.analysis.metrics", "Required value"]),
    ("metric-query-without-condition", CANARY,
     m(("spec.rollout.canary.steps.2.analysis.metrics.0.successCondition", DELETE)),
     ["spec.rollout.canary.steps[2].analysis.metrics[0].query", "needs successCondition, failureCondition or thresholdRange"]),
    ("metric-with-query-and-judge", CANARY,
     m(("spec.rollout.canary.steps.2.analysis.metrics.1.query", "up")),
     ["spec.rollout.canary.steps[2].analysis.metrics[1]", "exactly one of query"]),
    ("judge-confidence-out-of-range", CANARY,
     m(("spec.rollout.canary.steps.2.analysis.metrics.1.judge.confidence", 1.0)),
     ["spec.rollout.canary.steps[2].analysis.metrics[1].judge.confidence", "less than 1"]),
    ("shadow-on-replicas-router", CPU, m(("spec.rollout", {"strategy": "shadow", "shadow": {"percent": 10}})),
     ["spec.traffic.router", "must be gatewayAPI or istio for rollout.strategy shadow"]),
    ("abTest-on-replicas-router", CPU,
     m(("spec.rollout", {"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "x-variant", "value": "b"}]}}})),
     ["spec.traffic.router", "must be gatewayAPI or istio for rollout.strategy abTest"]),
    ("abTest-match-empty", CANARY,
     m(("spec.rollout", {"strategy": "abTest", "abTest": {"match": {}}})),
     ["spec.rollout.abTest.match", "at least one header match or a cookie"]),
    ("gatewayAPI-without-parentRefs", CANARY, m(("spec.traffic.gateway", DELETE)),
     ["spec.traffic.gateway.parentRefs", "Required value", "required with router gatewayAPI"]),
    ("gateway-block-with-replicas-router", CANARY, m(("spec.traffic.router", "replicas"), ("spec.rollout", {"strategy": "direct"})),
     ["spec.traffic.gateway", "Forbidden", "router is replicas"]),
    ("misspelt-field", CPU, m(("spec.rollout", {"stratgy": "canary"})),
     ['unknown field "spec.rollout.stratgy"']),
    ("deployment-name-starts-with-digit", CPU, m(("metadata.name", "50-resnet")),
     ["metadata.name", "must start with a letter"]),
    # ---- ModelExport
    ("int8-without-calibration", ONNX, m(("spec.targets.0.quantization.calibration", DELETE)),
     ["spec.targets[0].quantization.calibration", "Required value", "required for mode int8"]),
    ("calibration-uri-and-synthetic", ONNX, m(("spec.targets.0.quantization.calibration.synthetic", True)),
     ["spec.targets[0].quantization.calibration", "exactly one source"]),
    ("calibration-without-int8", PT,
     m(("spec.targets.1.quantization.calibration", {"synthetic": True})),
     ["spec.targets[1].quantization.calibration", "Forbidden", "only used by mode int8"]),
    ("autotune-with-quantization-mode", PT,
     append("spec.targets", {"name": "auto", "format": "onnx", "quantization": {"mode": "dynamic"},
                             "optimization": {"autotune": {}}}),
     ["spec.targets[2].quantization.mode", "Forbidden", "autotune chooses the precision"]),
    ("autotune-on-pt2-target", PT, append("spec.targets", {"format": "pt2", "optimization": {"autotune": {}}}),
     ["spec.targets[2].optimization", "only supported for onnx targets"]),
    ("autotune-batch-size-0", PT,
     append("spec.targets", {"name": "auto", "format": "onnx", "optimization": {"autotune": {"batchSizes": [0]}}}),
     ["spec.targets[2].optimization.autotune.batchSizes[0]", "greater than or equal to 1"]),
    ("int4-on-tflite-target", TF, m(("spec.targets.0.quantization.mode", "int4")),
     ["spec.targets[0].quantization.mode", "Forbidden", "int4"]),
    ("tflite-target-from-pytorch-source", PT, append("spec.targets", {"name": "lite", "format": "tflite"}),
     ["spec.targets", "need source.format tensorflow (source.format is pytorch)"]),
    ("torchscript-target-from-onnx-source", ONNX, append("spec.targets", {"format": "torchscript"}),
     ["spec.targets", "need source.format pytorch (source.format is onnx)"]),
    ("quantized-torchscript-target", PT, append("spec.targets", {"format": "torchscript", "quantization": {"mode": "dynamic"}}),
     ["spec.targets[2].quantization", "only supported for onnx and tflite targets"]),
    ("optimization-on-tflite-target", TF, m(("spec.targets.0.optimization", {"level": "basic"})),
     ["spec.targets[0].optimization", "only supported for onnx targets"]),
    ("opset-on-pt2-target", PT, append("spec.targets", {"format": "pt2", "opset": 17}),
     ["spec.targets[2].opset", "only applies to onnx targets"]),
    ("pruning-amount-1.5", PT, m(("spec.targets.0.pruning", {"method": "unstructured", "amount": 1.5})),
     ["spec.targets[0].pruning.amount", "less than 1"]),
    ("pruning-from-onnx-source", ONNX, m(("spec.targets.1.pruning", {"method": "structured", "amount": 0.3})),
     ["spec.targets", "pruning is only supported from a pytorch source"]),
    ("duplicate-target-names", PT, m(("spec.targets.1.name", "onnx")),
     ["spec.targets", "must be unique"]),
    ("stateDict-loader-without-factory", PT, m(("spec.source.pytorch", {"loader": "stateDict"})),
     ["spec.source.pytorch.factory", "Required value", "required when loader is stateDict"]),
    ("factory-bad-format", PT, m(("spec.source.pytorch", {"loader": "stateDict", "factory": "models.resnet"})),
     ["spec.source.pytorch.factory", "should match"]),
    ("pytorch-block-on-onnx-source", ONNX, m(("spec.source.pytorch", {"loader": "torchscript"})),
     ["spec.source.pytorch", "Forbidden", "only applies to source.format pytorch"]),
    ("file-uri-relative", PT, m(("spec.source.uri", "file://models/resnet50.pt2")),
     ["spec.source.uri", "absolute path"]),
    ("pvc-uri-bad-claim", PT, m(("spec.source.uri", "pvc://Models_Claim/resnet50.pt2")),
     ["spec.source.uri", "pvc://<claim>/<path>"]),
    ("endpoint-on-pvc-source", PT, m(("spec.source.endpoint", "http://minio:9000")),
     ["spec.source.endpoint", "Forbidden", "only applies to an s3:// source.uri"]),
    ("output-to-https", PT, m(("spec.output.uri", "https://example.com/models")),
     ["spec.output.uri", "should match"]),
    ("no-inputs", PT, m(("spec.inputs", [])),
     ["spec.inputs", "at least 1 items"]),
    ("unknown-dtype", PT, m(("spec.inputs.0.dtype", "float8")),
     ["spec.inputs[0].dtype", "Unsupported value"]),
    ("shape-below-minus-one", PT, m(("spec.inputs.0.shape", [-2, 3, 224, 224])),
     ["spec.inputs[0].shape[0]", "greater than or equal to -1"]),
    ("validation-zero-samples", PT, m(("spec.validation.samples", 0)),
     ["spec.validation.samples", "greater than or equal to 1"]),
    ("export-name-too-long", PT, m(("metadata.name", "resnet50-" + "x" * 45)),
     ["metadata.name", "at most 48 characters"]),
    ("allow-pickle-on-onnx-source", ONNX, m(("spec.source.allowPickle", True)),
     ["spec.source.allowPickle", "Forbidden", "only applies to source.format pytorch"]),
    ("source-limit-not-a-size", PT, m(("spec.source.limits", {"maxDownloadSize": "lots"})),
     ["spec.source.limits.maxDownloadSize", "should match"]),
    ("source-limit-no-files", PT, m(("spec.source.limits", {"maxFiles": 0})),
     ["spec.source.limits.maxFiles", "greater than or equal to 1"]),
    ("model-limit-not-a-size", CPU, m(("spec.model.limits", {"maxUnpackedSize": "10 GB"})),
     ["spec.model.limits.maxUnpackedSize", "should match"]),
    ("model-allow-pickle-not-a-bool", CPU, m(("spec.model.allowPickle", "yes")),
     ["spec.model.allowPickle", "boolean"]),
]


def test_bad_specs_are_distinct_and_many():
    ids = [b[0] for b in BAD_SPECS]
    assert len(ids) == len(set(ids)) and len(ids) >= 14


@pytest.mark.parametrize("sample_name,mutate,expected", [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(dry_run, sample_name, mutate, expected):
    doc = mutate(copy.deepcopy(sample(sample_name)))
    r = dry_run(doc)
    assert r.returncode != 0, f"accepted, but should be rejected:\n{yaml.safe_dump(doc['spec'])}"
    for fragment in expected:
        assert fragment in r.stderr, f"missing {fragment!r} in:\n{r.stderr}"


# ------------------------------------------------------------------------------- good specs


@pytest.mark.parametrize("name", sorted(p.stem for p in SAMPLES.glob("*.yaml")))
def test_sample_is_accepted(dry_run, name):
    r = dry_run(sample(name), "-o", "name")
    assert r.returncode == 0, r.stderr
    kind = sample(name)["kind"].lower()
    assert r.stdout.strip() == f"{kind}.modelpilot.io/{sample(name)['metadata']['name']}"


def test_the_trust_and_limit_fields_are_accepted(dry_run):
    """allowPickle and limits (docs/security.md, "Model files and sources") on both kinds."""
    export = sample(PT)
    export["spec"]["source"].update(allowPickle=True, limits={"maxDownloadSize": "20Gi", "maxUnpackedSize": 10**9,
                                                              "maxFiles": 5})
    deployment = sample(CPU)
    deployment["spec"]["model"].update(allowPickle=False, limits={"maxDownloadSize": "500Mi"})
    for doc in (export, deployment):
        r = dry_run(doc, "-o", "json")
        assert r.returncode == 0, r.stderr
        stored = json.loads(r.stdout)["spec"]
        assert stored.get("source", stored.get("model"))["limits"] == doc["spec"].get("source", doc["spec"].get("model"))["limits"]


def test_defaults_are_applied(dry_run):
    # The operator may rely on these being present on every object the apiserver returns.
    minimal = {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "minimal"},
               "spec": {"model": {"uri": "file:///models/m.onnx", "format": "onnx"}, "runtime": {"kind": "triton"}}}
    r = dry_run(minimal, "-o", "json")
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout)["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["runtime"] == {"kind": "triton", "maxBatchSize": 8, "instances": 1, "dynamicBatching": {"enabled": True}}
    assert spec["rollout"] == {"strategy": "direct", "progressDeadlineSeconds": 600}
    assert spec["traffic"] == {"router": "replicas", "port": 80}

    export = sample("modelexport-pytorch-onnx")
    del export["spec"]["validation"]
    r = dry_run(export, "-o", "json")
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout)["spec"]
    assert spec["validation"] == {"atol": 0.0001, "rtol": 0.001, "samples": 8, "warnOnly": False}
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (1, 3600, 86400)
    assert spec["targets"][0]["optimization"] == {"level": "basic", "fusion": "auto"}
    assert spec["targets"][1]["quantization"]["mode"] == "fp16"


def test_status_and_scale_subresources(kubectl, namespace, crds):
    # Created for real: the status shape the operator writes must be accepted, and kubectl scale
    # (and an HPA) must reach spec.replicas through the scale subresource.
    doc = sample("modeldeployment-canary")
    doc["metadata"]["name"] = "status-check"
    kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    status = {
        "phase": "Progressing", "observedGeneration": 1, "stableRevision": 1, "canaryRevision": 2, "currentStep": 2,
        "weights": {"stable": 90, "canary": 10, "mirror": 0, "achieved": True},
        "revisions": [{"revision": 1, "hash": "5f1c", "modelDigest": "sha256:ab", "created": "2025-01-01T00:00:00Z",
                       "outcome": "Stable"}, {"revision": 2, "hash": "77aa", "created": "2025-01-02T00:00:00Z"}],
        "endpoint": "http://status-check.default.svc/v2/models/sentiment", "replicas": 4, "readyReplicas": 3,
        "selector": "modelpilot.io/model-deployment=status-check,modelpilot.io/revision=1",
        "pauseReason": "", "analysis": {"error-rate": {"value": 0.001, "verdict": "Pass", "history": [1, 2]}},
        "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing", "message": "step 2 of 6",
                        "lastTransitionTime": "2025-01-02T00:00:00Z", "observedGeneration": 1}],
    }
    kubectl("patch", "-n", namespace, "modeldeployment", "status-check", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    got = json.loads(kubectl("get", "-n", namespace, "mdep", "status-check", "-o", "json").stdout)
    assert got["status"] == status  # nothing pruned: every field the operator writes is in the schema
    table = kubectl("get", "-n", namespace, "mdep", "status-check").stdout
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "READY", "AGE"]
    assert table.split("\n")[1].split()[:6] == ["status-check", "Progressing", "1", "2", "10", "3"]

    kubectl("scale", "-n", namespace, "mdep", "status-check", "--replicas=7")
    scale = json.loads(kubectl("get", "--raw",
                               f"/apis/modelpilot.io/v1alpha1/namespaces/{namespace}/modeldeployments/status-check/scale").stdout)
    assert scale["spec"]["replicas"] == 7 and scale["status"]["replicas"] == 4
    assert scale["status"]["selector"] == status["selector"]

    # A malformed condition (the apiserver is the last line of defence for the operator, too).
    bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "x y",
                                      "message": "", "lastTransitionTime": "2025-01-02T00:00:00Z"}]}}
    r = kubectl("patch", "-n", namespace, "mdep", "status-check", "--subresource=status", "--type=merge",
                "-p", json.dumps(bad), check=False)
    assert r.returncode != 0 and "status.conditions[0].status" in r.stderr and "status.conditions[0].reason" in r.stderr


def test_short_names_and_category(kubectl, namespace, crds):
    for resource in ("mdep", "mex", "modelpilot"):
        r = kubectl("get", resource, "-n", namespace)
        assert r.returncode == 0, r.stderr


def _explain(kubectl, what: str) -> str:
    # The apiserver publishes a new CRD's OpenAPI a moment after it is established.
    deadline = time.monotonic() + 60
    while True:
        r = kubectl("explain", what, check=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            return r.stdout + r.stderr
        time.sleep(1)


def _crd_node(kind: str, path: list[str]) -> dict:
    crd = yaml.safe_load((CRD_DIR / f"modelpilot.io_{kind}s.yaml").read_text(encoding="utf-8"))
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for p in path:
        node = node["properties"][p]
        if node.get("type") == "array":
            node = node["items"]
    return node


@pytest.mark.parametrize("what,kind,path", [
    ("modeldeployment.spec.rollout", "modeldeployment", ["spec", "rollout"]),
    ("modelexport.spec.targets", "modelexport", ["spec", "targets"]),
    ("mdep.spec.placement.gpu", "modeldeployment", ["spec", "placement", "gpu"]),
])
def test_kubectl_explain_prints_the_descriptions(kubectl, crds, what, kind, path):
    out = " ".join(_explain(kubectl, what).split())
    node = _crd_node(kind, path)
    for name, child in node["properties"].items():
        assert name in out, f"{name} missing from kubectl explain {what}"
        # kubectl wraps text: compare with whitespace collapsed.
        assert " ".join(child["description"].split()) in out, f"description of {name} missing:\n{out}"
