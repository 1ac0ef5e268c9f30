"""Typed view of a ModelDeployment.

The CRD schema (crds/) already enforces types, enums, defaults and cross-field rules; this module
turns the validated dict into frozen dataclasses, fills the defaults again (so that objects that
never passed the apiserver, such as `kubectl modelpilot render -f`, behave the same), and checks
what the schema cannot know: the node pools and runtime/format combinations of this operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import constants as c
from ..hashing import spec_hash
from .errors import SpecError, spec_int
from .rollout import Autoscaling, RolloutSpec, TrafficSpec, parse_autoscaling, parse_rollout, parse_traffic

RUNTIME_FORMATS: dict[str, tuple[str, ...]] = {
    "triton": ("onnx", "torchscript", "savedmodel"),
    "torchserve": ("mar", "torchscript", "pt2"),
    "tfserving": ("savedmodel",),
}
STRATEGIES = ("direct", "canary", "blueGreen", "shadow", "abTest")


@dataclass(frozen=True)
class ModelRef:
    name: str  # the model's name inside the model server
    uri: str | None
    format: str | None
    export_name: str | None
    export_target: str | None
    secret_ref: str | None = None  # Secret with download credentials, given to the storage initializer
    endpoint: str | None = None  # S3 endpoint override
    allow_pickle: bool = False  # serve a .pt2 whose pickled entries run code when loaded
    limits: tuple[tuple[str, str], ...] = ()  # spec.model.limits, passed to the storage initializer


@dataclass(frozen=True)
class Runtime:
    kind: str
    image: str | None
    max_batch_size: int
    dynamic_batching: bool
    max_queue_delay_us: int | None
    preferred_batch_sizes: tuple[int, ...]
    instances: int
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Gpu:
    """spec.placement.gpu: how many GPUs, of which product, or one MIG slice of which profile."""

    count: int = 0
    product: str | None = None
    mig_profile: str | None = None


@dataclass(frozen=True)
class Placement:
    """spec.placement: the node pool (operator config), the GPU, and the server's resources."""

    node_pool: str | None
    gpu: Gpu
    requests: Mapping[str, str]
    limits: Mapping[str, str]


@dataclass(frozen=True)
class ModelDeployment:
    name: str
    namespace: str
    uid: str
    generation: int
    model: ModelRef
    runtime: Runtime
    replicas: int
    autoscaling: Autoscaling | None
    placement: Placement
    strategy: str
    rollout: RolloutSpec
    traffic: TrafficSpec
    revision_history_limit: int
    serving_spec: Mapping[str, Any] = field(repr=False)

    @property
    def revision_hash(self) -> str:
        """Content hash of everything that makes a new revision (model, runtime, placement)."""
        return spec_hash(self.serving_spec)

    @property
    def port(self) -> int:
        return self.traffic.port

    @property
    def router(self) -> str:
        return self.traffic.router


def check_runtime_format(kind: str, fmt: str, field_path: str = "spec.model.format") -> None:
    """Raise SpecError when runtime `kind` cannot serve a `fmt` model.

    The CRD rejects the combinations it can see (tfserving needs savedmodel, mar needs torchserve);
    this is the full table, also for an exportRef whose format is known only from the export.
    """
    if fmt not in RUNTIME_FORMATS[kind]:
        servers = [k for k, fmts in RUNTIME_FORMATS.items() if fmt in fmts]
        hint = f"use one of {', '.join(RUNTIME_FORMATS[kind])}"
        hint += f", or runtime {' or '.join(servers)}" if servers else f"; no runtime serves {fmt}: export to onnx"
        raise SpecError(field_path, f"runtime {kind} cannot serve a {fmt} model", hint)


def parse_model_deployment(body: Mapping[str, Any]) -> ModelDeployment:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = meta.get("name") or ""
    if not name:
        raise SpecError("metadata.name", "is required")
    model = _parse_model(spec.get("model") or {}, name)
    r = spec.get("runtime") or {}
    runtime = _parse_runtime(r)
    if model.format:
        check_runtime_format(runtime.kind, model.format)
    p = spec.get("placement") or {}
    placement = _parse_placement(p)
    rollout = spec.get("rollout") or {}
    strategy = rollout.get("strategy") or "direct"
    if strategy not in STRATEGIES:
        # The CRD's enum stops this; an operator older than its CRD is the one way here.
        raise SpecError("spec.rollout.strategy", f"strategy {strategy!r} is not supported by this operator version",
                        f"use one of {', '.join(STRATEGIES)}, or upgrade the operator", reason=c.REASON_STRATEGY_UNSUPPORTED)
    return ModelDeployment(
        name=name,
        namespace=meta.get("namespace") or "default",
        uid=meta.get("uid") or "",
        generation=int(meta.get("generation") or 0),
        model=model,
        runtime=runtime,
        replicas=spec_int(spec.get("replicas"), "spec.replicas", 1, 0),
        autoscaling=parse_autoscaling(spec.get("autoscaling")),
        placement=placement,
        strategy=strategy,
        rollout=parse_rollout(rollout, strategy),
        traffic=parse_traffic(spec.get("traffic") or {}),
        revision_history_limit=spec_int(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit", 10, 0),
        serving_spec={"model": spec.get("model") or {}, "runtime": r, "placement": p},
    )


def _parse_model(m: Mapping[str, Any], name: str) -> ModelRef:
    export_ref = m.get("exportRef") or None
    if bool(export_ref) == bool(m.get("uri")):
        raise SpecError("spec.model", "set exactly one of exportRef or uri")
    if m.get("uri") and not m.get("format"):
        raise SpecError("spec.model.format", "is required with spec.model.uri", "set it to onnx, torchscript, pt2, savedmodel or mar")
    return ModelRef(
        name=m.get("name") or name,
        uri=m.get("uri"),
        format=m.get("format"),
        export_name=(export_ref or {}).get("name"),
        export_target=(export_ref or {}).get("target"),
        secret_ref=(m.get("secretRef") or {}).get("name"),
        endpoint=m.get("endpoint"),
        allow_pickle=bool(m.get("allowPickle", False)),
        limits=tuple(sorted((k, str(v)) for k, v in (m.get("limits") or {}).items())),
    )


def _parse_runtime(r: Mapping[str, Any]) -> Runtime:
    kind = r.get("kind")
    if kind not in RUNTIME_FORMATS:
        raise SpecError("spec.runtime.kind", f"unknown runtime {kind!r}", "use one of triton, torchserve, tfserving")
    db = r.get("dynamicBatching") or {}
    return Runtime(
        kind=kind,
        image=r.get("image"),
        max_batch_size=spec_int(r.get("maxBatchSize"), "spec.runtime.maxBatchSize", 8, 0),
        dynamic_batching=bool(db.get("enabled", True)),
        max_queue_delay_us=db.get("maxQueueDelayMicroseconds"),
        preferred_batch_sizes=tuple(db.get("preferredBatchSizes") or ()),
        instances=spec_int(r.get("instances"), "spec.runtime.instances", 1, 1),
        args=tuple(r.get("args") or ()),
        env=tuple((e["name"], str(e.get("value", ""))) for e in (r.get("env") or ())),
    )


def _parse_placement(p: Mapping[str, Any]) -> Placement:
    g = p.get("gpu") or {}
    gpu = Gpu(count=spec_int(g.get("count"), "spec.placement.gpu.count", 0, 0), product=g.get("product"), mig_profile=g.get("migProfile"))
    if gpu.mig_profile and gpu.count != 1:
        raise SpecError("spec.placement.gpu.migProfile", "a process can use one MIG slice", "set spec.placement.gpu.count to 1")
    if gpu.product and gpu.count < 1:
        raise SpecError("spec.placement.gpu.product", "names a GPU but no GPU is requested", "set spec.placement.gpu.count >= 1")
    res = p.get("resources") or {}
    return Placement(
        node_pool=p.get("nodePool"),
        gpu=gpu,
        requests={k: str(v) for k, v in (res.get("requests") or {}).items()},
        limits={k: str(v) for k, v in (res.get("limits") or {}).items()},
    )
