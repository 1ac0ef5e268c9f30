"""`kubectl modelpilot dashboard` in a real browser (Debian chromium), against the local control plane
with the operator running: a real export's targets; a canary watched from 0 to 100 % with the
page's weights matching the HTTPRoute and the status (within a second), its analysis measurements
(a query and a Mann-Whitney judge on a real Prometheus); the promote, abort and undo buttons;
read-only mode; and an RBAC-limited user.

MODELPILOT_DASHBOARD_SCREENSHOTS=DIR also saves the overview, the rollout and the export as PNGs
(docs/images, shown in docs/dashboard.md)."""

from __future__ import annotations

import bisect
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from selenium.webdriver.support.ui import Select

from ..chart.conftest import sa_kubeconfig
from ..conftest import Kubectl
from ..e2e.conftest import MetricTarget, Operator, wait_for
from ..e2e.rollout_helpers import ObjectWatch, RouteWatch, apply, model_deployment, new_version, route_weights, wait_status
from ..e2e.test_modelexport import complete_pod, export_body, mex_status, models_pvc, run_job_like_a_kubelet, tiny_onnx  # noqa: F401
from ..e2e.test_rollouts import scraped
from .conftest import Dashboard

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ERRORS = 'mp_e2e_error_ratio{namespace="{{namespace}}",name="{{name}}",revision="{{revision}}"}'
ANALYSIS = {"interval": "1s", "count": 2, "metrics": [
    {"name": "error-ratio", "query": f"max({ERRORS})", "successCondition": "result < 0.05"},
    {"name": "errors-vs-stable", "judge": {"canaryQuery": ERRORS + "[10s]", "baselineQuery": ERRORS + "[10s]",
                                           "minSamples": 5, "direction": "increase"}}]}
STEPS = [{"setWeight": 20}, {"analysis": ANALYSIS}, {"setWeight": 50}, {"pause": {}},
         {"setWeight": 80}, {"pause": {"duration": "2s"}}]

# What the rollout page shows, read in one round trip.
READ_PAGE = """
const f = (n) => { const e = document.querySelector('[data-field="' + n + '"]'); return e ? e.textContent : null; };
return {phase: f('phase'), stable: f('stable-revision'), canary: f('canary-revision'),
        stableWeight: f('stable-weight'), canaryWeight: f('canary-weight'),
        buttons: document.querySelectorAll('button.action').length};
"""
# The keys of the overview's rows, in order.
ROW_KEYS = "return [...document.querySelectorAll('tr[data-key]')].map((e) => e.dataset.key)"


def percent(text: str | None) -> int | None:
    return int(text.rstrip("%")) if text and text.rstrip("%").isdigit() else None


def revision(text: str | None) -> int | None:
    return int(text[1:]) if text and text.startswith("r") else None


def page(browser: Any) -> dict[str, Any]:
    return browser.execute_script(READ_PAGE)


def goto(browser: Any, url: str) -> None:
    """Load `url` afresh: from a page of the same address, only the hash would change, and the page of
    an earlier dashboard process on the same port would stay."""
    browser.get("about:blank")
    browser.get(url)


def open_rollout(browser: Any, dash: Dashboard, ns: str, name: str) -> dict[str, Any]:
    goto(browser, f"{dash.url}#/ModelDeployment/{ns}/{name}")
    return wait_for(lambda: (p := page(browser)) and p["phase"] and p, 15, 0.1, f"the rollout page of {name}")


def weight_of(revision_no: int, p: dict[str, Any]) -> int:
    """The share of traffic the page says revision N has."""
    if revision(p["canary"]) == revision_no:
        return percent(p["canaryWeight"]) or 0
    if revision(p["stable"]) == revision_no:
        return percent(p["stableWeight"]) or 0
    return 0


def text(browser: Any, css: str) -> str | None:
    """The text of the element `css` now (the page re-renders on every event: no element handles)."""
    return browser.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def as_user(browser: Any, what: str, act: Callable[[], Any]) -> None:
    """Do `act` (find an element and use it, as a user does), again if the page re-rendered between."""
    from selenium.common.exceptions import StaleElementReferenceException

    def done() -> bool:
        try:
            act()
            return True
        except StaleElementReferenceException:
            return False
    wait_for(done, 10, 0.05, what)


def press(browser: Any, action: str) -> str:
    """Click the action's button; the answer shown next to the buttons."""
    as_user(browser, f"the {action} button", lambda: browser.find_element("css selector", f'button[data-action="{action}"]').click())
    return wait_for(lambda: (t := text(browser, "#action-result")) and "sending" not in t and t, 30, 0.1, f"the answer to {action}")


def click(browser: Any, action: str) -> None:
    answer = press(browser, action)
    assert "requested" in answer, answer


def screenshot(browser: Any, name: str) -> None:
    """The whole page as a PNG, when MODELPILOT_DASHBOARD_SCREENSHOTS names a directory."""
    out = os.environ.get("MODELPILOT_DASHBOARD_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        size = browser.get_window_size()
        browser.set_window_size(size["width"], browser.execute_script(
            "return Math.ceil(document.getElementById('main').getBoundingClientRect().bottom + window.scrollY)"
            " + (window.outerHeight - window.innerHeight)"))
        time.sleep(0.3)  # the chart follows the new size
        path = Path(out) / name
        browser.save_screenshot(str(path))
        browser.set_window_size(size["width"], size["height"])
        from PIL import Image  # 256 colours: a third of the size, no visible change on this flat page
        Image.open(path).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)


def whoami(kubectl: Kubectl) -> str:
    return kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()


def events(kubectl: Kubectl, ns: str, name: str, reason: str) -> list[str]:
    items = json.loads(kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    return [e["message"] for e in items if e["reason"] == reason]


def analysis_on_page(browser: Any) -> dict[str, Any]:
    """The analysis section: {run: {"phase": ..., "rows": {seq: {"text": ..., "stats": {name: raw value}}}}}."""
    return browser.execute_script("""
        const out = {};
        for (const run of document.querySelectorAll('#analysis [data-run]')) {
          const rows = {};
          for (const tr of run.querySelectorAll('tr[data-seq]')) {
            const stats = {};
            for (const b of tr.querySelectorAll('[data-stat]')) stats[b.dataset.stat] = b.title;
            rows[tr.dataset.seq] = {text: tr.textContent, stats};
          }
          out[run.dataset.run] = {phase: run.querySelector('.badge').textContent, rows};
        }
        return out;""")


def check_analysis(browser: Any, st: dict[str, Any]) -> None:
    """Every measurement of the status is on the page: metric, verdict, the PromQL sent, and for the
    judge its statistics."""
    shown = analysis_on_page(browser)
    for key, run in st["analysis"]["runs"].items():
        assert shown[key]["phase"] == run["phase"], (key, shown[key])
        assert len(shown[key]["rows"]) == len(run["latest"]) > 0
        for m in run["latest"]:
            row = shown[key]["rows"][str(m["seq"])]
            assert m["metric"] in row["text"] and m["verdict"] in row["text"] and m["query"] in row["text"], (m, row)
            if "judge" in m:
                assert "Mann-Whitney" in row["text"]
                for stat, field in (("U", "u"), ("p", "pValue"), ("α", "alpha"), ("CLES", "cles")):
                    assert float(row["stats"][stat]) == m["judge"][field], (stat, row["stats"], m["judge"])


# What the export page shows per target: {target: {column: exact value (a cell's title) or text}}.
READ_TARGETS = """
const out = {};
for (const tr of document.querySelectorAll('#targets tr[data-target]')) {
  const row = {};
  for (const td of tr.querySelectorAll('[data-col]')) row[td.dataset.col] = td.title || td.textContent;
  out[tr.dataset.target] = row;
}
return out;
"""


def test_export_view_shows_each_target(kubectl: Kubectl, kubeconfig: str, namespace: str, dash_operator: Operator,
                                       dashboard: Callable[..., Dashboard], browser: Any, tmp_path: Path, models_pvc: str) -> None:
    """A real export (the Job's command run as a kubelet would, tests/e2e/test_modelexport.py), watched
    from Running to Succeeded; every figure of each target is on the page."""
    pvc_root = tmp_path / "pvc"
    tiny_onnx(pvc_root / "models" / "tiny" / "model.onnx")
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(export_body("tiny", [{"name": "fp32", "format": "onnx"}])))
    dash = dashboard(kubeconfig, "--namespace", namespace)
    job = wait_for(lambda: (r := kubectl("-n", namespace, "get", "job", "tiny-export-g1", "-o", "json", check=False)).returncode == 0
                   and json.loads(r.stdout), 60, what="the export Job")
    goto(browser, f"{dash.url}#/ModelExport/{namespace}/tiny")
    wait_for(lambda: text(browser, '[data-field="phase"]') == "Running", 60, 0.1, "the page to show the export Running")
    code, message = run_job_like_a_kubelet(kubectl, namespace, job, pvc_root, tmp_path / "run")
    assert code == 0, message
    complete_pod(kubectl, namespace, "tiny-export-g1", code, message)
    wait_for(lambda: text(browser, '[data-field="phase"]') == "Succeeded", 60, 0.1, "the page to show the export Succeeded")
    artifacts = mex_status(kubectl, namespace, "tiny")["artifacts"]
    shown = wait_for(lambda: (t := browser.execute_script(READ_TARGETS)) and len(t) == len(artifacts) and t, 10, 0.1, "the targets")
    for a in artifacts:
        row = shown[a["name"]]
        assert row["format"] == a["format"] and row["sha256"] == a["sha256"] and int(row["sizeBytes"]) == a["sizeBytes"], row
        for col in ("maxAbsError", "top1Agreement", "latencyMs", "sourceLatencyMs"):
            assert float(row[col]) == a[col], (col, row, a)
        assert row["validated"] == "passed" and a["validated"] is True
    screenshot(browser, "dashboard-export.png")


def test_canary_watched_from_0_to_100_matches_the_route(kubectl: Kubectl, kubeconfig: str, namespace: str,
                                                         dash_operator: Operator, dashboard: Callable[..., Dashboard],
                                                         browser: Any, metric_target: MetricTarget, prometheus_url: str) -> None:
    # The new model errs less than the stable one: both analysis metrics pass.
    metric_target.set_error_ratio(namespace, "canary", 1, 0.002)
    metric_target.set_error_ratio(namespace, "canary", 2, 0.001)
    body = model_deployment("canary", {"strategy": "canary", "canary": {"steps": STEPS}})
    apply(kubectl, namespace, body)
    apply(kubectl, namespace, model_deployment("steady", {"strategy": "direct"}, traffic=None))  # another phase to filter by
    for rev in (1, 2):  # enough samples for the judge's minSamples
        scraped(prometheus_url, f'count_over_time(mp_e2e_error_ratio{{namespace="{namespace}",name="canary",revision="{rev}"}}[10s]) >= 6')
    wait_status(kubectl, namespace, "canary", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    dash = dashboard(kubeconfig, "--namespace", namespace)
    assert weight_of(1, open_rollout(browser, dash, namespace, "canary")) == 100
    route = RouteWatch(kubeconfig, namespace, "canary", "canary-r2")
    status = ObjectWatch(kubeconfig, namespace, "modeldeployment", "canary",
                         lambda md: ((md.get("status") or {}).get("weights") or {}).get("canary"))
    new_version(kubectl, namespace, body, 2)

    seen: list[int] = []  # every distinct share of revision 2 the page showed
    seen_times: list[float] = []
    seen_at: dict[tuple[int, int], float] = {}  # (share, canary weight) -> when the page first showed it
    promoted = False
    deadline = time.time() + 90
    while time.time() < deadline:
        p = page(browser)
        share = weight_of(2, p)
        if not seen or seen[-1] != share:
            seen.append(share)
            seen_times.append(time.time())
        seen_at.setdefault((share, percent(p["canaryWeight"]) or 0), time.time())
        if p["phase"] == "Paused" and share == 50 and not promoted:
            now = route_weights(json.loads(kubectl("-n", namespace, "get", "httproute", "canary", "-o", "json").stdout))
            assert now == {"canary-r1": percent(p["stableWeight"]), "canary-r2": percent(p["canaryWeight"])} == {
                "canary-r1": 50, "canary-r2": 50}, f"page {p} vs route {now}"
            check_analysis(browser, wait_status(kubectl, namespace, "canary", lambda s: s.get("phase") == "Paused"))
            screenshot(browser, "dashboard-rollout.png")
            goto(browser, dash.url + "#/")  # with the export of the test before
            wait_for(lambda: "Ready" in (text(browser, f'tr[data-key="ModelDeployment/{namespace}/steady"]') or ""), 30, 0.1, "the overview")
            screenshot(browser, "dashboard-overview.png")
            for phase, shown in (("Ready", [f"ModelDeployment/{namespace}/steady"]), ("Paused", [f"ModelDeployment/{namespace}/canary"])):
                as_user(browser, f"phase {phase}", lambda: Select(browser.find_element("id", "filter-phase")).select_by_value(phase))
                assert browser.execute_script(ROW_KEYS) == shown, f"filtered by phase {phase}"
            open_rollout(browser, dash, namespace, "canary")
            click(browser, "promote")
            promoted = True
        if revision(p["stable"]) == 2 and p["phase"] == "Ready":
            break
        time.sleep(0.05)
    route_seen, status_seen = route.stop(), status.stop()
    assert promoted, f"the page never showed the pause at 50 %: {seen}"
    page_steps, route_steps = [w for w in seen if w], [w for w in route_seen if w]
    # The page may show revision 2 at 0 % first, or not: on a quiet machine its pods are ready
    # before the page's first refresh after the change.
    assert seen[0] in (0, 20) and page_steps == [20, 50, 80, 100], f"every step on the page, once, in order: {seen}"
    assert route_steps[:3] == page_steps[:3], f"page {seen} vs HTTPRoute {route_seen}"
    for share, at in zip(seen, seen_times):  # when the page showed a step, the route carried it
        if share in (20, 50, 80):
            carried = route_seen[bisect.bisect_right(route.times, at) - 1]
            assert carried == share, f"page showed {share}% at {at:.2f}; the HTTPRoute carried {carried}% ({route_seen}, {route.times})"
    # Live: each canary weight the status took was on the page within a second.
    shown = {canary: at for (_, canary), at in sorted(seen_at.items(), key=lambda kv: -kv[1])}
    for value, t in zip(status_seen, status.times):
        if value:
            assert value in shown and shown[value] - t < 1.0, f"canary {value}% in status at {t:.2f}, on the page at {shown.get(value)}"
    who = whoami(kubectl)
    assert any(f"promote by {who}" in m for m in events(kubectl, namespace, "canary", "Promoted")), "the CLI's write path: requestedBy"


def test_abort_and_undo_buttons_change_the_rollout(kubectl: Kubectl, kubeconfig: str, namespace: str, dash_operator: Operator,
                                                  dashboard: Callable[..., Dashboard], browser: Any, metric_target: MetricTarget,
                                                  prometheus_url: str) -> None:
    metric_target.set_error_ratio(namespace, "canary", 3, 0.001)
    scraped(prometheus_url, f'count_over_time(mp_e2e_error_ratio{{namespace="{namespace}",name="canary",revision="3"}}[10s]) >= 6')
    body = model_deployment("canary", {"strategy": "canary", "canary": {"steps": STEPS}})
    dash = dashboard(kubeconfig, "--namespace", namespace)
    new_version(kubectl, namespace, body, 3)
    open_rollout(browser, dash, namespace, "canary")
    wait_for(lambda: (p := page(browser))["phase"] == "Paused" and weight_of(3, p) == 50, 60, 0.1, "revision 3 paused at 50 %")
    click(browser, "abort")
    p = wait_for(lambda: (p := page(browser))["phase"] == "Degraded" and p, 30, 0.1, "the page to show the abort")
    assert percent(p["canaryWeight"]) == 0 and revision(p["stable"]) == 2
    st = wait_status(kubectl, namespace, "canary", lambda s: (s.get("rollout") or {}).get("aborted"), what="abort")
    assert st["rollout"]["aborted"]["revision"] == 3
    assert route_weights(json.loads(kubectl("-n", namespace, "get", "httproute", "canary", "-o", "json").stdout)).get("canary-r3", 0) == 0
    as_user(browser, "revision 1", lambda: Select(browser.find_element("id", "undo-revision")).select_by_value("1"))
    click(browser, "undo")
    wait_for(lambda: revision(page(browser)["stable"]) == 1, 60, 0.1, "the page to show revision 1 stable again")
    assert wait_status(kubectl, namespace, "canary", lambda s: s.get("stableRevision") == 1, what="undo")["stableRevision"] == 1


def test_read_only_shows_no_buttons_and_refuses_actions(kubectl: Kubectl, kubeconfig: str, namespace: str,
                                                        dash_operator: Operator, dashboard: Callable[..., Dashboard],
                                                        browser: Any) -> None:
    apply(kubectl, namespace, model_deployment("viewed", {"strategy": "direct"}, traffic=None))
    dash = dashboard(kubeconfig, "--namespace", namespace, "--read-only")
    p = open_rollout(browser, dash, namespace, "viewed")
    assert p["buttons"] == 0 and not browser.find_elements("id", "actions")
    assert "read-only" in text(browser, "#scope")
    # The page's own token, from the page's own origin: the server still refuses.
    refused = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const token = JSON.parse(document.querySelector('meta[name="modelpilot-config"]').content).csrfToken;
        fetch('/api/control', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
              body: JSON.stringify({namespace: arguments[0], name: 'viewed', action: 'abort'})})
          .then(r => r.json().then(j => done([r.status, j.message])));""", namespace)
    assert refused[0] == 403 and "read-only" in refused[1]
    # Ctrl-C stops it at once, also when it was started with SIGINT ignored (a background job of a
    # script: it used to wait for a SIGKILL).
    took = dash.stop()
    assert dash.proc.returncode == 0 and took < 5, f"the dashboard took {took:.1f}s to stop (exit {dash.proc.returncode})"


def test_rbac_limited_user_sees_only_their_namespace(kubectl: Kubectl, kubeconfig: str, namespace: str, dash_operator: Operator,
                                                     dashboard: Callable[..., Dashboard], browser: Any, tmp_path: Path) -> None:
    other = f"{namespace}-other"
    kubectl("create", "namespace", other)
    try:
        apply(kubectl, other, model_deployment("elsewhere", {"strategy": "direct"}, traffic=None))
        apply(kubectl, namespace, model_deployment("mine", {"strategy": "direct"}, traffic=None))
        kubectl("-n", namespace, "create", "serviceaccount", "viewer")
        kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "modelpilot-viewer"},
             "rules": [{"apiGroups": ["modelpilot.io"], "resources": ["modeldeployments", "modelexports"], "verbs": ["get", "list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "viewer"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "modelpilot-viewer"},
             "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}]}]))
        kc = str(sa_kubeconfig(kubectl, namespace, "viewer", tmp_path / "viewer.kubeconfig", hours=1))
        token = yaml.safe_load(Path(kc).read_text())["users"][0]["user"]["token"]

        refused = [dashboard(kc, *args, ready=False) for args in (("--all-namespaces",), ("--namespace", other))]
        for d in refused:
            code, out = d.exit_output()
            assert code == 1 and "cannot list modeldeployments.modelpilot.io" in out and "403" in out, out

        dash = dashboard(kc)  # the kubeconfig context's namespace, as kubectl
        goto(browser, dash.url + "#/")
        wait_for(lambda: browser.find_elements("css selector", f'tr[data-key="ModelDeployment/{namespace}/mine"]'), 15, 0.1, "my deployment")
        keys = browser.execute_script(ROW_KEYS)
        assert keys and all(k.split("/")[1] == namespace for k in keys), keys
        with urllib.request.urlopen(dash.url + "events", timeout=10) as events_stream:  # what every page is sent first
            snapshot = events_stream.readline().decode()
        assert f"ModelDeployment/{namespace}/mine" in snapshot and token not in snapshot and "managedFields" not in snapshot
        assert token not in browser.page_source
        goto(browser, f"{dash.url}#/ModelDeployment/{other}/elsewhere")
        wait_for(lambda: "is not here" in (text(browser, "#main") or ""), 10, 0.1, "not-here page")
        # The viewer may not write status.control: the button reports the apiserver's refusal.
        open_rollout(browser, dash, namespace, "mine")
        msg = press(browser, "pause")
        assert "forbidden" in msg.lower() and "modeldeployments/status" in msg, msg
    finally:
        kubectl("delete", "namespace", other, "--wait=false", check=False)
