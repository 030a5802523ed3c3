"""``recordgate start`` says at startup which config it read and where records go."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.event_loop import start_args

RECORDGATE = str(Path(sys.executable).parent / "recordgate")


def _startup_log(config: Path, cwd: Path) -> str:
    proc = subprocess.Popen(
        [RECORDGATE, "start", "-c", str(config), "--port", "0", "--host", "127.0.0.1",
         *start_args()],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "recordgate listening on ..." once it serves
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "listening on ws://127.0.0.1:" in line, err
    return err


def test_the_config_file_and_the_sqlite_file_are_logged_as_absolute_paths(tmp_path: Path) -> None:
    config = tmp_path / "rg.yaml"
    config.write_text("storage: {type: sql, data_dir: data}\n")
    err = _startup_log(config, tmp_path)
    assert f"config: {config}" in err
    assert f"storage: sql sqlite+aiosqlite:///{tmp_path / 'data' / 'records.db'}" in err


def test_a_password_in_the_storage_url_is_masked(tmp_path: Path) -> None:
    config = tmp_path / "rg.yaml"
    config.write_text("storage: {type: memory, url: 'memory://u:hunter2@x'}\n")
    err = _startup_log(config, tmp_path)
    assert "storage: memory memory://u:***@x" in err and "hunter2" not in err
