"""A tiny stand-in for the cluster around the pure planner, for unit tests of whole rollouts.

It applies what a plan asks for the way the apiserver and controllers would (the hash
annotation of server-side apply, Deployment generations, pods that become ready when `healthy`),
feeds the result back as the next observation, and records every weight the routes carried.
The real control plane is exercised by the e2e tests; this one keeps the state machine's unit
tests fast and exhaustive.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from modelpilot import constants as c
from modelpilot.kube import object_hash
from modelpilot.rollout import Observed, plan_model_deployment
from modelpilot.traffic.base import ROUTE_COMPONENTS

from .helpers import CONFIG, NODES

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Sim:
    def __init__(self, body: dict[str, Any], healthy: bool = True, analyze=None):
        self.body = copy.deepcopy(body)
        self.deps: dict[int, dict[str, Any]] = {}
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.autoscalers: set[int] = set()
        self.t = T0
        self.healthy = healthy
        self.analyze = analyze
        self.weights: list[tuple[int, int]] = []  # (canary weight, mirror) as the routes carried them
        self.events: list[tuple[str, str, str]] = []
        self.plans = []
        self.export = None  # the referenced ModelExport's body, for exportRef models
        self.comparator: dict[str, dict[str, Any]] = {}  # kind -> the shadow comparator's object
        self.carriers: list[dict[str, Any]] = []  # Gateways and GatewayClasses
        # Parity check Jobs by revision, (Job, pods); each one finishes at once with this verdict
        # (its termination message), or keeps running while it is None.
        self.parity_jobs: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self.parity_verdict: dict[str, Any] | None = {"passed": True, "samples": 8, "message": "8 recorded inputs answered"}

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    def now(self) -> str:
        return self.t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def set_spec(self, **changes: Any) -> None:
        self.body["spec"].update(copy.deepcopy(changes))
        self.body["metadata"]["generation"] += 1

    def control(self, action: str, **extra: Any) -> None:
        self.body.setdefault("status", {})["control"] = {"action": action, "requestedAt": self.now() + f"#{len(self.plans)}", **extra}

    def _dep_status(self, dep: dict[str, Any]) -> None:
        n = int(dep["spec"].get("replicas") or 0)
        ready = n if self.healthy or dep["metadata"].get("stable") else 0
        dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n, "updatedReplicas": n, "readyReplicas": ready}

    def reconcile(self):
        obs = Observed(deployments=copy.deepcopy(self.deps), nodes=NODES, now=self.now(), autoscalers=frozenset(self.autoscalers),
                       routes=copy.deepcopy(self.routes), analyze=self.analyze, export=copy.deepcopy(self.export),
                       comparator="Deployment" in self.comparator, carriers=copy.deepcopy(self.carriers),
                       parity_jobs=copy.deepcopy(self.parity_jobs))
        p = plan_model_deployment(self.body, CONFIG, obs)
        for obj in p.apply:
            o = copy.deepcopy(obj)
            o["metadata"].setdefault("annotations", {})[c.ANNOTATION_SPEC_HASH] = object_hash(obj)
            labels = o["metadata"].get("labels") or {}
            rev = labels.get(c.LABEL_REVISION)
            if labels.get(c.LABEL_COMPONENT) == "comparator":
                self.comparator[o["kind"]] = o
            elif o["kind"] == "Job":
                self.parity_jobs[int(rev)] = (o, [])
                if self.parity_verdict is not None:
                    self.finish_parity(int(rev), self.parity_verdict)
            elif o["kind"] == "Deployment":
                old = self.deps.get(int(rev))
                gen = (old["metadata"]["generation"] + (old["spec"] != {"replicas": o["spec"].get("replicas", old["spec"].get("replicas"))})) if old else 1
                replicas = o["spec"].get("replicas", (old or {}).get("spec", {}).get("replicas", 1))
                self.deps[int(rev)] = {"metadata": {"name": o["metadata"]["name"], "generation": gen, "labels": labels},
                                       "spec": {"replicas": replicas}}
                self._dep_status(self.deps[int(rev)])
            elif o["kind"] == "HorizontalPodAutoscaler":
                self.autoscalers.add(int(rev))
            elif labels.get(c.LABEL_COMPONENT) in ROUTE_COMPONENTS:
                self.routes[(o["kind"], o["metadata"]["name"])] = o
        for _ns, name, n in p.scale:
            rev = int(name.rsplit("-r", 1)[1])
            dep = self.deps[rev]
            dep["spec"]["replicas"] = n
            dep["metadata"]["generation"] += 1
            self._dep_status(dep)
        for kind, _ns, name in p.delete:
            if name.endswith("-comparator"):
                self.comparator.pop(kind, None)
            elif kind == "Deployment":
                self.deps.pop(int(name.rsplit("-r", 1)[1]), None)
            elif kind == "HorizontalPodAutoscaler":
                self.autoscalers.discard(int(name.rsplit("-r", 1)[1]))
            else:
                self.routes.pop((kind, name), None)
        self.body["status"] = copy.deepcopy(p.status)
        w = p.status.get("weights") or {}
        if not self.weights or self.weights[-1] != (w.get("canary", 0), w.get("mirror", 0)):
            self.weights.append((w.get("canary", 0), w.get("mirror", 0)))
        self.events += p.events
        self.plans.append(p)
        return p

    def finish_parity(self, rev: int, verdict: dict[str, Any]) -> None:
        """The check Job's pod exits with `verdict` in its termination message, as modelpilot-parity does."""
        import json

        job, _ = self.parity_jobs[rev]
        ok = bool(verdict.get("passed"))
        job["status"] = {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}]}
        pod = {"metadata": {"name": f"{job['metadata']['name']}-x", "creationTimestamp": self.now()},
               "status": {"phase": "Succeeded" if ok else "Failed", "containerStatuses": [
                   {"name": "parity", "state": {"terminated": {"exitCode": 0 if ok else 1, "message": json.dumps(verdict)}}}]}}
        self.parity_jobs[rev] = (job, [pod])

    def settle(self, limit: int = 30):
        """Reconcile until nothing changes (no writes, same status)."""
        for _ in range(limit):
            before = copy.deepcopy((self.deps, self.routes, self.body.get("status"), self.parity_jobs))
            p = self.reconcile()
            if copy.deepcopy((self.deps, self.routes, self.body.get("status"), self.parity_jobs)) == before:
                return p
        raise AssertionError(f"did not settle in {limit} reconciles; status: {self.status}")
