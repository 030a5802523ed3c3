"""The HTTP API over real sockets: every operation, batches, bad requests, authentication."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.passwords import hash_password
from gateway.protocol import EventAction, Message, RecordAction, RpcAction, Topic
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.gateway.httpapi.client import exchange, ops, post, request
from tests.wire import WireClient

R = RecordAction


def write(name: str, data: Any, **more: Any) -> dict[str, Any]:
    return {"topic": "record", "action": "write", "recordName": name, "data": data, **more}


def record(action: str, name: str) -> dict[str, Any]:
    return {"topic": "record", "action": action, "recordName": name}


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server({"rpc": {"ack_timeout": 0.3, "response_timeout": 0.6}})


# -- records ---------------------------------------------------------------------------------


async def test_record_write_read_head_delete(server: Server) -> None:
    port = server.port
    assert await ops(port, write("car/1", {"make": "vw"})) == {
        "result": "SUCCESS",
        "body": [{"success": True}],
    }
    stored = await server.store.load("car/1")  # acknowledged: durable in storage
    assert stored is not None and (stored.version, stored.data) == (1, {"make": "vw"})
    answer = await ops(
        port,
        write("car/1", 7, path="wheels[1].size"),
        record("read", "car/1"),
        record("head", "car/1"),
        record("head", "car/none"),
    )
    assert answer == {
        "result": "SUCCESS",
        "body": [
            {"success": True},
            {"version": 2, "data": {"make": "vw", "wheels": [None, {"size": 7}]}, "success": True},
            {"version": 2, "success": True},
            {"version": -1, "success": True},
        ],
    }
    assert await ops(port, record("delete", "car/1"), record("read", "car/1")) == {
        "result": "PARTIAL_SUCCESS",
        "body": [
            {"success": True},
            {
                "errorTopic": "record",
                "errorEvent": R.RECORD_NOT_FOUND,
                "success": False,
                "error": 'Record read failed. Record "car/1" could not be found.',
            },
        ],
    }
    assert await server.store.load("car/1") is None


async def test_conditional_writes(server: Server) -> None:
    port = server.port
    await ops(port, write("c", {"n": 1}))  # version 1
    answer = await ops(
        port,
        write("c", {"n": 2}, version=2),  # the next version: applies
        write("c", {"n": 3}, version=2),  # stale: refused with what is current
        write("c", {"n": 4}, version=9),  # from the future
        record("read", "c"),
    )
    assert answer["result"] == "PARTIAL_SUCCESS"
    ok, stale, future, read = answer["body"]
    assert ok == {"success": True}
    assert stale == {
        "errorTopic": "record",
        "errorEvent": R.VERSION_EXISTS,
        "success": False,
        "error": 'Record update failed. Version 2 exists for record "c".',
        "currentVersion": 2,
        "currentData": {"n": 2},
    }
    assert (future["success"], future["errorEvent"], future["currentVersion"]) == (
        False,
        R.INVALID_VERSION,
        2,
    )
    assert read == {"version": 2, "data": {"n": 2}, "success": True}


async def test_an_http_write_is_seen_live_by_a_websocket_subscriber(server: Server) -> None:
    async with await WireClient.connect(url_of(server), login={}) as peer:
        await peer.send(Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=["live"]))
        await peer.recv_until(Topic.RECORD, R.READ_RESPONSE)
        await ops(server.port, write("live", {"a": 1}))
        update = await peer.recv_until(Topic.RECORD, R.UPDATE)
        assert (update.name, update.version, json.loads(update.data or "")) == (
            "live",
            1,  # SUBSCRIBECREATEANDREAD created version 0; the HTTP write is the next
            {"a": 1},
        )
        await ops(server.port, write("live", "x", path="b"))
        patch = await peer.recv_until(Topic.RECORD, R.PATCH)
        assert (patch.path, patch.version) == ("b", 2)


async def test_a_write_that_cannot_be_stored_is_a_failure_not_a_success(
    make_server: ServerFactory,
) -> None:
    server = await make_server({"limits": {"max_record_size": 64}})
    answer = await ops(server.port, write("big", {"x": "y" * 200}), write("small", {"x": 1}))
    assert answer["result"] == "PARTIAL_SUCCESS"
    assert answer["body"][0]["success"] is False
    assert answer["body"][0]["errorTopic"] == "record"
    assert await server.store.load("big") is None


# -- events, rpc, presence -------------------------------------------------------------------


async def test_event_emit_reaches_subscribers(server: Server) -> None:
    async with await WireClient.connect(url_of(server), login={}) as peer:
        await peer.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"]))
        await peer.recv()  # the ack
        emits = [
            {"topic": "event", "action": "emit", "eventName": "news", "data": {"n": 1}},
            {"topic": "event", "action": "emit", "eventName": "news"},
        ]
        assert await ops(server.port, *emits) == {
            "result": "SUCCESS",
            "body": [{"success": True}, {"success": True}],
        }
        first, second = await peer.recv(), await peer.recv()
        assert (first.name, json.loads(first.data or "")) == ("news", {"n": 1})
        assert (second.name, second.data) == ("news", None)


def make(name: str, data: Any = None) -> dict[str, Any]:
    return {"topic": "rpc", "action": "make", "rpcName": name, "data": data}


async def provider(server: Server, *names: str) -> WireClient:
    peer = await WireClient.connect(url_of(server), login={})
    await peer.send(Message(Topic.RPC, RpcAction.PROVIDE, names=list(names), correlation_id="p"))
    assert (await peer.recv()).is_ack
    return peer


async def test_rpc_make_answers_with_the_providers_data(server: Server) -> None:
    async with await provider(server, "add") as peer:

        async def serve() -> None:
            msg = await peer.recv()
            args = json.loads(msg.data or "")
            await peer.send(
                Message(Topic.RPC, RpcAction.ACCEPT, name="add", correlation_id=msg.correlation_id)
            )
            await peer.send(
                Message(
                    Topic.RPC,
                    RpcAction.RESPONSE,
                    name="add",
                    correlation_id=msg.correlation_id,
                    data=json.dumps(args["a"] + args["b"]),
                )
            )

        task = asyncio.create_task(serve())
        assert await ops(server.port, make("add", {"a": 2, "b": 3})) == {
            "result": "SUCCESS",
            "body": [{"data": 5, "success": True}],
        }
        await task


async def test_rpc_failures(server: Server) -> None:
    port = server.port
    assert (await ops(port, make("nobody")))["body"] == [
        {
            "errorTopic": "rpc",
            "errorEvent": RpcAction.NO_RPC_PROVIDER,
            "success": False,
            "error": 'No provider was available to handle the RPC "nobody".',
        }
    ]
    async with await provider(server, "f") as peer:
        # rejected by its only provider: no provider
        made = asyncio.create_task(ops(port, make("f")))
        msg = await peer.recv()
        await peer.send(
            Message(Topic.RPC, RpcAction.REJECT, name="f", correlation_id=msg.correlation_id)
        )
        assert (await made)["body"][0]["errorEvent"] == RpcAction.NO_RPC_PROVIDER
        # the provider's own error
        made = asyncio.create_task(ops(port, make("f")))
        msg = await peer.recv()
        await peer.send(
            Message(
                Topic.RPC,
                RpcAction.REQUEST_ERROR,
                name="f",
                correlation_id=msg.correlation_id,
                data='"broke"',
            )
        )
        assert (await made)["body"] == [{"errorTopic": "rpc", "error": "broke", "success": False}]
        # accepted, never answered: the response timeout
        made = asyncio.create_task(ops(port, make("f")))
        msg = await peer.recv()
        await peer.send(
            Message(Topic.RPC, RpcAction.ACCEPT, name="f", correlation_id=msg.correlation_id)
        )
        assert (await made)["body"] == [
            {
                "errorTopic": "rpc",
                "errorEvent": RpcAction.RESPONSE_TIMEOUT,
                "success": False,
                "error": "The RPC response timeout was exceeded by the provider.",
            }
        ]
        # never accepted: the accept timeout
        made = asyncio.create_task(ops(port, make("f")))
        await peer.recv()
        body = (await made)["body"][0]
        assert (body["success"], body["errorEvent"]) == (False, RpcAction.ACCEPT_TIMEOUT)


async def test_presence_query(server: Server) -> None:
    async with await WireClient.connect(url_of(server), login={"username": "ada"}):
        query = {"topic": "presence", "action": "query"}
        assert await ops(server.port, query, {**query, "names": ["ada", "bob"]}) == {
            "result": "SUCCESS",
            "body": [
                {"users": ["ada"], "success": True},
                {"users": {"ada": True, "bob": False}, "success": True},
            ],
        }


# -- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"nobody": []}, 'the "body" parameter must exist'),
        ({"body": []}, "non-empty array"),
        ({"body": {"topic": "record"}}, "non-empty array"),
        ({"body": [{"topic": "lock", "action": "x"}]}, "unknown topic 'lock'"),
        ({"body": [{"topic": "record", "action": "patch", "recordName": "a"}]}, "unknown action"),
        ({"body": [{"topic": "record", "action": "read"}]}, "'recordName' is required"),
        ({"body": [write("a", 1, path="x.__proto__.y")]}, "reaches a prototype"),
        ({"body": [write("a", 1, path="constructor")]}, "reaches a prototype"),
        ({"body": [write("a", 1, path="a[0].prototype")]}, "reaches a prototype"),
        ({"body": [write("a", {}, version="2")]}, "'.version'"),
        ({"body": [record("read", "a"), "not an object"]}, "at index 1"),
        ({"body": [record("read", "a")], "authData": "x"}, '"authData" parameter'),
        ([1, 2], "must be an object"),
    ],
)
async def test_bad_requests_are_400_with_a_reason(
    server: Server, document: Any, reason: str
) -> None:
    status, answer = await post(server.port, document)
    assert status == 400
    assert reason in answer


async def test_a_refused_request_changes_nothing(server: Server) -> None:
    document = {"body": [write("kept", {"a": 1}), write("kept", 1, path="__proto__.x")]}
    assert (await post(server.port, document))[0] == 400
    assert await server.store.load("kept") is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (request("/api", b"{not json"), 400),
        (request("/api", b'{"body": [1e999]}'), 400),  # JSON that JavaScript would not parse
        (request("/api", "\u00e9".encode("latin-1")), 400),  # not UTF-8
        (request("/api", b'{"body":[]}', content_type="text/plain"), 415),
        (request("/api", b'{"body":[]}', content_type=None), 415),
        (request("/nope", b"{}"), 404),
        (
            b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n",
            411,
        ),
        (b"POST /api HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        (b"POST /api HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
        (b"POST /api HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST api HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
        (b"POST /api HTTP/1.1\r\nBad Header\r\nContent-Length: 0\r\n\r\n", 400),
        (b"POST /api HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"PUT /api HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n", 400),
    ],
)
async def test_malformed_http_is_answered_with_4xx(server: Server, raw: bytes, status: int) -> None:
    assert (await exchange(server.port, raw))[0] == status


async def test_a_body_over_the_limit_is_413_before_it_is_sent(make_server: ServerFactory) -> None:
    server = await make_server({"http": {"max_body_size": 1000}})
    # Only the head: the server must answer from Content-Length, without waiting for the body.
    head = b"POST /api HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n"
    status, _, body = await exchange(server.port, head, timeout=2)
    assert status == 413
    assert b"http.max_body_size" in body
    assert server.trips.counts == {"http.max_body_size": 1}  # in /metrics as a limit trip
    ok = json.dumps({"body": [write("x", "y" * 900)]}).encode()
    assert len(ok) <= 1000
    assert (await exchange(server.port, request("/api", ok)))[0] == 200


async def test_the_api_can_be_disabled_or_moved(make_server: ServerFactory) -> None:
    off = await make_server({"http": {"enabled": False}})
    assert (await post(off.port, {"body": [record("head", "a")]}))[0] == 404
    moved = await make_server({"http": {"path": "/rest"}})
    assert (await post(moved.port, {"body": [record("head", "a")]}))[0] == 404
    assert (await post(moved.port, {"body": [record("head", "a")]}, path="/rest"))[0] == 200
    assert (await post(moved.port, {}, path="/rest/auth"))[0] == 200


async def test_websockets_health_and_metrics_still_work_beside_it(server: Server) -> None:
    async with await WireClient.connect(url_of(server), login={}):
        pass
    status, headers, body = await exchange(
        server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"  # only one
    assert b"recordgate_connections" in body


# -- authentication --------------------------------------------------------------------------


@pytest.fixture
async def secured(make_server: ServerFactory, tmp_path: Path) -> Server:
    users = tmp_path / "users.yml"
    users.write_text(f"ada: {{password: '{hash_password('pw')}', clientData: {{theme: dark}}}}\n")
    return await make_server({"auth": [{"type": "file", "users": str(users)}]})


async def test_auth_data_in_the_request(secured: Server) -> None:
    head = record("head", "a")
    good = {"body": [head], "authData": {"username": "ada", "password": "pw"}}
    assert (await post(secured.port, good))[0] == 200
    for bad in ({"username": "ada", "password": "no"}, {}):
        status, text = await post(secured.port, {"body": [head], "authData": bad})
        assert (status, text.strip()) == (401, "Unsuccessful authentication attempt.")
    assert (await post(secured.port, {"body": [head]}))[0] == 401  # no credentials at all


async def test_a_token_from_the_auth_endpoint(secured: Server) -> None:
    status, answer = await post(
        secured.port, {"username": "ada", "password": "pw"}, path="/api/auth"
    )
    assert status == 200
    token = answer["token"]
    assert answer["clientData"] == {"theme": "dark"}
    assert isinstance(token, str) and len(token) >= 40
    status, other = await post(
        secured.port, {"username": "ada", "password": "pw"}, path="/api/auth"
    )
    assert other["token"] != token  # random, not derived from the login
    assert (await post(secured.port, {"username": "ada", "password": "x"}, path="/api/auth"))[
        0
    ] == 401
    head = record("head", "a")
    assert (await post(secured.port, {"body": [head], "token": token}))[0] == 200
    assert (await post(secured.port, {"body": [head], "token": token[:-1] + "x"}))[0] == 401
    assert (await post(secured.port, {"body": [head], "token": ""}))[0] == 400
    assert (await post(secured.port, {"body": [head], "token": 7}))[0] == 400


async def test_a_token_expires_after_its_ttl(make_server: ServerFactory) -> None:
    server = await make_server({"http": {"token_ttl": 1.5}})
    token = (await post(server.port, {"username": "ada"}, path="/api/auth"))[1]["token"]
    head = {"body": [record("head", "a")], "token": token}
    assert (await post(server.port, head))[0] == 200
    await asyncio.sleep(1.6)
    assert (await post(server.port, head))[0] == 401


async def test_tokens_are_bounded_in_number(make_server: ServerFactory) -> None:
    server = await make_server({"http": {"max_tokens": 3}})
    tokens = [
        (await post(server.port, {"username": f"u{i}"}, path="/api/auth"))[1]["token"]
        for i in range(5)
    ]
    assert len(server.http_api.tokens) == 3
    head = {"body": [record("head", "a")]}
    assert (await post(server.port, {**head, "token": tokens[0]}))[0] == 401  # the oldest went
    assert (await post(server.port, {**head, "token": tokens[4]}))[0] == 200


async def test_the_token_login_is_the_user(secured: Server) -> None:
    _, answer = await post(secured.port, {"username": "ada", "password": "pw"}, path="/api/auth")
    async with await WireClient.connect(
        url_of(secured), login={"username": "ada", "password": "pw"}
    ):
        query = {"topic": "presence", "action": "query"}
        # presence's "everyone" leaves out the asking user, as over WebSockets
        assert (await ops(secured.port, query, token=answer["token"]))["body"] == [
            {"users": [], "success": True}
        ]


async def test_a_write_storage_refuses_answers_a_failure_and_is_counted(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    # tests.faults.poison: a test double around the real SQL connector that hands the real
    # SQLite driver data it cannot store, so storage fails this one write for good.
    server = await make_server(
        {
            "storage": {
                "type": "tests.faults.poison:PoisonSQLConnector",
                "url": f"sqlite+aiosqlite:///{tmp_path}/poison.db",
            }
        }
    )
    answer = await ops(server.port, write("bad", {"poison": "set"}), write("good", {"ok": 1}))
    assert answer["result"] == "PARTIAL_SUCCESS"
    refused, stored = answer["body"]
    assert refused["success"] is False
    assert (refused["errorTopic"], refused["errorEvent"]) == ("record", R.RECORD_UPDATE_ERROR)
    assert stored == {"success": True}
    assert server.store.stats.errors == {"rejected": 1}  # in /metrics by kind


async def test_http_requests_count_against_the_connection_caps(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_connections_per_ip": 2}})
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
    try:
        status, _, body = await exchange(
            server.port, request("/api", json.dumps({"body": [record("head", "a")]}).encode())
        )
        assert status == 503
        assert b"server.max_connections_per_ip" in body
    finally:
        for _, writer in idle:
            writer.close()
    await asyncio.sleep(0.2)  # the idle sockets are gone: requests are served again
    assert (await post(server.port, {"body": [record("head", "a")]}))[0] == 200


async def test_a_request_may_take_longer_than_the_time_to_send_it(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request must be read within OPEN_TIMEOUT of connecting; answering it may take longer.
    monkeypatch.setattr("gateway.connection.OPEN_TIMEOUT", 0.3)
    server = await make_server({"rpc": {"ack_timeout": 5, "response_timeout": 5}})
    async with await provider(server, "slow") as peer:
        made = asyncio.create_task(ops(server.port, make("slow")))
        msg = await peer.recv()
        await asyncio.sleep(0.8)
        await peer.send(
            Message(
                Topic.RPC,
                RpcAction.RESPONSE,
                name="slow",
                correlation_id=msg.correlation_id,
                data="1",
            )
        )
        assert (await made)["body"] == [{"data": 1, "success": True}]


async def test_expect_100_continue_is_answered_before_the_body(server: Server) -> None:
    body = json.dumps({"body": [record("head", "a")]}).encode()
    head = request("/api", b"", Expect="100-continue").replace(
        b"Content-Length: 0", b"Content-Length: %d" % len(body)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()


async def test_lists_and_notify(server: Server) -> None:
    port = server.port
    lst = {"topic": "list", "listName": "todo"}
    answer = await ops(
        port,
        {**lst, "action": "write", "data": ["a", "b"]},
        {**lst, "action": "read"},
        {**lst, "action": "delete"},
        {**lst, "action": "read"},
    )
    assert answer["body"][:3] == [
        {"success": True},
        {"version": 1, "data": ["a", "b"], "success": True},
        {"success": True},
    ]
    assert answer["body"][3]["errorEvent"] == R.RECORD_NOT_FOUND
    await ops(port, write("n/1", {"a": 1}))
    notify = {"topic": "record", "action": "notify", "recordNames": ["n/1", "n/2"]}
    assert (await ops(port, notify))["body"] == [{"success": True}]
    status, text = await post(port, {"body": [{**notify, "recordNames": []}]})
    assert status == 400 and "recordNames" in text


async def test_an_operation_unfinished_at_the_request_timeout_fails(
    make_server: ServerFactory,
) -> None:
    server = await make_server(
        {"rpc": {"ack_timeout": 5, "response_timeout": 5}, "http": {"request_timeout": 0.3}}
    )
    async with await provider(server, "slow") as peer:
        made = asyncio.create_task(ops(server.port, make("slow")))
        await peer.recv()  # offered, never accepted nor answered
        answer = await asyncio.wait_for(made, 3)
    assert answer["result"] == "FAILURE"
    (result,) = answer["body"]
    assert (result["success"], result["errorTopic"], result["errorEvent"]) == (
        False,
        "connection",
        "HTTP_REQUEST_TIMEOUT",
    )
