"""The README's promises that a test can hold it to: its queries and its config example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from connectors.redis.queries import DATA_TEAM_COMMANDS
from connectors.sql.queries import DATA_TEAM_QUERIES
from gateway.config import config_from_dict

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("dialect", sorted(DATA_TEAM_QUERIES))
def test_the_data_team_queries_in_the_readme_are_the_tested_ones(dialect: str) -> None:
    # tests/connectors/test_sql.py runs DATA_TEAM_QUERIES against real databases.
    assert f"```sql\n{DATA_TEAM_QUERIES[dialect]}\n```" in README


def test_the_readme_config_example_is_a_valid_config() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        config = config_from_dict(yaml.safe_load(block))
        assert config.server.path.startswith("/")


def test_the_readme_names_the_two_commands() -> None:
    assert "pip install . && recordgate start" in README
    assert "pip install -e '.[test]' && pytest" in README


@pytest.mark.parametrize("purpose", sorted(DATA_TEAM_COMMANDS))
def test_the_redis_commands_in_the_readme_are_the_tested_ones(purpose: str) -> None:
    # tests/connectors/test_redis.py runs DATA_TEAM_COMMANDS with redis-cli.
    assert f"\n{DATA_TEAM_COMMANDS[purpose]}\n" in README


def test_the_limits_table_names_real_keys_with_their_defaults() -> None:
    from gateway.config import ClusterConfig, Config

    section = README.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)\.([a-z_]+)` \| `([^`]+)`", section, re.M)
    assert len(rows) >= 15
    defaults = Config()
    for part, key, default in rows:
        section_defaults = getattr(defaults, part)
        if part == "cluster":  # no cluster section by default: its defaults when present
            section_defaults = ClusterConfig()
        value = getattr(section_defaults, key)
        if default.isdigit():
            assert value == int(default), (part, key)
        else:  # limits.max_record_size: another key's value
            assert value is None and default == "server.max_message_size", (part, key)
