"""Configuration: YAML in, typed frozen sections out; every mistake names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import Config, ServerConfig, config_from_dict, load_config
from gateway.exceptions import ConfigError


def test_no_file_gives_the_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert (config.server.host, config.server.port, config.server.path) == (
        "0.0.0.0",
        6020,
        "/deepstream",
    )
    assert config.server.max_message_size == 1_048_576
    assert (config.server.heartbeat_interval, config.server.unauthenticated_timeout) == (30, 180)
    assert config.server.max_auth_attempts == 3


def test_yaml_is_loaded_into_typed_sections(tmp_path: Path) -> None:
    path = tmp_path / "recordgate.yaml"
    path.write_text(
        "# a comment\n"
        "server:\n"
        "  host: 127.0.0.1\n"
        "  port: 7000\n"
        "  heartbeat_interval: 5      # an int where a float is expected is fine\n"
        "  unauthenticated_timeout: 2.5\n"
        "rpc:\n"
        "  ack_timeout: 0.25\n"
        "listen:\n"
        "  response_timeout: 1\n"
    )
    config = load_config(path)
    assert config.server == ServerConfig(
        host="127.0.0.1", port=7000, heartbeat_interval=5.0, unauthenticated_timeout=2.5
    )
    assert isinstance(config.server.heartbeat_interval, float)
    assert config.rpc.ack_timeout == 0.25 and config.rpc.response_timeout == 10.0
    assert config.listen.response_timeout == 1.0


@pytest.mark.parametrize("text", ["", "# nothing\n", "server:\n", "server: null\n"])
def test_empty_files_and_sections_mean_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path).server == ServerConfig()


def test_sections_are_frozen() -> None:
    config = config_from_dict({"server": {"port": 1}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sever": {}}, "config: unknown key(s) sever"),
        ({"server": {"prot": 1, "hots": "x"}}, "server: unknown key(s) hots, prot"),
        ({"rpc": {"ack": 1}}, "rpc: unknown key(s) ack"),
        ({"server": {"port": "6020"}}, "server.port: expected int, got '6020'"),
        ({"server": {"port": 6020.0}}, "server.port: expected int, got 6020.0"),
        ({"server": {"port": True}}, "server.port: expected int, got True"),
        ({"server": {"host": 127}}, "server.host: expected str, got 127"),
        ({"server": {"heartbeat_interval": "30s"}}, "server.heartbeat_interval: expected float"),
        ({"server": {"heartbeat_interval": False}}, "server.heartbeat_interval: expected float"),
        ({"server": "localhost"}, "server: expected a mapping, got str"),
        ({"rpc": [1]}, "rpc: expected a mapping, got list"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"port": -1}, "server.port must be between 0 and 65535"),
        ({"port": 65536}, "server.port must be between 0 and 65535"),
        ({"path": "deepstream"}, "server.path must start with /"),
        ({"health_path": ""}, "server.health_path must start with /"),
        ({"max_message_size": 0}, "server.max_message_size must be at least 1"),
        ({"max_auth_attempts": 0}, "server.max_auth_attempts must be at least 1"),
        ({"max_json_depth": 0}, "server.max_json_depth must be between 1 and 500"),
        ({"max_json_depth": 501}, "server.max_json_depth must be between 1 and 500"),
        ({"heartbeat_interval": 0}, "server.heartbeat_interval must be positive"),
        ({"unauthenticated_timeout": -1}, "server.unauthenticated_timeout must be positive"),
    ],
)
def test_values_out_of_range_are_refused(server: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"server": server})


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- server\n- rpc\n")
    with pytest.raises(ConfigError, match="config: expected a mapping, got list"):
        load_config(path)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server: {port: [\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML"):
        load_config(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_yaml_cannot_build_objects(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server: !!python/object:os.system {}\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_cluster_section_is_typed_and_optional() -> None:
    assert Config().cluster is None  # no section: the node runs alone, no Redis needed
    shared = {"type": "sql", "url": "postgresql+asyncpg://db/app"}
    config = config_from_dict(
        {
            "cluster": {"url": "redis://r:6379/1", "prefix": "app", "node_name": "a"},
            "storage": shared,
        }
    )
    assert config.cluster is not None
    assert (config.cluster.url, config.cluster.prefix, config.cluster.node_name) == (
        "redis://r:6379/1",
        "app",
        "a",
    )
    assert (config.cluster.heartbeat_interval, config.cluster.node_timeout) == (1.0, 3.0)


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ({}, "(embedded SQLite)"),
        ({"type": "sql", "url": "sqlite+aiosqlite:///x.db"}, "at sqlite+aiosqlite"),
        ({"type": "memory"}, "storage type 'memory'"),
    ],
)
def test_cluster_refuses_storage_local_to_one_node(storage: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match="every node must share one storage") as caught:
        config_from_dict({"cluster": {}, "storage": storage})
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("cluster", "key"),
    [
        ({"type": "etcd"}, "cluster.type"),
        ({"url": "http://r:6379"}, "cluster.url"),
        ({"prefix": "a{b}"}, "cluster.prefix"),
        ({"prefix": "a:b"}, "cluster.prefix"),
        ({"prefix": ""}, "cluster.prefix"),
        ({"heartbeat_interval": 0}, "cluster.heartbeat_interval"),
        ({"heartbeat_interval": 2, "node_timeout": 3}, "cluster.node_timeout"),
        ({"max_bus_queue": 0}, "cluster.max_bus_queue"),
        ({"bus_check_interval": 0}, "cluster.bus_check_interval"),
        ({"bus_check_interval": -1}, "cluster.bus_check_interval"),
        ({"bus_check_interval": 61}, "cluster.bus_check_interval"),
        ({"bus_check_interval": "1s"}, "cluster.bus_check_interval"),
        ({"nodes": 3}, "unknown key(s) nodes"),
    ],
)
def test_cluster_mistakes_name_their_key(cluster: dict[str, object], key: str) -> None:
    storage = {"type": "sql", "url": "postgresql+asyncpg://db/app"}
    with pytest.raises(ConfigError, match=key.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict({"cluster": cluster, "storage": storage})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"http": {"path": "api"}}, "http.path must start with /"),
        ({"http": {"path": "/"}}, "http.path must start with /"),
        ({"http": {"max_body_size": 0}}, "http.max_body_size must be at least 1"),
        ({"http": {"max_tokens": 0}}, "http.max_tokens must be at least 1"),
        ({"http": {"request_timeout": 0}}, "http.request_timeout must be positive"),
        ({"http": {"token_ttl": -1}}, "http.token_ttl must be positive"),
        ({"http": {"enabled": "yes"}}, "http.enabled"),
        ({"listen": {"rematch_interval": -1}}, "listen.rematch_interval must be 0"),
        ({"listen": {"response_timeout": 0}}, "listen.response_timeout must be positive"),
        ({"listen": {"shuffle_providers": 1}}, "listen.shuffle_providers"),
    ],
)
def test_http_and_listen_values_are_checked(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_http_and_listen_defaults() -> None:
    config = config_from_dict({})
    assert (config.http.enabled, config.http.path, config.http.auth_path) == (
        True,
        "/api",
        "/api/auth",
    )
    assert (config.listen.shuffle_providers, config.listen.rematch_interval) == (True, 30.0)
