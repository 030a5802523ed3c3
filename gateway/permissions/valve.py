"""Valve permission files: sections of name patterns, each with rules, compiled at load time.

A file (YAML or JSON) has the sections ``record``, ``event``, ``rpc`` and ``presence``; each maps
name patterns to rules. In a pattern ``*`` matches anything and ``$var`` matches one ``/``-free
segment and binds ``$var`` for the rules. Invariants, as the reference server keeps them:

* The pattern that decides is the most specific one that matches the name *and defines the
  rule asked for*: the longest pattern text, and of equally long ones the last in the file.
* No matching pattern means denied.
* Every rule is compiled when the file loads; a rule that does not parse, or that reads a name
  its rule type does not have (``data`` in a ``read`` rule, an unknown ``$var``), is a
  :class:`~gateway.exceptions.ConfigError` naming the file, section, pattern and rule.

Evaluation (:meth:`Permissions.check`) is pure but for two loaders the caller gives: the
record's current data (``oldData``) and other records (``_('name')``), read only when the rule
uses them and at most ``max_cross_reads`` times per check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

import re2
import yaml

from ..exceptions import ConfigError, StorageError
from .expression import CompiledExpression, NeedRecord, RuleSyntaxError, Scope, compile_expression
from .jsvalues import UNDEFINED, RuleError, truthy

__all__ = [
    "RULE_TYPES",
    "Permissions",
    "Rule",
    "User",
    "Verdict",
    "compile_pattern",
]

RULE_TYPES: Final[Mapping[str, frozenset[str]]] = {
    "record": frozenset({"create", "read", "write", "delete", "listen", "notify"}),
    "event": frozenset({"publish", "subscribe", "listen"}),
    "rpc": frozenset({"provide", "request"}),
    "presence": frozenset({"allow"}),
}
_WITH_DATA: Final = frozenset(
    {("record", "write"), ("event", "publish"), ("event", "subscribe"), ("rpc", "request")}
)
_WITH_OLD_DATA: Final = frozenset({("record", "read"), ("record", "write"), ("record", "delete")})
_VARIABLE = re2.compile(r"\$[A-Za-z0-9_]+")
_CACHE_SIZE: Final = 4096


CROSS_READS_KEY = "permissions_max_cross_reads"
"""Named in the reason of a check refused for reading too many records."""


def _too_many_reads(limit: int) -> str:
    return f"more than {limit} records read ({CROSS_READS_KEY})"


class Verdict(Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    """MESSAGE_DENIED"""
    ERROR = "error"
    """MESSAGE_PERMISSION_ERROR: the rule could not be evaluated (it threw, or read too much)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """``true``/``false`` (``expression is None``) or a compiled expression."""

    constant: bool
    expression: CompiledExpression | None = None


@dataclass(slots=True)
class _Ruleset:
    pattern: str
    regex: Any  # re2 pattern, anchored
    variables: tuple[str, ...]
    rules: dict[str, Rule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class User:
    """Who asks: ``user`` in a rule is ``{isAuthenticated, id, data}`` (data = serverData)."""

    id: str
    authenticated: bool
    data: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"isAuthenticated": self.authenticated, "id": self.id, "data": self.data}


def compile_pattern(pattern: str) -> tuple[Any, tuple[str, ...]]:
    """An anchored RE2 regex for a Valve name pattern, and its ``$variables`` in order.

    Raises ``ValueError`` for an empty pattern, one starting with ``/`` or a bad variable name.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a pattern must be a non-empty string")
    if pattern.startswith("/"):
        raise ValueError("a pattern can't start with /")
    parts: list[str] = []
    variables: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            parts.append(".*")
            i += 1
        elif char == "$":
            match = _VARIABLE.match(pattern[i:])
            if match is None:
                raise ValueError(f"invalid variable name {pattern[i : i + 2]!r}")
            variables.append(match.group(0))
            parts.append("([^/]+)")
            i += len(match.group(0))
        else:
            parts.append(re2.escape(char))
            i += 1
    if len(set(variables)) != len(variables):
        raise ValueError("a variable appears twice")
    options = re2.Options()
    options.dot_nl = True
    return re2.compile("^" + "".join(parts) + "$", options), tuple(variables)


class Permissions:
    """A compiled permission file. Immutable once built: reloading builds a new one."""

    def __init__(
        self, sections: Mapping[str, list[_Ruleset]], *, source: str, max_cross_reads: int = 8
    ) -> None:
        self._sections = sections
        self.source = source
        self.max_cross_reads = max_cross_reads
        self._cache: dict[tuple[str, str, str], tuple[Rule, dict[str, str]] | None] = {}

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, max_cross_reads: int = 8) -> Permissions:
        """Read and compile a YAML or JSON permission file; ``ConfigError`` says what is wrong."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"permissions: cannot read {path}: {exc.strerror or exc}") from exc
        try:
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"permissions: {path} is not valid YAML/JSON: {exc}") from exc
        return cls.from_mapping(raw, source=str(path), max_cross_reads=max_cross_reads)

    @classmethod
    def from_mapping(
        cls, raw: Any, *, source: str = "<permissions>", max_cross_reads: int = 8
    ) -> Permissions:
        if not isinstance(raw, dict):
            raise ConfigError(f"permissions: {source} must hold a mapping of sections")
        sections: dict[str, list[_Ruleset]] = {name: [] for name in RULE_TYPES}
        for section, patterns in raw.items():
            where = f"permissions: {source}: section {section!r}"
            if section not in RULE_TYPES:
                known = ", ".join(RULE_TYPES)
                raise ConfigError(f"{where} is unknown (sections: {known})")
            if patterns is None:
                continue
            if not isinstance(patterns, dict):
                raise ConfigError(f"{where} must map name patterns to rules")
            for pattern, rules in patterns.items():
                sections[section].append(_ruleset(section, pattern, rules, where))
        return cls(sections, source=source, max_cross_reads=max_cross_reads)

    # -- evaluation ------------------------------------------------------------------------

    def lookup(self, section: str, rule_type: str, name: str) -> tuple[Rule, dict[str, str]] | None:
        """The deciding rule for ``name`` and the pattern's variable bindings, or ``None``."""
        key = (section, rule_type, name)
        cache = self._cache
        if key in cache:
            return cache[key]
        found: tuple[Rule, dict[str, str]] | None = None
        longest = -1
        for ruleset in self._sections[section]:
            rule = ruleset.rules.get(rule_type)
            if rule is None or len(ruleset.pattern) < longest:
                continue
            match = ruleset.regex.match(name)
            if match is None:
                continue
            longest = len(ruleset.pattern)
            found = (rule, dict(zip(ruleset.variables, match.groups(), strict=True)))
        if len(cache) >= _CACHE_SIZE:
            cache.clear()  # names come from clients: the cache must not grow with them
        cache[key] = found
        return found

    def check_now(
        self,
        section: str,
        rule_type: str,
        name: str,
        user: User,
        *,
        data: Any = UNDEFINED,
        old_data: Any = None,
    ) -> tuple[Verdict, str] | None:
        """:meth:`check` without I/O, ``old_data`` given as a value; ``None`` when the deciding
        rule reads other records (``_()``): then await :meth:`check`."""
        found = self.lookup(section, rule_type, name)
        if found is None:
            return Verdict.DENIED, f"no {section} pattern with a {rule_type} rule matches"
        rule, variables = found
        expression = rule.expression
        if expression is None:
            return (Verdict.ALLOWED, "") if rule.constant else (Verdict.DENIED, "rule is false")
        if expression.reads_records:
            return None
        names: dict[str, Any] = {
            "user": user.as_json(),
            "now": int(time.time() * 1000),
            "name": name,
            "data": data,
            "oldData": old_data,
            **variables,
        }
        try:
            result = expression.evaluate(Scope(names, {}))
        except (RuleError, NeedRecord) as exc:
            return Verdict.ERROR, f"rule {expression.source!r} failed: {exc}"
        if truthy(result):
            return Verdict.ALLOWED, ""
        return Verdict.DENIED, f"rule {expression.source!r} is false"

    async def check(
        self,
        section: str,
        rule_type: str,
        name: str,
        user: User,
        *,
        data: Any = UNDEFINED,
        old_data: Callable[[], Awaitable[Any]] | None = None,
        read: Callable[[str], Awaitable[Any]] | None = None,
    ) -> tuple[Verdict, str]:
        """Decide; the string says why when the verdict is not ALLOWED (for logs, not clients).

        ``old_data()`` returns the record's current data (``None`` if it does not exist);
        ``read(name)`` another record's, for ``_()``. Either is awaited only if the rule uses it.
        """
        found = self.lookup(section, rule_type, name)
        if found is None:
            return Verdict.DENIED, f"no {section} pattern with a {rule_type} rule matches"
        rule, variables = found
        expression = rule.expression
        if expression is None:
            return (Verdict.ALLOWED, "") if rule.constant else (Verdict.DENIED, "rule is false")
        names: dict[str, Any] = {
            "user": user.as_json(),
            "now": int(time.time() * 1000),
            "name": name,
            **variables,
        }
        if "data" in expression.names:
            names["data"] = data
        records: dict[str, Any] = {}
        try:
            if "oldData" in expression.names:
                try:
                    names["oldData"] = None if old_data is None else await old_data()
                except StorageError as exc:
                    # Loaded here only for actions checked before any record operation
                    # (subscribe, listen, notify): nothing else would answer the sender.
                    return Verdict.ERROR, f"reading record {name!r} failed: {exc}"
            for _ in range(self.max_cross_reads + 1):
                try:
                    result = expression.evaluate(Scope(names, records))
                except NeedRecord as need:
                    if read is None or len(records) >= self.max_cross_reads:
                        return Verdict.ERROR, _too_many_reads(self.max_cross_reads)
                    try:
                        records[need.name] = await read(need.name)
                    except StorageError as exc:
                        # As any failed rule (and as the reference, which denies on a failed
                        # cross-read): the sender is answered, never left without a reply.
                        return Verdict.ERROR, f"reading record {need.name!r} failed: {exc}"
                    continue
                if truthy(result):
                    return Verdict.ALLOWED, ""
                return Verdict.DENIED, f"rule {expression.source!r} is false"
        except RuleError as exc:
            return Verdict.ERROR, f"rule {expression.source!r} failed: {exc}"
        return Verdict.ERROR, _too_many_reads(self.max_cross_reads)


def _ruleset(section: str, pattern: Any, rules: Any, where: str) -> _Ruleset:
    try:
        regex, variables = compile_pattern(pattern)
    except ValueError as exc:
        raise ConfigError(f"{where}: pattern {pattern!r}: {exc}") from exc
    where = f"{where}: pattern {pattern!r}"
    if not isinstance(rules, dict):
        raise ConfigError(f"{where} must map rule names to true, false or an expression")
    ruleset = _Ruleset(pattern, regex, variables)
    for rule_type, rule in rules.items():
        if rule_type not in RULE_TYPES[section]:
            known = ", ".join(sorted(RULE_TYPES[section]))
            raise ConfigError(f"{where}: unknown rule {rule_type!r} (rules: {known})")
        ruleset.rules[rule_type] = _rule(
            section, rule_type, rule, variables, f"{where} {rule_type}"
        )
    return ruleset


def _rule(section: str, rule_type: str, rule: Any, variables: tuple[str, ...], where: str) -> Rule:
    if isinstance(rule, bool):
        return Rule(rule)
    if not isinstance(rule, str):
        raise ConfigError(f"{where}: a rule is true, false or an expression string, not {rule!r}")
    names = {"user", "now", "name", *variables}
    if (section, rule_type) in _WITH_DATA:
        names.add("data")
    if (section, rule_type) in _WITH_OLD_DATA:
        names.add("oldData")
    try:
        expression = compile_expression(rule, frozenset(names))
    except RuleSyntaxError as exc:
        raise ConfigError(f"{where}: {exc}: {rule!r}") from exc
    return Rule(False, expression)
