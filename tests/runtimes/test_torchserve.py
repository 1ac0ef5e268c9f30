"""A real TorchServe (Java frontend + Python workers) on 127.0.0.1, serving the .mar that the storage
initializer builds from a TorchScript and from a torch.export model, with the config.properties the
runtime module renders (only the addresses moved to free loopback ports and the model store to a
temporary directory). Its answers must match the source model.

The server is started in its own session and always stopped (SIGKILL to its process group);
every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelpilot.runtimes import MODEL_REPOSITORY, Signature, get_runtime
from modelpilot_exporters import storage_init

from .conftest import deployment

pytestmark = pytest.mark.integration
TS = get_runtime("torchserve")
TORCHSERVE = Path(sys.executable).parent / "torchserve"
START_TIMEOUT = 180
SIG = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}, {"name": "ids", "dtype": "int64", "shape": [-1, 5]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}, {"name": "score", "dtype": "float32", "shape": [-1]}],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, body: dict | None = None, timeout: float = 10) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def _loopback(props: str, repo: Path) -> tuple[str, dict[str, int]]:
    """The rendered config.properties with free 127.0.0.1 ports and the local model store."""
    ports: dict[str, int] = {}

    def addr(m: re.Match) -> str:
        ports[m.group(1)] = _free_port()
        return f"{m.group(1)}=http://127.0.0.1:{ports[m.group(1)]}"

    props = re.sub(r"^(\w+_address)=http://(?:0\.0\.0\.0|127\.0\.0\.1):\d+$", addr, props, flags=re.M)
    props = re.sub(r"^(grpc_\w+_port)=\d+$", lambda m: f"{m.group(1)}={_free_port()}", props, flags=re.M)
    props = props.replace(f"model_store={MODEL_REPOSITORY}", f"model_store={repo}")
    return props + "grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n", ports


def _files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def serve(tmp_path: Path):
    """serve(md, signature, source) -> (inference_url, management_url, repo): lays out the repository with the
    storage initializer, starts TorchServe as the rendered container would, waits until /ping is healthy."""
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java is not on PATH)")
    procs: list[subprocess.Popen] = []

    def start(md, signature: dict, source: Path) -> tuple[str, str, Path]:
        base = tmp_path / f"ts{len(procs)}"  # one directory per server: a test may start several
        repo, config_dir, work, log_path = base / "models", base / "config", base / "work", base / "torchserve.log"
        for d in (config_dir, work):
            d.mkdir(parents=True)
        for rel, body in TS.config_files(md, Signature.from_dict(signature)).items():
            (config_dir / rel).write_text(body)
        rc = storage_init.main([f"--uri=file://{source}", f"--format={md.model.format}", f"--model-name={md.model.name}",
                                f"--dest={repo}/{TS.artifact_path(md)}", f"--config-dir={config_dir}", f"--repository={repo}"])
        assert rc == 0
        props, ports = _loopback((repo / "config.properties").read_text(), repo)
        (repo / "config.properties").write_text(props)
        before = _files(repo)

        container = TS.container(md, "unused")
        args = [a.replace(MODEL_REPOSITORY, str(repo)) for a in container["args"]]
        env = {**os.environ, **{e["name"]: e["value"].replace("/tmp", str(work)) for e in container["env"]}}
        env["TMPDIR"] = str(work)  # TorchServe's pid file lives there: one per server, as in a pod
        log = open(log_path, "w")
        proc = subprocess.Popen([str(TORCHSERVE), *args], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        inference = f"http://127.0.0.1:{ports['inference_address']}"
        management = f"http://127.0.0.1:{ports['management_address']}"
        # Wait with the rendered readiness probe itself (its ports moved like the server's).
        probe = container["readinessProbe"]["exec"]["command"]
        assert probe[0] == "python3"
        script = (probe[2].replace(":8080/", f":{ports['inference_address']}/")
                  .replace(":8081/", f":{ports['management_address']}/"))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"TorchServe's model did not become ready ({r.stderr[-300:]}):\n"
                                     + log_path.read_text()[-4000:])
            time.sleep(1)
        start.before, start.repo = before, repo  # type: ignore[attr-defined]
        return inference, management, repo

    yield start
    # SIGKILL to each group at once: a graceful TorchServe stop takes seconds per server, and
    # nothing here needs it (the test's directories are thrown away). The Java frontend and the Python
    # workers share the group: nothing may outlive the test.
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in procs:
        proc.wait(timeout=30)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torchserve_serves_our_mar_and_matches_the_source_model(serve, two_heads, fmt: str) -> None:
    md = deployment(model={"uri": f"file://{two_heads[fmt]}", "format": fmt, "name": "twoheads"},
                    runtime={"kind": "torchserve", "maxBatchSize": 4, "dynamicBatching": {"maxQueueDelayMicroseconds": 50000}},
                    placement={"nodePool": "cpu"}, replicas=1)
    inference, management, repo = serve(md, SIG, two_heads[fmt])

    with zipfile.ZipFile(repo / "twoheads.mar") as z:
        names = set(z.namelist())
    assert {"modelpilot_handler.py", "signature.json", "MAR-INF/MANIFEST.json"} <= names

    # The rendered model settings are the ones TorchServe runs with.
    status, body = _http(f"{management}/models/twoheads")
    assert status == 200, body
    desc = json.loads(body)[0]
    assert (desc["batchSize"], desc["maxBatchDelay"], desc["minWorkers"]) == (4, 50, 1)
    assert [w["status"] for w in desc["workers"]] == ["READY"]
    # The rendered liveness probe (an exec probe: the management API listens on loopback only).
    live = TS.container(md, "unused")["livenessProbe"]["exec"]["command"]
    live_script = live[2].replace(":8081/", f":{management.rsplit(':', 1)[1]}/")
    assert subprocess.run([sys.executable, "-c", live_script], capture_output=True, timeout=30).returncode == 0
    assert "Healthy" in _http(f"{inference}/ping")[1]

    ref = np.load(two_heads["reference"])
    # One request carrying its own batch of two, by input name.
    status, body = _http(f"{inference}/predictions/twoheads",
                         {"inputs": {"x": ref["x"][:2].tolist(), "ids": ref["ids"][:2].tolist()}})
    assert status == 200, body
    out = json.loads(body)["outputs"]
    assert set(out) == {"logits", "score"}, "output names come from the signature packed in the .mar"
    np.testing.assert_allclose(out["logits"], ref["logits"][:2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["score"], ref["score"][:2], rtol=1e-5, atol=1e-5)

    # Three concurrent one-row requests: TorchServe may batch them (maxBatchDelay 50 ms); each answer
    # must still be its own row.
    def one(i: int) -> tuple[int, dict]:
        s, b = _http(f"{inference}/predictions/twoheads", {"inputs": [ref["x"][i:i + 1].tolist(), ref["ids"][i:i + 1].tolist()]})
        return s, (json.loads(b) if s == 200 else {"error": b})

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(one, range(3)))
    for i, (s, b) in enumerate(answers):
        assert s == 200, b
        np.testing.assert_allclose(b["outputs"]["logits"], ref["logits"][i:i + 1], rtol=1e-5, atol=1e-5)

    # TorchServe wrote nothing into the model store (read-only in the pod): only under its working dir.
    assert _files(repo) == serve.before  # type: ignore[attr-defined]
