"""Run inside a fresh network namespace (``unshare -n``, as root): gives loopback three
addresses of one IPv6 /64, starts ``recordgate start`` on the first with
``server.max_connections_per_ip: 2`` and connects from the other two; prints what each
connection got, as JSON: ``"open"`` or the HTTP status it was refused with.

Arguments: the working directory, then any further arguments of ``recordgate start``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

SERVER, CLIENT_A, CLIENT_B = "fd00:77::1", "fd00:77::2", "fd00:77::3"


async def attempt(url: str, source: str) -> str:
    try:
        ws = await connect(url, local_addr=(source, 0), open_timeout=5)
    except InvalidStatus as exc:
        return str(exc.response.status_code)
    OPEN.append(ws)
    return "open"


OPEN: list[object] = []


def addresses() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in (SERVER, CLIENT_A, CLIENT_B):
        subprocess.run(
            ["ip", "-6", "addr", "add", f"{address}/64", "dev", "lo", "nodad"], check=True
        )


async def main(workdir: Path, start_args: list[str]) -> None:
    config = workdir / "v6.yaml"
    config.write_text("storage: {type: memory}\nserver: {max_connections_per_ip: 2}\n")
    process = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("recordgate"),
        "start",
        "-c",
        str(config),
        "--host",
        SERVER,
        "--port",
        "0",
        "--log-level",
        "WARNING",
        *start_args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        port = line.rsplit(":", 1)[1].split("/", 1)[0]
        url = f"ws://[{SERVER}]:{port}/deepstream"
        got = [await attempt(url, source) for source in (CLIENT_A, CLIENT_A, CLIENT_B)]
        print(json.dumps(got))
    finally:
        process.kill()
        await process.wait()


if __name__ == "__main__":
    addresses()
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2:]))
