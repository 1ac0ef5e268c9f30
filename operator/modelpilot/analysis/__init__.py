"""Analysis: Prometheus queries, conditions and statistical judges that decide a rollout step.

- `templating`: `{{namespace}}`, `{{canaryRevision}}`, ... in queries;
- `prometheus`: a small HTTP client that returns errors as values (`QueryResult`);
- `conditions`: `successCondition` / `failureCondition` / `thresholdRange`, evaluated safely;
- `judge`: Mann-Whitney U of canary against baseline samples;
- `run`: the analysis run as a pure state machine, `step(spec, run, now, query, ctx) -> run`.

The reference for users is docs/analysis.md.
"""

from .expressions import FAILED, INCONCLUSIVE, SUCCESSFUL, ConditionError
from .judge import JudgeResult, mann_whitney
from .prometheus import PrometheusClient, QueryResult
from .run import ERROR, RUNNING, AnalysisSpecError, describe, new_measurements, step, validate
from .templating import PLACEHOLDERS, TemplateError

__all__ = [
    "ERROR", "FAILED", "INCONCLUSIVE", "PLACEHOLDERS", "RUNNING", "SUCCESSFUL",
    "AnalysisSpecError", "ConditionError", "JudgeResult", "PrometheusClient", "QueryResult", "TemplateError",
    "describe", "mann_whitney", "new_measurements", "step", "validate",
]
