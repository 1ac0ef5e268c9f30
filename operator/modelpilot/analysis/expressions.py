"""Safe evaluation of `successCondition` / `failureCondition` and `thresholdRange`.

Conditions are expressions over `result`, evaluated by `simpleeval` (an AST whitelist: no
attribute access, no imports, no assignment, bounded power and string sizes), never by `eval`.
The syntax is Python's (`and`, `or`, `not`); Argo Rollouts' `&&`, `||` and `!` are accepted too,
so conditions copied from an AnalysisTemplate keep working.

`result` is the query's value. A scalar or a one-element vector is a number that can also be
indexed (`result[0]`) and measured (`len(result)`), so both `result < 0.01` and Argo's
`result[0] < 0.01` work. A vector of several elements must be indexed or reduced
(`all(v < 0.01 for v in result)`, `max(result) < 0.01`); comparing it as a whole is an error, not
a silent False. NaN and empty results never get here: the run counts them as inconclusive first.

Conditions are written by whoever may create a ModelDeployment and run in the operator's reconcile
worker, so their cost is bounded (issue 11): simpleeval's own power cap still admits
`4000000**4000000` (about 26 s of GIL). Here no integer may exceed `MAX_INT_BITS` bits (checked
before `**`, `*` and `<<` compute anything, and on every value), and one evaluation stops after
`MAX_EVAL_SECONDS`. Constant subexpressions over the bound are refused by `parse`, so they become
a spec error that names the field.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from simpleeval import DEFAULT_OPERATORS, EvalWithCompoundTypes, InvalidExpression

SUCCESSFUL: Final = "Successful"
FAILED: Final = "Failed"
INCONCLUSIVE: Final = "Inconclusive"


class ConditionError(ValueError):
    """A condition that cannot be parsed, or cannot be evaluated on this result."""


#: The largest integer a condition may compute: 2**1024 is about the largest float, so a bigger
#: integer can never be meaningfully compared with a metric, and each operation on smaller ones
#: takes microseconds.
MAX_INT_BITS: Final = 1024
#: Wall-clock bound of one evaluation, checked between nodes (each node is cheap once integers
#: are bounded; comprehensions are capped at 10 000 items by simpleeval).
MAX_EVAL_SECONDS: Final = 0.25


class ConditionTooLarge(ConditionError):
    """A condition that would compute an integer over MAX_INT_BITS bits or run too long."""


def _too_large(what: str) -> ConditionTooLarge:
    return ConditionTooLarge(f"{what} is too large: integers in a condition must stay below 2**{MAX_INT_BITS}; "
                             "compare with a float literal such as 1e300 instead")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_int(x: Any, what: str = "") -> Any:
    if _is_int(x) and x.bit_length() > MAX_INT_BITS:
        raise _too_large(what or f"the value {_short(x)}")
    return x


def _bounded_pow(a: Any, b: Any) -> Any:
    if not (_is_int(a) and _is_int(b)):
        return DEFAULT_OPERATORS[ast.Pow](a, b)  # floats overflow at once; simpleeval's cap stays
    if b > 0 and abs(a) > 1 and (abs(a).bit_length() - 1) * b >= MAX_INT_BITS:
        raise _too_large(f"the power {_short(a)} ** {_short(b)}")
    return a ** b


def _bounded_mult(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise _too_large(f"the product {_short(a)} * {_short(b)}")
    return DEFAULT_OPERATORS[ast.Mult](a, b)


def _bounded_lshift(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b) and a and a.bit_length() + b > MAX_INT_BITS:
        raise _too_large(f"the shift {_short(a)} << {_short(b)}")
    return operator.lshift(a, b)


def _short(x: Any) -> str:
    return f"<{x.bit_length()}-bit integer>" if _is_int(x) and x.bit_length() > 64 else repr(x)


_OPERATORS: Final = {**DEFAULT_OPERATORS, ast.Pow: _bounded_pow, ast.Mult: _bounded_mult, ast.LShift: _bounded_lshift}


class _BoundedEval(EvalWithCompoundTypes):
    """simpleeval with integer sizes and wall-clock time bounded (see the module docstring)."""

    def __init__(self, names: dict[str, Any]):
        super().__init__(operators=dict(_OPERATORS), functions=dict(FUNCTIONS), names=names)
        self._deadline = time.monotonic() + MAX_EVAL_SECONDS

    def _eval(self, node: ast.AST) -> Any:
        if time.monotonic() > self._deadline:
            raise ConditionTooLarge(f"the condition is too large: it ran over {MAX_EVAL_SECONDS}s")
        return _check_int(super()._eval(node))


class Scalar(float):
    """One value that also behaves as a one-element vector: `result`, `result[0]`, `len(result)`."""

    def __getitem__(self, i: int) -> float:
        if i not in (0, -1):
            raise ConditionError(f"result has 1 value; result[{i}] does not exist")
        return float(self)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[float]:
        yield float(self)


class Vector:
    """Several values (one per series): index them or reduce them; comparing the whole is an error."""

    def __init__(self, values: Sequence[float]):
        self._values = tuple(float(v) for v in values)

    def __getitem__(self, i: int) -> float:
        try:
            return self._values[i]
        except IndexError:
            raise ConditionError(f"result has {len(self._values)} values; result[{i}] does not exist") from None

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[float]:
        return iter(self._values)

    def __repr__(self) -> str:
        return repr(list(self._values))

    def _whole(self, *_: Any) -> Any:
        raise ConditionError(
            f"result has {len(self._values)} values (one per series): index one (result[0]) or "
            "reduce them (max(result), all(v < 1 for v in result))")

    __lt__ = __le__ = __gt__ = __ge__ = _whole
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _whole
    __neg__ = __abs__ = __float__ = _whole


def as_result(values: Sequence[float]) -> Scalar | Vector:
    """The `result` an expression sees for these values."""
    return Scalar(values[0]) if len(values) == 1 else Vector(values)


def _mean(xs: Any) -> float:
    return statistics.fmean(list(xs))


FUNCTIONS: Final[dict[str, Any]] = {
    "len": len, "abs": abs, "min": min, "max": max, "sum": sum, "all": all, "any": any,
    "round": round, "float": float, "mean": _mean, "isNaN": math.isnan, "isInf": math.isinf,
}
_CONSTANTS: Final[dict[str, Any]] = {"true": True, "false": False, "True": True, "False": False}
NAMES: Final = frozenset({"result", *_CONSTANTS})

# Argo/expr operators outside string literals: `&&`, `||`, and `!` that is not `!=`.
_TOKENS = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(&&)|(\|\|)|(!)(?!=)""")


def _translate(expr: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1)
        return " and " if m.group(2) else " or " if m.group(3) else " not "
    return _TOKENS.sub(repl, expr).strip()


def parse(expr: str) -> str:
    """The expression in Python syntax, checked for syntax and for unknown names.

    Raises ConditionError with the reason; used by `validate` before a run starts, so a typo is a
    spec error rather than a measurement error.
    """
    src = _translate(expr)
    if not src:
        raise ConditionError("the condition is empty")
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as e:
        raise ConditionError(f"invalid syntax in {expr!r}: {e.msg}") from None
    bound = {t.id for node in ast.walk(tree) if isinstance(node, ast.comprehension)
             for t in ast.walk(node.target) if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in NAMES | FUNCTIONS.keys() | bound:
            raise ConditionError(f"unknown name {node.id!r} in {expr!r}: use result, and functions "
                                 f"{', '.join(sorted(FUNCTIONS))}")
        if isinstance(node, ast.Attribute):
            raise ConditionError(f"attribute access ({node.attr}) is not allowed in {expr!r}")
    _check_constants(tree, expr)
    return src


def _check_constants(tree: ast.Expression, expr: str) -> None:
    """Refuse constant subexpressions over the bound: `4000000**4000000 > result`, a 400-digit literal."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Constant, ast.BinOp, ast.UnaryOp)) and not any(
                isinstance(n, (ast.Name, ast.Call)) for n in ast.walk(node)):
            try:
                _BoundedEval(names={}).eval("", previously_parsed=node)
            except ConditionTooLarge as e:
                raise ConditionTooLarge(f"{e} (in {expr!r})") from None
            except Exception:  # noqa: BLE001 - other errors (1/0) are found on evaluation, with the result
                pass


def evaluate(expr: str, values: Sequence[float]) -> bool:
    """Evaluate a condition over the query's values; raise ConditionError if it cannot be."""
    src = parse(expr)
    ev = _BoundedEval(names={**_CONSTANTS, "result": as_result(values)})
    try:
        out = ev.eval(src)
    except ConditionError:
        raise
    except (InvalidExpression, TypeError, ValueError, ArithmeticError, IndexError, KeyError) as e:
        raise ConditionError(f"cannot evaluate {expr!r} on result={_show(values)}: {e}") from None
    if not isinstance(out, (bool, int, float)):
        raise ConditionError(f"{expr!r} gave {out!r}, not true or false")
    return bool(out)


#: How many values a verdict's reason lists (a query can return thousands of series).
MAX_SHOWN = 10


def _show(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:g}"
    shown = "[" + ", ".join(f"{v:g}" for v in values[:MAX_SHOWN]) + "]"
    return shown if len(values) <= MAX_SHOWN else f"{len(values)} values, the first {MAX_SHOWN}: {shown}"


def judge_conditions(metric: dict, values: Sequence[float]) -> tuple[str, str]:
    """(verdict, reason) of a query metric's successCondition, failureCondition and thresholdRange.

    Argo's rules for the two conditions: only a success condition → not holding fails; only a
    failure condition → not holding passes; both → neither holding is inconclusive. A thresholdRange
    passes when every value lies in [min, max]. All checks present must pass; a failure anywhere
    fails the measurement, before an inconclusive one.
    """
    verdicts: list[tuple[str, str]] = []
    succ, fail = metric.get("successCondition"), metric.get("failureCondition")
    if succ or fail:
        s = evaluate(succ, values) if succ else None
        f = evaluate(fail, values) if fail else None
        if f:
            verdicts.append((FAILED, f"failureCondition `{fail}` holds"))
        elif succ and fail:
            verdicts.append((SUCCESSFUL, f"successCondition `{succ}` holds") if s else
                            (INCONCLUSIVE, f"neither successCondition `{succ}` nor failureCondition `{fail}` holds"))
        elif succ:
            verdicts.append((SUCCESSFUL, f"successCondition `{succ}` holds") if s else
                            (FAILED, f"successCondition `{succ}` does not hold"))
        else:
            verdicts.append((SUCCESSFUL, f"failureCondition `{fail}` does not hold"))
    tr = metric.get("thresholdRange")
    if tr:
        lo, hi = tr.get("min"), tr.get("max")
        bad = [v for v in values if (lo is not None and v < lo) or (hi is not None and v > hi)]
        rng = f"[{'-inf' if lo is None else f'{lo:g}'}, {'+inf' if hi is None else f'{hi:g}'}]"
        if bad:
            verdicts.append((FAILED, f"{_show(bad)} outside thresholdRange {rng}"))
        else:
            verdicts.append((SUCCESSFUL, f"within thresholdRange {rng}"))
    if not verdicts:
        raise ConditionError("the metric has no successCondition, failureCondition or thresholdRange")
    for wanted in (FAILED, INCONCLUSIVE):
        hit = [r for v, r in verdicts if v == wanted]
        if hit:
            return wanted, "; ".join(hit)
    return SUCCESSFUL, "; ".join(r for _, r in verdicts)
