"""The shadow comparator between two real TorchServe processes on 127.0.0.1: v1 (stable) and v2,
the same model with its linear layer's weights perturbed. The comparator runs as the rendered
container runs it (`python -m modelpilot.comparator` with the arguments objects.py renders, only
the URLs moved to loopback). The agreement, differences and counts it publishes must be the ones
computed from the two models directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modelpilot.comparator.objects import build_comparator_deployment

from ..unit.helpers import CONFIG
from .conftest import deployment
from .test_torchserve import _free_port, _http, serve  # noqa: F401  (serve is a fixture)

pytestmark = pytest.mark.integration
SIG = {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}, {"name": "ids", "dtype": "int64", "shape": [-1, 5]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}, {"name": "score", "dtype": "float32", "shape": [-1]}]}


def _md(uri: str):
    return deployment(model={"uri": uri, "format": "torchscript", "name": "twoheads"}, runtime={"kind": "torchserve"},
                      placement={"nodePool": "cpu"}, replicas=1,
                      traffic={"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}},
                      rollout={"strategy": "shadow", "shadow": {"compare": True, "maxComparisonsPerSecond": 1000}})


def _metrics(url: str) -> dict[str, float]:
    status, text = _http(url)
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line.startswith("modelpilot_shadow_") and "{" in line:
            name, labels = line.split("{", 1)
            key = name + ("{" + labels.split('outcome="')[1].split('"')[0] + "}" if 'outcome="' in labels else "")
            if 'side="' in labels:
                key += "{" + labels.split('side="')[1].split('"')[0] + "}"
            out[key] = float(line.rsplit(" ", 1)[1])
    return out


@pytest.fixture
def comparator():
    procs = []

    def start(md, stable: str, shadow: str) -> tuple[str, str]:
        args = build_comparator_deployment(md, 1, 2, 100, CONFIG)["spec"]["template"]["spec"]["containers"][0]["args"]
        port, mport = _free_port(), _free_port()
        moved = {"--stable-url": stable, "--shadow-url": shadow, "--port": str(port), "--metrics-port": str(mport)}
        args = [moved.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
        proc = subprocess.Popen([sys.executable, "-m", "modelpilot.comparator", *args, "--host", "127.0.0.1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while _http(f"http://127.0.0.1:{mport}/healthz")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.2)
        return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}"

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_comparator_between_two_real_torchserve_versions(serve, comparator, two_versions) -> None:  # noqa: F811
    ref = np.load(two_versions["reference"])
    stable, _, _ = serve(_md(f"file://{two_versions['v1']}"), SIG, two_versions["v1"])
    shadow, _, _ = serve(_md(f"file://{two_versions['v2']}"), SIG, two_versions["v2"])
    mirror, admin = comparator(_md("file:///unused"), stable, shadow)

    # 16 mirrored requests of one row each, then one of the 16 rows together.
    verdicts = []
    for i in range(16):
        s, body = _http(f"{mirror}/predictions/twoheads", {"inputs": {"x": ref["x"][i:i + 1].tolist(), "ids": ref["ids"][i:i + 1].tolist()}})
        assert s == 200, body
        verdicts.append(json.loads(body))
    s, body = _http(f"{mirror}/predictions/twoheads", {"inputs": {"x": ref["x"].tolist(), "ids": ref["ids"].tolist()}})
    assert s == 200, body
    batch = json.loads(body)

    # What the two models say directly.
    top1 = ref["v1_logits"].argmax(1) == ref["v2_logits"].argmax(1)
    diffs = np.concatenate([np.abs(ref["v1_logits"] - ref["v2_logits"]), np.abs(ref["v1_score"] - ref["v2_score"])[:, None]], axis=1)
    assert 0 < top1.sum() < 16, "the perturbation must flip some rows and keep most"
    assert [v["outcome"] for v in verdicts] == ["compared"] * 16
    assert [v["agreedRows"] for v in verdicts] == top1.astype(int).tolist()
    for i, v in enumerate(verdicts):
        assert v["maxAbsDiff"] == pytest.approx(diffs[i].max(), abs=1e-5)
    assert (batch["rows"], batch["agreedRows"]) == (16, int(top1.sum()))
    assert batch["meanAbsDiff"] == pytest.approx(diffs.mean(), abs=1e-5)

    m = _metrics(f"{admin}/metrics")
    assert m["modelpilot_shadow_requests_compared_total"] == 17
    assert m["modelpilot_shadow_rows_compared_total"] == 32
    assert m["modelpilot_shadow_agreement_ratio"] == pytest.approx(2 * top1.sum() / 32)
    assert m["modelpilot_shadow_abs_difference_max"] == pytest.approx(diffs.max(), abs=1e-5)
    assert m["modelpilot_shadow_abs_difference_mean"] == pytest.approx(diffs.mean(), abs=1e-5)
    assert m["modelpilot_shadow_error_ratio"] == 0
    assert m["modelpilot_shadow_latency_seconds_count{shadow}"] == 17
    assert 0.1 < m["modelpilot_shadow_latency_ratio"] < 10
    assert m["modelpilot_shadow_mirrored_requests_total{compared}"] == 17

    # A request the shadow cannot answer (an unknown model) is a shadow error... on both sides
    # here, so it is the stable's: never blamed on the shadow.
    s, body = _http(f"{mirror}/predictions/nosuchmodel", {"inputs": [[1.0]]})
    assert json.loads(body)["outcome"] == "stable_error"
    latest = json.loads(_http(f"{admin}/comparison")[1])
    assert latest["summary"]["requestsCompared"] == 17 and latest["latest"]["outcome"] == "stable_error"


def _record(ref, tag: str, rows: int = 4) -> dict:
    """parity.json as the exporter writes it for a torchscript target: batch-1 samples."""
    return {"atol": 1e-4, "rtol": 1e-3,
            "inputs": [{"x": {"dtype": "float32", "data": ref["x"][i:i + 1].tolist()},
                        "ids": {"dtype": "int64", "data": ref["ids"][i:i + 1].tolist()}} for i in range(rows)],
            "outputs": [{"logits": ref[f"{tag}_logits"][i:i + 1].tolist(), "score": ref[f"{tag}_score"][i:i + 1].tolist()}
                        for i in range(rows)]}


def test_parity_check_passes_the_right_model_and_names_the_difference_of_the_wrong_one(serve, two_versions, tmp_path) -> None:  # noqa: F811
    ref = np.load(two_versions["reference"])
    # The export's manifest and record, as the exporter lays them out; the check Job's command reads
    # them through export:// exactly as the operator renders it (rollout/parity.py).
    (tmp_path / "parity").mkdir()
    (tmp_path / "parity" / "ts.json").write_text(json.dumps(_record(ref, "v1")))
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "twoheads", "targets": [
        {"name": "ts", "phase": "Succeeded", "format": "torchscript", "uri": f"file://{two_versions['v1']}",
         "parity": {"uri": f"file://{tmp_path}/parity/ts.json", "samples": 4}}]}))
    right, _, _ = serve(_md(f"file://{two_versions['v1']}"), SIG, two_versions["v1"])
    wrong, _, _ = serve(_md(f"file://{two_versions['v2']}"), SIG, two_versions["v2"])

    def check(url: str) -> tuple[int, dict]:
        r = subprocess.run([str(Path(sys.executable).with_name("modelpilot-parity")), "--uri=export://twoheads/ts",
                            f"--manifest=file://{tmp_path}/manifest.json", f"--url={url}", "--protocol=torchserve",
                            "--model=twoheads"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MODELPILOT_TERMINATION_LOG": str(tmp_path / "term")})
        return r.returncode, json.loads(r.stdout)

    rc, ok = check(right)
    assert (rc, ok["passed"], ok["samples"]) == (0, True, 4), ok
    rc, bad = check(wrong)
    assert (rc, bad["passed"], bad["sample"], bad["output"]) == (1, False, 0, "logits"), bad
    want = float(np.abs(ref["v1_logits"][0] - ref["v2_logits"][0]).max())
    assert bad["maxAbsDiff"] == pytest.approx(want, abs=1e-5)
    assert bad["message"].startswith("recorded input 0 (x[1, 4]: ")
    assert f"output 'logits' differs by up to {want:.6g}"[:38] in bad["message"]
    assert json.loads((tmp_path / "term").read_text()) == bad
