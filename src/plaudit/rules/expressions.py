"""CEL expressions through cel-expr-python (the CEL project's C++ implementation).

Measured here: compile ~30 µs once per rule-set version; evaluation ~1.5-2 µs per
expression once the event is in an Activation (~4 µs to convert a typical event, once).
Runtime failures come back as CEL error values, which we raise as ``EvaluationError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from cel_expr_python import cel

from plaudit.rules.native import NativeError, translate

Activation = Any  # cel.Activation: the variables of one evaluation

_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


class CompileError(Exception):
    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at {line}:{column}" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.message = message
        self.line = line
        self.column = column


class EvaluationError(Exception):
    pass


@cache
def _env() -> Any:
    # Only the two variables exist: a typo in a variable name fails at compile time.
    return cel.NewEnv(variables={"event": cel.Type.DYN, "player": cel.Type.DYN})


@dataclass(frozen=True, slots=True, eq=False)
class Compiled:
    source: str
    program: Any  # cel.Expression
    # The same expression as Python closures (rules/native.py), when it is of the subset
    # they cover: (event facts, player facts) -> value, raising EvaluationError.
    native: Callable[[Any, Any], Any] | None = None

    def evaluate(self, activation: Activation) -> Any:
        value = self.program.eval(activation)
        if value.type() == cel.Type.ERROR:
            raise EvaluationError(_tidy(str(value.value())))
        return value.plain_value()


def compile_expression(source: str, env: Any = None) -> Compiled:
    """Compiled by the library (which checks it); a rule's expression (``env`` None) also
    as closures where it is of the subset they cover."""
    try:
        program = (env or _env()).compile(source)
    except RuntimeError as exc:
        found = _POSITION.findall(str(exc))
        if found:
            line, column, message = found[0]
            raise CompileError(message.strip(), int(line), int(column)) from None
        raise CompileError(_tidy(str(exc))) from None
    return Compiled(source, program, _native(source) if env is None else None)


def _native(source: str) -> Callable[[Any, Any], Any] | None:
    node = translate(source)
    if node is None:
        return None

    def run(event: Any, player: Any) -> Any:
        try:
            return node(event, player)
        except NativeError as exc:
            raise EvaluationError(_tidy(exc.message)) from None

    return run


@cache
def _filter_env() -> Any:
    # Webhook filters see the message: ``message.type`` and ``message.data``.
    return cel.NewEnv(variables={"message": cel.Type.DYN})


def compile_filter(source: str) -> Compiled:
    """A condition on an outbox message (``message.data.badge_id == "quiz-master"``)."""
    return compile_expression(source, _filter_env())


def filter_activation(message_type: str, data: Mapping[str, Any]) -> Activation:
    return _filter_env().Activation({"message": {"type": message_type, "data": data}})


def activation(event: Mapping[str, Any], player: Mapping[str, Any]) -> Activation:
    """The variables of one evaluation; build one per event and drop it afterwards."""
    return _env().Activation({"event": event, "player": player})


def _tidy(message: str) -> str:
    """'NOT_FOUND: Key not found in map : "x"' -> 'key not found in map : "x"'."""
    head, sep, rest = message.partition(": ")
    text = rest if sep and head.isupper() else message
    return text[:1].lower() + text[1:]
