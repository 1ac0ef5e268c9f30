"""modelpilot.uris: the one redaction of URIs, used by the operator and the exporter image."""

from __future__ import annotations

import pytest

from modelpilot.uris import redact_json, redact_text, redact_uri

from .helpers import md
from .sim import Sim

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("uri, shown", [
    ("https://b.s3.amazonaws.com/m.onnx?X-Amz-Signature=abc&X-Amz-Expires=60",
     "https://b.s3.amazonaws.com/m.onnx?X-Amz-Signature=REDACTED&X-Amz-Expires=REDACTED"),
    ("https://h/m.onnx?token=abc", "https://h/m.onnx?token=REDACTED"),
    ("https://h/m.onnx?abc", "https://h/m.onnx?REDACTED"),  # a bare item may be the token itself
    ("http://user:pw@h:8080/m", "http://REDACTED@h:8080/m"),
    ("https://ghp_abc@github.com/x", "https://REDACTED@github.com/x"),
    ("https://h/m#access_token=abc", "https://h/m#REDACTED"),
    # nothing to hide: unchanged, byte for byte
    ("s3://bucket/key/model.pt2", "s3://bucket/key/model.pt2"),
    ("pvc://models/m@v2/model.onnx", "pvc://models/m@v2/model.onnx"),
    ("file:///a//b", "file:///a//b"),
    ("http://[::1/x?token=abc", "http://REDACTED"),  # unparsable: shows no part of it
])
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown
    assert redact_uri(shown) == shown


def test_redact_text_and_json_keep_the_message_around_the_uri():
    text = "spec.source.uri: https://h/m.pt2?token=abc: HTTP 404 not found; also see http://u:p@x/y."
    assert redact_text(text) == ("spec.source.uri: https://h/m.pt2?token=REDACTED: HTTP 404 not found; "
                                 "also see http://REDACTED@x/y.")
    assert redact_json({"a": [text, 1, None], "b": {"c": "s3://b/k"}}) == {
        "a": [redact_text(text), 1, None], "b": {"c": "s3://b/k"}}


def test_the_revision_history_shows_the_model_uri_redacted():
    s = Sim(md(model={"uri": "https://h/m.onnx?X-Amz-Signature=abc", "format": "onnx"}))
    s.settle()
    assert [r["modelDigest"] for r in s.status["revisions"]] == ["https://h/m.onnx?X-Amz-Signature=REDACTED"]
