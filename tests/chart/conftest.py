"""Helpers for the chart tests: run helm, install the chart into the local control plane, and
authenticate as the chart's ServiceAccount (kwok pods never run, so the operator that proves the
chart's RBAC runs here, with a token of that ServiceAccount)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from ..conftest import HELM, LOCAL, REPO, Kubectl

CHART = REPO / "charts" / "modelpilot"
KUBE_VERSION = "1.36.3"


def helm(*args: str, kubeconfig: str | None = None, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [HELM, *args, *(["--kubeconfig", kubeconfig] if kubeconfig else [])]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return r


def template(*sets: str, release: str = "mp", namespace: str = "modelpilot-system") -> list[dict]:
    """`helm template` with `--set` pairs; the rendered objects."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def sa_kubeconfig(kubectl: Kubectl, namespace: str, service_account: str, path: Path, hours: int = 4) -> Path:
    """A kubeconfig that authenticates with a token of the ServiceAccount (TokenRequest API)."""
    token = kubectl("-n", namespace, "create", "token", service_account, f"--duration={hours}h").stdout.strip()
    admin = yaml.safe_load((LOCAL / "kubeconfig").read_text())
    cluster = admin["clusters"][0]
    user = f"system:serviceaccount:{namespace}:{service_account}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": user, "namespace": namespace}}],
        "current-context": "sa"}))
    path.chmod(0o600)
    return path


def _audit_events(user: str, since_line: int, needle: str = "") -> Iterator[dict]:
    """Audit events of `user` after line `since_line` (lines holding `needle`, when given)."""
    path = LOCAL / "logs" / "audit.log"
    if not path.exists():
        return
    with path.open() as f:
        for i, line in enumerate(f):
            if i >= since_line and f'"{user}"' in line and needle in line:
                ev = json.loads(line)
                if ev.get("user", {}).get("username") == user:
                    yield ev


def _refusal(ev: dict) -> str:
    return f'{ev["verb"]} {ev.get("requestURI")}: {ev.get("responseStatus", {}).get("message")}'


def audit_denials(kubectl: Kubectl, user: str, since_line: int = 0) -> list[str]:
    """Requests of `user` that RBAC refused (authorization decision "forbid") and that the rules
    still refuse (`kubectl auth can-i`), from the audit log after line `since_line`.

    A kube-apiserver that has just (re)started refuses everyone but system:masters for a moment,
    until its RBAC informers have synced (tests/e2e restarts it mid-rollout): such a refusal of a
    request the rules allow is not a missing rule, and the operator retried it. The test bed
    audits writes; refused reads show in the operator's log."""
    out = []
    for ev in _audit_events(user, since_line):
        if (ev.get("annotations") or {}).get("authorization.k8s.io/decision") == "allow":
            continue
        ref = ev.get("objectRef") or {}
        if not can_i(kubectl, user, ev["verb"], ref.get("resource", ""), ref.get("apiGroup", ""),
                     ref.get("namespace", ""), ref.get("subresource", "")):
            out.append(_refusal(ev))
    return out


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, group: str, namespace: str, subresource: str = "") -> bool:
    """`kubectl auth can-i` for `user`. `kubectl auth can-i patch x/status` would ask about an object
    named "status": a subresource goes in its own flag."""
    what = f"{resource}.{group}" if group else resource
    scope = ["-n", namespace] if namespace else []
    scope += [f"--subresource={subresource}"] if subresource else []
    return kubectl("auth", "can-i", verb, what, *scope, f"--as={user}", check=False).stdout.strip() == "yes"


def policy_denials(user: str, since_line: int = 0) -> list[str]:
    """Requests of `user` that a ValidatingAdmissionPolicy refused (the chart's operator-scope policy
    among them), from the audit log after line `since_line`."""
    return [_refusal(ev) for ev in _audit_events(user, since_line, "validation_failure")
            if (ev.get("responseStatus") or {}).get("code") == 403]


_REFUSAL = re.compile(r'cannot (\w+) resource \\?"([^"\\]+)\\?" in API group \\?"([^"\\]*)\\?"'
                      r'(?: in the namespace \\?"([^"\\]+)\\?")?')


def forbidden_in_log(kubectl: Kubectl, text: str, user: str) -> list[str]:
    """Log lines where RBAC refused `user` something its rules still refuse (`kubectl auth can-i`).

    RBAC messages name the user; a refusal because a namespace is being deleted does not, and other
    operators sharing the log file are other users. A refusal in the moment after a kube-apiserver
    restart, before its RBAC informers synced, names a request the rules allow: not a missing rule."""
    out = []
    for line in text.splitlines():
        if "forbidden" not in line.lower() or user not in line:
            continue
        m = _REFUSAL.search(line)
        if m:
            verb, resource, group, namespace = m.groups()
            resource, _, subresource = resource.partition("/")
            if can_i(kubectl, user, verb, resource, group, namespace or "", subresource):
                continue
        out.append(line)
    return out


def audit_lines() -> int:
    path = LOCAL / "logs" / "audit.log"
    if not path.exists():
        return 0
    with path.open() as f:
        return sum(1 for _ in f)


class Release:
    def __init__(self, name: str, namespace: str, kubeconfig: str):
        self.name, self.namespace, self.kubeconfig = name, namespace, kubeconfig
        self.fullname = f"{name}-modelpilot"
        self.service_account = self.fullname
        self.lease = f"{self.fullname}-leader"


def testbed_values(path: Path) -> Path:
    """Values for the local test bed: its node pools, from the operator config the e2e tests use."""
    pools = yaml.safe_load((REPO / "hack" / "testbed" / "operator-config.yaml").read_text())["nodePools"]
    path.write_text(yaml.safe_dump({"replicaCount": 2, "config": {"nodePools": pools}}))
    return path


@pytest.fixture(scope="module")
def release(kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The chart installed with `helm install` (2 replicas, leader election) into a fresh namespace.
    Cluster-scoped names (ClusterRoles) carry the release name, so parallel sessions do not clash."""
    rel = Release(f"mp{uuid.uuid4().hex[:6]}", namespace, kubeconfig)
    values = testbed_values(tmp_path_factory.mktemp("chart") / "values.yaml")
    helm("install", rel.name, str(CHART), "--namespace", namespace, "-f", str(values),
         "--wait", "--timeout", "180s", kubeconfig=kubeconfig, timeout=240)
    try:
        yield rel
    finally:
        helm("uninstall", rel.name, "--namespace", namespace, "--wait", "--timeout", "120s", kubeconfig=kubeconfig,
             check=False, timeout=180)


def _child_operators() -> list[int]:
    """Pids of modelpilot-operator processes this pytest process started (tests/e2e's session operator)."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"modelpilot-operator" in (stat.parent / "cmdline").read_bytes():
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@contextlib.contextmanager
def other_operators_frozen() -> Iterator[None]:
    """The modelpilot-operator processes this pytest process started, stopped (SIGSTOP) for the
    block and let go on after (SIGCONT)."""
    frozen = _child_operators()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


@pytest.fixture
def no_other_operator() -> Iterator[None]:
    """If tests/e2e's session operator runs in this pytest session (no leader election, all
    namespaces), it would act on the nested run's objects too, and two actors make weights flap:
    freeze it for the test."""
    with other_operators_frozen():
        yield
