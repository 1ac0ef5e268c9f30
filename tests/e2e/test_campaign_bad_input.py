"""Bad-input campaign: ModelDeployment and ModelExport specs generated from the CRD schemas
(tests/e2e/specgen.py: valid, boundary and invalid) go through the real apiserver with the operator
running. Each must end in exactly one of:

- rejected at admission, with a message that names the field;
- reconciled to Ready (an export's Job is completed by the test bed, as kwok plays the kubelet);
- Ready=False with a reason and a message that names the field.

And for the whole run: no operator crash, no traceback in its log, every status under 64 KiB, and
no hot loop (status writes per object per minute, from the apiserver's audit log).

Seeds and specs that found bugs are replayed first, from campaign_regressions.yaml.

    MODELPILOT_CAMPAIGN_SPECS=N   how many generated specs (default 1000, about 3 minutes)
    MODELPILOT_CAMPAIGN_SOAK=1    a longer run: 5000 specs, a random seed (printed; rerun it with
                                  MODELPILOT_CAMPAIGN_SEED)
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from kubernetes.client.exceptions import ApiException

from ..conftest import LOCAL, Kubectl
from . import specgen
from .conftest import Operator, utcnow

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
SOAK = os.environ.get("MODELPILOT_CAMPAIGN_SOAK") == "1"
SPECS = int(os.environ.get("MODELPILOT_CAMPAIGN_SPECS") or (5000 if SOAK else 1000))
SEED = int(os.environ.get("MODELPILOT_CAMPAIGN_SEED") or (random.randrange(1 << 30) if SOAK else 20261130))
BATCH = 250  # objects in flight at once: the test bed has two cores
SETTLE_S = 90.0
MAX_STATUS = 64 * 1024
MAX_STATUS_WRITES_PER_MINUTE = 12
KINDS = {"ModelDeployment": "modeldeployments", "ModelExport": "modelexports"}
# Ready=False reasons that are an answer (the user must act), not a step on the way.
TERMINAL = {"InvalidSpec", "StrategyNotSupported", "Unschedulable", "ExportNotReady", "ApplyFailed", "NameConflict",
            "ExportFailed", "ResultMissing", "PodUnschedulable"}
FIELD = re.compile(r"\bspec\.|\b(spec|model|runtime|placement|rollout|traffic|source|targets|output|inputs|validation)[.\[]")


def generated(n: int, at: int) -> list[tuple[str, str, dict[str, Any]]]:
    out: list[tuple[str, str, dict[str, Any]]] = []
    for kind in KINDS:
        @seed(at)
        @settings(max_examples=n // 2, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(specgen.specs(kind))
        def collect(drawn: tuple[str, dict[str, Any]]) -> None:
            out.append((kind, drawn[0], drawn[1]))
        collect()
    return out


def regressions() -> list[tuple[str, str, dict[str, Any]]]:
    cases = yaml.safe_load((HERE / "campaign_regressions.yaml").read_text())
    return [(c["kind"], "regression", c["spec"]) for c in cases]


def export_result(spec: dict[str, Any]) -> str:
    """What a successful exporter leaves in its termination message (modelpilot_exporters.manifest)."""
    out = ((spec.get("output") or {}).get("uri") or "file:///out").rstrip("/")
    arts = [{"name": t.get("name") or t.get("format", "onnx"), "format": t.get("format", "onnx"),
             "uri": f"{out}/{t.get('name') or t.get('format', 'onnx')}/model", "sha256": "0" * 64, "sizeBytes": 1}
            for t in spec.get("targets") or [{}] if isinstance(t, dict)]
    return json.dumps({"phase": "Succeeded", "manifestUri": f"{out}/manifest.json", "artifacts": arts})


class Campaign:
    def __init__(self, api: kubernetes.client.ApiClient, kubectl: Kubectl) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.kubectl = kubectl
        self.outcomes: dict[tuple[str, str, str], tuple[str, str]] = {}  # (ns, kind, name) -> (outcome, detail)
        self.families: dict[tuple[str, str, str], str] = {}
        self.created_at: dict[tuple[str, str, str], float] = {}
        self.specs: dict[tuple[str, str, str], dict[str, Any]] = {}

    def create(self, ns: str, i: int, kind: str, family: str, spec: Any) -> None:
        name = f"{'md' if kind == 'ModelDeployment' else 'me'}-{i:05d}"
        key = (ns, kind, name)
        self.families[key] = family
        self.specs[key] = spec
        body = {"apiVersion": "modelpilot.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": specgen.bounded(spec)}
        try:
            self.custom.create_namespaced_custom_object("modelpilot.io", "v1alpha1", ns, KINDS[kind], body, field_validation="Strict")
        except ApiException as e:
            if e.status not in (400, 422):
                self.outcomes[key] = ("error", f"{e.status}: {e.body}")
                return
            detail = json.loads(e.body or "{}")
            fields = [c.get("field", "") for c in (detail.get("details") or {}).get("causes") or []]
            named = any(f.startswith("spec") for f in fields) or bool(FIELD.search(detail.get("message", "")))
            self.outcomes[key] = ("rejected" if named else "rejected-unnamed", detail.get("message", "")[:300])
            return
        self.created_at[key] = time.time()

    def settle(self, ns: str, deadline: float) -> None:
        while True:
            pending = {k for k in self.created_at if k[0] == ns and k not in self.outcomes}
            if not pending:
                return
            self.complete_export_pods(ns)
            for kind, plural in KINDS.items():
                for obj in self.custom.list_namespaced_custom_object("modelpilot.io", "v1alpha1", ns, plural)["items"]:
                    key = (ns, kind, obj["metadata"]["name"])
                    if key in pending and (found := outcome(obj)) is not None:
                        self.outcomes[key] = found
            if time.time() > deadline:
                for key in pending - set(self.outcomes):
                    self.outcomes[key] = ("unsettled", json.dumps(self.status_of(key))[:400])
                return
            time.sleep(2)

    def status_of(self, key: tuple[str, str, str]) -> dict[str, Any]:
        ns, kind, name = key
        return self.custom.get_namespaced_custom_object("modelpilot.io", "v1alpha1", ns, KINDS[kind], name).get("status") or {}

    def complete_export_pods(self, ns: str) -> None:
        """Play the kubelet for export pods: hand kwok a successful exporter's result (tests/e2e/test_modelexport.py runs the real one)."""
        for pod in self.core.list_namespaced_pod(ns, label_selector="modelpilot.io/model-export").items:
            ann = pod.metadata.annotations or {}
            if "kwok.modelpilot.io/exit-code" in ann or pod.status.phase != "Running":
                continue
            spec = self.specs.get((ns, "ModelExport", pod.metadata.labels["modelpilot.io/model-export"])) or {}
            patch = {"metadata": {"annotations": {"kwok.modelpilot.io/exit-code": "0",
                                                  "kwok.modelpilot.io/termination-message": export_result(spec)}}}
            self.core.patch_namespaced_pod(pod.metadata.name, ns, patch)


def outcome(obj: dict[str, Any]) -> tuple[str, str] | None:
    st = obj.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or st.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    if ready["status"] == "True":
        return ("ready", "")
    if ready.get("reason") in TERMINAL:
        named = bool(FIELD.search(ready.get("message", "")))
        return ("false" if named else "false-unnamed", f"{ready['reason']}: {ready.get('message', '')[:300]}")
    return None


def status_writes(since_iso: str, namespaces: set[str]) -> dict[str, list[float]]:
    """Per object (namespace/plural/name), the times of the operator's successful status writes."""
    out: dict[str, list[float]] = defaultdict(list)
    for line in (LOCAL / "logs" / "audit.log").read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        # By user agent: the same with the operator's certificate and as the chart's ServiceAccount.
        if not (ev.get("userAgent") or "").startswith("modelpilot-operator") or ev.get("verb") != "patch" \
                or ev.get("requestReceivedTimestamp", "") < since_iso:
            continue
        m = re.match(r"/apis/modelpilot\.io/v1alpha1/namespaces/([^/]+)/(\w+)/([^/?]+)/status", ev.get("requestURI", ""))
        if m and m.group(1) in namespaces and (ev.get("responseStatus") or {}).get("code", 500) < 400:
            ts = time.mktime(time.strptime(ev["requestReceivedTimestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
            out["/".join(m.groups())].append(ts)
    return out


def test_generated_specs_end_in_exactly_one_clear_outcome(kubectl: Kubectl, kubeconfig: str, operator: Operator) -> None:
    print(f"campaign: {SPECS} generated specs, seed {SEED} (MODELPILOT_CAMPAIGN_SEED={SEED} reruns it)")
    cases = regressions() + generated(SPECS, SEED)
    api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    camp = Campaign(api, kubectl)
    log = operator.log_path
    log_offset = log.stat().st_size if log.exists() else 0
    since = utcnow().strftime("%Y-%m-%dT%H:%M:%S")
    namespaces: set[str] = set()
    largest = 0
    t0 = time.time()
    try:
        for b in range(0, len(cases), BATCH):
            ns = f"campaign-{SEED % 100000}-{b // BATCH}"
            kubectl("create", "namespace", ns)
            namespaces.add(ns)
            for i, (kind, family, spec) in enumerate(cases[b:b + BATCH], start=b):
                camp.create(ns, i, kind, family, spec)
            camp.settle(ns, time.time() + SETTLE_S)
            sizes = {k: len(json.dumps(camp.status_of(k))) for k in camp.created_at if k[0] == ns}
            largest = max([largest, *sizes.values()])
            big = {k: n for k, n in sizes.items() if n >= MAX_STATUS}
            assert not big, f"status over 64 KiB: {big}"
            kubectl("delete", "namespace", ns, "--wait=false")
        elapsed = time.time() - t0
        assert operator.proc is not None and operator.proc.poll() is None, "the operator crashed"
        text = log.read_text()[log_offset:] if log.exists() else ""
        assert "Traceback" not in text, text[text.index("Traceback") - 2000:text.index("Traceback") + 3000]
        writes = status_writes(since, namespaces)
        rates = {obj: len(ts) / max(1.0, (max(ts) - min(ts)) / 60) for obj, ts in writes.items()}
        hot = {obj: r for obj, r in rates.items() if r > MAX_STATUS_WRITES_PER_MINUTE}
        table = Counter((k[1], camp.families[k], v[0]) for k, v in camp.outcomes.items())
        print(f"campaign: {len(cases)} specs in {elapsed:.0f}s; outcomes:")
        for row, n in sorted(table.items()):
            print(f"  {row[0]:<16} {row[1]:<10} {row[2]:<16} {n}")
        print(f"campaign: status writes: {sum(len(t) for t in writes.values())} for {len(writes)} objects, "
              f"max {max(rates.values(), default=0):.1f}/min; largest status {largest} bytes")
        bad = {k: v for k, v in camp.outcomes.items() if v[0] not in ("rejected", "ready", "false")}
        assert not bad, "specs without one clear outcome:\n" + "\n".join(
            f"{k}: {v}\n    spec: {json.dumps(camp.specs[k])[:600]}" for k, v in list(bad.items())[:15])
        assert not hot, f"status written more than {MAX_STATUS_WRITES_PER_MINUTE} times a minute: {hot}"
        assert len(camp.outcomes) == len(cases)
    finally:
        for ns in namespaces:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
