"""The `mozart` command: a dispatcher whose subcommands come from installed distributions.

Each distribution (server, client, trainer, ...) advertises an entry point in the
``mozart.commands`` group. The entry point is a callable that receives argparse's
subparsers object and adds its own subcommands, each setting ``handler`` to a
function that takes the parsed namespace and returns an exit code. Only what is
installed shows up: the server image has ``mozart serve`` but no ``mozart train``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

COMMAND_GROUP = "mozart.commands"

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Builds the parser with every installed distribution's subcommands."""
    parser = argparse.ArgumentParser(
        prog="mozart",
        description="Mozart: real-time music audio classification.",
    )
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
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
