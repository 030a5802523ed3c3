"""The official JS client over wss://, trusting the test's CA through NODE_EXTRA_CA_CERTS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.certs import make_certs
from tests.conftest import ServerFactory
from tests.gateway.test_tls import tls_section

pytestmark = pytest.mark.interop

SCENARIO = Path(__file__).parent / "scenarios" / "tls.js"


async def test_the_official_js_client_over_wss(
    make_server: ServerFactory, node: str, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    server = await make_server({"server": tls_section(certs)})
    url = f"wss://127.0.0.1:{server.port}/deepstream"
    done = await asyncio.to_thread(
        subprocess.run,
        [node, str(SCENARIO), url],
        cwd=SCENARIO.parents[1],
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(certs.ca)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["snapshot"] == {"over": "tls"} and result["errors"] == []
