"""Golden-file tests of the pure builders: the whole rendered object set per runtime.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/unit/test_render.py` and
review the diff like any other code change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.render import ExportArtifact, build_autoscaler, build_entry_service, build_revision_objects, runtime_warnings
from modelpilot.runtimes import Signature

from .helpers import CONFIG, md

pytestmark = pytest.mark.unit
GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "triton-gpu": md(),
    "triton-cpu": md(placement={"nodePool": "cpu", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}),
    "triton-mig": md(placement={"nodePool": "gpu-mig", "gpu": {"count": 1, "migProfile": "1g.10gb"}}),
    "torchserve-cpu": md(model={"uri": "s3://models/bert.mar", "format": "mar"}, runtime={"kind": "torchserve", "maxBatchSize": 4},
                         placement={"nodePool": "cpu"}),
    "tfserving-gpu": md(model={"uri": "gs://models/bert", "format": "savedmodel"}, runtime={"kind": "tfserving"}),
    "tfserving-cpu-batching": md(model={"uri": "s3://models/mobilenet", "format": "savedmodel", "secretRef": {"name": "s3"},
                                        "endpoint": "http://minio.storage:9000"},
                                 runtime={"kind": "tfserving", "maxBatchSize": 16, "instances": 2,
                                          "dynamicBatching": {"maxQueueDelayMicroseconds": 2000, "preferredBatchSizes": [4, 8]}},
                                 replicas=1, placement={"nodePool": "cpu"}),
    "torchserve-gpu-torchscript": md(model={"uri": "pvc://models/bert/model.pt", "format": "torchscript", "name": "bert"},
                                     runtime={"kind": "torchserve", "maxBatchSize": 8, "instances": 2,
                                              "dynamicBatching": {"maxQueueDelayMicroseconds": 2500}},
                                     replicas=3),
    "triton-signature": md(),
    "triton-export": md(model={"exportRef": {"name": "resnet-export", "target": "onnx"}}, replicas=1),
}

SIGNATURE = Signature.from_dict({
    "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [-1, 3, 224, 224]},
               {"name": "mask", "dtype": "bool", "shape": [-1]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 1000]}],
})
EXPORT = ExportArtifact(format="onnx", manifest_uri="pvc://exports/resnet/manifest.json", signature=SIGNATURE)
KWARGS = {"triton-signature": {"signature": SIGNATURE},
          "triton-export": {"export": EXPORT, "mount_pvc_sources": True},
          "torchserve-gpu-torchscript": {"mount_pvc_sources": True}}


def render(body: dict, **kwargs) -> list[dict]:
    spec = parse_model_deployment(body)
    return [build_entry_service(spec), *build_revision_objects(spec, 1, CONFIG, spec.replicas, **kwargs)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    got = render(CASES[case], **KWARGS.get(case, {}))
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump_all(got, sort_keys=True))
    want = list(yaml.safe_load_all(path.read_text()))
    assert len(got) == len(want), "a builder added or dropped an object"
    for g, w in zip(got, want):
        assert g == w, f"{g['kind']}/{g['metadata']['name']} differs from {path}"


def test_rendering_is_deterministic() -> None:
    assert render(CASES["triton-gpu"]) == render(CASES["triton-gpu"])


def test_gpu_pod_lands_on_pool_with_gpu_request() -> None:
    dep = render(CASES["triton-gpu"])[2]
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"modelpilot.io/pool": "gpu-a100", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    res = pod["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "1"


def test_mig_requests_the_mig_resource() -> None:
    dep = render(CASES["triton-mig"])[2]
    res = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert set(res["limits"]) == {"nvidia.com/mig-1g.10gb", "ephemeral-storage"}


def test_cpu_pod_has_no_gpu_and_no_toleration() -> None:
    pod = render(CASES["triton-cpu"])[2]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"modelpilot.io/pool": "cpu"}
    assert "tolerations" not in pod
    assert "nvidia.com/gpu" not in str(pod["containers"][0]["resources"])


def test_triton_config_pbtxt() -> None:
    cm = render(CASES["triton-gpu"])[1]
    assert cm["data"]["resnet.config.pbtxt"] == (
        'name: "resnet"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\ndynamic_batching {\n}\n'
        "instance_group [\n  {\n    count: 1\n    kind: KIND_GPU\n  }\n]\n"
    )


def test_children_are_owned_and_labelled() -> None:
    for obj in render(CASES["triton-gpu"]):
        meta = obj["metadata"]
        assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelpilot"
        assert meta["labels"]["modelpilot.io/model-deployment"] == "resnet"


def test_no_replicas_field_under_autoscaling() -> None:
    spec = parse_model_deployment(md(autoscaling={"minReplicas": 1, "maxReplicas": 4}))
    dep = build_revision_objects(spec, 1, CONFIG, None)[1]
    assert "replicas" not in dep["spec"]


def test_hpa_cpu_and_memory_targets_are_rendered_as_written() -> None:
    """targetAverageValue on cpu/memory is an AverageValue target (it was rendered as 80% utilization)."""
    metrics = [{"type": "cpu", "targetAverageValue": "500m"}, {"type": "memory", "targetAverageValue": "2Gi"},
               {"type": "cpu", "targetAverageUtilization": 60}, {"type": "memory", "targetAverageValue": 3}]
    hpa = build_autoscaler(parse_model_deployment(md(autoscaling={"maxReplicas": 4, "metrics": metrics})), 1)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "500m"}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "2Gi"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "3"}}},
    ]


def test_torchserve_warns_that_it_ignores_preferred_batch_sizes() -> None:
    body = md(model={"uri": "s3://models/bert.mar", "format": "mar"}, placement={"nodePool": "cpu"},
              runtime={"kind": "torchserve", "maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [4, 8],
                                                                                    "maxQueueDelayMicroseconds": 2500}})
    assert runtime_warnings(parse_model_deployment(body)) == [
        "spec.runtime.dynamicBatching.preferredBatchSizes [4, 8] is ignored: TorchServe has no preferred sizes, it "
        "batches up to batchSize=8 requests within maxBatchDelay=3 ms; remove the field"]
    assert runtime_warnings(parse_model_deployment(CASES["torchserve-cpu"])) == []


@pytest.mark.parametrize("case", ["torchserve-cpu", "torchserve-gpu-torchscript"])
def test_torchserve_management_api_listens_on_loopback_only(case: str) -> None:
    """Issue 11, scenario 7: with token auth off, a management API on 0.0.0.0 lets any pod scale the
    model to zero workers. It must listen on 127.0.0.1 (HTTP and gRPC), not be a declared port, and no
    kubelet probe (httpGet/tcpSocket, which come from outside the pod) may need it."""
    objs = render(CASES[case], **KWARGS.get(case, {}))
    props = dict(line.split("=", 1) for line in objs[1]["data"]["config.properties"].splitlines())
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert props["grpc_management_address"] == "127.0.0.1"
    assert props["inference_address"] == "http://0.0.0.0:8080"  # the Service and the gateway reach it
    server = objs[2]["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in server["ports"]] == ["http", "grpc", "metrics"]
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = server[kind]
        remote = probe.get("httpGet") or probe.get("tcpSocket")
        assert remote is None or remote["port"] not in ("management", 8081), f"{kind} needs the management API from outside"


# ---------- bounded node disk and an optional NetworkPolicy (issue 11, scenario 10) ----------

def _pod_templates() -> list[tuple[str, dict]]:
    from modelpilot.export.job import build_export_job
    from .test_export_plan import BODY
    pods = [(case, o["spec"]["template"]["spec"]) for case in sorted(CASES)
            for o in render(CASES[case], **KWARGS.get(case, {})) if o["kind"] == "Deployment"]
    return pods + [("export-job", build_export_job(BODY, "resnet-export-g1", CONFIG)["spec"]["template"]["spec"])]


def test_every_empty_dir_has_a_size_limit_and_every_container_bounded_ephemeral_storage() -> None:
    pods = _pod_templates()
    assert len(pods) == len(CASES) + 1
    for case, pod in pods:
        for v in pod["volumes"]:
            if "emptyDir" in v:
                assert v["emptyDir"].get("sizeLimit"), f"{case}: emptyDir {v['name']} has no sizeLimit"
        for ctr in pod.get("initContainers", []) + pod["containers"]:
            res = ctr["resources"]
            assert res["requests"]["ephemeral-storage"] and res["limits"]["ephemeral-storage"], f"{case}: {ctr['name']}"


def test_ephemeral_storage_comes_from_the_config_and_covers_the_pods_empty_dirs() -> None:
    from modelpilot.config import parse_config
    config = parse_config({"nodePools": {"gpu-a100": {"nodeSelector": {"p": "a100"}}},
                           "ephemeralStorage": {"modelRepository": "50Gi", "scratch": "2Gi", "request": "1Gi", "headroom": "512Mi"}})
    dep = build_revision_objects(parse_model_deployment(md()), 1, config, 2)[1]
    pod = dep["spec"]["template"]["spec"]
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v}
    assert sizes == {"model-repository": "50Gi", "tmp": "2Gi", "dshm": "1Gi"}
    for ctr in pod["initContainers"] + pod["containers"]:
        assert ctr["resources"]["requests"]["ephemeral-storage"] == "1Gi"
        assert ctr["resources"]["limits"]["ephemeral-storage"] == f"{50 * 1024 + 2 * 1024 + 512}Mi"
    with pytest.raises(ValueError, match="ephemeralStorage.scratch: expected a quantity"):
        parse_config({"ephemeralStorage": {"scratch": "lots"}})


def test_a_placement_that_sets_ephemeral_storage_keeps_it() -> None:
    body = md(placement={"nodePool": "cpu", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "5Gi"},
                                                            "limits": {"ephemeral-storage": "80Gi"}}})
    server = render(body)[2]["spec"]["template"]["spec"]["containers"][0]
    assert server["resources"]["requests"]["ephemeral-storage"] == "5Gi"
    assert server["resources"]["limits"]["ephemeral-storage"] == "80Gi"


def test_network_policy_is_off_by_default_and_admits_only_the_configured_peers() -> None:
    from modelpilot.config import parse_config
    from modelpilot.render import build_network_policy
    spec = parse_model_deployment(md())
    assert build_network_policy(spec, CONFIG) is None
    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}}}
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    config = parse_config({"networkPolicy": {"enabled": True, "ingressFrom": [gateway], "metricsFrom": [scraper]}})
    np = build_network_policy(spec, config)
    assert np["kind"] == "NetworkPolicy" and np["metadata"]["name"] == "resnet"
    assert np["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert np["spec"] == {
        "podSelector": {"matchLabels": {"modelpilot.io/model-deployment": "resnet", "app.kubernetes.io/component": "predictor"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [gateway], "ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 8001}]},
                    {"from": [scraper], "ports": [{"protocol": "TCP", "port": 8002}]}],
        "egress": [{}],  # the storage initializer downloads the model: egress stays open, explicitly
    }
    # No peers configured: no rule at all (a rule with an empty `from` would admit everyone).
    closed = build_network_policy(spec, parse_config({"networkPolicy": {"enabled": True}}))
    assert closed["spec"]["ingress"] == []


def test_network_policy_admits_the_parity_check_of_an_export_model_unless_it_is_off() -> None:
    from modelpilot.config import parse_config
    from modelpilot.render import build_network_policy
    config = parse_config({"networkPolicy": {"enabled": True}})
    exported = md(model={"exportRef": {"name": "resnet-export"}})
    check = {"from": [{"podSelector": {"matchLabels": {"modelpilot.io/model-deployment": "resnet",
                                                       "app.kubernetes.io/component": "parity"}}}],
             "ports": [{"protocol": "TCP", "port": 8000}]}
    assert build_network_policy(parse_model_deployment(exported), config)["spec"]["ingress"] == [check]
    exported["spec"]["rollout"] = {"parityCheck": {"enabled": False}}
    assert build_network_policy(parse_model_deployment(exported), config)["spec"]["ingress"] == []
    assert build_network_policy(parse_model_deployment(md()), config)["spec"]["ingress"] == []  # a uri model: no check
