"""Prefix scan: every match once, in code-point name order, the prefix taken literally, pages
continued by name (never by offset), also while other writers change the store."""

from __future__ import annotations

import pytest

from conformance.bounded import BoundedConnector
from conformance.plugin import MakeConnector
from connectors.base import Connector, Delete, Put, Snapshot

pytestmark = pytest.mark.asyncio

PAGE_SIZES = [1, 2, 3]


async def _names(
    connector: Connector | BoundedConnector, prefix: str, expected: int | None = None
) -> list[str]:
    """The names ``scan(prefix)`` yields; stops early (failing) once it yields far more than
    ``expected``, so a scan that never ends fails instead of filling the memory."""
    limit = None if expected is None else 2 * expected + 10
    names: list[str] = []
    async for snapshot in connector.scan(prefix):
        names.append(snapshot.name)
        if limit is not None and len(names) > limit:
            pytest.fail(
                f"rule: a scan yields each matching name once: scan({prefix!r}) yielded "
                f"{len(names)} names where {expected} exist (repeating {names[-3:]})"
            )
    return names


async def test_scan_in_name_order(connector: Connector, name_prefix: str) -> None:
    tails = ["b", "a", "Z", "a/b", "a/a", "é", "z", "ü", "🙂", "\uff21", "0", "a b", "a-b"]
    tails += ["\ue000", "\U00010000", "\uffff", "\U0010fffd", "\x7f", "~", "a\t"]
    names = [f"{name_prefix}/{t}" for t in tails]
    await connector.write([Put(n, 1, {"n": n}) for n in names])
    assert await _names(connector, f"{name_prefix}/", len(names)) == sorted(names), (
        "rule: scan yields names in code-point order (Python's sorted), not UTF-16 or a collation"
    )


async def test_scan_returns_snapshots(connector: Connector, name_prefix: str) -> None:
    await connector.write([Put(f"{name_prefix}/x", 4, [1, 2])])
    assert [s async for s in connector.scan(f"{name_prefix}/")] == [
        Snapshot(f"{name_prefix}/x", 4, [1, 2])
    ], "rule: scan yields the stored snapshots"


async def test_scan_prefix_is_a_prefix(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    names = [f"{p}/user", f"{p}/user/1", f"{p}/user/2", f"{p}/users/1", f"{p}/usex", f"{p}/us"]
    await connector.write([Put(n, 1, {}) for n in names])
    rule = "rule: scan(prefix) yields exactly the names starting with prefix"
    assert await _names(connector, f"{p}/user/", 2) == [f"{p}/user/1", f"{p}/user/2"], rule
    assert await _names(connector, f"{p}/user", 4) == [
        f"{p}/user",
        f"{p}/user/1",
        f"{p}/user/2",
        f"{p}/users/1",
    ], rule
    assert await _names(connector, f"{p}/nothing", 0) == [], rule


async def test_scan_prefix_is_of_the_name_not_the_collection(
    connector: Connector, name_prefix: str
) -> None:
    """A prefix ending inside the first segment spans several collections; one with several
    segments is inside one."""
    p = name_prefix
    names = [f"{p}a/1", f"{p}b/2", f"{p}/3", f"{p}", f"{p}-x"]
    await connector.write([Put(n, 1, {}) for n in names])
    rule = "rule: scan matches a prefix of the name, whatever the collections"
    assert await _names(connector, p, 5) == sorted(names), rule
    assert await _names(connector, f"{p}a", 1) == [f"{p}a/1"], rule
    assert await _names(connector, f"{p}a/", 1) == [f"{p}a/1"], rule


async def test_scan_wildcard_characters_are_literal(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    specials = ["%", "_", "\\", "[", "*", "?", ".", "+", "(", "|", "^", "$", "{", "]", "'", '"']
    names = [f"{p}/a{c}z" for c in specials] + [f"{p}/aXz", f"{p}/abz", f"{p}/a"]
    await connector.write([Put(n, 1, {}) for n in names])
    for char in specials:
        assert await _names(connector, f"{p}/a{char}", 1) == [f"{p}/a{char}z"], (
            f"rule: no character of a scan prefix is a wildcard ({char!r})"
        )
    assert await _names(connector, f"{p}/A", 0) == [], "rule: scan prefixes are case-sensitive"


async def test_scan_unicode_prefix(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    names = [f"{p}/ü/1", f"{p}/ü/2", f"{p}/u/1", f"{p}/üx", f"{p}/\U0010ffff/1", f"{p}/\U0010ffff"]
    await connector.write([Put(n, 1, {}) for n in names])
    rule = "rule: unicode scan prefixes match by code point"
    assert await _names(connector, f"{p}/ü/", 2) == [f"{p}/ü/1", f"{p}/ü/2"], rule
    assert await _names(connector, f"{p}/\U0010ffff", 2) == [
        f"{p}/\U0010ffff",
        f"{p}/\U0010ffff/1",
    ], rule


async def test_scan_prefix_at_the_edge_of_the_bmp(connector: Connector, name_prefix: str) -> None:
    """The bound after a prefix ending in U+FFFF is U+10000, which UTF-16 orders before it."""
    p = name_prefix
    names = [f"{p}/\uffff", f"{p}/\uffff\U00010000", f"{p}/\U00010000", f"{p}/\ufffe"]
    await connector.write([Put(n, 1, {}) for n in names])
    assert await _names(connector, f"{p}/\uffff", 2) == [
        f"{p}/\uffff",
        f"{p}/\uffff\U00010000",
    ], "rule: unicode scan prefixes match by code point"


async def test_scan_many_pages(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/{i:05d}" for i in range(1234)]
    await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names)])
    assert await _names(connector, f"{name_prefix}/", len(names)) == names, (
        "rule: scan yields every matching name once, across pages"
    )


@pytest.mark.parametrize("page_size", PAGE_SIZES)
async def test_scan_page_boundaries(
    make_connector: MakeConnector, name_prefix: str, page_size: int
) -> None:
    """Names that are prefixes of each other, exact multiples of the page size, a prefix that is
    itself a name: keyset paging must neither repeat nor skip at a boundary."""
    connector = await make_connector(page_size=page_size)
    p = name_prefix
    tails = ["a", "a/", "a/b", "a/b/c", "a/b/c/d", "ab", "ab/", "b", "b/a", "ba", "bb", "c"]
    names = [f"{p}/{t}" for t in tails]
    await connector.write([Put(n, 1, {"n": n}) for n in names])
    rule = f"rule: pages continue after the last name yielded (page_size={page_size})"
    for prefix in (f"{p}/", f"{p}/a", f"{p}/a/", f"{p}/a/b", f"{p}/b", f"{p}/c", f"{p}/d"):
        expected = sorted(n for n in names if n.startswith(prefix))
        assert await _names(connector, prefix, len(expected)) == expected, f"{rule}: {prefix!r}"
    for count in (page_size, 2 * page_size):  # exactly full pages, then nothing more
        exact = [f"{p}/exact{count}/{i:03d}" for i in range(count)]
        await connector.write([Put(n, 1, {}) for n in exact])
        assert await _names(connector, f"{p}/exact{count}/", count) == exact, rule


async def test_scan_during_writes(make_connector: MakeConnector, name_prefix: str) -> None:
    """A name stored for the whole scan is yielded exactly once, whatever else is written or
    deleted meanwhile: deletes behind the cursor make offset paging skip names, inserts behind
    it make offset paging repeat them."""
    connector = await make_connector(page_size=5)
    writer = await make_connector()
    p = name_prefix
    stable = [f"{p}/s{i:03d}" for i in range(60)]
    doomed = [f"{p}/s{i:03d}x" for i in range(60)]  # each right after a stable name
    await writer.write([Put(n, 1, {}) for n in stable + doomed])
    seen: list[str] = []
    gone = 0
    async for snapshot in connector.scan(f"{p}/"):
        seen.append(snapshot.name)
        if len(seen) > 1000:
            break
        if len(seen) % 3:
            continue
        # Behind the cursor: delete two doomed names and add one; ahead: add one.
        behind = min(len(seen) // 2 - 1, 59)
        ops: list[Put | Delete] = [Delete(n, 1) for n in doomed[gone : max(gone, behind)][:2]]
        gone += len(ops)
        ops += [Put(f"{p}/a{len(seen):04d}", 1, {}), Put(f"{p}/z{len(seen):04d}", 1, {})]
        await writer.write(ops)
    rule = "rule: during writes a scan yields each name stored throughout exactly once, in order"
    assert seen == sorted(set(seen)), f"{rule} (repeated or out of order)"
    missing = [n for n in stable if n not in seen]
    assert not missing, f"{rule}: skipped {missing[:5]}"


async def test_empty_prefix_scans_everything(connector: Connector, name_prefix: str) -> None:
    await connector.write([Put(f"{name_prefix}/one", 1, {})])
    everything = await _names(connector, "")
    assert f"{name_prefix}/one" in everything, "rule: the empty prefix matches every name"
    assert everything == sorted(everything), "rule: scan yields names in code-point order"
    assert len(everything) == len(set(everything)), "rule: a scan yields each name once"


async def test_abandoned_scan_leaves_the_connector_working(
    connector: Connector, name_prefix: str
) -> None:
    names = [f"{name_prefix}/{i:03d}" for i in range(50)]
    await connector.write([Put(n, 1, {}) for n in names])
    for _ in range(20):  # more than any pool: each abandoned scan must give its connection back
        async for _snapshot in connector.scan(f"{name_prefix}/"):
            break
    rule = "rule: a scan stopped early releases what it holds"
    assert await connector.head(names[0]) == 1, rule
    assert await _names(connector, f"{name_prefix}/", 50) == names, rule
