"""The ``recordgate`` command line: ``recordgate start [-c CONFIG] [--host H] [--port P]``.

Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT), 2 for an invalid configuration or
command line, 1 when the server cannot run (port taken, storage unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .config import Config, load_config
from .exceptions import ConfigError, RecordgateError
from .server import Server

__all__ = ["main"]

log = logging.getLogger("recordgate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recordgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"recordgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="run the server")
    start.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    start.add_argument("--host", help="interface to listen on (default 0.0.0.0)")
    start.add_argument("--port", type=int, help="port to listen on (default 6020)")
    start.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    server = config.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    return dataclasses.replace(config, server=server)


async def _run(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Server(config) as server:
        print(
            f"recordgate listening on ws://{config.server.host}:{server.port}{config.server.path}",
            flush=True,
        )
        await stop.wait()
        log.info("shutting down")
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("websockets").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    try:
        config = _apply_overrides(load_config(args.config), args)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(config))
    except ConfigError as exc:
        print(f"recordgate: {exc}", file=sys.stderr)
        return 2
    except (RecordgateError, OSError) as exc:  # e.g. the port is taken, storage unreachable
        print(f"recordgate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
