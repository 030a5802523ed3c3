"""The Elasticsearch stand-in's own pieces: the header proxy's rewriting, and that a missing
stand-in skips, or fails under ``RECORDGATE_REQUIRE_SERVERS=1``."""

from __future__ import annotations

import pytest

from tests.standins import elasticsearch as standin
from tests.standins.es_header_proxy import plain_media_type


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("application/vnd.elasticsearch+json; compatible-with=9", "application/json"),
        ("application/vnd.elasticsearch+json;compatible-with=8", "application/json"),
        ("application/vnd.elasticsearch+x-ndjson; compatible-with=9", "application/x-ndjson"),
        ("application/json", "application/json"),
        ("text/plain", "text/plain"),
    ],
)
def test_media_types_are_made_plain(sent: str, forwarded: str) -> None:
    assert plain_media_type(sent) == forwarded


@pytest.mark.parametrize("required", ["1", ""])
def test_missing_standin_skips_or_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, required: str
) -> None:
    monkeypatch.setattr(standin, "_shared", None)
    monkeypatch.setattr(standin, "standin_binary", lambda: None)
    monkeypatch.delenv("RECORDGATE_ELASTICSEARCH_URL", raising=False)
    monkeypatch.setenv("RECORDGATE_REQUIRE_SERVERS", required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="osmem-server"):
        standin.require_elasticsearch()
