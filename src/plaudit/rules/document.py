"""Reading rule-set documents (YAML or JSON) with problems located by rule id and line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from plaudit.rules.compiler import CompiledRuleSet, Problem, RuleSetInvalid, compile_ruleset
from plaudit.rules.model import RuleSet

Path = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans only: ``on:`` is a key here (YAML 1.1 reads it as true)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True, slots=True)
class LocatedProblem:
    rule: str
    field: str
    message: str
    line: int | None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        owner = f"{self.rule}: " if self.rule else ""
        return f"{where}{owner}{self.field}: {self.message}"


class DocumentInvalid(Exception):
    def __init__(self, problems: list[LocatedProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def parse(text: str) -> tuple[Any, dict[Path, int]]:
    """The document's data, and the line (1-based) where each path starts."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DocumentInvalid(
            [
                LocatedProblem(
                    "", "document", f"not valid YAML or JSON: {getattr(exc, 'problem', exc)}", line
                )
            ]
        ) from None
    if node is None:
        raise DocumentInvalid([LocatedProblem("", "document", "the document is empty", 1)])
    lines: dict[Path, int] = {}
    _walk(node, (), lines)
    loader = _Loader("")
    try:
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return data, lines


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[(*path, key.value)] = key.start_mark.line + 1
                _walk(value, (*path, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def _owner(data: Any, path: Path) -> str:
    if len(path) >= 2 and path[0] in ("rules", "badges") and isinstance(path[1], int):
        try:
            return str(data[path[0]][path[1]].get("id", f"{path[0]}[{path[1]}]"))
        except (KeyError, IndexError, TypeError, AttributeError):
            return f"{path[0]}[{path[1]}]"
    return ""


def _line(lines: dict[Path, int], path: Path) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _field_path(text: str) -> Path:
    """'badges[0].criteria.count.on' -> ('badges', 0, 'criteria', 'count', 'on')."""
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def load(text: str) -> tuple[RuleSet, CompiledRuleSet]:
    """Parse, validate and compile; every problem found is reported, each with its line."""
    data, lines = parse(text)
    try:
        doc = RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Tagged unions repeat the tag in the location: drop the repeat.
            loc: list[str | int] = []
            for part in err["loc"]:
                if not (loc and part == loc[-1] and isinstance(part, str)):
                    loc.append(part)
            path = tuple(loc)
            message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(
                LocatedProblem(_owner(data, path), dotted(path), message, _line(lines, path))
            )
        raise DocumentInvalid(problems) from None
    try:
        compiled = compile_ruleset(doc)
    except RuleSetInvalid as exc:
        raise DocumentInvalid([_locate(p, lines) for p in exc.problems]) from None
    return doc, compiled


def _locate(problem: Problem, lines: dict[Path, int]) -> LocatedProblem:
    return LocatedProblem(
        problem.rule, problem.field, problem.message, _line(lines, _field_path(problem.field))
    )
