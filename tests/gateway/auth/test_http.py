"""The http strategy against a real HTTP endpoint on loopback."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.auth.http import HttpAuthenticator
from tests.gateway.auth.conftest import Endpoint

CONNECTION = {
    "remoteAddress": "127.0.0.7",
    "headers": {"Cookie": "sid=1", "Authorization": "Bearer x", "X-Other": "no"},
}


async def test_what_is_posted_and_what_a_permitted_answer_gives(endpoint: Endpoint) -> None:
    endpoint.answers = [
        (200, {"id": "ada", "clientData": {"theme": "dark"}, "serverData": {"role": "admin"}}, 0)
    ]
    auth = HttpAuthenticator(endpoint.url, headers=["cookie"], promote_to_header=["token"])
    try:
        result = await auth.check({"token": "abc", "password": "pw"}, CONNECTION)
    finally:
        await auth.close()
    assert result is not None and result.ok
    assert (result.user_id, result.client_data, result.server_data) == (
        "ada", {"theme": "dark"}, {"role": "admin"},
    )  # fmt: skip
    request = endpoint.requests[0]
    assert request["line"] == "POST /auth HTTP/1.1"
    assert request["json"] == {
        "authData": {"token": "abc", "password": "pw"},
        "connectionData": {"remoteAddress": "127.0.0.7", "headers": {"Cookie": "sid=1"}},
    }
    assert request["headers"]["token"] == "abc"


@pytest.mark.parametrize(
    ("answer", "user"),
    [({"username": "bob"}, "bob"), ("carol", "carol"), ({}, "open"), ("", "open")],
)
async def test_the_user_id_comes_from_id_username_or_a_plain_text_answer(
    endpoint: Endpoint, answer: object, user: str
) -> None:
    endpoint.answers = [(200, answer, 0)]
    auth = HttpAuthenticator(endpoint.url)
    result = await auth.check({})
    await auth.close()
    assert result is not None and result.ok and result.user_id == user


async def test_other_statuses_fail_the_login_with_the_answers_client_data(
    endpoint: Endpoint,
) -> None:
    endpoint.answers = [(401, {"clientData": {"reason": "expired"}}, 0)]
    auth = HttpAuthenticator(endpoint.url, permitted_status_codes=[200, 204])
    result = await auth.check({"u": 1})
    await auth.close()
    assert result is not None and not result.ok and result.client_data == {"reason": "expired"}


async def test_retries_on_retry_statuses_then_succeeds(endpoint: Endpoint) -> None:
    endpoint.answers = [(503, "", 0), (502, "", 0), (200, {"id": "ada"}, 0)]
    auth = HttpAuthenticator(endpoint.url, retries=2, retry_interval=0.01)
    result = await auth.check({})
    await auth.close()
    assert result is not None and result.ok and len(endpoint.requests) == 3


async def test_retries_exhausted_fail_the_login_clearly(endpoint: Endpoint) -> None:
    endpoint.answers = [(503, "", 0)]
    auth = HttpAuthenticator(endpoint.url, retries=1, retry_interval=0.01)
    result = await auth.check({})
    await auth.close()
    assert result is not None and not result.ok
    assert result.client_data == {"error": "AUTH_RETRY_ATTEMPTS_EXCEEDED"}
    assert len(endpoint.requests) == 2


async def test_an_endpoint_that_never_answers_fails_within_the_timeout(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.answers = [(200, {"id": "late"}, 30.0)]
    auth = HttpAuthenticator(endpoint.url, timeout=0.3)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        result = await auth.check({"password": "hunter2"})
    await auth.close()
    assert result is not None and not result.ok
    assert time.monotonic() - started < 10  # bounded by the timeout, not the endpoint
    assert "hunter2" not in caplog.text


async def test_an_unreachable_endpoint_fails_the_login(unused_tcp_port: int) -> None:
    auth = HttpAuthenticator(f"http://127.0.0.1:{unused_tcp_port}/", timeout=1.0)
    result = await auth.check({})
    await auth.close()
    assert result is not None and not result.ok


async def test_an_oversized_answer_fails_the_login(endpoint: Endpoint) -> None:
    endpoint.answers = [(200, "x" * 5000, 0)]
    auth = HttpAuthenticator(endpoint.url, max_response_size=1000)
    result = await auth.check({})
    await auth.close()
    assert result is not None and not result.ok
