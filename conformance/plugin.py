"""pytest plugin: command-line options, the ``requires`` marker and the connector fixtures.

Fixtures: ``connector_target`` (session), ``make_connector`` (factory of new instances, closed
at teardown), ``connector`` (one opened instance), ``raw_reader`` and ``name_prefix`` (unique
per test: tests write only names under it, so they never see each other's records).

Every connector (and raw reader) a fixture hands out is a :class:`BoundedConnector`: each call
on it fails the test after ``--connector-call-timeout`` seconds, naming the call, instead of
hanging the run. A missing driver (``DriverMissing``) stops the run with one usage error line.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from conformance.bounded import BoundedConnector, BoundedRawReader
from conformance.target import ConnectorTarget
from connectors.base import SupportsRawReader
from gateway.exceptions import DriverMissing

__all__ = ["DEFAULT_CALL_TIMEOUT", "MakeConnector"]

MakeConnector = Callable[..., Awaitable[BoundedConnector]]
"""``await make_connector(open=True, url=None, **options)``: a new instance of the target."""

DEFAULT_CALL_TIMEOUT = 30.0

_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("recordgate-conformance", "recordgate connector conformance suite")
    group.addoption(
        "--connector",
        default="memory",
        metavar="NAME|module:Class",
        help="connector under test: a name in the recordgate.connectors entry points, or "
        "module.path:Class (default: memory)",
    )
    group.addoption(
        "--connector-url", default=None, metavar="URL", help="URL passed to the connector"
    )
    group.addoption(
        "--connector-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword option for the connector constructor (repeatable)",
    )
    group.addoption(
        "--connector-call-timeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT,
        metavar="SECONDS",
        help="fail a test when one call on the connector takes longer "
        f"(default {DEFAULT_CALL_TIMEOUT:g})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): run only if the connector under test declares them",
    )


@pytest.fixture(scope="session")
def connector_target(request: pytest.FixtureRequest) -> Iterator[ConnectorTarget]:
    config = request.config
    try:
        target = ConnectorTarget.resolve(
            config.getoption("--connector"),
            config.getoption("--connector-url"),
            config.getoption("--connector-option"),
        )
    except Exception as exc:
        # One clear line for a bad --connector/--connector-url/--connector-option, instead of
        # the same error repeated for every test of the suite.
        pytest.exit(f"recordgate conformance: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    yield target
    if target.owned_namespace:
        # No event loop runs between tests, so a private one can clean up the namespace.
        asyncio.run(_drop_namespace(target, call_timeout(config)))


def call_timeout(config: pytest.Config) -> float:
    return float(config.getoption("--connector-call-timeout"))


def _stop_for_missing_driver(exc: DriverMissing) -> None:
    pytest.exit(f"recordgate conformance: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


async def _drop_namespace(target: ConnectorTarget, limit: float) -> None:
    connector = BoundedConnector(target.create(), limit)
    await connector.open()
    try:
        await connector.drop()
    finally:
        await connector.close()


def _check_requirements(request: pytest.FixtureRequest, target: ConnectorTarget) -> None:
    for marker in request.node.iter_markers("requires"):
        missing = sorted(set(marker.args) - target.capabilities)
        if missing:
            pytest.skip(f"connector {target.spec!r} lacks capabilities: {', '.join(missing)}")


@pytest_asyncio.fixture
async def make_connector(
    request: pytest.FixtureRequest, connector_target: ConnectorTarget
) -> AsyncIterator[MakeConnector]:
    """``await make_connector(open=True, url=None, **option_overrides)``: a new instance of
    the target (at another URL if given), opened unless ``open=False``, closed at teardown."""
    _check_requirements(request, connector_target)
    limit = call_timeout(request.config)
    made: list[BoundedConnector] = []

    async def make(open: bool = True, url: str | None = None, **overrides: Any) -> BoundedConnector:
        try:
            connector = BoundedConnector(connector_target.create(url, **overrides), limit)
            made.append(connector)
            if open:
                await connector.open()
        except DriverMissing as exc:
            _stop_for_missing_driver(exc)
        return connector

    yield make
    for connector in reversed(made):
        await connector.close()


@pytest_asyncio.fixture
async def connector(make_connector: MakeConnector) -> BoundedConnector:
    return await make_connector()


@pytest_asyncio.fixture
async def raw_reader(
    connector: BoundedConnector, connector_target: ConnectorTarget
) -> AsyncIterator[BoundedRawReader]:
    if not isinstance(connector.inner, SupportsRawReader):
        pytest.skip(f"connector {connector_target.spec!r} has no raw_reader()")
    reader = connector.raw_reader()
    yield reader
    await reader.close()


@pytest.fixture
def name_prefix() -> str:
    """A unique first name segment (so also a unique collection) for this test's records."""
    return f"t{next(_counter)}{uuid.uuid4().hex[:8]}"
