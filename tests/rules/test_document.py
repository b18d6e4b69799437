from __future__ import annotations

import json

import pytest

from plaudit.rules.document import DocumentInvalid, load
from plaudit.rules.model import json_schema

GOOD = """\
currencies: [xp]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(DocumentInvalid) as caught:
        load(text)
    return [str(p) for p in caught.value.problems]


def test_yaml_on_is_a_key_not_a_boolean() -> None:
    doc, compiled = load(GOOD)
    assert doc.rules[0].on == "lesson.completed"
    assert compiled.event_types == {"lesson.completed"}


def test_json_documents_are_read_too() -> None:
    doc, _ = load(json.dumps({"rules": [{"id": "a", "on": "x", "award": {"xp": 1}}]}))
    assert doc.rules[0].id == "a"


def test_a_compile_error_names_the_rule_line_and_position() -> None:
    text = (
        GOOD
        + """\
  - id: broken
    on: quiz.passed
    when: event.properties.score >
    award: {xp: 1}
"""
    )
    (problem,) = _problems(text)
    assert problem.startswith("line 8: broken: rules[1].when: Syntax error")
    assert "column" in problem


def test_unknown_variables_fail_at_compile_time() -> None:
    text = GOOD.replace("award: {xp: 10}", "award: {xp: 10}\n    when: points > 3")
    (problem,) = _problems(text)
    assert "undeclared reference to 'points'" in problem


def test_an_amount_that_is_not_a_finite_number_is_refused() -> None:
    for amount in (".inf", "-.inf", ".nan"):
        (problem,) = _problems(GOOD.replace("award: {xp: 10}", f"award: {{xp: {amount}}}"))
        assert "award.xp: the amount is" in problem, problem
        assert problem.endswith("not a finite number"), problem


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    text = """\
currencies: [xp]
rules:
  - id: a
    on: x
    award: {gold: 1}
  - id: a
    on: y
    award: {xp: "1 +"}
"""
    problems = _problems(text)
    assert any(p.startswith("line 5: a: rules[0].award.gold: unknown currency") for p in problems)
    assert any("duplicate id 'a'" in p for p in problems)
    assert any(p.startswith("line 8: a: rules[1].award.xp: Syntax error") for p in problems)


def test_structure_errors_name_the_field_and_line() -> None:
    text = GOOD.replace("    award: {xp: 10}", "    award: {xp: 10}\n    bonus: 3")
    (problem,) = _problems(text)
    assert problem == "line 6: lesson: rules[0].bonus: unknown field"


def test_a_criterion_with_no_known_kind_is_explained() -> None:
    text = GOOD + "badges:\n  - id: b\n    name: B\n    criteria: {counts: {on: x}}\n"
    (problem,) = _problems(text)
    assert "exactly one of: count, sum" in problem


def test_badge_cycles_are_refused() -> None:
    text = (
        GOOD
        + """\
badges:
  - {id: a, name: A, criteria: {badge: b}}
  - {id: b, name: B, criteria: {all: [{badge: a}]}}
"""
    )
    problems = _problems(text)
    assert any("depend on each other" in p for p in problems)


def test_malformed_yaml_is_one_located_problem() -> None:
    (problem,) = _problems("rules: [\n  {id: a\n")
    assert problem.startswith("line ")
    assert "not valid YAML" in problem


def test_the_published_schema_describes_every_kind() -> None:
    schema = json.dumps(json_schema())
    for kind in ("count", "sum", "distinct", "streak", "first", "points", "badge", "all", "any"):
        assert f'"{kind}"' in schema
    assert json_schema()["title"] == "Plaudit rule set"
