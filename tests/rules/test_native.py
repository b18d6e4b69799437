"""Expressions run as Python closures give what the CEL library gives: the same value of the
same type, or an error where it errs, on generated expressions over generated events."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from plaudit.rules.evaluate import EventFacts, PlayerFacts
from plaudit.rules.expressions import (
    CompileError,
    EvaluationError,
    activation,
    compile_expression,
)

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_NUMBER = st.one_of(
    st.integers(min_value=-20, max_value=20),
    st.sampled_from([2**63 - 1, -(2**63), 2**62, -1, 0]),
    _INT64,
    st.floats(min_value=-100, max_value=100).map(lambda f: round(f, 1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 2.0, 1e300, 2.0**63]),
)
# No NUL: the library's binding cuts a string at one (size("a\x00b") is 1 there, 3 here);
# no lone surrogates: properties come from JSON, which cannot hold them.
_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=3)
_SCALAR = st.one_of(_NUMBER, _NUMBER, _TEXT, st.booleans(), st.none())
_VALUE = st.one_of(
    _SCALAR,
    _SCALAR,
    st.lists(_SCALAR, max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), _SCALAR, max_size=2),
)
_PROPERTIES = st.fixed_dictionaries(
    {"a": _NUMBER, "b": _NUMBER, "c": _VALUE, "m": _VALUE},
)

_PROPERTY = st.sampled_from(
    [
        "event.properties.a",
        "event.properties.b",
        "event.properties.c",
        "event.properties.m",
        "event.properties.m.x",
    ]
)
_LEAVES = st.one_of(
    _PROPERTY,
    _PROPERTY,
    _PROPERTY,
    st.sampled_from(
        [
            "event.properties.missing",
            'event.properties["a"]',
            "event.type",
            "event.occurred_at",
            "event.nothing",
            "player.id",
            "player.attributes.team",
            "player.time_zone",
            "null",
            "true",
            "false",
            "0",
            "0.0",
            "'s'",
            '"t\\n"',
            "9223372036854775807",
            "0x7f",
            "1e3",
            "[1, 2.0, 's']",
            "[]",
        ]
    ),
    st.integers(min_value=-3, max_value=100).map(str),
    st.floats(min_value=0, max_value=1e6, allow_nan=False).map(repr),
)


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(
            inner,
            st.sampled_from(
                ["+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!=", "&&", "||", "in"]
            ),
            inner,
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        return st.one_of(
            binary,
            inner.map(lambda x: f"!({x})"),
            inner.map(lambda x: f"-({x})"),
            inner.map(lambda x: f"size({x})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            st.sampled_from(["a", "m", "m.x", "c.y", "missing"]).map(
                lambda k: f"has(event.properties.{k})"
            ),
        )

    return st.recursive(_LEAVES, extend, max_leaves=6)


def _library(source: str, event: EventFacts, player: PlayerFacts) -> tuple[bool, Any]:
    compiled = compile_expression(source)
    act = activation(
        {
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "actor": event.actor,
            "occurred_at": event.occurred_at.isoformat(),
            "properties": event.properties,
        },
        {"id": player.id, "attributes": player.attributes, "time_zone": player.time_zone or ""},
    )
    try:
        return True, compiled.evaluate(act)
    except EvaluationError as exc:
        return False, str(exc)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _event(properties: dict[str, Any]) -> EventFacts:
    return EventFacts(
        "evt_1", "quiz.passed", "lms", "u1", datetime(2026, 3, 1, 12, tzinfo=UTC), properties
    )


_PLAYER = PlayerFacts("ply_1", {"team": "blue"}, None)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=_expressions(), properties=_PROPERTIES)
def test_closures_give_what_the_library_gives(source: str, properties: dict[str, Any]) -> None:
    try:
        compile_expression(source)
    except CompileError:
        assume(False)  # the library refuses it before anything runs
    _check(source, properties)


def _check(source: str, properties: dict[str, Any]) -> None:
    native = compile_expression(source).native
    assert native is not None, source
    event = _event(properties)
    ok, expected = _library(source, event, _PLAYER)
    if not ok:
        with pytest.raises(EvaluationError):
            native(event, _PLAYER)
        return
    got = native(event, _PLAYER)
    assert _same(got, expected), f"{source}: closure gave {got!r}, library {expected!r}"


_OPERATORS = ["+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!=", "&&", "||", "in"]


@settings(max_examples=3000, deadline=None)
@given(
    op=st.sampled_from([*_OPERATORS, "!", "-", "size", "?"]),
    a=_VALUE,
    b=_VALUE,
    missing=st.sampled_from(["", "a", "b"]),
)
def test_each_operator_on_each_pair_of_values(op: str, a: Any, b: Any, missing: str) -> None:
    """Every operator on two event values of any types (one of them missing, sometimes):
    where random expressions seldom reach, e.g. a negative int divided, ``1 || x``."""
    x, y = "event.properties.a", "event.properties.b"
    if op in ("!", "-", "size"):
        source = f"{op}({x})"
    elif op == "?":
        source = f"{x} ? {y} : {x}"
    else:
        source = f"{x} {op} {y}"
    properties = {"a": a, "b": b}
    properties.pop(missing, None)
    _check(source, properties)


_LITERAL = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1).map(str),
    st.sampled_from(["9223372036854775807", "0", "1", "20"]),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["9.223372036854776e+18", "0.0", "1.0", "20.0", "0.5"]),
    st.text("abz", max_size=3).map(lambda t: f'"{t}"'),
    st.sampled_from(["true", "false", "null"]),
)


@settings(max_examples=3000, deadline=None)
@given(op=st.sampled_from(_OPERATORS), a=_VALUE, literal=_LITERAL, missing=st.booleans())
# int and double compared as doubles: 2^63 - 1 and 2.0^63 are equal there
@example(op="<=", a=2.0**63, literal="9223372036854775807", missing=False)
@example(op=">", a=2**63 - 1, literal="9.223372036854776e+18", missing=False)
def test_each_operator_with_a_literal_on_the_right(
    op: str, a: Any, literal: str, missing: bool
) -> None:
    """``event.properties.a < 20``: a comparison with a literal has closures of its own."""
    source = f"event.properties.a {op} {literal}"
    try:
        compile_expression(source)
    except CompileError:
        assume(False)  # e.g. ``+ true``: the library refuses it before anything runs
    _check(source, {} if missing else {"a": a})


@pytest.mark.parametrize(
    "source",
    [
        "event.properties.score >= 20 && event.properties.score < 40",
        "event.properties.score / 10",
        "event.properties.amount / 1000.0",
        "has(event.properties.course) && event.properties.course in ['a', 'b']",
        "player.attributes.team == 'blue' ? 2 : 1",
        "size(event.properties.tags) > 0",
        "-event.properties.delta",
    ],
)
def test_the_usual_expressions_run_as_closures(source: str) -> None:
    assert compile_expression(source).native is not None


@pytest.mark.parametrize(
    "source",
    [
        "event.properties.tags.exists(t, t == 'a')",
        "event.properties.tags[0]",
        "event.properties.count == 1u",
        "event.properties.name.startsWith('a')",
        "int(event.properties.score)",
        "event",
        "b'abc' == b'abc'",
        "'\\u00e9' == 'é'",
    ],
)
def test_anything_else_stays_with_the_library(source: str) -> None:
    assert compile_expression(source).native is None


def test_an_integer_beyond_64_bits_fails_only_where_it_is_read() -> None:
    event = _event({"huge": 2**64, "score": 5})
    score = compile_expression("event.properties.score > 1").native
    huge = compile_expression("event.properties.huge > 1").native
    assert score is not None
    assert huge is not None
    assert score(event, _PLAYER) is True
    with pytest.raises(EvaluationError, match="out of range"):
        huge(event, _PLAYER)
