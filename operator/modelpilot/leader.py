"""Leader election on a coordination.k8s.io Lease, so that of several operator replicas only one acts.

client-go's algorithm, in a page of Python:

- A candidate that sees the Lease held by someone else notes *when it last saw the record change*
  on its own monotonic clock, and only takes the Lease once that is `lease_seconds` old. Clocks of
  different machines are never compared.
- Taking and renewing are optimistic-concurrency updates (the Lease's resourceVersion): of two
  candidates racing, one gets a 409 and stays a candidate.
- The leader renews every `retry_seconds`. If it cannot renew for `renew_seconds`
  (< `lease_seconds`), or it sees another holder, it has lost, and `on_lost` runs at once.
- Every Lease request carries a timeout (`request_timeout`, half the gap between `renew_seconds`
  and `lease_seconds`): without one, a renew hung on a dead connection never returns, the
  deadline check never runs, and the old leader keeps acting while a standby takes the Lease.
  With it, a leader stops at the latest `renew_seconds + 2 * request_timeout` after its last
  renew (a read and a replace), which is no later than `lease_seconds`. The
  operator's `on_lost` ends the process, as controller-runtime does: reconciles run in threads that
  cannot be cancelled halfway, and a restart is the one way to be sure nothing more is written.
- A graceful stop releases the Lease (holder cleared), so a successor takes over at once instead
  of after `lease_seconds`.

The elector runs in its own thread with its own API calls, so a busy event loop or saturated
reconcile workers can never starve renewals.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable

import kubernetes
from kubernetes.client.exceptions import ApiException
from prometheus_client import Gauge

log = logging.getLogger(__name__)

LEADER = Gauge("modelpilot_leader", "1 while this replica holds the leader Lease (or runs without leader election), else 0")


def default_identity() -> str:
    """Unique per process: the pod name in a cluster, plus a random suffix (a restarted pod is a new candidate)."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    def __init__(self, api: kubernetes.client.CoordinationV1Api, namespace: str, name: str, identity: str,
                 lease_seconds: float = 15, renew_seconds: float = 10, retry_seconds: float = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not lease_seconds > renew_seconds > retry_seconds > 0:
            raise ValueError("leader election needs lease_seconds > renew_seconds > retry_seconds > 0")
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_seconds, self.renew_seconds, self.retry_seconds = lease_seconds, renew_seconds, retry_seconds
        self.clock = clock
        # A read plus a replace, each bounded, still end before the Lease can expire for others.
        self.request_timeout = max(0.1, (lease_seconds - renew_seconds) / 2)
        self.is_leader = False
        self._observed: tuple[str | None, str | None] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        LEADER.set(0)

    # ---- one attempt ----
    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease once. True if this candidate holds it afterwards."""
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.request_timeout)
        except ApiException as e:
            if e.status != 404:
                raise
            body = kubernetes.client.V1Lease(
                metadata=kubernetes.client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=kubernetes.client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=int(self.lease_seconds),
                                                   acquire_time=now, renew_time=now, lease_transitions=0))
            try:
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self.request_timeout)
            except ApiException as e2:
                if e2.status == 409:  # another candidate created it first
                    return False
                raise
            return True
        spec = lease.spec or kubernetes.client.V1LeaseSpec()
        holder = spec.holder_identity or None
        record = (holder, spec.renew_time.isoformat() if spec.renew_time else None)
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        if holder and holder != self.identity:
            duration = spec.lease_duration_seconds or self.lease_seconds
            if self._observed_at + duration > self.clock():
                return False  # held, and renewed within its duration as far as we have seen
            log.info("leader lease %s/%s held by %s expired; taking it", self.namespace, self.name, holder)
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + (1 if holder else 0)
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = int(self.lease_seconds)
        spec.renew_time = now
        lease.spec = spec
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.request_timeout)
        except ApiException as e:
            if e.status == 409:  # someone else wrote it in between: not ours
                return False
            raise
        self._observed, self._observed_at = (self.identity, now.isoformat()), self.clock()
        return True

    def release(self) -> None:
        """Give the Lease up (graceful stop): a successor need not wait for it to expire."""
        if not self.is_leader:
            return
        self._stop.set()
        self.is_leader = False
        LEADER.set(0)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.request_timeout)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                lease.spec.renew_time = _now()
                self.api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.request_timeout)
                log.info("released leader lease %s/%s", self.namespace, self.name)
        except ApiException as e:  # it expires by itself anyway
            log.warning("could not release leader lease %s/%s: %s", self.namespace, self.name, e.reason)

    # ---- the loop ----
    def start(self, on_started: Callable[[], None], on_lost: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_started, on_lost), name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as e:  # apiserver unreachable, a 5xx, RBAC: counts as a failed attempt
            log.warning("leader election: %s/%s: %s: %s", self.namespace, self.name, type(e).__name__, getattr(e, "reason", e))
            return False

    def _sleep(self) -> bool:
        """Wait one retry period (with jitter while a candidate). False if stopped."""
        return not self._stop.wait(self.retry_seconds * (1 + (0 if self.is_leader else 0.2 * random.random())))

    def _run(self, on_started: Callable[[], None], on_lost: Callable[[], None]) -> None:
        log.info("leader election: candidate %s for lease %s/%s", self.identity, self.namespace, self.name)
        while not self._attempt():
            if not self._sleep():
                return
        self.is_leader = True
        LEADER.set(1)
        log.info("leader election: %s acquired lease %s/%s", self.identity, self.namespace, self.name)
        on_started()
        self._renew_loop(on_lost)

    def _renew_loop(self, on_lost: Callable[[], None]) -> None:
        """Renew every retry period; call `on_lost` once another holder shows or the renew deadline passes."""
        last_renew = self.clock()
        while self._sleep():
            if self._attempt():
                last_renew = self.clock()
                continue
            if self._observed and self._observed[0] not in (None, self.identity) or self.clock() - last_renew > self.renew_seconds:
                if self._stop.is_set():
                    return
                self.is_leader = False
                LEADER.set(0)
                log.error("leader election: %s lost lease %s/%s (holder now %s); stopping", self.identity,
                          self.namespace, self.name, self._observed[0] if self._observed else None)
                on_lost()
                return
