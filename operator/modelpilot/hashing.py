"""Content hashes over canonical JSON (sorted keys, no spaces): the same object always hashes the
same, whatever order its keys were built in."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def content_hash(obj: Any, length: int) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def object_hash(obj: Any) -> str:
    """The hash the operator stamps on what it applies (ANNOTATION_SPEC_HASH): a rendered object
    whose hash is unchanged needs no write."""
    return content_hash(obj, 16)


def spec_hash(obj: Any) -> str:
    """The hash that names a revision: the serving spec (model, runtime, placement, artifact)."""
    return content_hash(obj, 10)
