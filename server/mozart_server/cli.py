"""`mozart serve` and `python -m mozart_server`: every setting as a flag or `MOZART_` variable."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from mozart_server.app import MozartServer
from mozart_server.errors import ModelLoadError, StartupError
from mozart_server.observability.logs import configure_logging
from mozart_server.settings import CONFIG_FILE_VARIABLE, ServerSettings, flat_fields

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per setting; unset flags fall back to the environment, then the file."""
    for name, (_, field) in flat_fields().items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (env MOZART_{name.upper()})"
        parser.add_argument(flag, dest=name, default=None, metavar="VALUE", help=help_text)
    parser.add_argument(
        "--config-file",
        default=None,
        metavar="PATH",
        help=f"TOML file of settings, e.g. from `mozart analyze`; flags and variables win over "
        f"it (env {CONFIG_FILE_VARIABLE})",
    )


def serve(args: argparse.Namespace) -> int:
    """Runs the server until SIGTERM or SIGINT; returns the exit code."""
    overrides: dict[str, Any] = {
        name: value for name in flat_fields() if (value := getattr(args, name, None)) is not None
    }
    config_file = getattr(args, "config_file", None)
    if config_file is not None:
        if not os.path.isfile(config_file):
            print(f"mozart serve: --config-file {config_file} is not a file", file=sys.stderr)
            return 2
        os.environ[CONFIG_FILE_VARIABLE] = config_file  # the settings read the file it names
    try:
        settings = ServerSettings(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            setting = ".".join(str(part) for part in problem["loc"])
            # Cross-field checks have no single location; their message names the settings.
            where = f"setting {setting}" if setting else "settings"
            print(f"mozart serve: invalid {where}: {problem['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.process.log_level, settings.process.log_format)
    try:
        asyncio.run(MozartServer(settings).serve_until_signal())
    except StartupError as error:
        # Ports that cannot be bound, TLS files gRPC will not use: the settings are wrong.
        logger.error("cannot start", extra={"reason": str(error)})
        print(f"mozart serve: {error}", file=sys.stderr)
        return 2
    except ModelLoadError as error:
        logger.error("cannot start", extra={"reason": str(error)})
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Adds `serve` to the `mozart` command (entry point group mozart.commands)."""
    parser = subparsers.add_parser(
        "serve",
        help="run the gRPC server",
        description=f"Run Mozart's gRPC server. Settings also come from MOZART_* variables and "
        f"from the TOML file named by {CONFIG_FILE_VARIABLE}.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=serve)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mozart_server`: the same as `mozart serve`."""
    parser = argparse.ArgumentParser(prog="python -m mozart_server")
    add_arguments(parser)
    return serve(parser.parse_args(argv))
