"""The dashboard's HTTP server (aiohttp, which Kopf already brings): the static page, one
server-sent-event stream per browser, and the action endpoint.

Nothing of the kubeconfig reaches the browser: the page gets objects and the server acts with the
user's credentials. Requests must name this server in Host (no DNS rebinding). Actions must also
come from the page's own Origin and carry the page's CSRF token, and are refused in read-only mode.
They go through `actions.request_control`, the write path of `kubectl modelpilot promote` and friends.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from .. import actions
from .watch import Hub

STATIC = resources.files(__package__) / "static"
#: Seconds between SSE comments that keep idle connections (and proxies) open.
KEEPALIVE_SECONDS = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Settings:
    port: int
    address: str = "127.0.0.1"
    namespace: str | None = None  # None: all namespaces
    read_only: bool = False
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def allowed_hosts(self) -> set[str]:
        names = {"127.0.0.1", "localhost", "[::1]", self.address if ":" not in self.address else f"[{self.address}]"}
        return {f"{n}:{self.port}" for n in names}


SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
HUB: web.AppKey[Hub] = web.AppKey("hub")


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "message": message}, status=status)


def make_app(settings: Settings, hub: Hub) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if settings.address not in ("0.0.0.0", "::") and request.host not in settings.allowed_hosts():
            return _refuse(421, f"Host {request.host!r} is not this dashboard")
        resp = await handler(request)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    app = web.Application(middlewares=[guard])
    app[SETTINGS], app[HUB] = settings, hub
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_post("/api/control", control)
    app.router.add_static("/static/", str(STATIC))
    return app


async def index(request: web.Request) -> web.Response:
    s: Settings = request.app[SETTINGS]
    config = {"csrfToken": s.csrf_token, "readOnly": s.read_only, "namespace": s.namespace}
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{CONFIG}}", html.escape(json.dumps(config), quote=True))
    return web.Response(text=page, content_type="text/html")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot, then every change as the watches deliver it."""
    hub: Hub = request.app[HUB]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    queue: asyncio.Queue = asyncio.Queue()
    hub.subscribers.add(queue)
    try:
        await _send(resp, hub.snapshot())
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            await _send(resp, msg)
    except ConnectionResetError:  # the page went away
        pass
    finally:
        hub.subscribers.discard(queue)
    return resp


async def _send(resp: web.StreamResponse, msg: dict[str, Any]) -> None:
    await resp.write(b"data: " + json.dumps(msg, separators=(",", ":")).encode() + b"\n\n")


async def control(request: web.Request) -> web.Response:
    s: Settings = request.app[SETTINGS]
    if s.read_only:
        return _refuse(403, "the dashboard runs with --read-only: actions are off")
    if request.headers.get("Origin") != f"http://{request.host}":
        return _refuse(403, "cross-origin request refused: actions come from the dashboard's own page")
    if not hmac.compare_digest(request.headers.get("X-CSRF-Token", ""), s.csrf_token):
        return _refuse(403, "missing or wrong CSRF token: reload the page")
    try:
        body = await request.json()
        namespace, name, action = str(body["namespace"]), str(body["name"]), str(body["action"])
        to_revision = int(body["toRevision"]) if body.get("toRevision") not in (None, "") else None
    except (ValueError, KeyError, TypeError):
        return _refuse(400, "the body must be JSON with namespace, name, action and, for undo, an integer toRevision")
    if action not in actions.CONTROL_ACTIONS:
        return _refuse(400, f"action {action!r} is not one of {', '.join(actions.CONTROL_ACTIONS)}")
    if f"ModelDeployment/{namespace}/{name}" not in request.app[HUB].objects:
        return _refuse(404, f"modeldeployment {namespace}/{name} is not on this dashboard")
    done, message = await asyncio.to_thread(actions.request_control, name, namespace, action, to_revision)
    return web.json_response({"ok": done, "message": message}, status=200 if done else 502)
