"""The chart's ValidatingAdmissionPolicies on the real kube-apiserver (issue 11, scenarios 3 and 11).

operator-scope (on by default): the operator's ServiceAccount, whose ClusterRole may patch and
delete Deployments, Services and ConfigMaps everywhere, is refused every change to an object that
does not carry app.kubernetes.io/managed-by=modelpilot, kube-system's included. That the operator
still works under it is proven by test_chart.py's rollout and test_rbac.py's e2e run as that
ServiceAccount, with this policy installed.

model-sources (opt-in): ModelExports and ModelDeployments may name only the exporter images,
Secrets and claims the values list.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ..conftest import Kubectl
from .conftest import Release, sa_kubeconfig, template

pytestmark = pytest.mark.integration
MANAGED = {"app.kubernetes.io/managed-by": "modelpilot"}


def _refused(run: Kubectl, *args: str, input: str | None = None, timeout: float = 15) -> str:
    """The apiserver's refusal of `kubectl ARGS`, sent as a server-side dry run (admission runs,
    nothing is stored), so it can be retried until the policy is in force: its informer syncs within
    a second or two of its creation."""
    deadline = time.monotonic() + timeout
    while True:
        r = run(*args, "--dry-run=server", input=input, check=False)
        if r.returncode != 0:
            return r.stderr
        assert time.monotonic() < deadline, f"kubectl {' '.join(args)} was admitted: {r.stdout}"
        time.sleep(0.5)


def _as(kubectl: Kubectl, kubeconfig: Path) -> Kubectl:
    return lambda *args, **kw: kubectl("--kubeconfig", str(kubeconfig), *args, **kw)


def test_the_operator_may_change_only_objects_it_manages(release: Release, kubectl: Kubectl, tmp_path: Path) -> None:
    ns = release.namespace
    op = _as(kubectl, sa_kubeconfig(kubectl, ns, release.service_account, tmp_path / "sa.kubeconfig"))
    kubectl("-n", ns, "create", "configmap", "foreign", "--from-literal=a=1")
    kubectl("-n", ns, "create", "deployment", "foreign", "--image=registry.k8s.io/pause:3.10")
    patch = json.dumps({"metadata": {"annotations": {"pwned": "yes"}}})

    # RBAC alone would allow each of these (the chart's ClusterRole); the policy refuses them.
    for resource in ("deployment/foreign", "configmap/foreign"):
        assert op("-n", ns, "auth", "can-i", "patch", resource.split("/")[0] + "s", check=False).stdout.strip() == "yes"
        msg = _refused(op, "-n", ns, "patch", resource, "--type=merge", "-p", patch)
        assert "managed-by=modelpilot" in msg and f"{ns}/foreign" in msg, msg
    assert "managed-by=modelpilot" in _refused(op, "-n", ns, "delete", "configmap", "foreign")
    assert "managed-by=modelpilot" in _refused(op, "-n", "kube-system", "patch", "configmap", "kube-root-ca.crt",
                                               "--type=merge", "-p", patch)
    assert "pwned" not in kubectl("-n", "kube-system", "get", "configmap", "kube-root-ca.crt", "-o", "yaml").stdout
    assert "pwned" not in kubectl("-n", ns, "get", "deployment", "foreign", "-o", "yaml").stdout

    # It may not create an unlabelled object, nor take one over by adding the label, nor drop the label
    # of its own; what it manages it creates, changes and deletes as before.
    unlabelled = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": ns}})
    assert "managed-by" in _refused(op, "create", "-f", "-", input=unlabelled)
    label = json.dumps({"metadata": {"labels": MANAGED}})
    assert "managed-by" in _refused(op, "-n", ns, "patch", "configmap", "foreign", "--type=merge", "-p", label)
    mine = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine", "namespace": ns, "labels": MANAGED}})
    op("create", "-f", "-", input=mine)
    op("-n", ns, "patch", "configmap", "mine", "--type=merge", "-p", patch)
    unlabel = json.dumps({"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}})
    assert "managed-by" in _refused(op, "-n", ns, "patch", "configmap", "mine", "--type=merge", "-p", unlabel)
    op("-n", ns, "delete", "configmap", "mine")
    # Other users are not concerned.
    kubectl("-n", ns, "patch", "configmap", "foreign", "--type=merge", "-p", patch)


def _export(name: str, **spec: object) -> dict:
    body = {"source": {"uri": "s3://bucket/m.onnx", "format": "onnx"}, "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
            "targets": [{"format": "onnx"}], "output": {"uri": "pvc://exports-team-a/out"}}
    body.update(spec)
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": name}, "spec": body}


@pytest.fixture
def model_sources_policy(kubectl: Kubectl, namespace: str) -> str:
    """The chart's model-sources policy, as `helm template` renders it, bound to this test's namespace only."""
    release = f"ms{uuid.uuid4().hex[:6]}"
    objs = [o for o in template("admissionPolicies.modelSources.enabled=true", "admissionPolicies.operatorScope.enabled=false",
                                "admissionPolicies.modelSources.secretNames={model-store-*}",
                                "admissionPolicies.modelSources.claimNames={models,exports-team-a}",
                                f"admissionPolicies.modelSources.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={namespace}",
                                release=release)
            if o["kind"].startswith("ValidatingAdmissionPolicy")]
    assert sorted(o["kind"] for o in objs) == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    doc = yaml.safe_dump_all(objs)
    kubectl("apply", "-f", "-", input=doc)
    try:
        yield namespace
    finally:
        kubectl("delete", "-f", "-", "--wait=false", input=doc, check=False)


def test_model_sources_policy_admits_only_listed_images_secrets_and_claims(kubectl: Kubectl, model_sources_policy: str) -> None:
    ns = model_sources_policy

    def create(body: dict) -> str:
        return _refused(kubectl, "-n", ns, "create", "-f", "-", input=yaml.safe_dump(body))

    msg = create(_export("img", image="docker.io/attacker/exporter:1"))
    assert "spec.image: docker.io/attacker/exporter:1 is not an allowed exporter image" in msg, msg
    msg = create(_export("sec", source={"uri": "s3://bucket/m.onnx", "format": "onnx", "secretRef": {"name": "db-password"}}))
    assert "secretRef: only the Secrets model-store-* may be named, not db-password" in msg, msg
    msg = create(_export("pvc", output={"uri": "pvc://payments-data/out"}))
    assert "pvc:// URIs: only the claims" in msg and "payments-data" in msg, msg
    md = {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "md"},
          "spec": {"model": {"uri": "s3://bucket/m.onnx", "format": "onnx", "secretRef": {"name": "db-password"}},
                   "runtime": {"kind": "triton"}, "placement": {"nodePool": "cpu"}}}
    assert "db-password" in create(md)

    ok = _export("ok", image="ghcr.io/modelpilot/exporter-onnx:0.2.0",
                 source={"uri": "pvc://models/m.onnx", "format": "onnx"}, output={"uri": "s3://bucket/out", "secretRef": {"name": "model-store-rw"}})
    kubectl("-n", ns, "create", "-f", "-", input=yaml.safe_dump(ok))
    kubectl("-n", ns, "delete", "modelexport", "ok")
