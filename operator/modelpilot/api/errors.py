"""The one error type for bad input: it always names the field and says how to fix it."""

from .. import constants as c


class SpecError(ValueError):
    def __init__(self, field: str, problem: str, fix: str = "", reason: str = c.REASON_INVALID_SPEC):
        self.field = field
        self.problem = problem
        self.fix = fix
        self.reason = reason  # the SpecValid=False condition's reason (constants.REASON_*)
        super().__init__(f"{field}: {problem}" + (f"; {fix}" if fix else ""))
