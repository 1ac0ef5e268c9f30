"""The operator under test, run as a real process (the `modelpilot-operator` console script)
authenticated as the Helm chart's ServiceAccount (`chart_identity`), so that the whole suite proves
the chart's RBAC and the apiserver's audit log attributes the operator's writes to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ..conftest import LOCAL, REPO, Kubectl

sys.path.insert(0, str(REPO / "hack" / "testbed"))
from local_operator import stop_local_up_operator  # noqa: E402

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


class Operator:
    def __init__(self, kubeconfig: str, metrics_port: int = 18090, health_port: int = 18091, resync: float = 4.0,
                 config: Path | None = None):
        self.kubeconfig = kubeconfig
        self.config = config or REPO / "hack/testbed/operator-config.yaml"
        self.metrics_port = metrics_port
        self.health_port = health_port
        self.resync = resync
        self.proc: subprocess.Popen | None = None
        self.log_path = LOCAL / "logs" / "operator-e2e.log"

    def start(self, wait: bool = True, prefix: tuple[str, ...] = ()) -> None:
        """Start the process (behind `prefix`, e.g. a shell that enters a cgroup first) and, with
        `wait`, wait until it answers on /healthz (Kopf's: once the start-up cache fill is done)."""
        exe = Path(sys.executable).with_name("modelpilot-operator")
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, MODELPILOT_CONFIG=str(self.config))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [*prefix, str(exe), f"--metrics-port={self.metrics_port}", f"--health-port={self.health_port}", "--no-leader-elect",
             f"--resync-seconds={self.resync}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_healthy()

    def wait_healthy(self) -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}; see {self.log_path}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"operator not healthy in 60s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Send `sig`; the seconds until the process was gone (20 and a SIGKILL if it did not go)."""
        t = time.monotonic()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return time.monotonic() - t

    def restart(self) -> None:
        self.stop()
        self.start()

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name: str) -> float:
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))


def audited_writes(since: datetime) -> list[dict[str, Any]]:
    """Write requests the apiserver audited since `since`, in order: time received and answered, user,
    user agent, verb, URI, response code and audit stage of each."""
    out: list[dict[str, Any]] = []
    path = LOCAL / "logs" / "audit.log"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("verb") not in WRITE_VERBS:
            continue
        ts = datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if ts >= since:
            out.append({"ts": ts, "done": datetime.fromisoformat(ev["stageTimestamp"].replace("Z", "+00:00")), "user": ev.get("user", {}).get("username"), "agent": ev.get("userAgent") or "",
                        "verb": ev["verb"], "uri": ev.get("requestURI") or "",
                        "code": ev.get("responseStatus", {}).get("code", 0), "stage": ev.get("stage")})
    return sorted(out, key=lambda w: w["ts"])


def operator_writes(since: datetime) -> list[dict[str, Any]]:
    """Write requests the apiserver audited from the operator's identity since `since`."""
    return operator_writes_by_agent(since)


def operator_writes_by_agent(since: datetime) -> list[dict[str, Any]]:
    """The completed writes of any operator replica, by its user agent (`modelpilot-operator/<identity>`):
    the same whether it runs with its own certificate or as the chart's ServiceAccount."""
    return [w for w in audited_writes(since) if w["agent"].startswith("modelpilot-operator") and w["stage"] == "ResponseComplete"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class MetricTarget:
    """A scrape target the tests set: `mp_e2e_error_ratio` and `mp_e2e_latency_seconds` per revision."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server
        self.registry = CollectorRegistry()
        self.error_ratio = Gauge("mp_e2e_error_ratio", "error ratio a test says a revision has",
                                 ["namespace", "name", "revision"], registry=self.registry)
        self.server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_port}"

    def set_error_ratio(self, namespace: str, name: str, revision: int, value: float) -> None:
        self.error_ratio.labels(namespace, name, str(revision)).set(value)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def metric_target() -> Iterator[MetricTarget]:
    t = MetricTarget()
    yield t
    t.stop()


@pytest.fixture(scope="session")
def comparator_metrics_port() -> int:
    """A loopback port Prometheus scrapes from the start: a test runs the shadow comparator's
    metrics there (tests/e2e/test_shadow_compare.py); nothing listens otherwise."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prometheus_url(metric_target: MetricTarget, comparator_metrics_port: int,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (hack/prometheus.sh, Debian package) scraping the test's targets twice a second."""
    local = tmp_path_factory.mktemp("prometheus-e2e")
    env = {**os.environ, "MODELPILOT_LOCAL_DIR": str(local)}
    script = str(REPO / "hack" / "prometheus.sh")
    r = subprocess.run([script, "start", "--port", "0", "--scrape-interval", "500ms", "--target", f"e2e={metric_target.address}",
                        "--target", f"comparator=127.0.0.1:{comparator_metrics_port}"],
                       env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"hack/prometheus.sh start failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    yield r.stdout.strip().splitlines()[-1]
    subprocess.run([script, "stop"], env=env, capture_output=True, timeout=30)


def operator_config(prometheus_url: str, directory: Path) -> Path:
    """The test bed's operator config, with analysis queries sent to `prometheus_url`."""
    import yaml
    config = yaml.safe_load((REPO / "hack/testbed/operator-config.yaml").read_text())
    config["prometheusUrl"] = prometheus_url
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def operator_kubeconfig() -> str:
    """The identity every operator of tests/e2e runs as: the Helm chart's ServiceAccount
    (`chart_identity`), or MODELPILOT_E2E_OPERATOR_KUBECONFIG when a caller chose one."""
    return os.environ.get("MODELPILOT_E2E_OPERATOR_KUBECONFIG") or str(LOCAL / "operator.kubeconfig")


@pytest.fixture(scope="session", autouse=True)
def chart_identity(kubectl: Kubectl, kubeconfig: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Least privilege, proven by the whole suite: the chart installed with `helm install` into a
    namespace of its own, and every operator of tests/e2e authenticated with a token of its
    ServiceAccount (its Lease is the only one the chart's Role allows). At the end of the session:
    no request that the rules refuse in the audit log, none that the chart's operator-scope
    admission policy refused, and no `forbidden` in the operator's log (tests/chart/conftest.py).
    A caller that set MODELPILOT_E2E_OPERATOR_KUBECONFIG keeps its own identity and checks."""
    if os.environ.get("MODELPILOT_E2E_OPERATOR_KUBECONFIG"):
        yield
        return
    from ..chart.conftest import CHART, audit_denials, audit_lines, forbidden_in_log, helm, policy_denials, sa_kubeconfig, testbed_values
    tmp = tmp_path_factory.mktemp("chart-identity")
    namespace, release = f"e2e-identity-{os.urandom(3).hex()}", f"e2e{os.urandom(3).hex()}"
    kubectl("create", "namespace", namespace)
    helm("install", release, str(CHART), "--namespace", namespace, "-f", str(testbed_values(tmp / "values.yaml")),
         "--wait", "--timeout", "180s", kubeconfig=kubeconfig, timeout=240)
    account = f"{release}-modelpilot"
    user = f"system:serviceaccount:{namespace}:{account}"
    log = LOCAL / "logs" / "operator-e2e.log"
    log_offset, audit_from = (log.stat().st_size if log.exists() else 0), audit_lines()
    env = {"MODELPILOT_E2E_OPERATOR_KUBECONFIG": str(sa_kubeconfig(kubectl, namespace, account, tmp / "sa.kubeconfig", hours=8)),
           "MODELPILOT_E2E_LEASE": f"{namespace}/{account}-leader"}
    os.environ.update(env)
    try:
        yield
    finally:
        for k in env:
            os.environ.pop(k, None)
    try:
        with log.open() as f:
            f.seek(log_offset)
            problems = [*audit_denials(kubectl, user, audit_from), *policy_denials(user, audit_from),
                        *forbidden_in_log(kubectl, f.read(), user)]
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s", kubeconfig=kubeconfig, check=False, timeout=180)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert problems == [], f"the chart's ServiceAccount was refused what the operator needed: {problems[:5]}"


@pytest.fixture(scope="session")
def operator(kubeconfig: str, prometheus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    # A local-up --with-operator instance would fight the one under test: stop it (we started it).
    stop_local_up_operator(LOCAL)
    base = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090"))
    op = Operator(operator_kubeconfig(), metrics_port=base, health_port=base + 1,
                  config=operator_config(prometheus_url, tmp_path_factory.mktemp("operator")))
    op.start()
    try:
        yield op
    finally:
        op.stop()

