"""Time in one place: RFC 3339 timestamps as the API writes them, epoch seconds for arithmetic, and
the Go-style durations of the CRDs ("30s", "5m", "1h30m", "250ms")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def to_epoch(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp ("2026-01-02T03:04:05Z")."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def to_rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC, with milliseconds only when there are any."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    if dt.microsecond // 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `30s`, `1m30s`, `500ms` (the CRDs' pattern); ValueError, in
    words a message can quote, for anything else."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 30s, 1m30s or 500ms")
    return total
