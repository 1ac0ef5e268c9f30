"""Runtime/format and placement combinations that cannot work are refused with the field named
(the CRD refuses what CEL can see; the typed view refuses the rest, and the planner turns that into
SpecValid=False)."""

from __future__ import annotations

import pytest

from modelpilot.api.errors import SpecError
from modelpilot.api.modeldeployment import RUNTIME_FORMATS, check_runtime_format

from .conftest import deployment

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind, fmt, hint", [
    ("tfserving", "onnx", "or runtime triton"),
    ("torchserve", "onnx", "or runtime triton"),
    ("torchserve", "savedmodel", "or runtime triton or tfserving"),
    ("triton", "mar", "or runtime torchserve"),
    ("triton", "pt2", "or runtime torchserve"),
    ("triton", "tflite", "no runtime serves tflite"),
])
def test_runtime_that_cannot_serve_the_format(kind: str, fmt: str, hint: str) -> None:
    with pytest.raises(SpecError) as e:
        deployment(model={"uri": "s3://models/m", "format": fmt}, runtime={"kind": kind})
    assert e.value.field == "spec.model.format"
    assert f"runtime {kind} cannot serve a {fmt} model" in str(e.value) and hint in str(e.value)


def test_every_listed_combination_parses() -> None:
    for kind, formats in RUNTIME_FORMATS.items():
        for fmt in formats:
            assert deployment(model={"uri": "s3://models/m", "format": fmt}, runtime={"kind": kind}).model.format == fmt


def test_export_format_is_checked_with_the_same_table() -> None:
    md = deployment(model={"exportRef": {"name": "e"}}, runtime={"kind": "tfserving"})
    assert md.model.format is None, "known only from the export"
    with pytest.raises(SpecError, match="runtime tfserving cannot serve a onnx model"):
        check_runtime_format(md.runtime.kind, "onnx", "spec.model.exportRef.target")


@pytest.mark.parametrize("gpu, field", [
    ({"count": 2, "migProfile": "1g.10gb"}, "spec.placement.gpu.migProfile"),
    ({"count": 0, "migProfile": "1g.10gb"}, "spec.placement.gpu.migProfile"),
    ({"count": 0, "product": "NVIDIA-L4"}, "spec.placement.gpu.product"),
])
def test_impossible_gpu_requests(gpu: dict, field: str) -> None:
    with pytest.raises(SpecError) as e:
        deployment(placement={"nodePool": "gpu-mig", "gpu": gpu})
    assert e.value.field == field


def test_secret_and_endpoint_reach_the_typed_view() -> None:
    md = deployment(model={"uri": "s3://models/m", "format": "onnx", "secretRef": {"name": "s3-creds"},
                           "endpoint": "http://minio:9000"})
    assert (md.model.secret_ref, md.model.endpoint) == ("s3-creds", "http://minio:9000")
