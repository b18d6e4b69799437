"""CEL expressions of a common subset run as Python closures, with CEL's semantics.

Through the CEL library an event costs ~2.4 µs to convert into an activation and each
expression ~2 µs (a type's five conditions as one list 3.5 µs): about 40 % of the
evaluation of a typical event. As closures: 0.3 - 0.6 µs an expression, 2.5 µs for the list.
The rules' expressions are nearly always of a small subset: fields
of ``event`` and ``player``, literals, comparisons, arithmetic, ``&&``, ``||``, ``!``, ``?:``,
``in``, ``has()`` and ``size()``. Such an expression, once the CEL library has compiled and
type-checked it, is also translated here into closures that read the event directly; any
other expression (macros, other functions, indexes of lists, uint or bytes literals) keeps
running in the library.

The closures do what cel-cpp does at run time, checked expression by expression against the
library in ``tests/rules/test_native.py`` (generated expressions over generated events): int
and double kept apart in arithmetic (``1 + 1.5`` is an error), int arithmetic on 64 bits
with overflow an error and division truncating, numbers compared across int and double,
equality false (not an error) across types, ``&&`` and ``||`` absorbing an error or a
non-boolean on one side when the other side decides, a missing key an error, an int
compared with a double as a double. Two differences, deliberately: the library refuses the
whole event when any property holds an integer beyond 64 bits, where here only an
expression that reads such a value fails; and the library's binding cuts a string at a NUL
character, where here the string is whole.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

Native = Callable[[Any, Any], Any]  # (event facts, player facts) -> value

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>(?:0[xX][0-9a-fA-F]+|\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?|\d+)[uU]?)
    | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\|\||&&|==|!=|<=|>=|[<>+\-*/%!?:.,()\[\]{}])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\'": "'", "\\n": "\n", "\\t": "\t", "\\r": "\r"}
_EVENT_FIELDS = {"id", "type", "source", "actor", "occurred_at", "properties"}
_PLAYER_FIELDS = {"id", "attributes", "time_zone"}
_RESERVED = {"in", "as", "break", "const", "continue", "else", "for", "function", "if"}


class Unsupported(Exception):
    """Outside the subset: the expression stays with the CEL library."""


def translate(source: str) -> Native | None:
    """The expression as a closure raising ``NativeError`` where CEL gives an error value,
    or None when it is outside the subset."""
    try:
        tokens = _tokens(source)
        parser = _Parser(tokens)
        node = parser.expr()
    except Unsupported:
        return None
    return node if parser.pos == len(tokens) else None


class NativeError(Exception):
    """A CEL error value on its way up (absorbed by ``&&``/``||`` where CEL absorbs it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _tokens(source: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    source = source.rstrip()
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise Unsupported
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind or "")
        if kind == "num":
            out.append(("lit", _number(text)))
        elif kind == "str":
            out.append(("lit", _string(text)))
        elif kind == "name":
            if text in ("true", "false"):
                out.append(("lit", text == "true"))
            elif text == "null":
                out.append(("lit", None))
            elif text == "in":
                out.append(("op", "in"))
            elif text in _RESERVED:
                raise Unsupported
            else:
                out.append(("name", text))
        else:
            out.append(("op", text))
    return out


def _number(text: str) -> int | float:
    if text[-1] in "uU":
        raise Unsupported  # uint: not modelled
    if text[:2] in ("0x", "0X"):
        value = int(text, 16)
    elif any(c in text for c in ".eE"):
        return float(text)
    else:
        value = int(text)
    if value > _INT_MAX:
        raise Unsupported
    return value


def _string(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            escape = body[i : i + 2]
            if escape not in _ESCAPES:
                raise Unsupported
            out.append(_ESCAPES[escape])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


# --- values ------------------------------------------------------------------------------


_KINDS = {bool: "bool", int: "int64", float: "double", str: "string", type(None): "null_type"}


def _kind(value: Any) -> str:
    """The value's CEL type name, as the library's messages name it."""
    found = _KINDS.get(type(value))
    if found is not None:
        return found
    if isinstance(value, list | tuple):
        return "list"
    return "map" if isinstance(value, Mapping) else type(value).__name__


def _checked(value: Any) -> Any:
    """A value read from the event, refused where CEL's conversion would refuse it."""
    t = type(value)
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise NativeError(f"integer value '{value}' out of range")
        return value
    if t is str or t is float or t is bool or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_checked(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _checked(v) for k, v in value.items()}
    raise NativeError(f"unsupported value of type {t.__name__}")


def _no_overload(op: str, *values: Any) -> NativeError:
    return NativeError(f"no matching overloads found : {op}({', '.join(_kind(v) for v in values)})")


def _numeric(value: Any) -> bool:
    t = type(value)
    return t is int or t is float


def _equal(a: Any, b: Any) -> bool:
    """CEL's ``==``: numbers across int and double, false (not an error) across types."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool or ta is str or tb is str or a is None or b is None:
        return ta is tb and bool(a == b)
    if _numeric(a) and _numeric(b):
        return bool(a == b) if ta is tb else float(a) == float(b)  # int as double, as CEL
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return len(a) == len(b) and all(
            (other := _lookup_key(b, key)) is not _MISSING and _equal(value, other)
            for key, value in a.items()
        )
    return False


_MISSING = object()


def _lookup_key(m: Mapping[Any, Any], key: Any) -> Any:
    """A map's value under a key equal to ``key`` in CEL's sense (1 and 1.0 alike)."""
    if type(key) is str:
        return m.get(key, _MISSING)
    for k, v in m.items():
        if _equal(k, key):
            return v
    return _MISSING


def _divide(a: int, b: int) -> int:
    if b == 0:
        raise NativeError("divide by zero")
    quotient = abs(a) // abs(b)  # truncated toward zero, as C++ divides
    return quotient if (a < 0) == (b < 0) else -quotient


def _modulo(a: int, b: int) -> int:
    if b == 0:
        raise NativeError("modulus by zero")
    if a == _INT_MIN and b == -1:
        raise NativeError("integer overflow")
    remainder = abs(a) % abs(b)  # the sign of the dividend, as C++'s %
    return -remainder if a < 0 else remainder


def _float_divide(a: float, b: float) -> float:
    if b != 0.0:
        return a / b
    if math.isnan(a) or a == 0.0:
        return math.nan
    return -math.inf if (a < 0) != (math.copysign(1.0, b) < 0) else math.inf


_INT_OPS: dict[str, Callable[[int, int], int]] = {
    "_+_": operator.add,
    "_-_": operator.sub,
    "_*_": operator.mul,
    "_/_": _divide,
    "_%_": _modulo,
}
_FLOAT_OPS: dict[str, Callable[[float, float], float]] = {
    "_+_": operator.add,
    "_-_": operator.sub,
    "_*_": operator.mul,
    "_/_": _float_divide,
}


def _arith(op: str, a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        value = _INT_OPS[op](a, b)
        if not _INT_MIN <= value <= _INT_MAX:
            raise NativeError("integer overflow")
        return value
    if ta is float and tb is float and op in _FLOAT_OPS:
        return _FLOAT_OPS[op](a, b)
    if op == "_+_" and ta is tb and ta is str:
        return a + b
    if op == "_+_" and isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return [*a, *b]
    raise _no_overload(op, a, b)


# --- the parser: each rule returns a closure ----------------------------------------------

_RELATIONS = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})
_ADDITIONS = frozenset({"+", "-"})
_MULTIPLICATIONS = frozenset({"*", "/", "%"})


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.pos = 0
        # The value of each literal's closure: a comparison with one does not call it.
        self.literals: dict[Native, Any] = {}

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, op: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] == op:
            self.pos += 1
            return True
        return False

    def take_any(self, ops: frozenset[str]) -> str | None:
        """The next token when it is one of the operators ``ops`` (taken), else None."""
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in ops:
            self.pos += 1
            return str(token[1])
        return None

    def need(self, op: str) -> None:
        if not self.take(op):
            raise Unsupported

    def expr(self) -> Native:
        condition = self.or_()
        if not self.take("?"):
            return condition
        then = self.or_()
        self.need(":")
        otherwise = self.expr()
        return _conditional(condition, then, otherwise)

    def or_(self) -> Native:
        node = self.and_()
        while self.take("||"):
            node = _logical(node, self.and_(), decides=True)
        return node

    def and_(self) -> Native:
        node = self.relation()
        while self.take("&&"):
            node = _logical(node, self.relation(), decides=False)
        return node

    def relation(self) -> Native:
        node = self.addition()
        while (op := self.take_any(_RELATIONS)) is not None:
            right = self.addition()
            node = _relation(op, node, right, self.literals.get(right, _MISSING))
        return node

    def addition(self) -> Native:
        node = self.multiplication()
        while (op := self.take_any(_ADDITIONS)) is not None:
            node = _binary(f"_{op}_", node, self.multiplication())
        return node

    def multiplication(self) -> Native:
        node = self.unary()
        while (op := self.take_any(_MULTIPLICATIONS)) is not None:
            node = _binary(f"_{op}_", node, self.unary())
        return node

    def unary(self) -> Native:
        if self.take("!"):
            return _not(self.unary())
        if self.take("-"):
            return _negate(self.unary())
        return self.member()

    def member(self) -> Native:
        root, fields = self.chain()
        return _build(root, fields)

    def chain(self) -> tuple[str | Native, list[str]]:
        """A value and the fields selected from it: the root is ``"event"`` or ``"player"``
        (never a value on its own) or the closure of a primary expression."""
        token = self.peek()
        root: str | Native
        if token is not None and token[0] == "name" and token[1] in ("event", "player"):
            self.pos += 1
            root = str(token[1])
        else:
            root = self.primary()
        fields = []
        while (field := self.field()) is not None:
            fields.append(field)
        if isinstance(root, str) and not fields:
            raise Unsupported  # the whole event or player as a value
        return root, fields

    def field(self) -> str | None:
        """``.name`` or ``["name"]`` after a value (the CEL library parses a call ``.f(``
        as a method: outside the subset)."""
        if self.take("."):
            token = self.peek()
            if token is None or token[0] != "name":
                raise Unsupported
            self.pos += 1
            if self.peek() == ("op", "("):
                raise Unsupported
            return str(token[1])
        token = self.peek()
        if token == ("op", "["):
            after = self.tokens[self.pos + 1 : self.pos + 3]
            if len(after) == 2 and after[1] == ("op", "]") and type(after[0][1]) is str:
                if after[0][0] != "lit":
                    raise Unsupported
                self.pos += 3
                return str(after[0][1])
            raise Unsupported  # other indexes
        return None

    def primary(self) -> Native:
        token = self.peek()
        if token is None:
            raise Unsupported
        self.pos += 1
        kind, value = token
        if kind == "lit":
            node = _constant(value)
            self.literals[node] = value
            return node
        if kind == "name":
            if value in ("has", "size") and self.take("("):
                argument = self.has_argument() if value == "has" else self.expr()
                self.need(")")
                return argument if value == "has" else _size(argument)
            raise Unsupported
        if value == "(":
            node = self.expr()
            self.need(")")
            return node
        if value == "[":
            items: list[Native] = []
            if not self.take("]"):
                items.append(self.expr())
                while self.take(","):
                    items.append(self.expr())
                self.need("]")
            return _list(items)
        raise Unsupported

    def has_argument(self) -> Native:
        """``has(x.f)``: whether the map ``x`` holds ``f``."""
        root, fields = self.chain()
        if not fields:
            raise Unsupported
        if isinstance(root, str) and len(fields) == 1:
            present = fields[0] in (_EVENT_FIELDS if root == "event" else _PLAYER_FIELDS)
            return lambda e, p: present
        return _has(_build(root, fields[:-1]), fields[-1])


# --- closures --------------------------------------------------------------------------


def _constant(value: Any) -> Native:
    return lambda e, p: value


def _list(items: list[Native]) -> Native:
    return lambda e, p: [item(e, p) for item in items]


def _build(root: str | Native, fields: list[str]) -> Native:
    if root == "event" and fields[0] == "properties" and len(fields) > 1:
        node = _property(fields[1])  # the most common read, in one closure
        fields = fields[2:]
    elif isinstance(root, str):
        node = _root_field(root, fields[0])
        fields = fields[1:]
    else:
        node = root
    for field in fields:
        node = _select(node, field)
    return node


def _root_field(root: str, field: str) -> Native:
    known = _EVENT_FIELDS if root == "event" else _PLAYER_FIELDS
    if field not in known:

        def missing(e: Any, p: Any) -> Any:
            raise NativeError(f'key not found in map : "{field}"')

        return missing
    if root == "event":
        if field == "properties":
            return lambda e, p: e.properties
        if field == "occurred_at":
            return lambda e, p: e.occurred_at.isoformat()
        return lambda e, p: getattr(e, field)
    if field == "time_zone":
        return lambda e, p: p.time_zone or ""
    return lambda e, p: getattr(p, field)


def _property(field: str) -> Native:
    """``event.properties.<field>``: ``_select`` on ``event.properties`` (a map) in one
    closure. Both read a plain value inline (the usual case), the rest in ``_unusual``."""

    def read(e: Any, p: Any) -> Any:
        found = e.properties.get(field, _MISSING)
        t = type(found)
        if t is str or t is float or t is bool or (t is int and _INT_MIN <= found <= _INT_MAX):
            return found
        return _unusual(found, field)

    return read


def _unusual(found: Any, field: str) -> Any:
    """A map's value at ``field`` that is not a plain scalar: missing, or to be checked."""
    if found is _MISSING:
        raise NativeError(f'key not found in map : "{field}"')
    return _checked(found)


def _select(node: Native, field: str) -> Native:
    def select(e: Any, p: Any) -> Any:
        value = node(e, p)
        if type(value) is dict or isinstance(value, Mapping):
            found = value.get(field, _MISSING)
            t = type(found)
            if t is str or t is float or t is bool or (t is int and _INT_MIN <= found <= _INT_MAX):
                return found
            return _unusual(found, field)
        raise NativeError("applying SELECT to non-message type")

    return select


def _has(node: Native, field: str) -> Native:
    def has(e: Any, p: Any) -> bool:
        value = node(e, p)
        if isinstance(value, Mapping):
            return field in value
        raise NativeError("applying SELECT to non-message type")

    return has


def _size(node: Native) -> Native:
    def size(e: Any, p: Any) -> int:
        value = node(e, p)
        if isinstance(value, str | list | tuple | Mapping):
            return len(value)
        raise _no_overload("size", value)

    return size


def _conditional(condition: Native, then: Native, otherwise: Native) -> Native:
    def conditional(e: Any, p: Any) -> Any:
        chosen = condition(e, p)
        if type(chosen) is not bool:
            raise NativeError("no matching overloads found : <jump_condition>")
        return then(e, p) if chosen else otherwise(e, p)

    return conditional


def _logical(left: Native, right: Native, decides: bool) -> Native:
    """``&&`` (``decides`` False) or ``||`` (True): a side equal to ``decides`` decides,
    whatever the other side is, error included; otherwise an error or a non-boolean wins."""
    op = "_||_" if decides else "_&&_"

    def logical(e: Any, p: Any) -> Any:
        try:
            a: Any = left(e, p)
        except NativeError as exc:
            a = exc
        if a is decides:
            return decides
        try:
            b: Any = right(e, p)
        except NativeError as exc:
            b = exc
        if b is decides:
            return decides
        if isinstance(a, NativeError):
            raise a
        if isinstance(b, NativeError):
            raise b
        if type(a) is not bool or type(b) is not bool:
            raise _no_overload(op, a, b)
        return not decides

    return logical


def _relation(op: str, left: Native, right: Native, literal: Any = _MISSING) -> Native:
    """``literal``: the right side's value when it is a literal."""
    if op == "==":
        return lambda e, p: _equal(left(e, p), right(e, p))
    if op == "!=":
        return lambda e, p: not _equal(left(e, p), right(e, p))
    if op == "in":

        def within(e: Any, p: Any) -> bool:
            item, container = left(e, p), right(e, p)
            if isinstance(container, list | tuple):
                return any(_equal(item, x) for x in container)
            if isinstance(container, Mapping):
                if item is None or isinstance(item, list | tuple | Mapping):
                    raise _no_overload("@in", item, container)  # not a key type
                return _lookup_key(container, item) is not _MISSING
            raise _no_overload("@in", item, container)

        return within
    name = f"_{op}_"
    fast = _ORDERINGS[op]
    if type(literal) in (int, float, str):
        return _compare_constant(name, fast, left, literal)

    def compare(e: Any, p: Any) -> bool:
        a, b = left(e, p), right(e, p)
        ta, tb = type(a), type(b)
        if ta is tb and (ta is int or ta is float or ta is str or ta is bool):
            return bool(fast(a, b))  # NaN is never ordered, in Python as in CEL
        if (ta is int or ta is float) and (tb is int or tb is float):
            return bool(fast(float(a), float(b)))  # CEL compares int and double as doubles
        raise _no_overload(name, a, b)

    return compare


def _compare_constant(name: str, fast: Callable[[Any, Any], Any], left: Native, b: Any) -> Native:
    """``compare`` with a literal int, double or string on the right (most conditions)."""
    tb = type(b)
    numeric = tb is int or tb is float
    as_double = float(b) if numeric else 0.0

    def compare_constant(e: Any, p: Any) -> bool:
        a = left(e, p)
        ta = type(a)
        if ta is tb:
            return bool(fast(a, b))
        if numeric and (ta is int or ta is float):
            return bool(fast(float(a), as_double))
        raise _no_overload(name, a, b)

    return compare_constant


_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _binary(op: str, left: Native, right: Native) -> Native:
    return lambda e, p: _arith(op, left(e, p), right(e, p))


def _not(node: Native) -> Native:
    def negation(e: Any, p: Any) -> bool:
        value = node(e, p)
        if type(value) is not bool:
            raise _no_overload("!_", value)
        return not value

    return negation


def _negate(node: Native) -> Native:
    def negate(e: Any, p: Any) -> Any:
        value = node(e, p)
        t = type(value)
        if t is int:
            if value == _INT_MIN:
                raise NativeError("integer overflow")
            return -value
        if t is float:
            return -value
        raise _no_overload("-_", value)

    return negate
