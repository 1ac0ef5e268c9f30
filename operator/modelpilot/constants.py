"""Every label key, annotation, generated name and condition reason/message the operator uses.

One place, so that a reader can find what the operator writes onto objects, and so that tests and
the kubectl plugin use the same strings.
"""

from typing import Final

GROUP: Final = "modelpilot.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
FIELD_MANAGER: Final = "modelpilot"

# Labels on every child object.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_DEPLOYMENT: Final = "modelpilot.io/model-deployment"
LABEL_EXPORT: Final = "modelpilot.io/model-export"
LABEL_REVISION: Final = "modelpilot.io/revision"
MANAGED_BY: Final = "modelpilot"
COMPONENT_COMPARATOR: Final = "comparator"  # the shadow comparator's pods (comparator/objects.py)
COMPONENT_PARITY: Final = "parity"  # the served-model parity check Job's pods (rollout/parity.py)

# Annotations.
ANNOTATION_SPEC_HASH: Final = "modelpilot.io/applied-hash"
ANNOTATION_REVISION_HASH: Final = "modelpilot.io/revision-hash"

# Condition types: Ready is derived from the others (KServe-style condition set).
COND_READY: Final = "Ready"
COND_SPEC_VALID: Final = "SpecValid"
COND_SCHEDULABLE: Final = "Schedulable"
COND_WORKLOAD_READY: Final = "WorkloadReady"
COND_ROUTING_READY: Final = "RoutingReady"
COND_JOB_COMPLETE: Final = "JobComplete"
COND_EXPORT_READY: Final = "ExportReady"
COND_VALIDATED: Final = "Validated"  # ModelExport: every artifact met its validation criterion

# Reasons, with the message template they go with.
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_STRATEGY_UNSUPPORTED: Final = "StrategyNotSupported"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_MIRROR_UNSUPPORTED: Final = "MirrorUnsupported"  # the Gateway's class does not list HTTPRouteRequestMirror
REASON_SCHEDULABLE: Final = "NodesAvailable"
REASON_PODS_READY: Final = "PodsReady"
REASON_PODS_NOT_READY: Final = "PodsNotReady"
REASON_SCALED_TO_ZERO: Final = "ScaledToZero"
REASON_ROUTED: Final = "ServiceReady"
REASON_ALL_READY: Final = "AllReady"
REASON_NOT_READY: Final = "NotReady"
REASON_VALID: Final = "Valid"
REASON_APPLY_FAILED: Final = "ApplyFailed"
REASON_NAME_CONFLICT: Final = "NameConflict"
REASON_EXPORT_NOT_READY: Final = "ExportNotReady"
REASON_ARTIFACT_READY: Final = "ArtifactReady"  # ExportReady=True
REASON_ROLLOUT_ABORTED: Final = "RolloutAborted"  # Ready=False: the rollout was aborted, stable serves
REASON_VALIDATION_PASSED: Final = "ValidationPassed"
REASON_VALIDATION_FAILED: Final = "ValidationFailed"
MSG_VALIDATION_FAILED_KEPT: Final = "failed validation, kept by spec.validation.warnOnly: {targets}"

# ModelExport: reasons of JobComplete and Ready.
REASON_JOB_CREATED: Final = "JobCreated"
REASON_JOB_PENDING: Final = "JobPending"
REASON_POD_UNSCHEDULABLE: Final = "PodUnschedulable"
REASON_JOB_RUNNING: Final = "JobRunning"
REASON_EXPORT_RUNNING: Final = "ExportRunning"  # Ready=False while the Job runs
REASON_EXPORT_SUCCEEDED: Final = "ExportSucceeded"
REASON_EXPORT_FAILED: Final = "ExportFailed"
REASON_RESULT_MISSING: Final = "ResultMissing"

# status.rollout.aborted.reason: why a rollout went back to stable.
ABORT_ANALYSIS_FAILED: Final = "AnalysisFailed"
ABORT_PROGRESS_DEADLINE: Final = "ProgressDeadlineExceeded"
ABORT_BY_USER: Final = "AbortedByUser"
ABORT_PARITY_FAILED: Final = "ParityCheckFailed"  # spec.rollout.parityCheck (rollout/parity.py)

# Event reasons of a ModelDeployment's rollout (one Event per transition; docs/observability.md).
EVENT_ROLLOUT_STARTED: Final = "RolloutStarted"
EVENT_STEP_COMPLETED: Final = "StepCompleted"
EVENT_ANALYSIS_MEASUREMENT: Final = "AnalysisMeasurement"
EVENT_ROLLOUT_PAUSED: Final = "RolloutPaused"
EVENT_ROLLOUT_PROMOTED: Final = "RolloutPromoted"
EVENT_ROLLOUT_ABORTED: Final = "RolloutAborted"
EVENT_ROLLOUT_RETRIED: Final = "RolloutRetried"
EVENT_PARITY_PASSED: Final = "ParityCheckPassed"
EVENT_RUNTIME_WARNING: Final = "RuntimeWarning"
# ... and of `kubectl modelpilot` actions.
EVENT_PROMOTED: Final = "Promoted"
EVENT_PAUSED: Final = "Paused"
EVENT_RESUMED: Final = "Resumed"
EVENT_UNDO: Final = "Undo"
EVENT_UNDO_REJECTED: Final = "UndoRejected"

MSG_PODS_READY: Final = "{ready}/{desired} replicas of revision {revision} are ready"
MSG_PODS_NOT_READY: Final = "{ready}/{desired} replicas of revision {revision} are ready; waiting"
MSG_ROUTED: Final = "Service {service} routes to revision {revision}"


def revision_name(deployment: str, revision: int) -> str:
    """Name of a revision's Deployment, Service and ConfigMap: deterministic, so retries never duplicate."""
    return f"{deployment}-r{revision}"


def config_map_name(deployment: str, revision: int) -> str:
    return f"{deployment}-r{revision}-model"


def revision_child_name(kind: str, deployment: str, revision: int) -> str:
    """Name of a revision's object of `kind` (kinds.PER_REVISION_KINDS)."""
    return config_map_name(deployment, revision) if kind == "ConfigMap" else revision_name(deployment, revision)


def job_name(export: str, generation: int) -> str:
    return f"{export}-export-g{generation}"
