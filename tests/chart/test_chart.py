"""The Helm chart: lint, CRDs identical to crds/, least-privilege RBAC, values that fail at the door,
a server-side dry run on the local control plane, and `helm install` followed by a rollout run with
the operator authenticated as the chart's ServiceAccount."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import LOCAL, REPO, Kubectl
from .conftest import (CHART, KUBE_VERSION, Release, audit_denials, audit_lines, forbidden_in_log, helm, policy_denials,
                       sa_kubeconfig, template)

pytestmark = pytest.mark.integration
EVERYTHING_ON = ("replicaCount=2", "prometheusRule.enabled=true", "serviceMonitor.enabled=true", "grafanaDashboard.enabled=true")


def kinds(objs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in objs:
        out.setdefault(o["kind"], []).append(o)
    return out


def test_chart_crds_are_byte_for_byte_the_repository_crds() -> None:
    repo = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == repo, "charts/modelpilot/crds/ must hold exactly the files of crds/"
    for name in repo:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/modelpilot/crds/{name} drifted from crds/{name}: cp crds/*.yaml charts/modelpilot/crds/")


@pytest.mark.parametrize("sets", [(), EVERYTHING_ON, ("watchNamespaces={a,b}", "logFormat=text")], ids=["defaults", "everything-on", "namespaced"])
def test_helm_lint_strict(sets: tuple[str, ...]) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    out = helm(*args).stdout
    assert "0 chart(s) failed" in out and "[WARNING]" not in out, out


def rbac_rules(objs: list[dict]) -> list[dict]:
    return [r for o in objs if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]


def test_rbac_is_least_privilege_and_every_rule_says_why() -> None:
    objs = template()
    rules = rbac_rules(objs)
    for r in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in r.get(key, []), f"wildcard in {key}: {r}"
        assert not r.get("nonResourceURLs"), r
        assert "escalate" not in r["verbs"] and "bind" not in r["verbs"] and "impersonate" not in r["verbs"], r
    # Secrets are never readable: the export Job gets them through envFrom, not through the operator.
    assert not [r for r in rules if "secrets" in r["resources"]]
    # Every rule in the template source is preceded by a comment saying why.
    src = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    starts = [i for i, line in enumerate(src) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == len(rbac_rules(template("watchNamespaces={team-a}"))), "every rule of the template is rendered somewhere"
    for i in starts:
        assert src[i - 1].strip().startswith("#"), f"rbac.yaml line {i + 1}: a rule without a comment saying why"
    # A namespaced install grants the same rules through RoleBindings, in the listed namespaces only.
    ns_objs = kinds(template("watchNamespaces={team-a,team-b}"))
    assert {b["metadata"]["namespace"] for b in ns_objs["RoleBinding"] if b["roleRef"]["kind"] == "ClusterRole"} == {"team-a", "team-b"}
    assert [b["roleRef"]["name"] for b in ns_objs["ClusterRoleBinding"]] == ["mp-modelpilot-cluster"]
    assert len(rbac_rules(template("watchNamespaces={team-a}"))) == len(rules) + 1, "namespaces read only when limited to some"
    print(f"RBAC rules: {len(rules)}")


def test_images_are_those_build_images_produces() -> None:
    """One registry and tag for every modelpilot image (hack/build-images.sh's names); the operator
    config gets them, so the export Job and the storage initializer pull the same build."""
    objs = kinds(template("image.registry=registry.local:5000/mp", "image.tag=abc123"))
    assert objs["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local:5000/mp/operator:abc123"
    config = yaml.safe_load(objs["ConfigMap"][0]["data"]["config.yaml"])
    assert (config["imageRegistry"], config["imageTag"]) == ("registry.local:5000/mp", "abc123")
    from modelpilot.config import parse_config

    parsed = parse_config(config)
    assert parsed.exporter_image("onnx") == "registry.local:5000/mp/exporter-onnx:abc123"
    assert parsed.image_for("storage-init") == "registry.local:5000/mp/storage-init:abc123"
    assert parsed.image_for("torchserve") == "registry.local:5000/mp/torchserve:abc123"
    build = (CHART.parents[1] / "hack" / "build-images.sh").read_text()
    for name in ("operator", "storage-init", "exporter-onnx", "exporter-pytorch", "exporter-tensorflow", "torchserve"):
        assert name in build.split("ALL_IMAGES=(")[1].split(")")[0].split(), f"build-images.sh does not build {name}"


def test_helm_knows_the_kubernetes_version_without_a_flag() -> None:
    """hack/ builds helm with its release ldflags: `helm template` assumes the Kubernetes version of
    its client-go (not 1.20), so the chart's kubeVersion check passes without --kube-version."""
    r = helm("template", "mp", str(CHART), "--show-only", "templates/configmap.yaml")
    assert "config.yaml" in r.stdout
    out = helm("version", "--template", "{{.Version}}").stdout
    assert out.startswith("v3."), out


def test_deployment_is_pinned_probed_and_restricted() -> None:
    dep = kinds(template("replicaCount=2"))["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "ghcr.io/modelpilot/operator:0.1.0"
    assert template("image.digest=sha256:" + "a" * 64)[0] is not None
    digest = kinds(template("image.digest=sha256:" + "a" * 64))["Deployment"][0]
    assert digest["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@sha256:" + "a" * 64)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"]["port"] == "health"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "--leader-elect" in c["args"] and "--leader-elect-lease=mp-modelpilot-leader" in c["args"]
    assert "--log-format=json" in c["args"]


@pytest.mark.parametrize("sets, message", [
    (("replicaCount=two",), "/replicaCount"),
    (("logFormat=yaml",), "/logFormat"),
    (("config.nodePools.cpu.nodeSelektor.a=b",), "nodeSelektor"),
    (("config.prometheusUrl=prometheus:9090",), "/config/prometheusUrl"),
    (("watchNamespaces={Team_A}",), "/watchNamespaces/0"),
    (("image.digest=sha256:abc",), "/image/digest"),
    (("image.tag=latest",), 'image.tag: "latest" is not a pinned version'),
    (("replicaCount=2", "leaderElection.enabled=false"), "replicaCount=2 needs leaderElection.enabled=true"),
    (("leaderElection.leaseDurationSeconds=10", "leaderElection.renewDeadlineSeconds=10"), "leaseDurationSeconds must be greater"),
], ids=["type", "enum", "unknown-key", "url", "namespace-name", "digest", "latest", "ha-without-election", "lease-timing"])
def test_bad_values_fail_with_a_message_naming_the_value(sets: tuple[str, ...], message: str) -> None:
    args = ["template", "mp", str(CHART), "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    r = helm(*args, check=False)
    assert r.returncode != 0, f"helm accepted {sets}"
    assert message in r.stderr, r.stderr


def metric_names() -> set[str]:
    """Every series name the operator exports (its prometheus-client registry)."""
    from prometheus_client import REGISTRY

    import modelpilot.leader  # noqa: F401  (registers modelpilot_leader)
    import modelpilot.metrics  # noqa: F401
    return {n for n in REGISTRY._names_to_collectors if n.startswith("modelpilot_")}


def test_alerts_pass_promtool_and_use_real_metric_names(tmp_path: Path) -> None:
    rule = kinds(template(*EVERYTHING_ON))["PrometheusRule"][0]
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {
        "ModelpilotRolloutStuck", "ModelpilotRollbackHappened", "ModelpilotExportFailed", "ModelpilotReconcileErrors"}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    r = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    known = metric_names()
    used = set(re.findall(r"\bmodelpilot_[a-z_]+", json.dumps(rule["spec"])))
    assert used and used <= known, f"alerts use metrics the operator does not export: {used - known}"
    dashboard = (CHART / "dashboards" / "modelpilot.json").read_text()
    used = {m.removesuffix("_bucket") for m in re.findall(r"\bmodelpilot_[a-z_]+", dashboard)}
    assert used <= known | {"modelpilot_reconcile_duration_seconds"}, f"dashboard uses unknown metrics: {used - known}"
    json.loads(kinds(template(*EVERYTHING_ON))["ConfigMap"][1]["data"]["modelpilot.json"])


def test_rendered_chart_passes_a_server_side_dry_run(kubectl: Kubectl, namespace: str) -> None:
    # Pod Security Admission warns about anything a "restricted" namespace would refuse.
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted",
            "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    for sets in [("replicaCount=2",), (f"watchNamespaces={{{namespace}}}", "leaderElection.enabled=false")]:
        manifest = helm("template", "dry", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
                        *[a for s in sets for a in ("--set", s)]).stdout
        r = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
        assert "Warning" not in r.stderr, r.stderr
        assert "created (server dry run)" in r.stdout


def run_e2e(release: Release, kubectl: Kubectl, tmp_path: Path, *selection: str, timeout: float = 1500) -> None:
    """Run tests/e2e with the operator authenticated as the chart's ServiceAccount; no 403 allowed."""
    kc = sa_kubeconfig(kubectl, release.namespace, release.service_account, tmp_path / "sa.kubeconfig")
    user = f"system:serviceaccount:{release.namespace}:{release.service_account}"
    log = LOCAL / "logs" / "operator-e2e.log"
    log_offset = log.stat().st_size if log.exists() else 0
    audit_from = audit_lines()
    env = dict(os.environ, MODELPILOT_E2E_OPERATOR_KUBECONFIG=str(kc),
               MODELPILOT_E2E_PORT_BASE=str(int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 40),
               MODELPILOT_E2E_LEASE=f"{release.namespace}/{release.lease}")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", *selection],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"e2e as {user} failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    denied = audit_denials(kubectl, user, audit_from)
    assert denied == [], f"the apiserver refused the chart's ServiceAccount: {denied}"
    refused = policy_denials(user, audit_from)
    assert refused == [], f"the operator-scope admission policy refused the operator's own writes: {refused}"
    with log.open() as f:
        f.seek(log_offset)
        lines = forbidden_in_log(kubectl, f.read(), user)
    assert lines == [], f"403s in {log}: {lines[:5]}"
    (tmp_path / "e2e-output.txt").write_text(r.stdout)
    print(r.stdout[-2000:])


def test_helm_install_then_a_rollout_as_the_chart_service_account(release: Release, kubectl: Kubectl, tmp_path: Path,
                                                                   no_other_operator: None) -> None:
    dep = json.loads(kubectl("-n", release.namespace, "get", "deployment", release.fullname, "-o", "json").stdout)
    assert dep["status"].get("readyReplicas") == 2, "kwok reports the (fake) operator pods ready"
    assert kubectl("auth", "can-i", "patch", "modeldeployments.modelpilot.io", "-A",
                   f"--as=system:serviceaccount:{release.namespace}:{release.service_account}", check=False).stdout.strip() == "no"
    run_e2e(release, kubectl, tmp_path,
            "tests/e2e/test_rollouts.py::test_canary_runs_to_promotion",
            "tests/e2e/test_modeldeployment.py::test_spec_change_rolls_a_new_revision_and_removes_the_old",
            timeout=600)


def test_the_charts_default_security_settings_are_the_operators_defaults() -> None:
    """config.* in values.yaml reaches the operator whole, and its security defaults (export images,
    Istio allowlists, Prometheus bounds, disk limits, NetworkPolicies) equal the operator's own."""
    from modelpilot.config import parse_config
    cm = next(o for o in template() if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config"))
    config, default = parse_config(yaml.safe_load(cm["data"]["config.yaml"])), parse_config({})
    for field in ("allowed_export_images", "route_policy", "prometheus", "ephemeral_storage", "network_policy"):
        assert getattr(config, field) == getattr(default, field), field


def test_service_monitor_keeps_the_operators_namespace_and_name_labels() -> None:
    # Without honorLabels, Prometheus renames the series' namespace label (the ModelDeployment's)
    # to exported_namespace, and the per-object alerts name the operator's namespace instead.
    monitor = kinds(template(*EVERYTHING_ON))["ServiceMonitor"][0]
    assert [e.get("honorLabels") for e in monitor["spec"]["endpoints"]] == [True]


def test_the_chart_and_the_cli_elect_on_the_same_lease() -> None:
    from modelpilot.main import DEFAULT_LEASE, parse_args
    objs = template(*EVERYTHING_ON, release="modelpilot")  # as docs/install.md installs it
    args = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args
    assert f"--leader-elect-lease={DEFAULT_LEASE}" in args
    assert parse_args([]).leader_elect_lease == DEFAULT_LEASE
