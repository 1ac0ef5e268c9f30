"""The one error type for bad input: it always names the field and says how to fix it."""

from typing import Any

from .. import constants as c


class SpecError(ValueError):
    def __init__(self, field: str, problem: str, fix: str = "", reason: str = c.REASON_INVALID_SPEC):
        self.field = field
        self.problem = problem
        self.fix = fix
        self.reason = reason  # the SpecValid=False condition's reason (constants.REASON_*)
        super().__init__(f"{field}: {problem}" + (f"; {fix}" if fix else ""))


def spec_int(value: Any, field_path: str, default: int, minimum: int | None = None) -> int:
    """An integer field of a spec, its default when unset; a SpecError naming the field otherwise
    (the CRD checks types, but `kubectl modelpilot render -f` reads files the apiserver never saw)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field_path, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(field_path, f"must be >= {minimum}, got {value}")
    return value


def spec_int_or_none(value: Any, field_path: str, minimum: int | None = None) -> int | None:
    """An optional integer field: None when unset or 0 (the CRDs' "not set"), else as spec_int."""
    return spec_int(value, field_path, 0, minimum) or None
