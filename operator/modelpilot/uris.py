"""URIs as they may be shown or stored: without the secrets that URIs carry.

Presigned URLs (``?X-Amz-Signature=...``), ``?token=`` query strings and ``user:password@`` hosts
are credentials. They stay in the spec, where they are needed; every log line, status field, Event
message, termination message and manifest.json gets :func:`redact_uri` (one URI) or
:func:`redact_text` (every URI in a message) or :func:`redact_json` (a whole document). Pure and standard library only: the exporter image
imports this module too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"
# scheme://, then anything up to white space or a quote/bracket that ends a URI inside a message
_URI_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")


def redact_uri(uri: str) -> str:
    """``uri`` with its user info, query values and fragment replaced by ``REDACTED``; the keys of
    ``key=value`` items are kept (they say what kind of credential it was). A URI without any of
    these is returned unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an invalid IPv6 host: show nothing rather than a secret
        return f"{uri.split('://', 1)[0]}://{REDACTED}" if "://" in uri else uri
    if not (parts.query or parts.fragment or "@" in parts.netloc):
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    # key=value keeps its key; an item without '=' may itself be the token
    query = "&".join(f"{item.split('=', 1)[0]}={REDACTED}" if "=" in item else REDACTED
                     for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, REDACTED if parts.fragment else ""))


def redact_text(text: str) -> str:
    """``text`` with every URI in it passed through :func:`redact_uri`."""
    def one(m: re.Match[str]) -> str:
        uri = m.group(0)
        core = uri.rstrip(":,;.")  # punctuation of the message, not of the URI
        return redact_uri(core) + uri[len(core):]

    return _URI_IN_TEXT.sub(one, text)


def redact_json(obj: Any) -> Any:
    """A copy of a JSON-like document (manifest.json, a status) with every string redacted."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_json(v) for v in obj]
    return obj


PVC_SCHEME = "pvc://"


def pvc_claim(uri: str) -> str | None:
    """The PersistentVolumeClaim a ``pvc://<claim>/<path>`` URI names; None for other schemes."""
    return uri[len(PVC_SCHEME):].split("/", 1)[0] if uri.startswith(PVC_SCHEME) else None
