"""The comparator's HTTP service (aiohttp, which Kopf already brings).

Port `--port` takes the mirrored requests (any method and path: the gateway mirrors the user's
request as it is). Each one that passes the sample and the rate limit is sent to the stable and the
shadow revision at once, with the same method, path, query, body and content type; the two answers
are compared (compare.py) and the verdict is counted in Prometheus metrics and returned as JSON
(the gateway discards it). Port `--metrics-port` serves `/metrics`, `/healthz` and `/comparison`
(the latest verdict, for `kubectl modelpilot status`).

Cost bounds: `--sample` (a fraction of the mirrored requests), `--rate` (a token bucket, compared
requests per second), `--max-in-flight` (concurrent comparisons) and `--timeout` (per call). A
request that is not compared is answered 204 at once and counted by why.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .compare import FormatError, compare_answers, parse_answer
from .metrics import ComparatorMetrics

# Hop-by-hop and length headers are the client's business, not the forwarded request's.
_DROP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade",
                           "te", "trailer", "proxy-authorization", "proxy-connection"})


@dataclass
class Settings:
    stable_url: str
    shadow_url: str
    protocol: str
    namespace: str
    name: str
    stable_revision: str
    shadow_revision: str
    sample: float = 1.0
    rate: float = 20.0
    timeout: float = 5.0
    max_in_flight: int = 16
    atol: float = 1e-3
    rtol: float = 1e-3


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `clock` is injectable for tests."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(default=-1.0)
    last: float = field(default=0.0)

    def take(self) -> bool:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Comparator:
    def __init__(self, settings: Settings, metrics: ComparatorMetrics, *, rng: random.Random | None = None) -> None:
        self.s, self.m = settings, metrics
        self.rng = rng or random.Random()
        self.bucket = TokenBucket(settings.rate, max(1.0, settings.rate))
        self.in_flight = 0
        self.latest: dict[str, Any] | None = None
        self.session: aiohttp.ClientSession | None = None

    def admit(self) -> str | None:
        """None when this request is to be compared, else why not (a metric label)."""
        if self.rng.random() >= self.s.sample:
            return "sampled_out"
        if self.in_flight >= self.s.max_in_flight:
            return "busy"
        if not self.bucket.take():
            return "rate_limited"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        skipped = self.admit()
        if skipped:
            self.m.outcome(skipped)
            return web.Response(status=204)
        self.in_flight += 1
        try:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_HEADERS}
            path = request.path_qs
            stable, shadow = await asyncio.gather(self.call(self.s.stable_url, request.method, path, headers, body),
                                                  self.call(self.s.shadow_url, request.method, path, headers, body))
            verdict = self.judge(stable, shadow)
        finally:
            self.in_flight -= 1
        self.latest = {**verdict, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "path": request.path}
        return web.json_response(verdict)

    async def call(self, base: str, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Any, float, str]:
        """(decoded answer or None, seconds, error or '')."""
        assert self.session is not None
        start = time.perf_counter()
        try:
            async with self.session.request(method, base.rstrip("/") + path, data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=self.s.timeout)) as r:
                raw = await r.read()
                took = time.perf_counter() - start
                if r.status >= 400:
                    return None, took, f"HTTP {r.status}: {raw[:200].decode(errors='replace')}"
                return json.loads(raw), took, ""
        except TimeoutError:
            return None, time.perf_counter() - start, f"no answer within {self.s.timeout}s"
        except (aiohttp.ClientError, ValueError) as e:
            return None, time.perf_counter() - start, f"{type(e).__name__}: {e}"

    def judge(self, stable: tuple[Any, float, str], shadow: tuple[Any, float, str]) -> dict[str, Any]:
        (a, ta, ea), (b, tb, eb) = stable, shadow
        if ea:
            self.m.outcome("stable_error")
            return {"outcome": "stable_error", "error": ea}
        try:
            sa = parse_answer(self.s.protocol, a)
        except FormatError as e:
            self.m.outcome("stable_error")
            return {"outcome": "stable_error", "error": str(e)}
        if not eb:
            try:
                sb = parse_answer(self.s.protocol, b)
            except FormatError as e:
                eb = str(e)
        self.m.latency(ta, tb)
        if eb:
            self.m.outcome("shadow_error")
            return {"outcome": "shadow_error", "error": eb, "latencyRatio": tb / ta if ta else None}
        cmp = compare_answers(sa, sb, atol=self.s.atol, rtol=self.s.rtol)
        self.m.compared(cmp)
        self.m.outcome("compared")
        return {"outcome": "compared", **cmp.to_dict(), "latencyRatio": tb / ta if ta else None}


COMPARATOR: web.AppKey[Comparator] = web.AppKey("comparator")


async def _metrics(request: web.Request) -> web.Response:
    cmp = request.app[COMPARATOR]
    return web.Response(body=generate_latest(cmp.m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _latest(request: web.Request) -> web.Response:
    cmp = request.app[COMPARATOR]
    return web.json_response({"summary": cmp.m.summary(), "latest": cmp.latest})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_apps(comparator: Comparator) -> tuple[web.Application, web.Application]:
    """(the mirror app, the metrics app)."""
    mirror = web.Application(client_max_size=64 * 1024 * 1024)
    mirror.router.add_route("*", "/{tail:.*}", comparator.handle)
    admin = web.Application()
    admin[COMPARATOR] = comparator
    admin.router.add_get("/metrics", _metrics)
    admin.router.add_get("/comparison", _latest)
    admin.router.add_get("/healthz", _healthz)

    async def session(app: web.Application):
        connector = aiohttp.TCPConnector(limit=2 * comparator.s.max_in_flight)
        comparator.session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        yield
        await comparator.session.close()

    mirror.cleanup_ctx.append(session)
    return mirror, admin


async def serve(settings: Settings, host: str, port: int, metrics_port: int) -> list[web.AppRunner]:
    """Start both apps; returns their runners (call `cleanup()` on each to stop)."""
    comparator = Comparator(settings, ComparatorMetrics(settings))
    runners = []
    for app, p in zip(build_apps(comparator), (port, metrics_port), strict=True):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, p).start()
        runners.append(runner)
    return runners
