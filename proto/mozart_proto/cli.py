"""The `mozart` command: a dispatcher whose subcommands come from installed distributions.

Each distribution (server, client, trainer, ...) advertises an entry point in the
``mozart.commands`` group. The entry point is a callable that receives argparse's
subparsers object and adds its own subcommands, each setting ``handler`` to a
function that takes the parsed namespace and returns an exit code. Only what is
installed shows up: the server image has ``mozart serve`` but no ``mozart train``.
``mozart --version`` names each installed distribution's version without loading any.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

COMMAND_GROUP = "mozart.commands"
DISTRIBUTION = "mozart-proto"

Handler = Callable[[argparse.Namespace], int]


def versions() -> str:
    """One line per installed Mozart distribution with commands, and this one: name version."""
    names = {DISTRIBUTION}
    for entry_point in entry_points(group=COMMAND_GROUP):
        if entry_point.dist is not None:
            names.add(entry_point.dist.name)
    lines = []
    for name in sorted(names):
        try:
            lines.append(f"{name} {version(name)}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            lines.append(f"{name} (not installed)")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """`--version`: prints `versions()` as it is (argparse's own action rewraps the lines)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=str(kwargs.get("help"))
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(versions())
        parser.exit()


QUIET_GRPC_COMMANDS = frozenset({"classify", "stream", "models", "health"})
"""The client's commands, which keep gRPC's own log lines quiet (`mozart serve` does not:
a server's operator wants them). Named here because the choice is made before any
command is loaded."""


def quiet_grpc_logs(argv: Sequence[str]) -> None:
    """Keeps gRPC's C core from printing its own log lines (TLS handshake failures, ...)
    under the client's commands.

    gRPC reads GRPC_VERBOSITY once, when `grpc` is first imported, so this runs
    before any command is loaded. A GRPC_VERBOSITY the user set, or `--verbose`
    (an option of the client commands), leaves gRPC's logging as it is.
    """
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in QUIET_GRPC_COMMANDS and "--verbose" not in argv:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def build_parser() -> argparse.ArgumentParser:
    """Builds the parser with every installed distribution's subcommands."""
    parser = argparse.ArgumentParser(
        prog="mozart",
        description="Mozart: real-time music audio classification.",
    )
    parser.add_argument("--version", action=VersionAction, help="print the installed versions")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for entry_point in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name):
        try:
            register = entry_point.load()
        except ImportError as error:
            # A broken optional distribution must not take the whole command down.
            logging.getLogger(__name__).warning(
                "skipping the %s commands: %s", entry_point.name, error
            )
            continue
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `mozart` command and returns its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--version"]:
        print(versions())  # without loading the commands (the trainer's import torch)
        return 0
    quiet_grpc_logs(arguments)
    parser = build_parser()
    args = parser.parse_args(arguments)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
