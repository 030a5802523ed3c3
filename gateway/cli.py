"""The ``recordgate`` command line: ``recordgate start [-c CONFIG] [--host H] [--port P]
[--event-loop L]``, ``recordgate hash [PASSWORD]``.

Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT), 2 for an invalid configuration or
command line, 1 when the server cannot run (port taken, storage unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import logging
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .bind import authority
from .config import Config, load_config
from .exceptions import ConfigError, RecordgateError
from .loops import EVENT_LOOPS, loop_factory
from .server import Server

__all__ = ["main"]

log = logging.getLogger("recordgate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recordgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"recordgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="run the server")
    start.add_argument("-c", "--config", help="YAML config file (default: embedded defaults)")
    start.add_argument(
        "--host", help="address to listen on (default 0.0.0.0; '::' for IPv4 and IPv6)"
    )
    start.add_argument("--port", type=int, help="port to listen on (default 6020)")
    start.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        help="server.event_loop: auto (uvloop where installed), asyncio or uvloop",
    )
    start.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    migrate = commands.add_parser(
        "migrate",
        help="copy every record from one storage to another (conditional, rerunnable)",
        description="Copy every record (name, version, data) from one storage connector to "
        "another with conditional puts: a second run changes nothing, an interrupted run can "
        "be run again, and a record already newer in the target is left alone. Exit 0 only if "
        "nothing failed.",
    )
    _source_options(migrate)
    _target_options(migrate, required=True)
    migrate.add_argument("--prefix", default="", help="only records whose name starts with P")
    _batch_size(migrate)

    export = commands.add_parser(
        "export",
        help="write every record as JSON Lines ({name, version, data} per line)",
    )
    _source_options(export)
    export.add_argument("--prefix", default="", help="only records whose name starts with P")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")

    importer = commands.add_parser(
        "import",
        help="read a JSON Lines export into a storage (conditional, rerunnable)",
    )
    importer.add_argument("file", help="the export file ('-' for standard input)")
    importer.add_argument("-c", "--config", help="import into this config's storage")
    _target_options(importer, required=False)
    _batch_size(importer)

    check = commands.add_parser(
        "check",
        help="validate a config, load its permission file and open its storage",
    )
    check.add_argument("-c", "--config", required=True, help="YAML config file")
    hasher = commands.add_parser(
        "hash",
        help="print a password hash for a users file (auth type file)",
        description="Print a salted scrypt hash of PASSWORD to paste into a users file. Without "
        "PASSWORD it is read from standard input (prompted for twice on a terminal), which "
        "keeps it out of the shell history and the process list.",
    )
    hasher.add_argument("password", nargs="?", help="the password (default: read from stdin)")
    return parser


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="read from this config's storage")
    parser.add_argument("--from", dest="source", metavar="NAME", help="source connector")
    parser.add_argument("--from-url", metavar="URL", help="source connector URL")
    parser.add_argument(
        "--from-option", action="append", default=[], metavar="K=V", help="repeatable"
    )


def _target_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--to", dest="target", metavar="NAME", required=required,
                        help="target connector")  # fmt: skip
    parser.add_argument("--to-url", metavar="URL", help="target connector URL")
    parser.add_argument(
        "--to-option", action="append", default=[], metavar="K=V", help="repeatable"
    )


def _batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=500, metavar="N",
                        help="records per storage call (default 500)")  # fmt: skip


def _operate(args: argparse.Namespace) -> int:
    """``migrate``, ``export``, ``import`` and ``check``."""
    from .ops import commands as ops

    if args.command == "check":
        return asyncio.run(ops.check(Path(args.config).resolve()))
    if getattr(args, "batch_size", 1) < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.command == "import":
        if (args.config is None) == (args.target is None):
            raise ConfigError("give the target as -c CONFIG or as --to NAME --to-url URL")
        target = (
            ops.StorageSpec.from_config(load_config(args.config))
            if args.config
            else ops.StorageSpec.from_args(args.target, args.to_url, args.to_option)
        )
        try:
            lines = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from exc
        with contextlib.closing(lines) if lines is not sys.stdin else contextlib.nullcontext():
            return asyncio.run(ops.import_file(lines, target, batch_size=args.batch_size))
    if (args.config is None) == (args.source is None):
        raise ConfigError("give the source as -c CONFIG or as --from NAME --from-url URL")
    source = (
        ops.StorageSpec.from_config(load_config(args.config))
        if args.config
        else ops.StorageSpec.from_args(args.source, args.from_url, args.from_option)
    )
    if args.command == "export":
        return asyncio.run(ops.export(source, prefix=args.prefix, output=args.output))
    target = ops.StorageSpec.from_args(args.target, args.to_url, args.to_option)
    return asyncio.run(ops.migrate(source, target, prefix=args.prefix, batch_size=args.batch_size))


def _hash(password: str | None) -> int:
    from .auth.passwords import hash_password

    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                print("recordgate hash: the passwords differ", file=sys.stderr)
                return 2
        else:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("recordgate hash: the password is empty", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    server = config.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    if args.event_loop is not None:
        server = dataclasses.replace(server, event_loop=args.event_loop)
    return dataclasses.replace(config, server=server)


def _log_setup(config: Config, path: str | None) -> None:
    """What an operator needs to know the server runs as intended: where its config came from
    and where its records go (passwords masked)."""
    from .ops.commands import mask_url
    from .store import storage_url

    log.info("config: %s", Path(path).resolve() if path else "none (embedded defaults)")
    storage = config.storage
    if storage.type == "memory" and not storage.url:
        log.info("storage: memory (records live in this process only)")
    else:
        log.info("storage: %s %s", storage.type, mask_url(storage_url(storage)))


def _raise_fd_limit() -> None:
    """Use the file descriptors the system allows (the soft limit up to the hard one): each
    client is one, and ``server.max_connections`` stays below the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _run(config: Config, path: str | None, loop_name: str) -> None:
    _raise_fd_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(config)  # a config error surfaces here, before anything is logged
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    scheme = "ws" if config.server.tls is None else "wss"
    _log_setup(config, path)
    log.info("event loop: %s (server.event_loop: %s)", loop_name, config.server.event_loop)
    async with server:
        print(
            f"recordgate listening on {scheme}://{authority(config.server.host, server.port)}"
            f"{config.server.path}",
            flush=True,
        )
        await stop.wait()
        log.info("shutting down")
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "hash":
        return _hash(args.password)
    if args.command != "start":
        logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            return _operate(args)
        except ConfigError as exc:
            print(f"recordgate {args.command}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"recordgate {args.command}: interrupted", file=sys.stderr)
            return 130
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("websockets").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    try:
        config = _apply_overrides(load_config(args.config), args)
        loop_name, factory = loop_factory(config.server.event_loop)
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as run:
            run.run(_run(config, args.config, loop_name))
    except ConfigError as exc:
        print(f"recordgate: {exc}", file=sys.stderr)
        return 2
    except (RecordgateError, OSError) as exc:  # e.g. the port is taken, storage unreachable
        print(f"recordgate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
