"""Placeholders in analysis queries: every variable, the per-side {{revision}}, and clear errors."""

from __future__ import annotations

import pytest

from modelpilot.analysis import templating
from modelpilot.analysis.templating import BASELINE, TemplateError, render

pytestmark = pytest.mark.unit
CTX = {"namespace": "ml", "name": "sentiment", "stableRevision": 3, "canaryRevision": 4}


def test_every_placeholder_is_filled():
    q = ("{{namespace}} {{name}} {{service}} {{stableRevision}} {{canaryRevision}} "
         "{{stableService}} {{canaryService}} {{revision}}")
    assert render(q, CTX, "metrics[m].query") == "ml sentiment sentiment 3 4 sentiment-r3 sentiment-r4 4"
    assert set(templating.placeholders(q)) == set(templating.PLACEHOLDERS)


def test_revision_means_stable_in_a_baseline_query():
    assert render('x{revision="{{revision}}"}', CTX, "w", BASELINE) == 'x{revision="3"}'
    assert render('x{revision="{{ revision }}"}', CTX, "w") == 'x{revision="4"}'


def test_the_canary_sample_renders():
    q = ('sum(rate(nv_inference_request_failure{namespace="{{namespace}}",revision="{{canaryRevision}}"}[1m]))\n'
         '/ sum(rate(nv_inference_request_success{namespace="{{namespace}}",revision="{{canaryRevision}}"}[1m]))')
    out = render(q, CTX, "w")
    assert "{{" not in out and 'namespace="ml",revision="4"' in out


def test_promql_braces_are_left_alone():
    q = 'sum by (le) (rate(h_bucket{job="a"}[5m]))'
    assert render(q, CTX, "w") == q


def test_unknown_placeholder_names_the_metric_and_the_placeholder():
    with pytest.raises(TemplateError) as e:
        render('x{pod="{{podName}}"}', CTX, "metrics[error-rate].query")
    assert "metrics[error-rate].query" in str(e.value) and "{{podName}}" in str(e.value)
    assert "{{canaryRevision}}" in str(e.value)  # the message lists what exists


def test_placeholder_the_context_cannot_fill():
    with pytest.raises(TemplateError, match=r"metrics\[lat\]\.query: \{\{canaryService\}\} cannot be filled"):
        render("{{canaryService}}", {"namespace": "ml", "name": "s", "stableRevision": 1}, "metrics[lat].query")
