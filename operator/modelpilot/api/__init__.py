"""Typed views of the custom resources: parse once at the boundary, raw dicts stop here."""

from .errors import SpecError
from .modeldeployment import ModelDeployment, parse_model_deployment

__all__ = ["SpecError", "ModelDeployment", "parse_model_deployment"]
