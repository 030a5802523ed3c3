"""The Valve expression interpreter: JavaScript's answers (checked against node itself), escape
attempts, and the bounds on what a rule can cost."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.permissions.expression import (
    MAX_DEPTH,
    MAX_RULE_LENGTH,
    NeedRecord,
    RuleSyntaxError,
    Scope,
    compile_expression,
)
from gateway.permissions.jsvalues import UNDEFINED, RuleError
from tests.servers import servers_required

JS_EVAL = Path(__file__).with_name("js_eval.js")

SCOPE: dict[str, Any] = {
    "user": {"id": "ada", "isAuthenticated": True, "data": {"role": "admin", "level": 3}},
    "data": {
        "n": 5,
        "f": 2.5,
        "neg": -7,
        "zero": 0,
        "s": "Hello World",
        "e": "",
        "num": "42",
        "t": True,
        "no": False,
        "nil": None,
        "arr": [1, "two", None, 3.5, [4]],
        "obj": {"a": {"b": "c"}, "__proto__x": 1},
        "big": 9007199254740993,
        "emoji": "a😀b",
    },
    "oldData": {"n": 4, "tags": ["x", "y"]},
    "now": 1700000000000,
    "name": "profile/ada/settings",
    "$userId": "ada",
}
NAMES = frozenset(SCOPE)

CORPUS = [
    # equality, loose and strict
    "data.n === 5", "data.n == '5'", "data.num == 42", "data.num === 42", "data.t == 1",
    "data.nil == undefined", "data.nil === undefined", "data.missing === undefined",
    "data.zero == false", "data.e == 0", "data.e == false", "data.arr == '1,two,,3.5,4'",
    "null == 0", "undefined == 0", "NaN == NaN", "NaN === NaN", "0 === -0", "data.f != 2.5",
    "data.obj === data.obj", "data.arr !== data.arr", "[1] == 1", "'1' == [1]",
    # arithmetic and concatenation
    "data.n + 1", "data.n + '1'", "'1' + data.n", "data.n - '2'", "data.s - 1", "data.n * data.f",
    "data.n / 2", "data.n / 0", "-data.n / 0", "0 / 0", "data.neg % 3", "data.n % -3",
    "5.5 % 2", "data.n % 0", "1 + true", "true + true", "null + 1", "undefined + 1",
    "'a' + null", "'a' + undefined", "[] + []", "[1, 2] + ''", "data.obj + ''", "data.arr + 1",
    "0.1 + 0.2", "1e21 + ''", "1e-7 + ''", "0.000001 + ''", "123456789012345680000 + ''",
    "-0 + ''", "(1/3) + ''", "100 + ''", "2e-7 * 3", "+'3.5'", "+''", "+' 12 '", "+'0x1f'",
    "+'1e3'", "+'abc'", "-'-2'", "+[]", "+[7]", "+null", "+undefined", "+true", "-(-0)",
    "data.big + ''", "data.big === 9007199254740992",
    # comparison
    "data.n > 4", "data.n >= 5", "data.n < '10'", "'10' < '9'", "'b' > 'a'", "'B' < 'a'",
    "data.s < data.e", "null < 1", "undefined < 1", "undefined >= undefined", "NaN <= NaN",
    "data.emoji > 'a\uffff'", "'\uffff' < '😀'", "[2] > 1", "true > false",
    # logic and conditionals
    "data.n && data.s", "data.zero && data.s", "data.e || 'fallback'", "data.nil || data.no",
    "!data.e", "!!data.arr", "!data.obj", "data.t ? 'y' : 'n'", "data.no ? 1 : data.zero ? 2 : 3",
    "!oldData.value || data.n > oldData.value", "data.n > 3 && data.n < 10 || data.s === 'x'",
    # typeof
    "typeof data.n", "typeof data.s", "typeof data.nil", "typeof data.missing", "typeof data.arr",
    "typeof data.obj", "typeof data.t", "typeof typeof data.n",
    # member access
    "data.obj.a.b", "data.obj['a']['b']", "data.arr[1]", "data.arr['1']", "data.arr[1.0]",
    "data.arr[10]", "data.arr[-1]", "data.arr.length", "data.s.length", "data.emoji.length",
    "data.s[0]", "data.obj['__proto__x']",
    "data.arr['01']", "data.n.length", "data.t.x", "user.data.role", "user.id === $userId",
    # methods
    "data.s.startsWith('Hello')", "data.s.startsWith('World', 6)", "data.s.endsWith('World')",
    "data.s.endsWith('Hello', 5)", "data.s.includes('lo W')", "data.s.includes('o', 8)",
    "data.s.indexOf('o')", "data.s.indexOf('o', 5)", "data.s.indexOf('zz')", "data.s.toUpperCase()",
    "data.s.toLowerCase()", "'  x '.trim()", "data.arr.includes('two')", "data.arr.includes(2)",
    "data.arr.indexOf(3.5)", "data.arr.indexOf(null)", "[NaN].includes(NaN)", "[NaN].indexOf(NaN)",
    "name.match(/^profile\\/([^/]+)/)", "name.match(/^profile\\/([^/]+)/)[1] === $userId",
    "name.match(/nomatch/)", "data.s.match(/o/g)", "data.s.match(/O/i)", "data.s.match('W.r')",
    "name.startsWith('profile/' + user.id)", "data.s.indexOf(undefined)",
    "'undefined'.includes(undefined)", "data.num.match(/^(\\d)(x)?/)",
    # literals
    "[1, 'a', [true]]", "'it\\'s'", '"q\\"uote"', "'\\u00e9\\n\\t'", "0x1F", ".5", "1.", "1e3",
    "Infinity", "-Infinity", "undefined", "null",
    # errors: both sides must throw
    "data.missing.x", "data.nil.x", "data.nil[0]", "undefined.x", "data.n.startsWith('5')",
    "data.arr.startsWith('1')", "data.obj.includes('a')", "oldData.missing.deeper",
]  # fmt: skip


def _tag(value: Any) -> Any:
    """Our value in js_eval.js's encoding."""
    if value is UNDEFINED:
        return {"$js": "undefined"}
    if isinstance(value, float):
        if value != value:
            return {"$js": "NaN"}
        if math.isinf(value):
            return {"$js": "Infinity" if value > 0 else "-Infinity"}
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, list):
        return [_tag(item) for item in value]
    if isinstance(value, dict):
        return {key: _tag(item) for key, item in value.items()}
    return value


def _ours(expression: str, names: dict[str, Any]) -> dict[str, Any]:
    try:
        compiled = compile_expression(expression, frozenset(names))
        return {"ok": _tag(compiled.evaluate(Scope(names)))}
    except RuleSyntaxError as exc:
        return {"error": f"SyntaxError: {exc}"}
    except RuleError as exc:
        return {"error": f"TypeError: {exc}"}


def _javascript(cases: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        if servers_required():
            pytest.fail("node is not on the PATH (RECORDGATE_REQUIRE_SERVERS=1)")
        pytest.skip("node is not on the PATH: the differential tests compare with JavaScript")
    # JSON cannot carry the $userId key's value any differently: names are passed as given.
    lines = "".join(json.dumps([expr, names]) + "\n" for expr, names in cases)
    proc = subprocess.run(
        [node, str(JS_EVAL)], input=lines, capture_output=True, text=True, timeout=120, check=True
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _same(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    if "error" in theirs or "error" in ours:
        kind = [side.get("error", "").partition(":")[0] for side in (ours, theirs)]
        return kind[0] == kind[1]
    if "ok" not in theirs:  # a JavaScript function or prototype object: never a JSON value
        return False
    return ours["ok"] == theirs["ok"] and json.dumps(ours["ok"]) == json.dumps(theirs["ok"])


def test_every_corpus_expression_answers_as_javascript_does() -> None:
    cases = [(expression, SCOPE) for expression in CORPUS]
    theirs = _javascript(cases)
    mismatches = [
        (expression, ours, js)
        for (expression, _), js in zip(cases, theirs, strict=True)
        if not _same(ours := _ours(expression, SCOPE), js)
    ]
    assert mismatches == []


def _random_expression(rng: random.Random, depth: int = 0) -> str:
    leaves = [
        "data.n", "data.f", "data.zero", "data.s", "data.e", "data.num", "data.t", "data.no",
        "data.nil", "data.missing", "data.arr", "data.neg", "oldData.n", "user.id", "name",
        "$userId", "1", "0", "-1", "2.5", "'5'", "''", "'a'", "'B'", "true", "false", "null",
        "undefined", "[]", "[1]", "data.arr.length", "data.s.length", "data.arr[1]",
    ]  # fmt: skip
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(leaves)
    kind = rng.random()
    sub = _random_expression
    if kind < 0.55:
        op = rng.choice(
            ["+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!=", "===", "!==", "&&", "||"]
        )
        return f"({sub(rng, depth + 1)} {op} {sub(rng, depth + 1)})"
    if kind < 0.7:
        return f"{rng.choice(['!', '-', '+', 'typeof '])}{sub(rng, depth + 1)}"
    if kind < 0.8:
        return f"({sub(rng, depth + 1)} ? {sub(rng, depth + 1)} : {sub(rng, depth + 1)})"
    method = rng.choice(["startsWith", "endsWith", "includes", "indexOf"])
    return f"data.s.{method}({sub(rng, depth + 1)})"


def test_random_expressions_answer_as_javascript_does() -> None:
    """3,000 generated expressions mixing every operator over numbers, strings, null,
    undefined, arrays and booleans: the interpreter's answer equals node's, throw for throw."""
    rng = random.Random(20261129)
    cases = [(_random_expression(rng), SCOPE) for _ in range(3000)]
    theirs = _javascript(cases)
    mismatches = [
        (expression, ours, js)
        for (expression, _), js in zip(cases, theirs, strict=True)
        if not _same(ours := _ours(expression, SCOPE), js)
    ]
    assert mismatches[:10] == []  # the first few tell enough


@pytest.mark.parametrize(
    "rule",
    [
        "this", "globalThis", "process", "require('fs')", "import('fs')", "eval('1')",
        "Function('return 1')", "new Date()", "data.constructor.constructor('return this')()",
        "(0).toString()", "[].map(x => x)", "function () { return 1 }",
        "`template ${data}`", "data.x = 1", "data.n += 1", "data.n++", "delete data.n", "void 0",
        "'n' in data", "data instanceof Object", "(1, 2)", "{}", "{a: 1}", "a; b",
        "__import__('os')", "getattr(data, 'x')",
        "data.s.replace('a', 'b')", "data.s.split('')", "Math.max(1, 2)",
        "JSON.parse('1')", "String(1)", "Object.keys(data)", "data['con' + 'structor']()",
        "_", "_(1, 2)", "_()", "x", "$other", "data.", "data[", "(", ")", "'unterminated",
        "/unterminated", "1 +", "? 1 : 2", "1 ? 2", "01x", "/(a)\\1/", "/(?=a)/", "/a/z",
        "/a{1000}{1000}{1000}/",
    ],
)  # fmt: skip
def test_rules_that_could_escape_or_are_not_valve_fail_to_compile(rule: str) -> None:
    with pytest.raises(RuleSyntaxError):
        compile_expression(rule, NAMES)


@pytest.mark.parametrize(
    "rule",
    [
        "data.obj.constructor",
        "data.obj.__proto__",
        "data['__proto__']",
        "data.__class__",
        "user.__init__",
        "data.s.constructor",
        "data.arr.__len__",
        "data['__globals__']",
        "''.constructor",
        "data.__class__",
        "user.__dict__",
        "data.arr.map",
    ],
)
def test_host_attributes_are_just_absent_keys(rule: str) -> None:
    assert compile_expression(rule, NAMES).evaluate(Scope(SCOPE)) is UNDEFINED


def test_size_and_depth_are_bounded_at_compile_time() -> None:
    with pytest.raises(RuleSyntaxError, match="longer than"):
        compile_expression("1" + " " * MAX_RULE_LENGTH, NAMES)
    for deep in (
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "!" * (MAX_DEPTH + 1) + "1",
        " || ".join(["data.n"] * (MAX_DEPTH + 1)),
        "data" + ".a" * (MAX_DEPTH + 1),
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "1" + " ? 1 : 1" * (MAX_DEPTH + 1),
    ):
        with pytest.raises(RuleSyntaxError, match="deeper"):
            compile_expression(deep, NAMES)
    # Just under the bounds still compiles and runs (the bounds leave room for real rules).
    rule = " || ".join(["data.no"] * 50) + " || data.n"
    assert compile_expression(rule, NAMES).evaluate(Scope(SCOPE)) == 5


def test_regex_bombs_run_in_linear_time() -> None:
    hostile = {"s": "a" * 200_000 + "!"}
    rule = compile_expression("data.s.match(/^(a+)+$/)", frozenset({"data"}))
    assert rule.evaluate(Scope({"data": hostile})) is None  # backtracking would never return
    dynamic = compile_expression("data.s.match(data.p)", frozenset({"data"}))
    assert dynamic.evaluate(Scope({"data": {"s": "aaaa!", "p": "(a|a)*$"}})) == ["", UNDEFINED]
    with pytest.raises(RuleError, match="invalid regular expression"):
        dynamic.evaluate(Scope({"data": {"s": "x", "p": "(a)\\1"}}))
    with pytest.raises(RuleError, match="longer than"):
        dynamic.evaluate(Scope({"data": {"s": "x", "p": "a" * 5000}}))


def test_strings_built_by_a_rule_are_bounded() -> None:
    rule = compile_expression("(data.s + data.s).length", frozenset({"data"}))
    assert rule.evaluate(Scope({"data": {"s": "x" * 1000}})) == 2000
    with pytest.raises(RuleError, match="longer than"):
        rule.evaluate(Scope({"data": {"s": "x" * 600_000}}))


def test_cross_record_reads_ask_for_what_they_need() -> None:
    rule = compile_expression("_('item/' + data.id).stock > 0", frozenset({"data"}))
    assert rule.reads_records and rule.names == {"data"}
    scope = Scope({"data": {"id": 7}})
    with pytest.raises(NeedRecord) as need:
        rule.evaluate(scope)
    assert need.value.name == "item/7"
    assert rule.evaluate(Scope({"data": {"id": 7}}, {"item/7": {"stock": 2}})) is True
    with pytest.raises(RuleError):  # a missing record is null, and null has no properties
        rule.evaluate(Scope({"data": {"id": 7}}, {"item/7": None}))
    bad = compile_expression("_(data.id)", frozenset({"data"}))
    with pytest.raises(RuleError, match="record name"):
        bad.evaluate(scope)
    assert bad.evaluate(Scope({"data": {}})) is UNDEFINED  # _(undefined), as the reference


def test_unknown_names_are_compile_errors_naming_what_is_allowed() -> None:
    with pytest.raises(RuleSyntaxError, match=r"unknown name 'oldData' \(this rule can use: data"):
        compile_expression("oldData.x", frozenset({"data", "user"}))
