"""Integer fields read by the typed views name the field when they are not integers: the CRD checks
types at the apiserver, but `kubectl modelpilot render -f` reads files the apiserver never saw."""

from __future__ import annotations

import copy

import pytest

from modelpilot.api.errors import SpecError
from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.api.modelexport import parse_model_export

from .helpers import md

pytestmark = pytest.mark.unit

MD_FIELDS = [
    ("traffic", {"port": "eighty"}, "spec.traffic.port"),
    ("autoscaling", {"minReplicas": "one", "maxReplicas": 3}, "spec.autoscaling.minReplicas"),
    ("autoscaling", {"minReplicas": 1, "maxReplicas": 2.5}, "spec.autoscaling.maxReplicas"),
    ("rollout", {"strategy": "blueGreen", "blueGreen": {"scaleDownDelaySeconds": "soon"}}, "spec.rollout.blueGreen.scaleDownDelaySeconds"),
    ("rollout", {"strategy": "blueGreen", "blueGreen": {"previewReplicas": "2"}}, "spec.rollout.blueGreen.previewReplicas"),
    ("rollout", {"strategy": "blueGreen", "blueGreen": {"autoPromotionSeconds": True}}, "spec.rollout.blueGreen.autoPromotionSeconds"),
    ("rollout", {"strategy": "shadow", "shadow": {"percent": "half"}}, "spec.rollout.shadow.percent"),
    ("rollout", {"strategy": "abTest", "abTest": {"weight": "10"}}, "spec.rollout.abTest.weight"),
    ("rollout", {"strategy": "canary", "progressDeadlineSeconds": "10m"}, "spec.rollout.progressDeadlineSeconds"),
]


@pytest.mark.parametrize("key,value,field", MD_FIELDS, ids=[f for _, _, f in MD_FIELDS])
def test_a_model_deployment_integer_that_is_not_one_names_its_field(key, value, field):
    with pytest.raises(SpecError) as err:
        parse_model_deployment(md(**{key: value}))
    assert err.value.field == field and "expected an integer" in str(err.value)


@pytest.mark.parametrize("key", ["backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"])
def test_a_model_export_integer_that_is_not_one_names_its_field(key):
    body = {"metadata": {"name": "e", "namespace": "ml"}, "spec": {
        "source": {"uri": "pvc://m/model.onnx", "format": "onnx"}, "output": {"uri": "pvc://m/out"}, key: "1h"}}
    with pytest.raises(SpecError) as err:
        parse_model_export(copy.deepcopy(body))
    assert err.value.field == f"spec.{key}"


def test_the_defaults_stand_when_the_fields_are_unset():
    view = parse_model_deployment(md())
    assert (view.traffic.port, view.rollout.blue_green.scale_down_delay_seconds, view.rollout.progress_deadline_seconds) == (80, 30, 600)
