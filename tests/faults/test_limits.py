"""Resource limits against a real ``recordgate start`` process under an address-space cap.

Each test sends what a hostile client would (amplifying requests, hostile patterns and names,
padding paths, idle sockets past the file-descriptor limit) and checks, from ``/proc`` of the
server process, that it stays alive, answering and within a memory bound, and that the client
that tripped a limit was told so (and ``/metrics`` counted it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    PresenceAction,
    RecordAction,
    Topic,
)
from tests.event_loop import start_args
from tests.faults.conftest import R, ServerProcess, read, write
from tests.gateway.test_metrics import parse
from tests.gateway.test_server import http_get
from tests.wire import WireClient

MB = 1 << 20
ADDRESS_SPACE = 1024 * MB
"""RLIMIT_AS of the server: several times what it needs to start (about 200 MB of address
space), far less than the gigabytes the attacks below made it allocate before they were
bounded."""
CAPPED = {resource.RLIMIT_AS: ADDRESS_SPACE}
PING = Message(Topic.CONNECTION, ConnectionAction.PING)
MEMORY = {"storage": {"type": "memory"}}


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/", 1)[0])


async def metrics(server: ServerProcess) -> dict[str, float]:
    status, body = await http_get(port_of(server), "/metrics")
    assert status == 200
    return parse(body)


def trips(figures: dict[str, float], key: str) -> float:
    return figures.get(f'recordgate_limit_trips_total{{limit="{key}"}}', 0)


async def rtt(peer: WireClient, timeout: float = 5.0) -> float:
    """Seconds a PING takes to come back as PONG (other messages on the way are skipped)."""
    start = time.monotonic()
    await peer.send(PING)
    await peer.recv_until(Topic.CONNECTION, ConnectionAction.PONG, timeout)
    return time.monotonic() - start


async def pipelined(peer: WireClient, messages: list[Message]) -> None:
    """Send ``messages`` in one burst: the server reads them in one or very few reads."""
    from gateway.protocol import encode

    protocol = peer.ws.protocol
    for msg in messages:
        protocol.send_binary(encode(msg))
    peer.ws.send_data()


def cpu_seconds(server: ServerProcess) -> float:
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


async def assert_healthy(server: ServerProcess, bystander: WireClient, hwm: int) -> None:
    """Alive, answering a client that did nothing wrong, and never above ``hwm`` bytes."""
    assert server.alive(), server.log()[-2000:]
    assert await rtt(bystander) < 2.0
    status = server.status()
    assert status["VmHWM"] < hwm, f"peak RSS {status['VmHWM'] / MB:.0f} MB"


# -- 6. amplification ----------------------------------------------------------------------


async def test_one_small_request_cannot_make_the_server_allocate_unboundedly(
    start_server, peers
) -> None:
    server = await start_server({**MEMORY, "server": {"max_send_buffer": 4 * MB}}, rlimits=CAPPED)
    writer, bystander = await peers(server.url), await peers(server.url)
    await writer.send(write("big", {"s": "x" * 400_000}))
    assert (await read(writer, "big"))[0] == 1
    before = server.status()["VmRSS"]

    # 3,000 copies of one name in 15 kB: one READ_RESPONSE, not 3,000 (1.2 GB on main).
    reader = await peers(server.url)
    await reader.send(
        Message(Topic.RECORD, R.SUBSCRIBEANDREAD, names=["big"] * 3000, correlation_id="s")
    )
    assert (await reader.recv(5)).is_ack
    got = await reader.recv(5)
    assert (got.action, got.name) == (R.READ_RESPONSE, "big")
    await reader.expect_silence(0.3)

    # 2,000 pipelined READs of it in one read (800 MB of replies on main): the connection is
    # closed at max_send_buffer, as the replies are produced.
    greedy = await peers(server.url)
    await pipelined(greedy, [Message(Topic.RECORD, R.READ, name="big")] * 2000)
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await greedy.ws.recv()
    assert greedy.ws.close_code == 1008
    assert greedy.ws.close_reason == "send buffer limit exceeded"

    await assert_healthy(server, bystander, before + 100 * MB)
    assert trips(await metrics(server), "server.max_send_buffer") >= 1


async def test_pipelined_presence_queries_are_closed_at_the_send_buffer(
    start_server, peers
) -> None:
    server = await start_server({**MEMORY, "server": {"max_send_buffer": 4 * MB}}, rlimits=CAPPED)
    users = [
        await WireClient.connect(server.url, login={"username": f"{i:03}" + "u" * 1000})
        for i in range(60)
    ]  # every QUERY_ALL answer lists them: 60 kB
    try:
        bystander = await peers(server.url)
        before = server.status()["VmRSS"]
        asker = await peers(server.url)
        # 2,000 QUERY_ALL in 10 kB: 120 MB of answers from one read (all queued at once, once).
        # A long read writes out as it goes (FLUSH_EVERY), so an asker that reads them as fast
        # as they come may be served them all; this one reads nothing for a while, and the
        # server may hold no more than max_send_buffer for it, however many writes that takes.
        await pipelined(asker, [Message(Topic.PRESENCE, PresenceAction.QUERY_ALL)] * 2000)
        async with asyncio.timeout(10):
            while not trips(await metrics(server), "server.max_send_buffer"):  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.05)
        # then reads at once: the close frame waits behind what the socket holds for a second
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await asker.ws.recv()
        assert asker.ws.close_code == 1008
        await assert_healthy(server, bystander, before + 60 * MB)
    finally:
        for user in users:
            await user.close()


async def test_an_http_batch_of_reads_is_bounded_by_the_send_buffer(start_server, peers) -> None:
    from tests.gateway.httpapi.client import exchange, request

    server = await start_server({**MEMORY, "server": {"max_send_buffer": 4 * MB}}, rlimits=CAPPED)
    writer, bystander = await peers(server.url), await peers(server.url)
    await writer.send(write("big", {"s": "x" * 400_000}))
    assert (await read(writer, "big"))[0] == 1
    before = server.status()["VmRSS"]

    # 3,000 reads of one 400 kB record in 180 kB of HTTP: 1.2 GB of answer on main (the
    # server hit its address-space cap and the request was never answered).
    read_big = {"topic": "record", "action": "read", "recordName": "big"}
    body = json.dumps({"body": [read_big] * 3000}).encode()
    status, _, answer = await exchange(port_of(server), request("/api", body), timeout=30)
    assert status == 200
    assert len(answer) < 5 * MB
    results = json.loads(answer)["body"]
    assert len(results) == 3000
    served = [r for r in results if r["success"]]
    assert 5 <= len(served) <= 10 and all(r["data"]["s"] == "x" * 400_000 for r in served)
    assert results[: len(served)] == served  # the ones answered come first, in order
    for refused in results[len(served) :]:
        assert refused["success"] is False and refused["errorTopic"] == "record"
        assert "server.max_send_buffer" in refused["error"]

    await assert_healthy(server, bystander, before + 100 * MB)
    assert trips(await metrics(server), "server.max_send_buffer") == 1


# -- 7. names and listen patterns ------------------------------------------------------------


async def test_hostile_patterns_and_long_names_cannot_freeze_the_loop(start_server, peers) -> None:
    server = await start_server(MEMORY, rlimits=CAPPED)
    listener, subscriber, control = [await peers(server.url) for _ in range(3)]
    hostile = ".{1000}.{1000}.{1000}.{1000}z"  # 32,005 RE2 instructions
    await listener.send(Message(Topic.EVENT, EventAction.LISTEN, name=hostile))
    refused = await listener.recv()
    assert (refused.action, refused.name) == (EventAction.INVALID_LISTEN_REGEX, hostile)
    await listener.send(Message(Topic.EVENT, EventAction.LISTEN, name="^news/.*"))
    assert (await listener.recv()).is_ack

    long_name = "n" * 400_000  # on main: matched against the pattern, 22 s of frozen loop
    await subscriber.send(
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[long_name], correlation_id="1")
    )
    reply = await subscriber.recv(5)
    assert (reply.action, reply.is_error) == (EventAction.INVALID_MESSAGE_DATA, True)
    assert "limits.max_name_length" in json.loads(reply.data or '""')
    assert await rtt(control) < 1.0

    figures = await metrics(server)
    assert trips(figures, "limits.max_listen_pattern_size") == 1
    assert trips(figures, "limits.max_name_length") == 1


# -- 8. record growth and path work ----------------------------------------------------------


async def test_tiny_patches_cannot_grow_a_record_past_the_limit(start_server, peers) -> None:
    server = await start_server(MEMORY, rlimits=CAPPED)
    writer, bystander = await peers(server.url), await peers(server.url)
    await writer.send(write("r", {}))
    before = server.status()["VmRSS"]

    # 833 bytes of path that padded arrays into a 50 MB record on main.
    path = ".".join(f"k{i}[99999]" for i in range(90))
    await writer.send(Message(Topic.RECORD, R.PATCH, name="r", version=-1, path=path, data="1"))
    refused = await writer.recv(5)
    assert (refused.action, refused.is_error) == (R.INVALID_MESSAGE_DATA, True)

    # Each patch pads 60,000 nulls (300 kB of JSON): the fourth would pass 1 MB.
    answers = []
    for i in range(5):
        await writer.send(
            Message(Topic.RECORD, R.PATCH, name="r", version=-1, path=f"p{i}[59999]", data="1")
        )
        await writer.send(PING)
        answers.append(await writer.recv(5))
        if answers[-1].action == ConnectionAction.PONG:
            continue
        assert (await writer.recv(5)).action == ConnectionAction.PONG
    refusals = [a for a in answers if a.action == R.INVALID_MESSAGE_DATA]
    assert len(refusals) == 2, answers  # the 4th and the 5th
    version, data = await read(writer, "r")
    assert version == 4 and len(json.dumps(data, separators=(",", ":"))) <= MB
    await assert_healthy(server, bystander, before + 100 * MB)
    figures = await metrics(server)
    assert trips(figures, "limits.max_array_index") == 1
    assert trips(figures, "limits.max_record_size") == 2


async def test_patch_multi_costs_grow_linearly(start_server, peers) -> None:
    server = await start_server(MEMORY, rlimits=CAPPED)
    writer, control = await peers(server.url), await peers(server.url)
    wide = {f"k{i:05}": 0 for i in range(70_000)}  # 70,000 keys, 840 kB
    await writer.send(write("wide", wide))
    assert (await read(writer, "wide"))[0] == 1
    steps = [{"path": f"k{i:05}", "data": 1} for i in range(1000)]
    cpu = cpu_seconds(server)
    await writer.send(
        Message(Topic.RECORD, R.PATCH_MULTI, name="wide", version=-1, data=json.dumps(steps))
    )
    # On main each entry copied the whole record: 1,000 copies of 70,000 keys.
    assert await rtt(control, timeout=30) < 2.0
    version, data = await read(writer, "wide")
    assert version == 2 and data["k00999"] == 1 and data["k01000"] == 0
    assert cpu_seconds(server) - cpu < 0.5

    too_many = [{"path": f"k{i:05}", "data": 2} for i in range(1001)]
    await writer.send(
        Message(Topic.RECORD, R.PATCH_MULTI, name="wide", version=-1, data=json.dumps(too_many))
    )
    refused = await writer.recv(5)
    assert (refused.action, refused.is_error) == (R.INVALID_MESSAGE_DATA, True)
    assert trips(await metrics(server), "limits.max_patch_entries") == 1


# -- 10. connections and the file-descriptor limit --------------------------------------------


async def test_idle_sockets_past_the_fd_limit_get_a_clean_refusal(start_server, peers) -> None:
    server = await start_server(MEMORY, rlimits={resource.RLIMIT_NOFILE: 256})
    assert "max_connections lowered to 192" in server.log()
    port = port_of(server)
    idle = []
    try:
        for _ in range(300):  # past the fd limit: on main, accept() fails with EMFILE
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        # On main this client waited for the idle sockets to time out (10 s), unanswered.
        with pytest.raises(InvalidStatus) as refused:
            async with asyncio.timeout(5):
                await WireClient.connect(server.url)
        assert refused.value.response.status_code == 503
        assert b"server.max_connections" in refused.value.response.body
    finally:
        for _, writer in idle:
            writer.close()
    async with asyncio.timeout(5):  # the slots come back as the idle sockets go
        while True:
            try:
                peer = await peers(server.url)
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)
    assert await rtt(peer) < 2.0
    assert trips(await metrics(server), "server.max_connections") >= 100
    assert len(server.log()) < 20_000, server.log()[-3000:]  # the log stays short


async def refusal_of(reader: asyncio.StreamReader) -> str:
    """What the server answered a raw socket that sent nothing: ``"503"``, or ``"silent"``
    when it was closed or reset unanswered (what libuv's EMFILE trick does)."""
    try:
        async with asyncio.timeout(30):  # answered within ~1 s even when the fds ran out
            data = await reader.read(64)
    except TimeoutError:
        return "unanswered"
    except ConnectionError:
        return "silent"
    return "503" if data.startswith(b"HTTP/1.1 503") else ("silent" if not data else repr(data))


UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def waiting_client(server: ServerProcess) -> str:
    """A client opening a WebSocket now: ``"503"`` when refused with that answer, else what
    it got. The request is written by hand: what the server answers is the point, not how
    one client library (websockets' asserts when the close follows the response at once on
    uvloop) takes a refusal."""
    path = "/" + server.url.split("/", 3)[3]
    writer = None
    try:
        async with asyncio.timeout(30):
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            writer.write(UPGRADE.format(path=path).encode())
            head = await reader.readuntil(b"\r\n\r\n")
    except TimeoutError:
        return "unanswered"
    except (ConnectionError, asyncio.IncompleteReadError) as exc:  # closed unanswered
        return type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    return "503" if head.startswith(b"HTTP/1.1 503") else repr(head[:40])


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_past_the_fd_limit_no_waiting_client_is_closed_unanswered(
    start_server, event_loop: str
) -> None:
    # server.max_connections stays below the fd limit, and a refused socket keeps its file
    # descriptor until the client reads its 503 (at most REFUSAL_TIMEOUT): a burst of refused
    # clients that do not read reached the limit before the refusals held were bounded. The
    # standard loop then left the backlog waiting and answered each in turn; uvloop (libuv's
    # EMFILE trick) closed 150 of these 200 sockets and the waiting client unanswered.
    if event_loop == "uvloop":
        pytest.importorskip("uvloop", reason="the uvloop extra is not installed")
    server = await start_server(
        MEMORY, rlimits={resource.RLIMIT_NOFILE: 256}, log_level="INFO", event_loop=event_loop
    )
    assert f"event loop: {event_loop}" in server.log()
    assert "max_connections lowered to 192" in server.log()
    # The cap filled with logged-in clients (no handshake deadline to race): every raw socket
    # below is refused, and ~60 refused at once hold the descriptors left.
    admitted = [await WireClient.connect(server.url, login={}) for _ in range(192)]
    raw: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(200):
            raw.append(await asyncio.open_connection("127.0.0.1", port_of(server)))
        waiting = await waiting_client(server)
        burst = await asyncio.gather(*(waiting_client(server) for _ in range(200)))
        fates = await asyncio.gather(*(refusal_of(reader) for reader, _ in raw))
        latencies = [await rtt(peer, timeout=15) for peer in admitted[::16]]  # unaffected
    finally:
        for _, writer in raw:
            writer.close()
        for peer in admitted[1:]:
            with contextlib.suppress(Exception):
                await peer.close()  # returns once the server closed its side: a slot free
    counted = {fate: fates.count(fate) for fate in set(fates)}
    assert (waiting, counted) == ("503", {"503": 200}), (waiting, counted)
    assert burst == ["503"] * 200, {fate: burst.count(fate) for fate in set(burst)}
    assert max(latencies) < 5.0
    assert await rtt(admitted[0], timeout=15) < 5.0
    assert trips(await metrics(server), "server.max_connections") >= 401
    await admitted[0].close()


def test_connections_per_ip_count_an_ipv6_slash_64_as_one_client(tmp_path: Path) -> None:
    # A client given a /64 (the usual assignment) has 2^64 source addresses: counted one by one,
    # server.max_connections_per_ip would not bound it at all. Real sockets between addresses
    # of one /64 need a network namespace of the test's own (root; CI runs as root).
    import subprocess
    import sys

    helper = Path(__file__).with_name("ipv6_prefix_peer.py")
    try:
        ran = subprocess.run(
            ["unshare", "-n", sys.executable, str(helper), str(tmp_path), *start_args()],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if ran.returncode != 0 and ("unshare failed" in ran.stderr or "'ip'" in ran.stderr):
        pytest.skip(f"no network namespace of our own here (needs root and ip): {ran.stderr}")
    assert ran.returncode == 0, ran.stderr
    # Two from fd00:77::2, then one from fd00:77::3 of the same /64: refused.
    assert json.loads(ran.stdout) == ["open", "open", "503"]


# -- 12. log lines a client can cause ---------------------------------------------------------


async def test_bad_listen_patterns_are_logged_once_each_and_throttled(start_server, peers) -> None:
    server = await start_server(MEMORY, log_level="INFO")
    peer = await peers(server.url)
    for i in range(30):
        await peer.send(Message(Topic.RECORD, RecordAction.LISTEN, name=f"({i}"))
        assert (await peer.recv()).action == R.INVALID_LISTEN_REGEX
    await rtt(peer)
    log = server.log()
    assert "re2.cc" not in log  # RE2's own stderr line (the second copy on main)
    assert 1 <= log.count("sent a bad listen pattern") <= 5, log


async def test_refused_jwt_logins_are_logged_throttled(start_server) -> None:
    server = await start_server(
        {**MEMORY, "auth": [{"type": "jwt", "secret": "s" * 32}]}, log_level="INFO"
    )
    for _ in range(20):  # 60 refused logins: 60 log lines on main, however fast they come
        async with await WireClient.connect(server.url) as peer:
            await peer.handshake()
            for _ in range(3):
                await peer.send(
                    Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps({"token": "x.y.z"}))
                )
                assert (await peer.recv()).action in (
                    AuthAction.AUTH_UNSUCCESSFUL,
                    AuthAction.TOO_MANY_AUTH_ATTEMPTS,
                )
    log = server.log()
    assert 1 <= log.count("jwt login refused") <= 5, log[-3000:]


# -- 9. memory bounded in bytes --------------------------------------------------------------


async def test_the_cache_is_bounded_in_bytes(start_server, peers, tmp_path: Path) -> None:
    server = await start_server(
        {
            "storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{tmp_path}/c.db"},
            "cache": {"max_bytes": 8 * MB},
            "write_behind": {"interval": 0.05},
        },
        rlimits=CAPPED,
    )
    writer, bystander = await peers(server.url), await peers(server.url)
    before = server.status()["VmRSS"]
    names = [f"big/{i}" for i in range(40)]  # 40 records of 500 kB: 20 MB of JSON
    for i, name in enumerate(names):
        await writer.send(write(name, {"i": i, "s": "x" * 500_000}, ack=name))
        reply = await writer.recv(10)
        assert reply.action == R.WRITE_ACKNOWLEDGEMENT, reply
    for name in names:  # every one read back: loaded from storage, evicting others
        assert (await read(writer, name))[1]["s"] == "x" * 500_000
    figures = await metrics(server)
    assert figures["recordgate_store_cached_bytes"] <= 8 * MB
    assert figures["recordgate_store_cached"] < 20
    await assert_healthy(server, bystander, before + 80 * MB)


async def test_slow_consumers_share_one_server_wide_budget(start_server, peers) -> None:
    server = await start_server(
        {**MEMORY, "server": {"max_send_buffer": 8 * MB, "max_send_buffer_total": 24 * MB}},
        rlimits=CAPPED,
    )
    publisher, bystander = await peers(server.url), await peers(server.url)
    # Twelve subscribers that stop reading (the client stops at 16 queued messages): each may
    # hold 8 MB, 96 MB together on main; the budget keeps the total at 24 MB.
    sleepers = [await peers(server.url) for _ in range(12)]
    for sleeper in sleepers:
        await sleeper.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["firehose"], correlation_id="s")
        )
        assert (await sleeper.recv()).is_ack
    before = server.status()["VmRSS"]
    payload = json.dumps("x" * 200_000)
    for _ in range(300):
        await publisher.send(Message(Topic.EVENT, EventAction.EMIT, name="firehose", data=payload))
    assert await rtt(publisher, timeout=30) < 30  # everything sent was handled
    figures = await metrics(server)
    assert figures["recordgate_send_buffer_bytes"] <= 24 * MB
    assert trips(figures, "server.max_send_buffer_total") >= 1
    await assert_healthy(server, bystander, before + 60 * MB)


async def test_subscriptions_of_one_connection_are_bounded(start_server, peers) -> None:
    server = await start_server(MEMORY, rlimits=CAPPED)  # the default: 100,000 per topic
    subscriber, bystander = await peers(server.url), await peers(server.url)
    before = server.status()["VmRSS"]
    # 400,000 event names in 40 messages of 900 kB: about 440 bytes of server memory each,
    # 180 MB on main, and nothing stopped a client from going on.
    for batch in range(40):
        names = [f"{batch:02}/{i:05}/" + "x" * 80 for i in range(10_000)]
        await subscriber.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=names, correlation_id=str(batch))
        )
    answers = [await subscriber.recv(30) for _ in range(40)]
    assert all(a.is_ack for a in answers[:10]), answers[:10]
    for refused in answers[10:]:
        assert (refused.action, refused.is_error) == (EventAction.INVALID_MESSAGE_DATA, True)
        assert "limits.max_subscriptions_per_connection" in json.loads(refused.data or '""')
    await assert_healthy(server, bystander, before + 100 * MB)
    assert trips(await metrics(server), "limits.max_subscriptions_per_connection") == 30


async def test_acknowledged_writes_to_one_record_count_toward_max_pending(
    postgres, start_server, peers
) -> None:
    from tests.proxy import TcpProxy

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        server = await start_server(
            {
                "storage": postgres.section(proxy.url_for(postgres.url)),
                "write_behind": {"max_pending": 200, "retry_initial": 0.05, "retry_max": 0.2},
            },
            rlimits=CAPPED,
        )
        writer = await peers(server.url)
        await writer.send(write("one", {"n": 0}, ack="first"))
        assert (await writer.recv(10)).action == R.WRITE_ACKNOWLEDGEMENT
        await proxy.cut()
        # 2,000 acknowledged writes to one record: they coalesce into one pending snapshot,
        # but each waits for storage (on main: none refused, pending stayed 1).
        await pipelined(writer, [write("one", {"n": i}, ack=str(i)) for i in range(2000)])
        refused = 0
        with contextlib.suppress(TimeoutError):  # until the refusals stop
            while True:
                reply = await writer.recv(1.0)
                assert reply.action == R.RECORD_UPDATE_ERROR, reply
                refused += 1
        assert 1790 <= refused <= 1810  # the accepted ones wait for storage
        figures = await metrics(server)
        assert figures["recordgate_store_waiters"] + figures["recordgate_store_pending"] >= 190
        assert figures["recordgate_store_waiters"] <= 200
        assert trips(figures, "write_behind.max_pending") == refused
        await proxy.restore()
        acked = 0
        async with asyncio.timeout(15):
            while acked + refused < 2000:
                reply = await writer.recv(15)
                assert reply.action in (R.WRITE_ACKNOWLEDGEMENT, R.RECORD_UPDATE_ERROR), reply
                if reply.action == R.WRITE_ACKNOWLEDGEMENT:
                    acked += 1
                else:
                    refused += 1
        assert 190 <= acked <= 210


# -- 11. bulk read storms --------------------------------------------------------------------


async def test_a_bulk_read_storm_does_not_starve_other_clients(
    postgres, start_server, peers
) -> None:
    from connectors.base import Snapshot
    from connectors.sql import SQLConnector

    async with SQLConnector(postgres.url, table=postgres.table) as conn:
        await conn.write([Snapshot("known", 3, {"k": 1})])
    server = await start_server({"storage": postgres.section()}, rlimits=CAPPED)
    storm, victim = await peers(server.url), await peers(server.url)
    for i in range(3):  # 30,000 uncached names; on main 30,000 storage reads at once
        names = [f"missing/{i}/{j}" for j in range(10_000)]
        await storm.send(Message(Topic.RECORD, R.HEAD_BULK, names=names, correlation_id=str(i)))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await victim.send(Message(Topic.RECORD, R.READ, name="known"))
    answer = await victim.recv(10)
    assert (answer.action, answer.version) == (R.READ_RESPONSE, 3), answer
    assert time.monotonic() - start < 5
    for _ in range(3):
        bulk = await storm.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=60)
        assert len(bulk.versions) == 10_000 and set(bulk.versions.values()) == {-1}
    assert server.log().count("loading record") <= 5


async def test_a_notify_storm_on_sqlite_leaves_other_clients_served(
    start_server, peers, tmp_path: Path
) -> None:
    server = await start_server(
        {"storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{tmp_path}/n.db"}},
        rlimits=CAPPED,
    )
    storm, victim = await peers(server.url), await peers(server.url)
    await victim.send(write("known", {"k": 1}, ack="k"))
    assert (await victim.recv(10)).action == R.WRITE_ACKNOWLEDGEMENT
    # 200,000 names to re-read from storage in 20 messages of about 1 MB.
    names = [f"n{i:05}" + "x" * 90 for i in range(10_000)]
    await pipelined(
        storm,
        [Message(Topic.RECORD, R.NOTIFY, names=names, correlation_id=str(i)) for i in range(20)],
    )
    for _ in range(10):
        assert (await read(victim, "known"))[1] == {"k": 1}
        assert await rtt(victim) < 5
        await asyncio.sleep(0.2)
    assert server.alive(), server.log()[-2000:]
    assert "MemoryError" not in server.log(), server.log()[-2000:]
    assert server.status()["VmHWM"] < 200 * MB


async def test_unflushed_records_are_bounded_in_bytes_during_an_outage(
    postgres, start_server, peers
) -> None:
    from tests.proxy import TcpProxy

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        server = await start_server(
            {
                "storage": postgres.section(proxy.url_for(postgres.url)),
                "cache": {"max_bytes": 4 * MB},
                "write_behind": {"interval": 0.05, "retry_initial": 0.05, "retry_max": 0.2},
            },
            rlimits=CAPPED,
        )
        writer = await peers(server.url)
        names = [f"big/{i}" for i in range(20)]
        for name in names:  # created (and cached) while storage is up
            await writer.send(write(name, {}, ack=name))
        for _ in names:
            assert (await writer.recv(10)).action == R.WRITE_ACKNOWLEDGEMENT
        await proxy.cut()
        # 10 MB of records nobody can store yet.
        for i, name in enumerate(names):
            await writer.send(write(name, {"i": i, "s": "x" * 500_000}))
        await writer.send(PING)
        refused = []
        async with asyncio.timeout(10):
            while (reply := await writer.recv(10)).action != ConnectionAction.PONG:
                assert reply.action == R.RECORD_UPDATE_ERROR and reply.is_error, reply
                refused.append(reply.name)
        assert refused == names[8:]  # 8 x 500 kB fit in 4 MB, the 9th would not
        figures = await metrics(server)
        assert figures["recordgate_store_cached_bytes"] <= 4 * MB
        assert trips(figures, "cache.max_bytes") == 12
        await proxy.restore()
        await postgres.wait_for("big/7", (2, {"i": 7, "s": "x" * 500_000}))
        # Stored, so clean and evictable: writes are accepted again.
        await writer.send(write("big/19", {"i": 19}, ack="late"))
        assert (await writer.recv(10)).action == R.WRITE_ACKNOWLEDGEMENT
