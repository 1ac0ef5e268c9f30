"""The one error type for bad input: it always names the field and says how to fix it."""


class SpecError(ValueError):
    def __init__(self, field: str, problem: str, fix: str = ""):
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}" + (f"; {fix}" if fix else ""))
