"""Prometheus metrics of the operator (prometheus-client), served on --metrics-port at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("modelpilot_reconcile_total", "Reconciles run, by kind and result", ["kind", "result"])
RECONCILE_SECONDS = Histogram(
    "modelpilot_reconcile_duration_seconds", "Time to reconcile one object", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter("modelpilot_reconcile_errors_total", "Reconciles that raised, by kind and error", ["kind", "error"])
API_REQUESTS = Counter("modelpilot_kube_requests_total", "Requests the operator sent to the Kubernetes API, by verb", ["verb"])
RESYNCS = Counter("modelpilot_resyncs_total", "Periodic full resyncs started")
QUEUE_DEPTH = Gauge("modelpilot_workqueue_depth", "Objects waiting to be reconciled")
WEIGHT = Gauge("modelpilot_traffic_weight_percent", "Traffic weight per ModelDeployment and role", ["namespace", "name", "role"])
STEP = Gauge("modelpilot_rollout_step", "Current rollout step per ModelDeployment (-1: no rollout in progress)", ["namespace", "name"])
ROLLBACKS = Counter("modelpilot_rollbacks_total", "Rollouts aborted and returned to stable, by reason", ["reason"])
PROMOTIONS = Counter("modelpilot_promotions_total", "Revisions promoted to stable, by strategy", ["strategy"])
EXPORTS = Counter("modelpilot_exports_total", "ModelExport runs finished, by result", ["result"])
CACHE_SYNCED = Gauge("modelpilot_cache_synced", "1 once the start-up LIST of every kind filled the cache (reconciling runs), else 0")
CACHE_SYNC_FAILURES = Counter("modelpilot_cache_sync_failures_total", "Start-up cache fills that failed and were retried")


def forget_model_deployment(namespace: str, name: str) -> None:
    """Drop a deleted ModelDeployment's series, so that no alert fires for an object that is gone."""
    for role in ("stable", "canary", "mirror"):
        try:
            WEIGHT.remove(namespace, name, role)
        except KeyError:
            pass
    try:
        STEP.remove(namespace, name)
    except KeyError:
        pass
