"""Leader election against a hung apiserver: every Lease request times out, and a leader whose renew
hangs stops at its renew deadline instead of reconciling on while a standby takes the Lease.

The apiserver here is a TCP listener that accepts connections and never answers: what a leader
sees behind a dead load balancer or a half-open connection. The client is the real `kubernetes`
client, so the test proves that the request timeout reaches the socket.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import kubernetes
import pytest

from modelpilot.leader import LeaderElector

pytestmark = pytest.mark.unit


@pytest.fixture
def hung_apiserver() -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # keep it open, never answer
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for s in held:
        s.close()
    srv.close()


def _elector(host: str) -> LeaderElector:
    cfg = kubernetes.client.Configuration()
    cfg.host = host
    api = kubernetes.client.CoordinationV1Api(kubernetes.client.ApiClient(cfg))
    return LeaderElector(api, "ns", "lease", "me", lease_seconds=3, renew_seconds=2, retry_seconds=0.2)


def test_a_lease_request_to_a_hung_apiserver_times_out(hung_apiserver: str) -> None:
    elector = _elector(hung_apiserver)
    outcome: list[BaseException | bool] = []
    t = threading.Thread(target=lambda: outcome.append(elector._attempt()), daemon=True)
    t.start()
    t.join(elector.lease_seconds)
    assert outcome == [False], "the Lease request hung past the lease duration (no request timeout)"


def test_a_leader_whose_renew_hangs_stops_at_the_renew_deadline(hung_apiserver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    elector = _elector(hung_apiserver)
    real = elector.try_acquire_or_renew
    calls = iter([True])  # the first attempt acquires; every renew then goes to the hung apiserver
    monkeypatch.setattr(elector, "try_acquire_or_renew", lambda: next(calls, None) or real())
    started, lost = threading.Event(), threading.Event()
    t0 = time.monotonic()
    elector.start(on_started=started.set, on_lost=lost.set)
    assert started.wait(2)
    # The standby may take the Lease lease_seconds after the last renew it saw: the leader must be gone by then.
    assert lost.wait(elector.lease_seconds + 0.5), "the leader kept acting past the lease duration"
    assert time.monotonic() - t0 <= elector.lease_seconds + 0.5
    assert not elector.is_leader
    elector.stop()


def test_the_cli_elects_a_leader_by_default_on_the_charts_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelpilot.main import parse_args
    monkeypatch.delenv("MODELPILOT_LEADER_ELECT", raising=False)
    args = parse_args([])
    assert args.leader_elect is True
    assert args.leader_elect_lease == "modelpilot-leader"  # charts/modelpilot: <fullname>-leader, release "modelpilot"
    assert parse_args(["--no-leader-elect"]).leader_elect is False
