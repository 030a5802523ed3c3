"""Versioning: a put applies only over nothing or an older version; retries are idempotent."""

from __future__ import annotations

import pytest

from connectors.base import Connector, Delete, Outcome, Put, Snapshot, data_equal

pytestmark = pytest.mark.asyncio


async def test_versions_rise(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/r"
    for version in (1, 2, 3):
        [result] = await connector.write([Put(name, version, {"v": version})])
        assert result.outcome is Outcome.APPLIED and result.current is None
        assert await connector.head(name) == version
    assert await connector.get(name) == Snapshot(name, 3, {"v": 3})


async def test_version_zero_creates(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/zero"
    [result] = await connector.write([Put(name, 0, {})])
    assert result.ok and await connector.head(name) == 0


async def test_gaps_are_allowed(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/gap"
    await connector.write([Put(name, 1, {"v": 1})])
    [result] = await connector.write([Put(name, 7, {"v": 7})])
    assert result.ok
    [result] = await connector.write([Put(name, 2**40, {"v": "big"})])
    assert result.ok
    assert await connector.get(name) == Snapshot(name, 2**40, {"v": "big"})


async def test_stale_put_is_refused_with_stored_snapshot(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/stale"
    await connector.write([Put(name, 3, {"v": 3})])
    stale = Put(name, 2, {"v": 2})
    [result] = await connector.write([stale])
    rule = "rule: Put of a lower version is a conflict carrying the stored snapshot"
    assert result.outcome is Outcome.CONFLICT, rule
    assert result.op is stale, "rule: each result carries the operation it answers"
    assert result.current == Snapshot(name, 3, {"v": 3}), rule
    assert await connector.get(name) == Snapshot(name, 3, {"v": 3})


async def test_same_version_same_data_is_an_idempotent_retry(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/retry"
    put = Put(name, 4, {"a": [1, {"b": 2}], "c": "x"})
    await connector.write([put])
    # Equal data, independently built (and with keys in another order), is the same write.
    [result] = await connector.write([Put(name, 4, {"c": "x", "a": [1, {"b": 2}]})])
    assert result.outcome is Outcome.APPLIED, (
        "rule: the same version with equal data is an idempotent retry (applied)"
    )
    assert await connector.get(name) == Snapshot(name, 4, put.data)


async def test_same_version_different_data_conflicts(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/diverged"
    await connector.write([Put(name, 5, {"who": "first"})])
    [result] = await connector.write([Put(name, 5, {"who": "second"})])
    rule = "rule: the same version with different data is a conflict carrying the stored snapshot"
    assert result.outcome is Outcome.CONFLICT, rule
    assert result.current == Snapshot(name, 5, {"who": "first"}), rule
    assert await connector.get(name) == Snapshot(name, 5, {"who": "first"})


async def test_older_after_newer_never_lands(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/order"
    await connector.write([Put(name, 10, {"v": 10})])
    for version in (9, 1, 0, 10):
        [result] = await connector.write([Put(name, version, {"v": "old"})])
        rule = f"rule: Put({version}) under version 10 is a conflict carrying the stored snapshot"
        assert result.outcome is Outcome.CONFLICT, rule
        assert result.current == Snapshot(name, 10, {"v": 10}), rule
    assert await connector.head(name) == 10


@pytest.mark.parametrize("base", [2**31 - 1, 2**53 - 1, 2**62], ids=["2^31", "2^53", "2^62"])
async def test_versions_are_exact_integers(
    connector: Connector, name_prefix: str, base: int
) -> None:
    """Around 2^53 a double cannot tell n from n + 1: a store comparing versions as doubles
    (Lua numbers, JavaScript, a JSON decoder) takes a newer version for a retry, or a stale
    delete for a current one."""
    name = f"{name_prefix}/big"
    rule = "rule: versions are exact integers up to 2^63 - 1, compared exactly"
    [first] = await connector.write([Put(name, base, {"v": "base"})])
    assert first.ok, rule
    for version in (base + 1, base + 2, base + 3):
        [result] = await connector.write([Put(name, version, {"v": version})])
        assert result.outcome is Outcome.APPLIED, f"{rule}: Put({version}) over {version - 1}"
        assert await connector.head(name) == version, f"{rule}: head after Put({version})"
    top = base + 3
    assert await connector.get(name) == Snapshot(name, top, {"v": top}), rule
    [stale] = await connector.write([Put(name, top - 1, {"v": "stale"})])
    assert stale.outcome is Outcome.CONFLICT, f"{rule}: Put({top - 1}) under {top}"
    assert stale.current == Snapshot(name, top, {"v": top}), rule
    [stale_delete] = await connector.write([Delete(name, top - 1)])
    assert stale_delete.outcome is Outcome.CONFLICT, f"{rule}: Delete({top - 1}) under {top}"
    assert await connector.head(name) == top, rule
    [delete] = await connector.write([Delete(name, top)])
    assert delete.ok and await connector.get(name) is None, f"{rule}: Delete({top})"


async def test_highest_version(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/max"
    top = 2**63 - 1
    [result] = await connector.write([Put(name, top, {"v": "max"})])
    assert result.ok, "rule: versions go up to 2^63 - 1"
    assert await connector.get(name) == Snapshot(name, top, {"v": "max"})
    [retry] = await connector.write([Put(name, top, {"v": "max"})])
    assert retry.ok, "rule: the same version with equal data is an idempotent retry"


@pytest.mark.parametrize(
    ("stored", "retry"),
    [
        ({"a": 1}, {"a": True}),
        ({"a": True}, {"a": 1}),
        ({"a": 1}, {"a": 1.0}),
        ({"a": 0}, {"a": False}),
        ({"a": [1, 2]}, {"a": [2, 1]}),
        ({"a": None}, {}),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": None}}),
        ({"a": "1"}, {"a": 1}),
        ([1, 2], {"0": 1, "1": 2}),
    ],
    ids=[
        "1 vs true",
        "true vs 1",
        "1 vs 1.0",
        "0 vs false",
        "array order",
        "null vs missing",
        "extra key",
        "string vs number",
        "array vs object",
    ],
)
async def test_same_version_with_data_of_another_kind_conflicts(
    connector: Connector, name_prefix: str, stored: object, retry: object
) -> None:
    """Python's == says 1 == 1.0 == True, MongoDB compares 1 and 1.0 equal: equal data is
    connectors.base.data_equal, where these differ."""
    name = f"{name_prefix}/kind"
    await connector.write([Put(name, 3, stored)])  # type: ignore[arg-type]
    [result] = await connector.write([Put(name, 3, retry)])  # type: ignore[arg-type]
    assert result.outcome is Outcome.CONFLICT, (
        "rule: the same version with different data (data_equal) is a conflict carrying the "
        f"stored snapshot: {retry!r} over {stored!r} was {result.outcome.value}"
    )
    assert result.current == Snapshot(name, 3, stored)  # type: ignore[arg-type]
    stored_now = await connector.get(name)
    assert stored_now is not None and data_equal(stored_now.data, stored), (
        "rule: a conflicting put changes nothing"
    )


async def test_idempotent_retry_of_nested_data_in_another_key_order(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/order"
    data = {"z": {"y": [1, {"b": 2, "a": 1}], "x": None}, "a": 1.5, "m": True}
    await connector.write([Put(name, 2, data)])
    reordered = {"m": True, "a": 1.5, "z": {"x": None, "y": [1, {"a": 1, "b": 2}]}}
    [result] = await connector.write([Put(name, 2, reordered)])
    assert result.outcome is Outcome.APPLIED, (
        "rule: the same version with equal data in another key order is an idempotent retry"
    )
