"""Hostile clients for the live fuzz, in a process of their own (so their work never delays the
control client that measures the server): ``python -m tests.fuzz.hostile URL SEED FRAMES``.

Hypothesis draws a corpus of frames from ``strategies`` (reproducibly, from ``SEED``); each of
``CONNECTIONS`` sockets then sends a stream picked from it by ``random.Random(SEED + i)``: valid
messages of every topic with hostile values, mutants of them, garbage, text and oversized frames,
most after a login, some before. A socket the server closes is opened again. Every frame the
server sends back must decode, and where the server wrote the JSON itself, be strict JSON.

Prints a line when the corpus is drawn, and one JSON line at the end: frames handled (see
``Hostile``) and sent, replies read, why sockets closed, violations, and the last frames each
socket sent (hex) when there were violations.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter, deque
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.exceptions import LoneSurrogateText, ProtocolError
from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    Topic,
    decode,
    encode,
)
from tests.fuzz.strategies import (
    CLIENT_ACTIONS,
    garbage,
    messages,
    mutations,
    wire_frames,
)

__all__ = ["CONNECTIONS", "build_corpus", "main"]

CONNECTIONS = 4
CORPUS_FRAMES = 1 / 25
"""Frames drawn by hypothesis per frame sent (at least ``MIN_CORPUS``); the rest are picks from
them and mutants: drawing costs milliseconds a frame, sending microseconds."""
MIN_CORPUS = 1000
OTHERS_PER_EXAMPLE = 16
"""Per example, besides one message of every (topic, client action): any message, frames
built byte by byte, garbage."""
BURST = 32
SYNC_TIMEOUT = 30.0
"""Seconds a hostile socket waits for the server to catch up (not a latency bound: the
control client measures that)."""
MAX_MESSAGE_SIZE = 65536
"""The live server's ``server.max_message_size``: small, so oversized frames are cheap."""
USERS = ["ann", "bob", "cy", "dee"]

# Topics whose ``data`` the server writes itself (record snapshots, presence, parser notes);
# event and RPC payloads are the senders' own text, forwarded as it came.
SERVER_JSON = {Topic.RECORD, Topic.PRESENCE, Topic.PARSER, Topic.AUTH, Topic.CONNECTION}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def build_corpus(fuzz_seed: int, size: int) -> list[bytes | str]:
    """Frames drawn by hypothesis from ``fuzz_seed``: the same seed gives the same corpus."""
    corpus: list[bytes | str] = []
    # CLOSING ends the socket and the frames after it: the session fuzz covers it, and the
    # other strategies still draw it now and then.
    pairs = [
        (t, a) for t, acts in CLIENT_ACTIONS.items() for a in sorted(set(acts)) if (t, a) != (2, 8)
    ]
    every_action = [messages([t], a).map(encode) for t, a in pairs]
    others = st.lists(
        st.one_of(messages().map(encode), wire_frames().map(lambda c: c.frame), garbage),
        min_size=OTHERS_PER_EXAMPLE,
        max_size=OTHERS_PER_EXAMPLE,
    )
    per_example = len(every_action) + OTHERS_PER_EXAMPLE

    @seed(fuzz_seed)
    @settings(
        max_examples=max(1, size // per_example),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.tuples(*every_action), others)
    def draw(one_of_each: tuple[bytes, ...], more: list[bytes]) -> None:
        corpus.extend(one_of_each)
        corpus.extend(more)

    draw()
    return corpus


def _oversized(size: int) -> bytes:
    return encode(Message(Topic.EVENT, 2, name="big", data=json.dumps("x" * size)))


def check_reply(frame: bytes | str) -> str | None:
    """What is wrong with a frame the server sent, if anything."""
    if not isinstance(frame, bytes):
        return f"text frame from the server: {frame[:80]!r}"
    try:
        msg = decode(frame, max_size=1 << 30)
    except LoneSurrogateText as exc:
        # Only a refusal may echo a lone surrogate, the client's own (as protobuf.js wrote it).
        refusal = isinstance(exc.message, Message) and exc.message.is_error
        return None if refusal else f"a lone surrogate in {exc.message!r:.200}"
    except ProtocolError as exc:
        return f"undecodable frame from the server ({exc}): {frame[:80].hex()}"
    if msg.data is not None and msg.topic in SERVER_JSON:
        try:
            json.loads(msg.data, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            return f"{msg!r:.200} carries data that is not JSON: {exc}"
    return None


def _close_reason(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "closed without a close frame"
    reason = exc.rcvd.reason
    return f"{exc.rcvd.code} {reason if 'exceeds limit' not in reason else 'frame too large'}"


class Closed(Exception):
    """The server closed the socket."""


class Hostile:
    """One hostile socket at a time; ``processed`` counts the frames the server is known to
    have handled: those of a logged-in socket up to its last answered sync (the server handles
    a socket's messages in order), every frame of a socket that stays unauthenticated."""

    def __init__(self, url: str, index: int, fuzz_seed: int, corpus: list[bytes | str]) -> None:
        self.url = url
        self.index = index
        self.rnd = random.Random(fuzz_seed + index)
        self.corpus = corpus
        self.processed = 0
        self.sent = 0
        self.received = 0
        self.violations: list[str] = []
        self.closes: Counter[str] = Counter()
        self.replies: Counter[str] = Counter()
        self.recent: deque[bytes | str] = deque(maxlen=50)
        self._syncs = 0
        self._synced: asyncio.Event | None = None
        self._closed = False

    def next_frame(self) -> bytes | str:
        rnd = self.rnd
        roll = rnd.random()
        if roll < 0.001:
            return "text frames close the socket (1003)"
        if roll < 0.004:  # answered with MAXIMUM_MESSAGE_SIZE_EXCEEDED, or closed (1009)
            return _oversized(rnd.randrange(MAX_MESSAGE_SIZE - 64, MAX_MESSAGE_SIZE * 3))
        frame = self.corpus[rnd.randrange(len(self.corpus))]
        if isinstance(frame, bytes) and rnd.random() < 0.1:
            frame = mutations(frame, rnd, 1)[0]
        return frame

    async def run(self, frames: int) -> None:
        while self.processed < frames:
            try:
                async with connect(self.url, max_size=None, compression=None) as ws:
                    self._closed = False
                    reader = asyncio.create_task(self.read(ws))
                    try:
                        await self.session(ws, frames)
                    finally:
                        reader.cancel()
                        await asyncio.gather(reader, return_exceptions=True)
            except (ConnectionClosed, Closed):
                pass  # counted by the reader
            except Exception as exc:  # dropped by the server mid-send, also fine
                # (websockets' client can trip over a transport the server aborted)
                self.closes[f"dropped: {type(exc).__name__}"] += 1

    async def session(self, ws: ClientConnection, frames: int) -> None:
        logged_in = await self.login(ws)
        while self.processed < frames:
            for _ in range(BURST):
                frame = self.next_frame()
                self.recent.append(frame)
                self.sent += 1
                await ws.send(frame)
            if logged_in:
                await self.sync(ws)
            else:
                await asyncio.sleep(0)
            self.processed += BURST

    async def sync(self, ws: ClientConnection) -> None:
        """Until the server has handled everything sent so far (an ack that only it can send)."""
        self._syncs += 1
        self._synced = asyncio.Event()
        await ws.send(encode(self.sync_message()))
        await asyncio.wait_for(self._synced.wait(), SYNC_TIMEOUT)
        if self._closed:
            raise Closed  # the last burst may not have been handled: not counted

    def sync_message(self) -> Message:
        cid = f"sync/{self.index}/{self._syncs}"
        return Message(Topic.EVENT, EventAction.UNSUBSCRIBE, names=["sync"], correlation_id=cid)

    def is_sync_ack(self, msg: Message) -> bool:
        sync = self.sync_message()
        return (msg.topic, msg.action, msg.correlation_id) == (
            sync.topic,
            sync.action,
            sync.correlation_id,
        )

    async def login(self, ws: ClientConnection) -> bool:
        """Mostly a proper handshake and login (as one of a few users); sometimes none."""
        roll = self.rnd.random()
        if roll < 0.1:
            return False  # stays unauthenticated: everything it sends is refused by the session
        challenge = Message(
            Topic.CONNECTION, ConnectionAction.CHALLENGE, url=self.url, protocol_version="0.1a"
        )
        user = self.rnd.choice(USERS) if roll < 0.8 else None
        auth = {} if user is None else {"username": user}
        for msg in (challenge, Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps(auth))):
            await ws.send(encode(msg))
        self.processed += 2
        return True

    async def read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                self.received += 1
                problem = check_reply(frame)
                if problem is not None:
                    self.violations.append(problem)
                    continue
                try:
                    msg = decode(frame, max_size=1 << 30)  # type: ignore[arg-type]
                except LoneSurrogateText:
                    continue  # a refusal echoing one, checked above
                self.replies[f"{msg.topic}.{msg.action}"] += 1
                synced = self._synced
                if synced is not None and msg.is_ack and self.is_sync_ack(msg):
                    synced.set()
        except ConnectionClosed as exc:
            self.closes[_close_reason(exc)] += 1
        finally:
            self._closed = True
            if self._synced is not None:
                self._synced.set()

    def report(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "sent": self.sent,
            "received": self.received,
            "violations": self.violations[:20],
            "recent": [f.hex() if isinstance(f, bytes) else f for f in self.recent]
            if self.violations
            else [],
        }


async def run(url: str, fuzz_seed: int, frames: int) -> dict[str, Any]:
    corpus = build_corpus(fuzz_seed, max(MIN_CORPUS, int(frames * CORPUS_FRAMES)))
    print(json.dumps({"corpus": len(corpus)}), flush=True)  # the generation is done
    clients = [Hostile(url, i, fuzz_seed, corpus) for i in range(CONNECTIONS)]
    share = max(1, frames // CONNECTIONS)
    await asyncio.gather(*(client.run(share) for client in clients))
    reports = [client.report() for client in clients]
    return {
        "processed": sum(r["processed"] for r in reports),
        "sent": sum(r["sent"] for r in reports),
        "received": sum(r["received"] for r in reports),
        "violations": [v for r in reports for v in r["violations"]],
        "closes": sum((c.closes for c in clients), Counter()),
        "replies_by": sum((c.replies for c in clients), Counter()).most_common(25),
        "recent": {i: r["recent"] for i, r in enumerate(reports) if r["recent"]},
    }


def main(argv: list[str]) -> None:
    url, fuzz_seed, frames = argv[0], int(argv[1]), int(argv[2])
    result = asyncio.run(run(url, fuzz_seed, frames))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
