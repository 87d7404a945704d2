"""The `serve` command's arguments and entry point; light to import, so the CLI parses fast.

Example::

    python -m modelwatch serve credit_risk --port 8000 --refresh-seconds 30
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_REFRESH_SECONDS = 30.0
DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024
DEFAULT_ROTATE_SECONDS = 300.0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds (got {text!r})")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 (got {text!r})")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535 (got {text!r})")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `serve` arguments to a (sub)parser."""
    parser.add_argument("model", help="model name from the models file")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--refresh-seconds", type=_positive_seconds, default=DEFAULT_REFRESH_SECONDS, metavar="S",
                        help="how often the registry's `champion` alias is looked up; a moved alias is served "
                             f"within about this long plus the load time (default {DEFAULT_REFRESH_SECONDS:g})")
    parser.add_argument("--rotate-bytes", type=_positive_int, default=DEFAULT_ROTATE_BYTES, metavar="N",
                        help=f"publish a log file once it holds this many bytes (default {DEFAULT_ROTATE_BYTES})")
    parser.add_argument("--rotate-seconds", type=_positive_seconds, default=DEFAULT_ROTATE_SECONDS, metavar="S",
                        help=f"publish a log file once it is this old (default {DEFAULT_ROTATE_SECONDS:g})")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="models file (default: MODELWATCH_CONFIG or the shipped example)")


def run(args: argparse.Namespace) -> int:
    """Run `modelwatch serve` until SIGTERM or SIGINT; returns the exit code (2: cannot start, 130: SIGINT)."""
    import uvicorn

    from modelwatch import registry
    from modelwatch.config import load_config
    from modelwatch.serving.champion import VersionLoadError
    from modelwatch.serving.server import ModelServer, create_app

    model = load_config(args.config).model(args.model)  # a ConfigError is reported by the CLI
    uri = registry.configure()
    # Swaps and failed loads are what an operator needs to see, whatever the CLI's level.
    logging.getLogger("modelwatch.serving").setLevel(logging.INFO)
    try:
        server = ModelServer(model, refresh_seconds=args.refresh_seconds, rotate_bytes=args.rotate_bytes,
                             rotate_seconds=args.rotate_seconds)
        served = server.open()
    except (VersionLoadError, ValueError, OSError) as exc:
        print(f"modelwatch serve: error: {exc} (registry: {uri})", file=sys.stderr)
        return 2
    print(f"modelwatch serve: starting {model.name} version {served.version} on http://{args.host}:{args.port}, "
          f"logs in {server.log.folder}, champion of {model.registry_name!r} looked up every "
          f"{args.refresh_seconds:g} s in {uri}", file=sys.stderr, flush=True)
    # Uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again: after a SIGTERM the process
    # ends with status 143, after a SIGINT with a KeyboardInterrupt here; the logs are published by then.
    try:
        uvicorn.run(create_app(server), host=args.host, port=args.port, log_config=None, access_log=False)
    except KeyboardInterrupt:
        return 130
    return 0
