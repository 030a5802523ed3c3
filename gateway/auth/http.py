"""HTTP webhook authentication: ``auth: [{type: http, url: ..., ...}]``, as deepstream's.

Each login POSTs ``{"authData": ..., "connectionData": {"remoteAddress": ..., "headers":
{...}}}`` as JSON to ``url`` (the connection headers named in ``headers`` are passed; fields of
the auth data named in ``promote_to_header`` become request headers). A status in
``permitted_status_codes`` means valid: a JSON object answer gives ``id`` (or ``username``),
``clientData`` and ``serverData``, a plain string answer is the user id. Any other status is a
failed login (the answer's ``clientData`` is passed to the client). Network errors and statuses
in ``retry_status_codes`` are retried ``retries`` times, ``retry_interval`` apart; after that
the login fails with ``clientData: {error: "AUTH_RETRY_ATTEMPTS_EXCEEDED"}``. Answers larger
than ``max_response_size`` bytes fail the login.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from ..exceptions import ConfigError
from ..limits import ThrottledLog
from .base import AuthResult

__all__ = ["HttpAuthenticator"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)  # clients cause these lines, one per login attempt


class HttpAuthenticator:
    def __init__(
        self,
        url: str,
        *,
        permitted_status_codes: Sequence[int] = (200,),
        timeout: float = 5.0,
        retries: int = 0,
        retry_interval: float = 0.5,
        retry_status_codes: Sequence[int] = (502, 503, 504),
        headers: Sequence[str] = (),
        promote_to_header: Sequence[str] = (),
        max_response_size: int = 1 << 20,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"auth http: url must be an http(s) URL, got {url!r}")
        try:
            import httpx
        except ImportError as exc:  # a core dependency; only a broken install lacks it
            raise ConfigError("auth http needs httpx: pip install httpx") from exc
        self.url = url
        self.permitted = frozenset(permitted_status_codes)
        self.retry_statuses = frozenset(retry_status_codes)
        self.retries = retries
        self.retry_interval = retry_interval
        self.pass_headers = tuple(h.lower() for h in headers)
        self.promote = tuple(promote_to_header)
        self.max_response_size = max_response_size
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._errors = (httpx.HTTPError, httpx.InvalidURL)

    async def check(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult | None:
        connection = connection or {}
        headers = {
            "content-type": "application/json",
            **{k: str(v) for k, v in auth_data.items() if k in self.promote and v},
        }
        body = {
            "authData": auth_data,
            "connectionData": {
                "remoteAddress": connection.get("remoteAddress"),
                "headers": {
                    name: value
                    for name, value in (connection.get("headers") or {}).items()
                    if name.lower() in self.pass_headers
                },
            },
        }
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_interval)
            try:
                status, answer = await self._post(body, headers)
            except self._errors as exc:
                # The exception names the URL, never the auth data.
                _throttled.warning("auth http: %s: %s", self.url, type(exc).__name__)
                continue
            if status in self.retry_statuses:
                _throttled.warning("auth http: %s answered %d", self.url, status)
                continue
            return self._result(status, answer)
        return AuthResult(False, client_data={"error": "AUTH_RETRY_ATTEMPTS_EXCEEDED"})

    async def _post(self, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        request = self._client.build_request("POST", self.url, json=body, headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_response_size:
                    _throttled.warning("auth http: %s answered more than %d bytes", self.url, size)
                    return 0, None  # neither permitted nor retried: a failed login
                chunks.append(chunk)
        finally:
            await response.aclose()
        text = b"".join(chunks).decode("utf-8", "replace")
        try:
            answer: Any = json.loads(text) if text else None
        except ValueError:
            answer = text
        return response.status_code, answer

    def _result(self, status: int, answer: Any) -> AuthResult:
        if status not in self.permitted:
            client_data = answer.get("clientData") if isinstance(answer, dict) else None
            return AuthResult(False, client_data=client_data)
        if isinstance(answer, str) and answer:
            return AuthResult(True, user_id=answer)
        if not isinstance(answer, dict):
            return AuthResult(True)
        user = answer.get("id", answer.get("username"))
        return AuthResult(
            True,
            user_id=user if isinstance(user, str) and user else "open",
            client_data=answer.get("clientData"),
            server_data=answer.get("serverData"),
        )

    def reload(self) -> None:
        pass

    async def close(self) -> None:
        await self._client.aclose()
