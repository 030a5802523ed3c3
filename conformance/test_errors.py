"""Error mapping: failures leave a connector only as the project's storage errors, in time."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from decimal import Decimal
from typing import TypeVar

import pytest

from conformance.bounded import bounded
from conformance.netfaults import FaultProxy, SilentServer
from conformance.plugin import MakeConnector
from conformance.target import ConnectorTarget, free_port, server_address, url_for
from connectors.base import (
    Connector,
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
)

pytestmark = pytest.mark.asyncio

TIMEOUT = 2.0  # passed as the connector's `timeout` option
SLACK = 3.0  # scheduling and teardown allowance on a busy machine

T = TypeVar("T")


def _aimed(target: ConnectorTarget, host: str, port: int) -> str:
    url = url_for(target.cls, target.url, host, port)
    if url is None:
        pytest.skip(f"{target.url!r} names no server (embedded database)")
    return url


async def _fails_in_time(call: Awaitable[object], what: str, rule: str) -> None:
    """``call`` raises StorageUnavailable or StorageTimeout within the timeout (and slack)."""
    started = time.monotonic()
    try:
        await bounded(call, what, TIMEOUT + SLACK, rule=f"rule: {rule}")
    except (StorageUnavailable, StorageTimeout):
        pass
    except AssertionError:
        raise  # the call hung: CallTimedOut names the rule
    except Exception as exc:
        pytest.fail(
            f"rule: {rule}: {what} raised {type(exc).__name__} ({exc}), not "
            "StorageUnavailable or StorageTimeout"
        )
    else:
        pytest.fail(f"rule: {rule}: {what} succeeded against a server that cannot answer")
    took = time.monotonic() - started
    assert took < TIMEOUT + SLACK, f"rule: {rule}: {what} took {took:.1f}s"


@pytest.mark.requires("network")
async def test_refused_connection_fails_fast(
    make_connector: MakeConnector, connector_target: ConnectorTarget
) -> None:
    rule = "a server that refuses connections is StorageUnavailable/StorageTimeout in time"
    url = _aimed(connector_target, "127.0.0.1", free_port())
    connector = await make_connector(open=False, url=url, timeout=str(TIMEOUT))
    await _fails_in_time(_open_and_get(connector.inner), "open() then get()", rule)
    await bounded(connector.inner.close(), "close() after a failed open()", TIMEOUT + SLACK)


@pytest.mark.requires("network")
async def test_silent_server_fails_in_time(
    make_connector: MakeConnector, connector_target: ConnectorTarget
) -> None:
    rule = (
        "a server that accepts connections and never answers is "
        "StorageUnavailable/StorageTimeout within the connector's timeout"
    )
    async with SilentServer() as silent:
        url = _aimed(connector_target, "127.0.0.1", silent.port)
        connector = await make_connector(open=False, url=url, timeout=str(TIMEOUT))
        await _fails_in_time(_open_and_get(connector.inner), "open() then get()", rule)
        await bounded(connector.inner.close(), "close() after a failed open()", TIMEOUT + SLACK)


async def _open_and_get(connector: Connector) -> None:
    await connector.open()
    await connector.get("any")


@pytest.mark.requires("network")
async def test_server_that_stops_answering_mid_session(
    make_connector: MakeConnector, connector_target: ConnectorTarget, name_prefix: str
) -> None:
    """Every call fails in time while the server is silent; once it answers again the connector
    recovers by itself, and retrying the batch that failed is safe."""
    upstream = server_address(connector_target.cls, connector_target.url)
    if upstream is None:
        pytest.skip(f"no server address in {connector_target.url!r}")
    rule = "a call on a server that stops answering fails within the connector's timeout"
    name = f"{name_prefix}/frozen"
    async with FaultProxy(upstream) as proxy:
        url = _aimed(connector_target, "127.0.0.1", proxy.port)
        connector = (await make_connector(url=url, timeout=str(TIMEOUT))).inner
        [result] = await connector.write([Put(name, 1, {"v": 1})])
        assert result.ok, "rule: a put over nothing applies"
        proxy.freeze()
        batch: list[Put | Delete] = [Put(name, 2, {"v": 2})]
        await _fails_in_time(connector.write(batch), "write() while frozen", rule)
        await _fails_in_time(connector.get(name), "get() while frozen", rule)
        await _fails_in_time(connector.head(name), "head() while frozen", rule)
        await _fails_in_time(connector.get_many([name]), "get_many() while frozen", rule)
        await _fails_in_time(_drain(connector.scan(name_prefix)), "scan() while frozen", rule)
        proxy.cut()  # the stuck connections are gone; the server is back for new ones
        proxy.thaw()
        rule = (
            "after an outage the connector reconnects by itself, and retrying the failed batch "
            "is safe (an applied put reads as its idempotent retry)"
        )
        results = await _retry(connector.write(batch) for _ in range(3))
        assert [r.outcome for r in results] == [Outcome.APPLIED], f"rule: {rule}: {results}"
        got = await _retry(connector.get(name) for _ in range(3))
        assert got == Snapshot(name, 2, {"v": 2}), f"rule: {rule}"

        proxy.cut()  # lost without warning, between two calls
        rule = "after a lost connection the connector reconnects by itself"
        results = await _retry(connector.write([Put(name, 3, {"v": 3})]) for _ in range(3))
        assert results[0].ok, f"rule: {rule}: {results}"
        assert await _retry(connector.head(name) for _ in range(3)) == 3, f"rule: {rule}"


async def _drain(scan: AsyncIterator[Snapshot]) -> list[Snapshot]:
    return [snapshot async for snapshot in scan]


async def _retry(calls: Iterator[Awaitable[T]]) -> T:
    """The first call to succeed; storage errors before it are allowed (the flusher retries too),
    each within the timeout."""
    error: Exception | None = None
    for call in calls:
        try:
            return await bounded(call, "a call after the server came back", TIMEOUT + SLACK)
        except (StorageUnavailable, StorageTimeout) as exc:
            error = exc
            await asyncio.sleep(0.5)
    raise AssertionError(
        f"rule: the connector recovers once the server answers again; still failing: {error}"
    )


@pytest.mark.parametrize(
    "data",
    [
        {"nan": math.nan},
        {"inf": [math.inf]},
        {"deep": [{"x": [-math.inf]}]},
        {"set": {1, 2}},
        {"obj": object()},
        {"bytes": b"raw"},
        {"decimal": Decimal("1.5")},
        {"key": {(1, 2): "tuple key"}},
    ],
    ids=["nan", "infinity", "nested -infinity", "set", "object", "bytes", "decimal", "tuple key"],
)
async def test_non_json_data_is_rejected(
    connector: Connector, name_prefix: str, data: object
) -> None:
    name = f"{name_prefix}/bad"
    rule = "rule: data that is not JSON is StorageRejected and nothing is written"
    with pytest.raises(StorageRejected):
        await connector.write([Put(name, 1, data)])  # type: ignore[arg-type]
    assert await connector.get(name) is None, rule


async def test_rejected_batch_writes_nothing(connector: Connector, name_prefix: str) -> None:
    good, bad = f"{name_prefix}/good", f"{name_prefix}/bad"
    with pytest.raises(StorageRejected):
        await connector.write([Put(good, 1, {}), Put(bad, 1, {"nan": math.nan})])
    assert await connector.get(good) is None, (
        "rule: data that is not JSON is StorageRejected before anything of the batch is written"
    )


async def test_errors_leave_the_connector_working(connector: Connector, name_prefix: str) -> None:
    """A failed batch must not poison what follows (a transaction left open, a connection in a
    broken state, a lock never released)."""
    p = name_prefix
    await connector.write([Put(f"{p}/kept", 5, {"v": 5})])
    rule = "rule: after a failed or refused batch the next calls work"
    for attempt in range(3):
        with pytest.raises(StorageRejected):
            await connector.write([Put(f"{p}/ok{attempt}", 1, {}), Put(f"{p}/bad", 1, {1.5j: 0})])  # type: ignore[dict-item]
        [conflict] = await connector.write([Put(f"{p}/kept", 1, {"v": 1})])
        assert conflict.outcome is Outcome.CONFLICT, rule
        results = await connector.write(
            [Put(f"{p}/ok{attempt}", 1, {"attempt": attempt}), Delete(f"{p}/gone", 1)]
        )
        assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED], rule
    found = await connector.get_many([f"{p}/ok{i}" for i in range(3)])
    assert {n: s.data for n, s in found.items()} == {
        f"{p}/ok{i}": {"attempt": i} for i in range(3)
    }, rule
    assert await connector.head(f"{p}/kept") == 5, rule
    assert [s.name async for s in connector.scan(f"{p}/")] == sorted([f"{p}/kept", *found]), rule
