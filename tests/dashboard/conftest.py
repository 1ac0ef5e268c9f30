"""Fixtures for the dashboard's browser tests: the operator (the e2e suite's `Operator`, here for one
module), `kubectl modelpilot dashboard` as a real process with a given kubeconfig, and Debian's
chromium driven by Selenium through chromium-driver (no browser is downloaded)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from ..chart.conftest import other_operators_frozen
from ..conftest import KUBECTL, LOCAL, REPO
from ..e2e.conftest import (  # noqa: F401 - fixtures
    Operator, comparator_metrics_port, metric_target, operator_config, operator_kubeconfig, prometheus_url)

sys.path.insert(0, str(REPO / "hack" / "testbed"))
from local_operator import stop_local_up_operator  # noqa: E402

PORT_BASE = int(os.environ.get("MODELPILOT_DASHBOARD_PORT_BASE", "3190"))


@pytest.fixture(scope="module")
def dash_operator(kubeconfig: str, prometheus_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The operator for this module's rollouts, analysing with the e2e suite's Prometheus. Another
    operator that this pytest process runs (tests/e2e's session one, when both directories run) is
    frozen meanwhile: two actors make weights flap."""
    stop_local_up_operator(LOCAL)
    base = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 70
    op = Operator(operator_kubeconfig(), metrics_port=base, health_port=base + 1, resync=2.0,
                  config=operator_config(prometheus_url, tmp_path_factory.mktemp("dashboard-operator")))
    with other_operators_frozen():
        op.start()
        try:
            yield op
        finally:
            op.stop()


class Dashboard:
    """`kubectl modelpilot dashboard ARGS` on a port of its own, as the user with `kubeconfig`."""

    def __init__(self, kubeconfig: str, port: int, *args: str):
        self.port, self.url = port, f"http://127.0.0.1:{port}/"
        exe = str(Path(sys.executable).with_name("kubectl-modelpilot"))
        env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECTL=KUBECTL)
        # Started as a non-interactive shell starts a background job (CI's case): SIGINT ignored.
        self.proc = subprocess.Popen([exe, "dashboard", "--port", str(port), *args], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    def wait_ready(self, timeout: float = 30) -> "Dashboard":
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited with {self.proc.returncode}: {self.proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise AssertionError(f"dashboard not answering on {self.url} in {timeout}s")

    def exit_output(self, timeout: float = 30) -> tuple[int, str]:
        """For a dashboard that must refuse to start: (exit code, what it printed)."""
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def stop(self) -> float:
        """Ctrl-C; the seconds it took to exit (10 and a SIGKILL if it did not)."""
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t


@pytest.fixture
def dashboard() -> Iterator[Callable[..., Dashboard]]:
    """start(kubeconfig, *args) -> a running Dashboard on the next free test port; all stopped after."""
    started: list[Dashboard] = []

    def start(kubeconfig: str, *args: str, ready: bool = True) -> Dashboard:
        d = Dashboard(kubeconfig, PORT_BASE + len(started), *args)
        started.append(d)
        return d.wait_ready() if ready else d

    yield start
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator["object"]:
    """Headless Debian chromium through chromium-driver (hack/chromium.sh installs both if missing)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    r = subprocess.run([str(REPO / "hack" / "chromium.sh")], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"hack/chromium.sh failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    chromium, chromedriver = r.stdout.split()[-2:]
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1360,1000",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
