"""The MongoDB stand-in helper: a missing NX-27017 skips, or fails when servers are required."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.standins import mongodb


def test_a_missing_standin_skips_or_fails_under_require(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongodb, "standin_executable", lambda: None)
    monkeypatch.delenv("RECORDGATE_REQUIRE_SERVERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nx-27017 is not installed"):
        mongodb.require_standin()
    monkeypatch.setenv("RECORDGATE_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="RECORDGATE_REQUIRE_SERVERS=1"):
        mongodb.require_standin()


def test_the_standin_answers_and_dies_with_sigkill(tmp_path: Path) -> None:
    mongodb.require_standin()
    standin = mongodb.MongoStandin(tmp_path).start()
    assert standin.process is not None and standin.process.poll() is None
    standin.kill()
    assert standin.process.returncode == -9
