"""Serving runtimes, one module each, behind the ServingRuntime protocol; `get_runtime` is the factory."""

from .base import MODEL_REPOSITORY, ServingRuntime, Signature, TensorSpec
from .tfserving import TFServing
from .torchserve import TorchServe
from .triton import Triton

_RUNTIMES: dict[str, ServingRuntime] = {"triton": Triton(), "torchserve": TorchServe(), "tfserving": TFServing()}


def get_runtime(kind: str) -> ServingRuntime:
    try:
        return _RUNTIMES[kind]
    except KeyError:
        raise ValueError(f"spec.runtime.kind: unknown runtime {kind!r}; use one of {', '.join(_RUNTIMES)}") from None


__all__ = ["MODEL_REPOSITORY", "ServingRuntime", "Signature", "TensorSpec", "get_runtime"]
