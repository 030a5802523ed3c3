"""``connectors._common``: the helpers every bundled connector shares."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from connectors._common import import_driver
from gateway.exceptions import ConfigError, DriverMissing

ABSENT = "recordgate_test_no_such_driver"  # really not installed anywhere


def test_import_driver_returns_the_module() -> None:
    assert import_driver("json.decoder", "never-needed").__name__ == "json.decoder"


def test_a_missing_driver_names_its_extra() -> None:
    with pytest.raises(DriverMissing) as caught:
        import_driver(f"{ABSENT}.asyncio", "redis")
    message = str(caught.value)
    assert f"'{ABSENT}', which is not installed" in message
    assert "pip install 'recordgate[redis]'" in message
    assert "\n" not in message
    assert isinstance(caught.value, ConfigError)  # the CLI's configuration errors: exit 2


def test_a_broken_driver_is_reported_too() -> None:
    # Installed but failing on import (a dependency of its own missing): still one line.
    code = textwrap.dedent(
        f"""
        import sys, types
        broken = types.ModuleType("{ABSENT}")
        broken.__path__ = []  # a package whose submodule import fails inside
        sys.modules["{ABSENT}"] = broken
        sys.modules["{ABSENT}.inner"] = None
        from connectors._common import import_driver
        try:
            import_driver("{ABSENT}.inner", "mongodb")
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("DriverMissing "), out.stdout + out.stderr
    assert "pip install 'recordgate[mongodb]'" in out.stdout
