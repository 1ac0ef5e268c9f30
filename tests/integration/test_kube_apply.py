"""modelpilot.kube.KubeClient against the real apiserver: what its "no write when the applied hash
matches" shortcut must not skip."""

from __future__ import annotations

import json

import pytest

from modelpilot.kube import KubeClient

from ..conftest import LOCAL

pytestmark = pytest.mark.integration


def deployment(namespace: str, replicas: int) -> dict:
    labels = {"app": "rescaled"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "rescaled", "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]}}}}


def test_apply_after_a_scale_restores_the_rendered_replicas(kubectl, kubeconfig: str, namespace: str) -> None:
    """A revision is scaled down with a merge patch (kube.scale), which leaves its applied-hash
    annotation alone. When the spec returns to that revision, the same rendered object (replicas 1)
    must be applied again: the hash still matches, the replicas do not. Seen on the real node: the
    re-rolled revision stayed at 0 replicas until the resync."""
    import kubernetes

    kube = KubeClient(kubernetes.config.new_client_from_config(config_file=str(LOCAL / "kubeconfig")))
    live = kube.apply(deployment(namespace, 1), None)
    assert live is not None and live["spec"]["replicas"] == 1
    scaled = kube.scale("Deployment", namespace, "rescaled", 0)
    assert scaled is not None and scaled["spec"]["replicas"] == 0
    assert kube.apply(deployment(namespace, 1), scaled) is not None, "apply skipped: the Deployment stays at 0 replicas"
    body = json.loads(kubectl("-n", namespace, "get", "deployment", "rescaled", "-o", "json").stdout)
    assert body["spec"]["replicas"] == 1
    assert kube.apply(deployment(namespace, 1), body) is None, "an unchanged object is still not written"
