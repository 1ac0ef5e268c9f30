"""Progress reporting on stderr: stage names and elapsed time.

Lines look like ``[modelpilot-export +12.3s] onnx: validate ... done in 0.41s``. Nothing here
touches stdout, so stdout stays free for machine-readable output. URIs are redacted
(modelpilot.uris): a presigned source URL must not end up in the Job's log.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from modelpilot.uris import redact_text


class Progress:
    """Prints stage start/end lines with the time since start and the time of each stage."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"[modelpilot-export +{self.elapsed():.1f}s] {redact_text(msg)}", file=self.stream, flush=True)

    def warn(self, msg: str) -> None:
        self.log(f"WARNING: {msg}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"{name} ...")
        t = time.perf_counter()
        try:
            yield
        except BaseException:
            dt = time.perf_counter() - t
            self.timings[name] = dt
            self.log(f"{name} FAILED after {dt:.2f}s")
            raise
        dt = time.perf_counter() - t
        self.timings[name] = dt
        self.log(f"{name} done in {dt:.2f}s")
