"""The MongoDB connector's options, checked without I/O and without the driver.

Invariants: a ``Settings`` names a ``mongodb://`` or ``mongodb+srv://`` URL whose query sets no
write concern (the ``write_concern``/``journal`` options do, so one place decides what an
acknowledgement means), a database and collection name MongoDB accepts, a positive timeout and
an acknowledged write concern (``w: 0`` would make every acknowledgement a guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from connectors._common import option_float, option_int

__all__ = ["DEFAULT_COLLECTION_NAME", "DEFAULT_DATABASE", "Settings", "parse_settings"]

DEFAULT_DATABASE = "recordgate"
DEFAULT_COLLECTION_NAME = "records"

_SCHEMES = ("mongodb", "mongodb+srv")
# URL options that would compete with `write_concern`/`journal` (matched case-insensitively).
_WRITE_CONCERN_KEYS = {"w", "journal", "j", "wtimeoutms", "fsync"}
# https://www.mongodb.com/docs/manual/reference/limits/#naming-restrictions
_BAD_DATABASE_CHARS = set('/\\. "$*<>:|?\x00')
_MAX_DATABASE_BYTES = 63
_MAX_NAMESPACE_BYTES = 255


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    database: str
    collection: str
    timeout: float
    """Seconds; bounds every call, and the driver's server selection, connect and operations."""
    write_concern: str | int
    """``"majority"`` (default), a number of members (>= 1), or a tag-set name."""
    journal: bool
    page_size: int


def parse_settings(
    url: str,
    *,
    database: str | None,
    collection: str,
    timeout: float | str,
    write_concern: str | int,
    journal: bool | str,
    page_size: int | str,
) -> Settings:
    """Check every option; ``ValueError`` names the one that is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.netloc.rpartition("@")[2]:
        raise ValueError(
            f"a MongoDB URL looks like mongodb://host:27017/database, got {_redact(url)!r}"
        )
    competing = sorted(
        key for key, _ in parse_qsl(parts.query) if key.lower() in _WRITE_CONCERN_KEYS
    )
    if competing:
        raise ValueError(
            f"the URL sets {', '.join(competing)}: set the write concern with the connector's "
            "'write_concern' and 'journal' options instead"
        )
    url_database = unquote(parts.path.lstrip("/"))
    name = database or url_database or DEFAULT_DATABASE
    _check_database(name)
    if not isinstance(collection, str):
        raise ValueError(f"option 'collection' must be a string, got {collection!r}")
    _check_collection(name, collection)
    seconds = option_float(timeout, "timeout")
    if not seconds > 0:
        raise ValueError(f"option 'timeout' must be positive, got {timeout!r}")
    size = option_int(page_size, "page_size")
    if size < 1:
        raise ValueError(f"option 'page_size' must be at least 1, got {page_size!r}")
    return Settings(
        url=url,
        database=name,
        collection=collection,
        timeout=seconds,
        write_concern=_write_concern(write_concern),
        journal=_boolean(journal, "journal"),
        page_size=size,
    )


def _write_concern(value: str | int) -> str | int:
    if isinstance(value, bool):
        raise ValueError(
            f"option 'write_concern' must be 'majority', a number or a tag set name, got {value!r}"
        )
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        members = int(text)
        if members < 1:
            raise ValueError(
                "option 'write_concern' must acknowledge writes (at least 1 member): with 0 an "
                "acknowledgement would not mean the write is stored"
            )
        return members
    if not text:
        raise ValueError("option 'write_concern' must not be empty")
    return text


def _boolean(value: bool | str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"option {name!r} must be true or false, got {value!r}")


def _check_database(name: str) -> None:
    bad = sorted(set(name) & _BAD_DATABASE_CHARS)
    if bad or len(name.encode()) > _MAX_DATABASE_BYTES:
        raise ValueError(
            f"database name {name!r} is not valid in MongoDB (at most {_MAX_DATABASE_BYTES} "
            f"bytes, none of {''.join(sorted(_BAD_DATABASE_CHARS - {chr(0)}))!r} or NUL)"
        )


def _check_collection(database: str, name: str) -> None:
    if (
        not name
        or "$" in name
        or "\x00" in name
        or name.startswith("system.")
        or len(f"{database}.{name}".encode()) > _MAX_NAMESPACE_BYTES
    ):
        raise ValueError(
            f"collection name {name!r} is not valid in MongoDB (not empty, no '$' or NUL, not "
            f"starting with 'system.', database.collection at most {_MAX_NAMESPACE_BYTES} bytes)"
        )


def _redact(url: str) -> str:
    """``url`` without a password, for messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        return parts._replace(netloc=f"{user}:***@{hosts}").geturl()
    return url
