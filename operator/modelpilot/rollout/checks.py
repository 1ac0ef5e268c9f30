"""Validation, done once per reconcile: everything the schema cannot check (the router, the node
pools, the export's format, the analysis blocks), with the results kept for the phases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..analysis import validate as validate_analysis
from ..api.errors import SpecError
from ..api.modeldeployment import RUNTIME_FORMATS, ModelDeployment, check_runtime_format, parse_model_deployment
from ..config import OperatorConfig
from ..placement import scheduling_for
from ..render import ExportArtifact
from ..traffic import get_router
from .model import Checked, ExportResolution, Observed
from .objects import check_service_ports
from .steps import analysis_blocks, compile_steps


def check_spec(body: Mapping[str, Any], config: OperatorConfig, observed: Observed) -> Checked:
    """The typed spec and what validation computed; a SpecError naming the field otherwise."""
    md = parse_model_deployment(body)
    check_service_ports(md)
    scheduling = scheduling_for(md.placement, config)
    router = get_router(md.router)
    export = resolve_export(md, observed.export)
    if export.artifact is not None:
        check_runtime_format(md.runtime.kind, export.artifact.format, "spec.model.exportRef.target")
    err = router.check(md, config.route_policy)
    if err is not None:
        raise err
    steps = compile_steps(md)
    _check_analysis_is_used(md)
    for field_path, block in analysis_blocks(md):
        _check_analysis(field_path, block)
    return Checked(md=md, router=router, export=export, steps=steps, scheduling=scheduling)


def _check_analysis_is_used(md: ModelDeployment) -> None:
    """spec.rollout.analysis gates canary, blueGreen and shadow; elsewhere it would be ignored."""
    if not md.rollout.analysis:
        return
    if md.strategy == "direct":
        raise SpecError("spec.rollout.analysis", "strategy direct has no steps for an analysis to gate",
                        "remove it, or use strategy canary, blueGreen or shadow")
    if md.strategy == "abTest":
        raise SpecError("spec.rollout.analysis", "strategy abTest is judged by spec.rollout.abTest.analysis",
                        "move the block to spec.rollout.abTest.analysis")


def _check_analysis(field_path: str, block: Mapping[str, Any]) -> None:
    problems = validate_analysis(block)
    if problems:
        # validate() names fields relative to the block ("metrics[err].query: ..."); prefix the path.
        first = problems[0][len("analysis."):] if problems[0].startswith("analysis.") else problems[0]
        raise SpecError(f"{field_path}.{first.split(':', 1)[0]}", first.split(":", 1)[1].strip() if ":" in first else first)


def resolve_export(md: ModelDeployment, body: Mapping[str, Any] | None) -> ExportResolution:
    """The artifact of an exportRef model, its sha256 digest, or why it cannot be used yet."""
    if not md.model.export_name:
        return ExportResolution()
    ref = f"ModelExport {md.model.export_name}"
    if body is None:
        return ExportResolution(problem=f"{ref} not found in namespace {md.namespace} (spec.model.exportRef.name)")
    st = body.get("status") or {}
    arts = st.get("artifacts") or []
    want = md.model.export_target
    servable = [a for a in arts if a.get("format") in RUNTIME_FORMATS[md.runtime.kind]]
    art = next((a for a in arts if a.get("name") == want), None) if want else (servable[0] if servable else None)
    if art is None:
        if st.get("phase") == "Failed":
            return ExportResolution(problem=f"{ref} failed: {st.get('message', '')}")
        if arts:
            what = f"no target {want!r} (spec.model.exportRef.target)" if want else \
                f"no artifact runtime {md.runtime.kind} can serve ({', '.join(RUNTIME_FORMATS[md.runtime.kind])})"
            listed = ", ".join(f"{a.get('name', '?')} ({a.get('format', '?')})" for a in arts)
            return ExportResolution(problem=f"{ref} has {what}; it has: {listed}")
        return ExportResolution(problem=f"{ref} has no artifact yet (phase {st.get('phase', 'Pending')})")
    if not st.get("manifestUri"):
        return ExportResolution(problem=f"{ref} reports no manifestUri")
    if art.get("validated") is False and not ((body.get("spec") or {}).get("validation") or {}).get("warnOnly"):
        return ExportResolution(problem=f"{ref}: artifact {art.get('name')!r} failed validation and the export's "
                                        "spec.validation.warnOnly is not set: it is not rolled out; fix the export, "
                                        "or set warnOnly to serve it anyway")
    return ExportResolution(artifact=ExportArtifact(format=art.get("format", ""), manifest_uri=st["manifestUri"],
                                                            target=str(art.get("name") or "")),
                            digest=f"sha256:{art.get('sha256', '')}")
