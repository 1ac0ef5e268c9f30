"""The shadow comparator's cost: overhead per compared request and throughput, on this machine.

Two backends stand in for the stable and the shadow revision: aiohttp servers in their own
processes answering TorchServe-style JSON (a batch of `--rows` rows of `--classes` class scores)
at once, so what is measured is the comparator, not a model. The comparator runs as in a pod
(`python -m modelpilot.comparator`, its own process). A load generator (its own process, aiohttp)
sends the same request body:

- floor: straight to the stable backend (what a client pays without a shadow);
- comparator: to the comparator, which calls both backends, compares and answers.

Overhead per compared request = comparator p50 - floor p50 at concurrency 1; throughput =
compared requests per second at `--concurrency` with the rate limit out of the way, with the
comparator process's CPU seconds per request from /proc. Prints one JSON line.

    python bench/comparator.py [--seconds 10] [--concurrency 16] [--rows 8] [--classes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from reconcile import cpu_seconds  # the bench's one reader of /proc/PID/stat

BACKEND = r'''
import json, random, sys
from aiohttp import web
rows, classes, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(port)
body = json.dumps({"outputs": {"logits": [[rnd.random() for _ in range(classes)] for _ in range(rows)]}}).encode()
async def answer(request):
    await request.read()
    return web.Response(body=body, content_type="application/json")
app = web.Application(); app.router.add_post("/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def load(url: str, body: bytes, seconds: float, concurrency: int) -> list[float]:
    import aiohttp

    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def worker() -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args()
    procs = []
    try:
        ports = [free_port() for _ in range(4)]
        for port in ports[:2]:
            procs.append(subprocess.Popen([sys.executable, "-c", BACKEND, str(a.rows), str(a.classes), str(port)]))
        stable, shadow = (f"http://127.0.0.1:{p}" for p in ports[:2])
        cmp = subprocess.Popen([sys.executable, "-m", "modelpilot.comparator", "--stable-url", stable, "--shadow-url", shadow,
                                "--protocol", "torchserve", "--namespace", "bench", "--name", "m", "--stable-revision", "1",
                                "--shadow-revision", "2", "--rate", "1000000", "--max-in-flight", str(4 * a.concurrency),
                                "--host", "127.0.0.1", "--port", str(ports[2]), "--metrics-port", str(ports[3])],
                               stderr=subprocess.DEVNULL)
        procs.append(cmp)
        for url in (stable, shadow, f"http://127.0.0.1:{ports[2]}"):
            wait_http(url + "/predictions/m")
        body = json.dumps({"inputs": {"x": [[0.5] * 64] * a.rows}}).encode()
        out = {"bench": "comparator", "rows": a.rows, "classes": a.classes, "seconds": a.seconds, "cpus": os.cpu_count()}
        for name, url in (("floor", stable), ("comparator", f"http://127.0.0.1:{ports[2]}")):
            one = asyncio.run(load(url + "/predictions/m", body, a.seconds, 1))
            out[f"{name}_p50_ms_c1"] = round(statistics.median(one) * 1000, 3)
            before = cpu_seconds(cmp.pid)
            many = asyncio.run(load(url + "/predictions/m", body, a.seconds, a.concurrency))
            out[f"{name}_rps_c{a.concurrency}"] = round(len(many) / a.seconds, 1)
            out[f"{name}_p50_ms_c{a.concurrency}"] = round(statistics.median(many) * 1000, 3)
            if name == "comparator":
                out["comparator_cpu_ms_per_request"] = round((cpu_seconds(cmp.pid) - before) / len(many) * 1000, 3)
        out["overhead_ms_per_compared_request"] = round(out["comparator_p50_ms_c1"] - out["floor_p50_ms_c1"], 3)
        out["loadAverage"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(out))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
