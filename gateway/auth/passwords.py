"""Password hashes for the users file: scrypt from the standard library, salted and slow.

Format: ``$scrypt$ln=15,r=8,p=1$SALT$HASH`` (salt and hash in unpadded base64), the shape
passlib and others use, so the parameters travel with each hash and can be raised later without
invalidating old ones. Verification compares in constant time; it takes tens of milliseconds on
purpose, so callers run it in a worker thread, a few at a time (see ``file.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Final

__all__ = ["check_format", "hash_password", "verify_password"]

_LOG2_N: Final = 15  # n = 32768: about 32 MiB and 50-100 ms per hash on a server core
_R: Final = 8
_P: Final = 1
_KEY_LENGTH: Final = 32
_FORMAT = re.compile(r"\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)\Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=2 * 128 * n * r * p + (1 << 20),
        dklen=length,
    )


def hash_password(password: str) -> str:
    """A new salted hash of ``password``, to paste into the users file."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, _LOG2_N, _R, _P, _KEY_LENGTH)
    return f"$scrypt$ln={_LOG2_N},r={_R},p={_P}${_b64(salt)}${_b64(digest)}"


def check_format(encoded: str) -> bool:
    """Whether ``encoded`` is a hash this module can verify (checked when the file loads)."""
    match = _FORMAT.match(encoded)
    return match is not None and 10 <= int(match.group(1)) <= 20 and int(match.group(2)) <= 32


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (a malformed hash matches nothing)."""
    match = _FORMAT.match(encoded)
    if match is None:
        return False
    log2_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    expected = _unb64(match.group(5))
    actual = _scrypt(password, _unb64(match.group(4)), log2_n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)
