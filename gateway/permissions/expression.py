"""Valve rule expressions: a small JavaScript subset, parsed into an AST and interpreted.

Nothing here evaluates host code. A rule is tokenised and parsed by this module into nodes, and
the nodes are compiled into Python closures that compute over plain JSON values (``dict``,
``list``, ``str``, ``int``, ``float``, ``bool``, ``None``) and :data:`UNDEFINED`. Invariants:

* The only names a rule can read are the ones its caller declares (``user``, ``data``, ``name``,
  the pattern's ``$variables``, ...); an unknown name is a :class:`RuleSyntaxError` when the rule
  is compiled, so a typo fails at startup, not on the first message.
* Property access reads own keys of JSON objects, indices of arrays and strings, and ``length``;
  nothing else exists (``__proto__``, ``constructor``, ``__class__`` are simply absent keys).
* The only calls are the string/array methods Valve allows (:data:`METHODS`) and the
  cross-record read ``_(name)``; patterns for ``match`` run on RE2 (linear time).
* Work is bounded by the rule's size: there are no loops, no user functions, and rules are
  limited in length and nesting depth (:data:`MAX_RULE_LENGTH`, :data:`MAX_DEPTH`).

Operators follow JavaScript: ``!  -  +  typeof``, ``*  /  %``, ``+  -``, ``<  <=  >  >=``,
``==  !=  ===  !==``, ``&&  ||`` (returning an operand, as in JavaScript), ``? :``, member access
``a.b`` / ``a[b]``, array literals, string, number and regex literals (``/^a/i``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .jsvalues import (
    METHODS,
    UNDEFINED,
    Regex,
    RuleError,
    add,
    arith,
    call_method,
    get,
    js_equal,
    less,
    negate,
    regex,
    strict_equal,
    to_number,
    truthy,
    typeof,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_RULE_LENGTH",
    "CompiledExpression",
    "NeedRecord",
    "RuleSyntaxError",
    "Scope",
    "compile_expression",
]

MAX_RULE_LENGTH: Final = 4096
"""Characters in one rule: a permission file is written by an operator, not a client, but a
rule is compiled into nested closures, so its size bounds both startup and evaluation work."""
MAX_DEPTH: Final = 100
"""Height of a rule's syntax tree (each level is a nested call when the rule runs)."""


class RuleSyntaxError(ValueError):
    """The rule text is not a valid Valve expression; ``position`` is a 0-based offset."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = "" if position is None else f" at position {position}"
        super().__init__(f"{message}{where}")
        self.position = position


class NeedRecord(Exception):
    """``_(name)`` read a record that is not loaded yet: load it and evaluate again."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Scope:
    """What one evaluation sees: the declared names, and the records ``_()`` may read.

    ``records`` maps a record name to its data (``None`` for a record that does not exist);
    reading one that is absent raises :class:`NeedRecord`.
    """

    __slots__ = ("names", "records")

    def __init__(self, names: Mapping[str, Any], records: Mapping[str, Any] | None = None) -> None:
        self.names = names
        self.records = records if records is not None else {}


Evaluator = Callable[[Scope], Any]


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A parsed rule: call :meth:`evaluate`; ``names`` are the identifiers it reads and
    ``reads_records`` tells whether it calls ``_()``."""

    source: str
    names: frozenset[str]
    reads_records: bool
    _run: Evaluator

    def evaluate(self, scope: Scope) -> Any:
        try:
            return self._run(scope)
        except (RuleError, NeedRecord):
            raise
        except RecursionError as exc:  # cannot happen within MAX_DEPTH; kept as a backstop
            raise RuleError("rule nests too deeply") from exc


# -- tokens ----------------------------------------------------------------------------------

_PUNCTUATORS = (
    "===", "!==", "==", "!=", "<=", ">=", "&&", "||",
    "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", "[", "]", ".", ",", "?", ":",
)  # fmt: skip
_FORBIDDEN = {
    "=>": "functions are not allowed",
    "=": "assignment is not allowed",
    "++": "assignment is not allowed",
    "--": "assignment is not allowed",
    ";": "a rule is one expression",
    "{": "object literals are not allowed",
    "`": "template strings are not allowed",
}
_KEYWORDS_FORBIDDEN = frozenset(
    {"new", "function", "this", "delete", "void", "in", "instanceof", "var", "let", "const",
     "class", "return", "import", "yield", "await", "async", "with", "eval", "arguments"}
)  # fmt: skip
_LITERALS: Final[dict[str, Any]] = {
    "true": True, "false": False, "null": None, "undefined": UNDEFINED,
    "NaN": math.nan, "Infinity": math.inf,
}  # fmt: skip
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER_TOKEN = re.compile(r"(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "num", "str", "name", "regex", "op", "end"
    value: Any
    position: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        start = i
        if char in "'\"":
            value, i = _string_literal(text, i)
            tokens.append(_Token("str", value, start))
            continue
        if char.isdigit() or (char == "." and i + 1 < n and text[i + 1].isdigit()):
            match = _NUMBER_TOKEN.match(text, i)
            assert match is not None
            literal = match.group(0)
            number: float = int(literal, 16) if literal[:2] in ("0x", "0X") else float(literal)
            if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
                number = int(number)
            i = match.end()
            if i < n and (text[i].isalnum() or text[i] in "_$"):
                raise RuleSyntaxError(f"invalid number {text[start : i + 1]!r}", start)
            tokens.append(_Token("num", number, start))
            continue
        match = _IDENTIFIER.match(text, i)
        if match:
            tokens.append(_Token("name", match.group(0), start))
            i = match.end()
            continue
        if char == "/" and _expects_operand(tokens):
            literal_regex, i = _regex_literal(text, i)
            tokens.append(_Token("regex", literal_regex, start))
            continue
        for forbidden, reason in _FORBIDDEN.items():
            if text.startswith(forbidden, i) and not any(
                text.startswith(p, i) and len(p) > len(forbidden) for p in _PUNCTUATORS
            ):
                raise RuleSyntaxError(reason, start)
        for punctuator in _PUNCTUATORS:
            if text.startswith(punctuator, i):
                tokens.append(_Token("op", punctuator, start))
                i += len(punctuator)
                break
        else:
            raise RuleSyntaxError(f"unexpected character {char!r}", start)
    tokens.append(_Token("end", None, n))
    return tokens


def _expects_operand(tokens: list[_Token]) -> bool:
    """A ``/`` starts a regex literal where an operand, not an operator, is expected."""
    if not tokens:
        return True
    last = tokens[-1]
    return last.kind == "op" and last.value not in (")", "]")


def _string_literal(text: str, i: int) -> tuple[str, int]:
    quote, start = text[i], i
    i += 1
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\n":
            break
        if char == "\\":
            i += 1
            if i >= len(text):
                break
            escape = text[i]
            if escape == "u":
                digits = text[i + 1 : i + 5]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise RuleSyntaxError("invalid \\u escape", i - 1)
                code = int(digits, 16)
                if 0xD800 <= code <= 0xDFFF:
                    raise RuleSyntaxError("lone surrogate escapes are not allowed", i - 1)
                out.append(chr(code))
                i += 5
                continue
            if escape == "x":
                digits = text[i + 1 : i + 3]
                if len(digits) != 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise RuleSyntaxError("invalid \\x escape", i - 1)
                out.append(chr(int(digits, 16)))
                i += 3
                continue
            out.append(_ESCAPES.get(escape, escape))
            i += 1
            continue
        out.append(char)
        i += 1
    raise RuleSyntaxError("unterminated string", start)


def _regex_literal(text: str, i: int) -> tuple[Regex, int]:
    start = i
    i += 1
    in_class = False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "\n":
            break
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "/" and not in_class:
            source = text[start + 1 : i]
            i += 1
            flags_start = i
            while i < len(text) and text[i].isalpha():
                i += 1
            flags = text[flags_start:i]
            if not source:
                raise RuleSyntaxError("empty regular expression", start)
            if set(flags) - set("gims") or len(set(flags)) != len(flags):
                raise RuleSyntaxError(f"unsupported regular expression flags {flags!r}", start)
            try:
                regex(source, flags)  # compiled now, so a bad literal fails at startup
            except RuleError as exc:
                raise RuleSyntaxError(str(exc), start) from exc
            return Regex(source, flags), i
        i += 1
    raise RuleSyntaxError("unterminated regular expression", start)


# -- parser ----------------------------------------------------------------------------------
# Nodes are tuples: (kind, ...). A Pratt parser with JavaScript's precedence.

_BINARY_PRECEDENCE: Final = {
    "||": 1, "&&": 2,
    "==": 3, "!=": 3, "===": 3, "!==": 3,
    "<": 4, "<=": 4, ">": 4, ">=": 4,
    "+": 5, "-": 5,
    "*": 6, "/": 6, "%": 6,
}  # fmt: skip
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, value: str) -> None:
        token = self.advance()
        if token.kind != "op" or token.value != value:
            found = "the end of the rule" if token.kind == "end" else repr(token.value)
            raise RuleSyntaxError(f"expected {value!r}, found {found}", token.position)

    def parse(self) -> Node:
        node = self.expression()
        if self.token.kind != "end":
            raise RuleSyntaxError(f"unexpected {self.token.value!r}", self.token.position)
        return node

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleSyntaxError(f"rule nests deeper than {MAX_DEPTH} levels", self.token.position)

    def expression(self) -> Node:
        self.nested()
        condition = self.binary(1)
        if self.token.kind == "op" and self.token.value == "?":
            self.advance()
            then = self.expression()
            self.expect(":")
            otherwise = self.expression()
            condition = ("if", condition, then, otherwise)
        self.depth -= 1
        return condition

    def binary(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            token = self.token
            precedence = _BINARY_PRECEDENCE.get(token.value) if token.kind == "op" else None
            if precedence is None or precedence < min_precedence:
                return left
            self.advance()
            self.nested()
            right = self.binary(precedence + 1)
            self.depth -= 1
            left = ("binary", token.value, left, right)

    def unary(self) -> Node:
        token = self.token
        if (token.kind == "op" and token.value in ("!", "-", "+")) or (
            token.kind == "name" and token.value == "typeof"
        ):
            self.advance()
            self.nested()
            operand = self.unary()
            self.depth -= 1
            return ("unary", token.value, operand)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        depth = self.depth
        while self.token.kind == "op" and self.token.value in (".", "[", "("):
            token = self.advance()
            self.nested()
            if token.value == ".":
                name = self.advance()
                if name.kind != "name":
                    raise RuleSyntaxError("expected a property name after '.'", name.position)
                if self.token.kind == "op" and self.token.value == "(":
                    if name.value not in METHODS:
                        raise RuleSyntaxError(
                            f"function {name.value} is not supported", name.position
                        )
                    self.advance()
                    node = ("method", node, name.value, self.arguments())
                else:
                    node = ("get", node, ("const", name.value))
            elif token.value == "[":
                key = self.expression()
                self.expect("]")
                node = ("get", node, key)
            else:
                if node != ("name", "_"):
                    raise RuleSyntaxError(
                        "only _() and string methods can be called", token.position
                    )
                arguments = self.arguments()
                if len(arguments) != 1:
                    raise RuleSyntaxError("_() takes one record name", token.position)
                node = ("record", arguments[0])
        self.depth = depth
        return node

    def arguments(self) -> list[Node]:
        arguments: list[Node] = []
        if self.token.kind == "op" and self.token.value == ")":
            self.advance()
            return arguments
        while True:
            arguments.append(self.expression())
            if self.token.kind == "op" and self.token.value == ",":
                self.advance()
                continue
            self.expect(")")
            return arguments

    def primary(self) -> Node:
        token = self.advance()
        if token.kind in ("num", "str"):
            return ("const", token.value)
        if token.kind == "regex":
            return ("const", token.value)
        if token.kind == "name":
            if token.value in _LITERALS:
                return ("const", _LITERALS[token.value])
            if token.value in _KEYWORDS_FORBIDDEN:
                raise RuleSyntaxError(f"{token.value!r} is not allowed in a rule", token.position)
            return ("name", token.value)
        if token.kind == "op" and token.value == "(":
            node = self.expression()
            self.expect(")")
            return node
        if token.kind == "op" and token.value == "[":
            items: list[Node] = []
            if not (self.token.kind == "op" and self.token.value == "]"):
                while True:
                    items.append(self.expression())
                    if self.token.kind == "op" and self.token.value == ",":
                        self.advance()
                        continue
                    break
            self.expect("]")
            return ("array", items)
        if token.kind == "end":
            raise RuleSyntaxError("unexpected end of the rule", token.position)
        raise RuleSyntaxError(f"unexpected {token.value!r}", token.position)


# -- compiler: nodes to closures ---------------------------------------------------------------


def compile_expression(text: str, names: frozenset[str]) -> CompiledExpression:
    """Parse ``text`` and check that it reads only ``names`` (plus literals and ``_``).

    Raises :class:`RuleSyntaxError` naming the problem and its position.
    """
    if not isinstance(text, str) or not text.strip():
        raise RuleSyntaxError("a rule must be a non-empty string")
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(f"rule longer than {MAX_RULE_LENGTH} characters")
    tree = _Parser(text).parse()
    if _depth(tree) > MAX_DEPTH:
        raise RuleSyntaxError(f"rule nests deeper than {MAX_DEPTH} levels")
    used: set[str] = set()
    reads_records = [False]
    run = _compile(tree, names, used, reads_records)
    return CompiledExpression(text, frozenset(used), reads_records[0], run)


def _depth(tree: Node) -> int:
    """The height of the tree (iteratively: a left-deep ``a || b || c ...`` is deep too, and
    each level is a nested call when the rule runs)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node[1:]:
            if isinstance(child, tuple):
                stack.append((child, depth + 1))
            elif isinstance(child, list):
                stack.extend((item, depth + 1) for item in child)
    return deepest


def _compile(node: Node, names: frozenset[str], used: set[str], reads: list[bool]) -> Evaluator:
    kind = node[0]
    if kind == "const":
        value = node[1]
        return lambda scope: value
    if kind == "name":
        name = node[1]
        if name == "_":
            raise RuleSyntaxError("_ must be called: _('record/name')")
        if name not in names:
            known = ", ".join(sorted(names))
            raise RuleSyntaxError(f"unknown name {name!r} (this rule can use: {known})")
        used.add(name)
        return lambda scope: scope.names.get(name, UNDEFINED)
    if kind == "array":
        items = [_compile(item, names, used, reads) for item in node[1]]
        return lambda scope: [item(scope) for item in items]
    if kind == "get":
        target, key = _compile(node[1], names, used, reads), _compile(node[2], names, used, reads)
        return lambda scope: get(target(scope), key(scope))
    if kind == "method":
        target = _compile(node[1], names, used, reads)
        method = node[2]
        arguments = [_compile(arg, names, used, reads) for arg in node[3]]
        return lambda scope: call_method(target(scope), method, [a(scope) for a in arguments])
    if kind == "record":
        reads[0] = True
        argument = _compile(node[1], names, used, reads)
        return lambda scope: _read_record(scope, argument(scope))
    if kind == "unary":
        op, operand = node[1], _compile(node[2], names, used, reads)
        if op == "!":
            return lambda scope: not truthy(operand(scope))
        if op == "-":
            return lambda scope: negate(to_number(operand(scope)))
        if op == "+":
            return lambda scope: to_number(operand(scope))
        return lambda scope: typeof(operand(scope))
    if kind == "if":
        condition, then, otherwise = (_compile(n, names, used, reads) for n in node[1:])
        return lambda scope: then(scope) if truthy(condition(scope)) else otherwise(scope)
    assert kind == "binary"
    return _binary(
        node[1], _compile(node[2], names, used, reads), _compile(node[3], names, used, reads)
    )


def _binary(op: str, left: Evaluator, right: Evaluator) -> Evaluator:
    if op == "&&":

        def both(scope: Scope) -> Any:
            value = left(scope)
            return right(scope) if truthy(value) else value

        return both
    if op == "||":

        def either(scope: Scope) -> Any:
            value = left(scope)
            return value if truthy(value) else right(scope)

        return either
    if op == "===":
        return lambda scope: strict_equal(left(scope), right(scope))
    if op == "!==":
        return lambda scope: not strict_equal(left(scope), right(scope))
    if op == "==":
        return lambda scope: js_equal(left(scope), right(scope))
    if op == "!=":
        return lambda scope: not js_equal(left(scope), right(scope))
    if op == "<":
        return lambda scope: less(left(scope), right(scope)) is True
    if op == ">":
        return lambda scope: less(right(scope), left(scope)) is True
    if op == "<=":
        return lambda scope: less(right(scope), left(scope)) is False
    if op == ">=":
        return lambda scope: less(left(scope), right(scope)) is False
    if op == "+":
        return lambda scope: add(left(scope), right(scope))
    return lambda scope: arith(op, left(scope), right(scope))


def _read_record(scope: Scope, name: Any) -> Any:
    """``_(name)``: the record's data, ``null`` if it does not exist, as the reference does."""
    if name is UNDEFINED:
        return UNDEFINED
    if not isinstance(name, str):
        raise RuleError(f"_() needs a record name, got {typeof(name)}")
    records = scope.records
    if name not in records:
        raise NeedRecord(name)
    return records[name]
