"""The README's MongoDB query for data teams, run verbatim against the stored layout on the
MongoDB stand-in (NX-27017)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from connectors.base import Put
from connectors.mongodb import DATA_TEAM_QUERY, DATA_TEAM_QUERY_MONGOSH
from tests.connectors.mongodb.conftest import MakeMongo

README = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")

USERS = [
    Put("user/alice", 1, {"age": 31, "city": "Lyon"}),
    Put("user/bob", 1, {"age": 25}),
    Put("user/carol", 2, {"age": 47, "tags": ["admin"]}),
    Put("user/dave", 1, {"age": 30}),
    Put("user/$odd", 1, {"age": 50, "$meta": 1}),  # stored as data_json: invisible to the query
    Put("pet/rex", 1, {"age": 99}),  # another collection: must not match
]


def test_the_readme_shows_this_query() -> None:
    assert f"```js\n{DATA_TEAM_QUERY_MONGOSH}\n```" in README
    # The mongosh text is the PyMongo filter, written as JSON.
    shown = re.fullmatch(
        r"db\.records\.find\((.*)\)\.sort\(\{\"_id\": 1\}\)", DATA_TEAM_QUERY_MONGOSH
    )
    assert shown is not None and json.loads(shown.group(1)) == DATA_TEAM_QUERY


async def test_the_query_finds_users_older_than_30(make_mongo: MakeMongo) -> None:
    mongo = await make_mongo()  # default collection name: records, as in the README
    assert mongo.settings.collection == "records"
    await mongo.write(USERS)
    records = mongo.collection.database["records"]
    found = [doc["_id"] async for doc in records.find(DATA_TEAM_QUERY).sort({"_id": 1})]
    assert found == ["user/alice", "user/carol"]


async def test_records_stored_as_json_text_are_listed(make_mongo: MakeMongo) -> None:
    mongo = await make_mongo()
    await mongo.write(USERS)
    records = mongo.collection.database["records"]
    found = [doc["_id"] async for doc in records.find({"data_json": {"$exists": True}})]
    assert found == ["user/$odd"]
