"""Typed view of a ModelExport, as far as the operator reads it.

The exporter reads the whole spec itself (modelpilot_exporters.spec, which validates every field
of the export's steps); the operator needs the fields that shape the Job: the URIs whose claims it
mounts, the secrets it passes, the image, the node pool, the resources and the Job's limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import spec_int


@dataclass(frozen=True)
class ModelExport:
    name: str
    namespace: str
    uid: str
    generation: int
    source_format: str
    source_secret: str | None
    output_secret: str | None
    uris: tuple[tuple[str, str], ...]  # (spec field, URI) of every URI the export reads or writes
    output_uri: str
    image: str | None
    node_pool: str | None
    resources: Mapping[str, Any] | None
    backoff_limit: int
    active_deadline_seconds: int
    ttl_seconds_after_finished: int


def parse_model_export(body: Mapping[str, Any]) -> ModelExport:
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    source, output = spec.get("source") or {}, spec.get("output") or {}
    uris = [("spec.source.uri", source.get("uri") or ""),
            ("spec.validation.samplesUri", (spec.get("validation") or {}).get("samplesUri") or "")]
    for i, t in enumerate(spec.get("targets") or []):
        uris.append((f"spec.targets[{i}].quantization.calibration.uri",
                     ((t.get("quantization") or {}).get("calibration") or {}).get("uri") or ""))
    uris.append(("spec.output.uri", output.get("uri") or ""))
    return ModelExport(
        name=meta.get("name") or "", namespace=meta.get("namespace") or "default", uid=meta.get("uid") or "",
        generation=int(meta.get("generation") or 0),
        source_format=source.get("format") or "onnx",
        source_secret=(source.get("secretRef") or {}).get("name"),
        output_secret=(output.get("secretRef") or {}).get("name"),
        uris=tuple(uris), output_uri=output.get("uri") or "",
        image=spec.get("image") or None, node_pool=spec.get("nodePool") or None, resources=spec.get("resources") or None,
        backoff_limit=spec_int(spec.get("backoffLimit"), "spec.backoffLimit", 1, 0),
        active_deadline_seconds=spec_int(spec.get("activeDeadlineSeconds"), "spec.activeDeadlineSeconds", 3600, 1),
        ttl_seconds_after_finished=spec_int(spec.get("ttlSecondsAfterFinished"), "spec.ttlSecondsAfterFinished", 86400, 0),
    )
