"""A mistyped suite invocation stops at once with one line saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.runner import run_suite

# Never opened: the arguments are refused before any I/O.
SQLITE = ("--connector-url", "sqlite+aiosqlite:///never-created.db")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--connector", "nosuch"), "no storage connector named 'nosuch'"),
        (("--connector", "no_such_module:Cls"), "no_such_module"),
        (("--connector", "sql"), "has no default URL; pass --connector-url"),
        (("--connector", "sql", *SQLITE, "--connector-option", "tabel=x"), "unexpected keyword"),
        (("--connector", "sql", *SQLITE, "--connector-option", "timeout=soon"), "must be a number"),
    ],
    ids=["unknown name", "unknown module", "no url", "unknown option", "bad option value"],
)
def test_bad_connector_arguments_exit_with_a_usage_error(
    args: tuple[str, ...], message: str
) -> None:
    run = run_suite("conformance/", *args)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output[-2000:]
    assert "recordgate conformance:" in run.output and message in run.output
    assert run.output.count("recordgate conformance:") == 1


def test_a_missing_driver_is_one_usage_error_line(tmp_path: Path) -> None:
    # asyncpg is installed here, so a plugin loaded first makes it unimportable in the run,
    # exactly as `import` behaves when it is not installed.
    (tmp_path / "without_asyncpg.py").write_text("import sys\nsys.modules['asyncpg'] = None\n")
    run = run_suite(
        "conformance/test_versioning.py", "-p", "without_asyncpg",
        "--connector", "sql", "--connector-url", "postgresql+asyncpg://postgres@127.0.0.1/test",
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output[-2000:]
    assert run.output.count("recordgate conformance:") == 1
    assert "pip install 'recordgate[postgresql]'" in run.output
    assert "Traceback" not in run.output


def test_a_driver_missing_at_open_is_one_usage_error_line() -> None:
    run = run_suite(
        "conformance/test_versioning.py",
        "--connector",
        "tests.conformance.broken:DriverlessConnector",
    )
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output[-2000:]
    assert run.output.count("recordgate conformance:") == 1
    assert "pip install 'recordgate[nosuch]'" in run.output
    assert run.count("passed") == 0 and run.count("failed") == 0
    assert "Traceback" not in run.output
