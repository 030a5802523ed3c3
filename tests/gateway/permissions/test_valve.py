"""Valve permission files: which pattern decides, what a rule sees, and what a bad file says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.exceptions import ConfigError
from gateway.permissions import Permissions, User, Verdict, compile_pattern

ADA = User("ada", True, {"role": "user"})
ADMIN = User("root", True, {"role": "admin"})
ANONYMOUS = User("open", False)

# The example of PROTOCOL.md, verbatim.
EXAMPLE = """
record:
  "*": { create: true, read: true, write: true, delete: true, listen: true, notify: true }
  "profile/$userId": { write: "user.id === $userId", delete: false }
  "counter": { write: "!oldData.value || data.value > oldData.value" }
  "order/$id": { create: "_('item/' + data.itemId).stock > 0" }
event:
  "*": { publish: true, subscribe: true, listen: true }
  "admin/*": { publish: "user.data.role === 'admin'" }
rpc:
  "*": { provide: true, request: true }
presence:
  "*": { allow: true }
"""


def _load(tmp_path: Path, text: str, suffix: str = ".yml") -> Permissions:
    path = tmp_path / f"permissions{suffix}"
    path.write_text(text)
    return Permissions.load(path)


async def _never(name: str) -> Any:
    raise AssertionError(f"read {name!r} although the rule does not need it")


async def test_the_protocol_example_decides_as_the_reference(tmp_path: Path) -> None:
    p = _load(tmp_path, EXAMPLE.replace('"order/$id": { create:', '"order/$id": { write:'))
    check = p.check
    assert (await check("record", "write", "profile/ada", ADA))[0] is Verdict.ALLOWED
    assert (await check("record", "write", "profile/bob", ADA))[0] is Verdict.DENIED
    assert (await check("record", "delete", "profile/ada", ADA))[0] is Verdict.DENIED
    assert (await check("record", "read", "profile/bob", ADA))[0] is Verdict.ALLOWED  # from "*"

    async def old(value: Any) -> Any:
        return value

    def counter(new: int, stored: Any) -> Any:
        return check("record", "write", "counter", ADA, data={"value": new},
                     old_data=lambda: old(stored))  # fmt: skip

    assert (await counter(2, {"value": 1}))[0] is Verdict.ALLOWED
    assert (await counter(1, {"value": 2}))[0] is Verdict.DENIED
    assert (await counter(1, {}))[0] is Verdict.ALLOWED  # !oldData.value
    assert (await check("event", "publish", "admin/x", ADMIN))[0] is Verdict.ALLOWED
    assert (await check("event", "publish", "admin/x", ADA))[0] is Verdict.DENIED
    assert (await check("event", "publish", "news", ADA))[0] is Verdict.ALLOWED
    assert (await check("presence", "allow", "anyone", ANONYMOUS))[0] is Verdict.ALLOWED

    stock = {"item/1": {"stock": 3}, "item/2": {"stock": 0}}
    reads: list[str] = []

    async def read(name: str) -> Any:
        reads.append(name)
        return stock.get(name)

    order = "order/7"
    verdict = await check("record", "write", order, ADA, data={"itemId": 1}, read=read)
    assert verdict[0] is Verdict.ALLOWED and reads == ["item/1"]
    verdict = await check("record", "write", order, ADA, data={"itemId": 2}, read=read)
    assert verdict[0] is Verdict.DENIED
    verdict = await check("record", "write", order, ADA, data={"itemId": 9}, read=read)
    assert verdict[0] is Verdict.ERROR  # _('item/9') is null: reading .stock throws


def test_the_longest_matching_pattern_that_defines_the_rule_decides(tmp_path: Path) -> None:
    p = _load(
        tmp_path,
        """
record:
  "*": { read: true, write: false }
  "a/*": { read: false }
  "a/$x": { write: true }
  "a/$x/b": { read: true }
  "a/b/*": { read: true }
""",
    )
    assert p.lookup("record", "read", "a/q")[0].constant is False  # type: ignore[index]
    assert p.lookup("record", "write", "a/q")[0].constant is True  # type: ignore[index]
    # "a/*" matches a/q/r and defines write? no: "*" decides write there
    assert p.lookup("record", "write", "a/q/r")[0].constant is False  # type: ignore[index]
    assert p.lookup("record", "read", "a/q/b")[0].constant is True  # type: ignore[index]
    assert p.lookup("record", "read", "b") is not None
    assert p.lookup("record", "delete", "b") is None  # nobody defines delete: denied
    assert p.lookup("event", "publish", "x") is None  # no event section: denied


def test_of_equally_specific_patterns_the_later_decides(tmp_path: Path) -> None:
    p = _load(tmp_path, 'record:\n  "$a/x": { read: false }\n  "y/$b": { read: true }\n')
    assert p.lookup("record", "read", "y/x")[0].constant is True  # type: ignore[index]


async def test_variables_bind_one_segment_and_star_spans_slashes(tmp_path: Path) -> None:
    p = _load(tmp_path, 'record:\n  "doc/$owner/*": { read: "$owner === user.id" }\n')
    assert (await p.check("record", "read", "doc/ada/a/b/c", ADA))[0] is Verdict.ALLOWED
    assert (await p.check("record", "read", "doc/bob/a", ADA))[0] is Verdict.DENIED
    assert (await p.check("record", "read", "doc/ada", ADA))[0] is Verdict.DENIED  # no match
    assert (await p.check("record", "read", "doc//x", ADA))[0] is Verdict.DENIED
    # Names are literal text: regex metacharacters in names and patterns mean themselves.
    q = _load(tmp_path, 'event:\n  "a.b+(c)": { publish: true }\n')
    assert q.lookup("event", "publish", "a.b+(c)") is not None
    assert q.lookup("event", "publish", "aXb+(c)") is None
    assert q.lookup("event", "publish", "a.b+(c)\n") is None


async def test_old_data_and_records_are_read_only_when_the_rule_uses_them(tmp_path: Path) -> None:
    p = _load(tmp_path, 'record:\n  "*": { read: "user.isAuthenticated", write: "data.ok" }\n')
    assert (await p.check("record", "read", "x", ADA, old_data=lambda: _never("x"),
                          read=_never))[0] is Verdict.ALLOWED  # fmt: skip
    assert (await p.check("record", "read", "x", ANONYMOUS))[0] is Verdict.DENIED
    assert (await p.check("record", "write", "x", ADA, data={"ok": 1},
                          old_data=lambda: _never("x")))[0] is Verdict.ALLOWED  # fmt: skip


async def test_cross_reads_are_bounded_per_check(tmp_path: Path) -> None:
    rule = " && ".join(f"_('r/{i}') !== 1" for i in range(12))
    p = Permissions.from_mapping({"record": {"*": {"read": rule}}}, max_cross_reads=8)
    reads: list[str] = []

    async def read(name: str) -> Any:
        reads.append(name)
        return {"n": name}

    verdict, why = await p.check("record", "read", "x", ADA, read=read)
    assert verdict is Verdict.ERROR and "more than 8 records" in why
    assert len(reads) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("record: []", "section 'record' must map name patterns"),
        ("records:\n  '*': {read: true}", "section 'records' is unknown"),
        ("record:\n  '*': {reed: true}", "unknown rule 'reed'"),
        ("event:\n  '*': {write: true}", "unknown rule 'write'"),
        ("record:\n  '*': {read: 1}", "a rule is true, false or an expression"),
        ("record:\n  '*': {read: ''}", "non-empty"),
        ("record:\n  '/a': {read: true}", "can't start with /"),
        ("record:\n  'a/$-': {read: true}", "invalid variable name"),
        ("record:\n  'a/$x/$x': {read: true}", "variable appears twice"),
        ("record:\n  'a/$x': {read: '$y === 1'}", r"unknown name '\$y'"),
        ("record:\n  '*': {read: 'data.x'}", "unknown name 'data'"),
        ("record:\n  '*': {create: 'oldData.x'}", "unknown name 'oldData'"),
        ("event:\n  '*': {publish: 'oldData'}", "unknown name 'oldData'"),
        ("record:\n  '*': {read: 'user.id ==='}", "unexpected end"),
        ("record:\n  '*': {read: \"process.exit()\"}", "function exit is not supported"),
        ("record:\n  '*': {read: \"exit()\"}", r"only _\(\) and string methods"),
        ("record:\n  '*': {read: \"name.match(/(a)\\\\1/)\"}", "invalid regular expression"),
        ("- 1", "must hold a mapping"),
    ],
)
def test_a_bad_file_fails_at_load_naming_file_section_pattern_and_rule(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        _load(tmp_path, text)
    assert "permissions.yml" in str(error.value)
    assert text.startswith("-") or "section '" in str(error.value)


def test_json_files_load_as_yaml_files_do(tmp_path: Path) -> None:
    raw = {"rpc": {"add": {"request": "data.a < 10", "provide": True}}}
    p = _load(tmp_path, json.dumps(raw), ".json")
    assert p.lookup("rpc", "provide", "add") is not None
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        _load(tmp_path, "{", ".json")
    with pytest.raises(ConfigError, match="cannot read"):
        Permissions.load(tmp_path / "missing.yml")


def test_the_rule_cache_does_not_grow_with_client_names() -> None:
    p = Permissions.from_mapping({"event": {"*": {"publish": True}}})
    for i in range(20_000):
        p.lookup("event", "publish", f"n/{i}")
    assert len(p._cache) <= 4096


def test_patterns_compile_to_anchored_literal_regexes() -> None:
    regex, variables = compile_pattern("game/$id/*")
    assert variables == ("$id",)
    assert regex.match("game/7/x/y").groups() == ("7",)
    assert regex.match("xgame/7/x") is None
