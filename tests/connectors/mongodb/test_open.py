"""Options, and ``open()`` on the MongoDB stand-in (NX-27017): idempotent index creation, also
when several servers open one collection at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from connectors import create_connector
from connectors.mongodb import MongoConnector
from gateway.exceptions import ConfigError
from tests.connectors.mongodb.conftest import MakeMongo


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://127.0.0.1:27017", {}, "mongodb://host"),
        ("mongodb://", {}, "mongodb://host"),
        ("mongodb://h/db?w=1", {}, "write_concern"),
        ("mongodb://h/db?journal=false", {}, "write_concern"),
        ("mongodb://h/db?wtimeoutMS=5", {}, "write_concern"),
        ("mongodb://h", {"write_concern": 0}, "at least 1"),
        ("mongodb://h", {"write_concern": ""}, "empty"),
        ("mongodb://h", {"journal": "maybe"}, "journal"),
        ("mongodb://h", {"timeout": "0"}, "timeout"),
        ("mongodb://h", {"timeout": "soon"}, "timeout"),
        ("mongodb://h", {"page_size": 0}, "page_size"),
        ("mongodb://h/my.db", {}, "database name"),
        ("mongodb://h", {"database": "a/b"}, "database name"),
        ("mongodb://h", {"collection": ""}, "collection name"),
        ("mongodb://h", {"collection": "a$b"}, "collection name"),
        ("mongodb://h", {"collection": "system.x"}, "collection name"),
        ("mongodb://h", {"collection": "c" * 300}, "collection name"),
    ],
)
def test_bad_options_are_refused_without_io(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MongoConnector(url, **options)
    with pytest.raises(ConfigError, match="mongodb"):
        create_connector("mongodb", url, **options)


def test_password_is_not_in_messages() -> None:
    with pytest.raises(ValueError) as caught:
        MongoConnector("mongodb+xyz://ada:s3cret@h/db")
    assert "s3cret" not in str(caught.value)


def test_database_from_url_option_or_default() -> None:
    assert MongoConnector("mongodb://h/fromurl").settings.database == "fromurl"
    assert MongoConnector("mongodb://h/fromurl", database="opt").settings.database == "opt"
    assert MongoConnector("mongodb://h").settings.database == "recordgate"
    assert MongoConnector("mongodb://h/?replicaSet=rs").settings.database == "recordgate"


def test_importing_the_package_imports_no_driver() -> None:
    code = (
        "import sys, connectors, connectors.mongodb;"
        "print(sorted(m for m in ('pymongo', 'bson') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_missing_driver_is_one_line_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['pymongo'] = None;"  # as if PyMongo were not installed
        "from connectors import create_connector\n"
        "try: create_connector('mongodb', 'mongodb://h/db')\n"
        "except Exception as exc: print(type(exc).__name__, exc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("DriverMissing "), done.stdout + done.stderr
    assert "pip install 'recordgate[mongodb]'" in done.stdout
    assert done.stdout.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "aimed", "address"),
    [
        ("mongodb://h:1/db", "mongodb://127.0.0.1:9/db?directConnection=true", ("h", 1)),
        ("mongodb://u:p@h/db?authSource=admin", "mongodb://u:p@127.0.0.1:9/db?authSource=admin"
         "&directConnection=true", ("h", 27017)),
        ("mongodb://a:1,b:2/db?replicaSet=rs&w2=x", "mongodb://127.0.0.1:9/db?w2=x"
         "&directConnection=true", ("a", 1)),
        ("mongodb+srv://c.example.net/db", "mongodb://127.0.0.1:9/db?directConnection=true",
         None),
        ("mongodb://[::1]:7/db", "mongodb://127.0.0.1:9/db?directConnection=true", ("::1", 7)),
    ],
)  # fmt: skip
def test_network_test_hooks(url: str, aimed: str, address: tuple[str, int] | None) -> None:
    assert MongoConnector.url_for(url, "127.0.0.1", 9) == aimed
    assert MongoConnector.server_address(url) == address


async def test_concurrent_opens_create_one_index(make_mongo: MakeMongo) -> None:
    connectors = [await make_mongo(open=False, collection="fresh") for _ in range(8)]
    await asyncio.gather(*(c.open() for c in connectors))
    await asyncio.gather(*(c.open() for c in connectors))  # opening again is a no-op
    indexes = await connectors[0].collection.index_information()
    keys = sorted(tuple(info["key"]) for info in indexes.values())
    assert keys == [(("_id", 1),), (("collection", 1),)]
    another = await make_mongo(collection="fresh")  # a later server opening it
    assert len(await another.collection.index_information()) == 2


async def test_calls_before_open_and_after_close_fail_cleanly(make_mongo: MakeMongo) -> None:
    from connectors.base import StorageUnavailable

    mongo = await make_mongo(open=False)
    with pytest.raises(StorageUnavailable, match="not open"):
        await mongo.get("x")
    await mongo.open()
    await mongo.close()
    await mongo.close()  # idempotent
    with pytest.raises(StorageUnavailable, match="not open"):
        await mongo.write([])
