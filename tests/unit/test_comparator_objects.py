"""The comparator's Deployment and Service: rendered only for a shadow rollout with compare and a
mirror in force, whole objects against a golden file (`UPDATE_GOLDEN=1` regenerates it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from modelpilot.api.errors import SpecError
from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.comparator.__main__ import parse_args
from modelpilot.comparator.objects import build_comparator_deployment, build_comparator_service

from .helpers import CONFIG, md

pytestmark = pytest.mark.unit
GOLDEN = Path(__file__).parent / "golden" / "comparator-shadow.yaml"


def shadow(**shadow_spec):
    body = md(runtime={"kind": "torchserve"}, model={"uri": "pvc://models/r/model.mar", "format": "mar"},
              traffic={"router": "gatewayAPI", "port": 8080, "gateway": {"parentRefs": [{"name": "gw"}]}},
              rollout={"strategy": "shadow", "shadow": {"percent": 20, **shadow_spec}})
    return parse_model_deployment(body)


def test_golden() -> None:
    m = shadow(compare=True, maxComparisonsPerSecond=50, comparisonTimeout="1500ms")
    got = [build_comparator_deployment(m, 3, 4, 20, CONFIG), build_comparator_service(m, 4, 20)]
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(yaml.safe_dump_all(got, sort_keys=True))
    want = list(yaml.safe_load_all(GOLDEN.read_text()))
    assert len(got) == len(want) == 2
    assert got == want


def test_the_rendered_arguments_are_ones_the_comparator_accepts() -> None:
    m = shadow(compare=True, comparisonTimeout="1500ms")
    args = build_comparator_deployment(m, 3, 4, 20, CONFIG)["spec"]["template"]["spec"]["containers"][0]["args"]
    settings, _ = parse_args(args)
    assert (settings.stable_url, settings.shadow_url) == ("http://resnet-r3.ml.svc:8080", "http://resnet-r4.ml.svc:8080")
    assert (settings.protocol, settings.rate, settings.timeout) == ("torchserve", 20.0, 1.5)
    assert (settings.stable_revision, settings.shadow_revision, settings.name) == ("3", "4", "resnet")


@pytest.mark.parametrize("spec, shadow_rev, pct", [({"compare": False}, 4, 20), ({"compare": True}, None, 0),
                                                   ({"compare": True}, 4, 0), ({}, 4, 20)])
def test_nothing_is_rendered_unless_a_compared_mirror_is_in_force(spec, shadow_rev, pct) -> None:
    m = shadow(**spec)
    assert build_comparator_deployment(m, 3, shadow_rev, pct, CONFIG) is None
    assert build_comparator_service(m, shadow_rev, pct) is None


def test_a_bad_timeout_names_the_field() -> None:
    with pytest.raises(SpecError, match="spec.rollout.shadow.comparisonTimeout"):
        build_comparator_deployment(shadow(compare=True, comparisonTimeout="soon"), 3, 4, 20, CONFIG)


def test_the_sample_renders_a_comparator_with_its_bounds_and_a_valid_analysis() -> None:
    from modelpilot.analysis import validate

    body = yaml.safe_load((Path(__file__).parents[2] / "docs/samples/modeldeployment-shadow-compare.yaml").read_text())
    body["metadata"].update({"namespace": "ml", "uid": "u", "generation": 1})
    m = parse_model_deployment(body)
    args = build_comparator_deployment(m, 1, 2, 20, CONFIG)["spec"]["template"]["spec"]["containers"][0]["args"]
    settings, _ = parse_args(args)
    assert (settings.rate, settings.timeout, settings.protocol) == (50.0, 2.0, "torchserve")
    assert validate(body["spec"]["rollout"]["analysis"]) == []
    queries = " ".join(x["query"] for x in body["spec"]["rollout"]["analysis"]["metrics"])
    for metric in ("modelpilot_shadow_rows_agreed_total", "modelpilot_shadow_rows_compared_total",
                   "modelpilot_shadow_latency_seconds_sum", "modelpilot_shadow_mirrored_requests_total"):
        assert metric in queries


def test_with_network_policies_the_comparator_is_fenced_and_admitted_to_the_revisions() -> None:
    from modelpilot.comparator.objects import build_comparator_objects
    from modelpilot.config import parse_config
    from modelpilot.render import build_network_policy

    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    config = parse_config({"nodePools": {"cpu": {}}, "networkPolicy": {"enabled": True, "ingressFrom": [gateway], "metricsFrom": [scraper]}})
    m = shadow(compare=True)
    objs = build_comparator_objects(m, 3, 4, 20, config)
    assert [o["kind"] for o in objs] == ["Deployment", "Service", "NetworkPolicy"]
    assert objs[2]["spec"]["podSelector"] == {"matchLabels": {"modelpilot.io/model-deployment": "resnet", "app.kubernetes.io/component": "comparator"}}
    assert objs[2]["spec"]["ingress"] == [{"from": [gateway], "ports": [{"protocol": "TCP", "port": 8080}]},
                                          {"from": [scraper], "ports": [{"protocol": "TCP", "port": 9090}]}]
    revisions = build_network_policy(m, config)["spec"]["ingress"]
    assert revisions[-1] == {"from": [{"podSelector": {"matchLabels": {"modelpilot.io/model-deployment": "resnet",
                                                                       "app.kubernetes.io/component": "comparator"}}}],
                             "ports": [{"protocol": "TCP", "port": 8080}]}
    assert len(build_network_policy(shadow(compare=False), config)["spec"]["ingress"]) == 2
    assert [o["kind"] for o in build_comparator_objects(m, 3, 4, 20, CONFIG)] == ["Deployment", "Service"]
