"""A strict HTTP/1.1 request reader for the API's POSTs, sans-I/O: bytes in, one request out;
and the response it gets.

It reads one request: the head (request line and headers, at most ``MAX_HEAD`` bytes) and a
body of exactly ``Content-Length`` bytes. Anything else is refused with the status a client can
act on: no length (411; chunked bodies are not supported), a length over ``max_body_size``
(413, decided from the header before a byte of the body is read), a malformed head (400), a
head too large (431). The WebSocket handshake and other GETs never come here.
"""

from __future__ import annotations

import http
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_HEAD", "HttpRefusal", "HttpRequest", "HttpResponse", "RequestReader"]

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

MAX_HEAD = 16 * 1024
"""Bytes of request line and headers together."""
MAX_HEADERS = 100

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (/[\x21-\x7e]*) HTTP/1\.[01]")
_DIGITS = re.compile(rb"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    """The path without its query string."""
    headers: dict[str, str]
    """Lower-case names; a header sent twice keeps its values joined by ", "."""
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpRefusal:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, status: int, text: str) -> HttpResponse:
        return cls(status, TEXT, (text + "\n").encode())

    @classmethod
    def json(cls, value: Any, status: int = 200) -> HttpResponse:
        return cls(status, JSON, json.dumps(value, separators=(",", ":")).encode())

    def wire(self, server: str) -> bytes:
        """The response as sent; the connection closes after it (no keep-alive)."""
        head = (
            f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Connection: close\r\n"
            f"Server: {server}\r\n\r\n"
        )
        return head.encode() + self.body


class RequestReader:
    """Feed it bytes; ``feed`` answers None (more needed), the request, or a refusal."""

    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        self._buffer = bytearray()
        self._head: tuple[str, str, dict[str, str]] | None = None
        self._length = 0
        self.continue_now = False
        """Set once the head asked ``Expect: 100-continue`` and passed: the caller sends
        ``100 Continue`` (curl waits a second for it before a body over 1 kB) and clears it."""

    def feed(self, data: bytes) -> HttpRequest | HttpRefusal | None:
        self._buffer += data
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    return HttpRefusal(431, "Request header fields too large.")
                return None
            if end > MAX_HEAD:
                return HttpRefusal(431, "Request header fields too large.")
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            parsed = self._parse_head(head)
            if isinstance(parsed, HttpRefusal):
                return parsed
            self._head = parsed
            expect = parsed[2].get("expect", "").lower()
            self.continue_now = expect == "100-continue" and len(self._buffer) < self._length
        if len(self._buffer) < self._length:
            return None
        method, path, headers = self._head
        return HttpRequest(method, path, headers, bytes(self._buffer[: self._length]))

    def _parse_head(self, head: bytes) -> tuple[str, str, dict[str, str]] | HttpRefusal:
        lines = head.split(b"\r\n")
        match = _REQUEST_LINE.fullmatch(lines[0])
        if match is None:
            return HttpRefusal(400, "Malformed request line.")
        if len(lines) - 1 > MAX_HEADERS:
            return HttpRefusal(431, "Too many request headers.")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                return HttpRefusal(400, "Malformed request header.")
            try:
                text = value.strip(b" \t").decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                return HttpRefusal(400, "Malformed request header.")
            if any(ord(c) < 0x20 and c != "\t" for c in text):
                return HttpRefusal(400, "Malformed request header.")
            key = name.decode("ascii").lower()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if "transfer-encoding" in headers:
            return HttpRefusal(411, "Chunked bodies are not supported: send a Content-Length.")
        length = headers.get("content-length")
        if length is None:
            return HttpRefusal(411, "A Content-Length header is required.")
        if _DIGITS.fullmatch(length.encode()) is None:
            return HttpRefusal(400, "Malformed Content-Length.")
        self._length = int(length)
        if self._length > self.max_body_size:
            return HttpRefusal(
                413, f"Request body over {self.max_body_size} bytes (http.max_body_size)."
            )
        method = match.group(1).decode()
        path = match.group(2).decode().split("?", 1)[0]
        return method, path, headers
