"""The `mozart models` command: list the loaded models, or show, load and unload them."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Any

from mozart_client import cli_output, cli_rollout
from mozart_client.cli_console import Terminal, line
from mozart_client.client import Client
from mozart_client.errors import NotFoundError

ACTIONS = ("list", "status", "load", "reload", "unload", "publish", "rollout")
"""What `mozart models` can do; `list` (the default) is what it did before model control."""

LOCAL_ACTIONS = {"publish": "mozart-trainer"}
"""Actions that another distribution provides (no server involved), and which one."""

ACTIONS_GROUP = "mozart.models_actions"
"""Entry points named after a LOCAL_ACTIONS action: an object with `add_arguments(parser)`
and `run(args) -> int` (the trainer's `mozart_trainer.publish_cli`)."""


def _local_actions() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for entry_point in entry_points(group=ACTIONS_GROUP):
        if entry_point.name in LOCAL_ACTIONS:
            try:
                found[entry_point.name] = entry_point.load()
            except ImportError:  # a broken install reads as not installed, with the message
                continue
    return found


_NEEDS_NAME = ("load", "reload", "unload")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the optional ACTION and NAME positionals to the `models` parser."""
    parser.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=ACTIONS,
        help=(
            "list (default): the loaded models; status: every model of the repository with "
            "each version's state; load, reload, unload: change what the server serves "
            "(needs a server started with --model-control-mode explicit)"
        ),
    )
    parser.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help=(
            "the model to load, reload or unload; for status, the one model to show; "
            "for publish, the SOURCE (models:/NAME@ALIAS, models:/NAME/VERSION or a run id)"
        ),
    )
    cli_rollout.add_arguments(parser)  # `rollout status|set|clear MODEL`
    for action in _local_actions().values():
        action.add_arguments(parser)


def run_local(args: argparse.Namespace) -> int:
    """Runs a LOCAL_ACTIONS action; exit code 2 when its distribution is not installed."""
    action = _local_actions().get(args.action)
    if action is None:
        print(
            f"mozart models: error: `mozart models {args.action}` comes with "
            f"{LOCAL_ACTIONS[args.action]}, which is not installed here",
            file=sys.stderr,
        )
        return 2
    code: int = action.run(args)
    return code


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the ACTION and NAME given, or None when they fit together."""
    if args.action == "rollout":
        return cli_rollout.usage_problem(args)
    if args.action in _NEEDS_NAME and not args.name:
        return f"`mozart models {args.action}` needs the NAME of a model"
    if args.action == "list" and args.name:
        return "`mozart models` lists every model; use `mozart models status NAME` for one"
    return None


def run(args: argparse.Namespace, client: Client, terminal: Terminal | None = None) -> None:
    """Runs one `mozart models` action and prints its result as a table or JSON lines.

    Raises:
        MozartError: The call failed; `status NAME` raises NotFoundError when
            the repository has no such model.
    """
    terminal = terminal or Terminal()
    if args.action == "rollout":
        cli_rollout.run(args, client)
        return
    if args.action == "list":
        models = client.models()
        if args.json:
            line(cli_output.json_lines(models))
        else:
            terminal.table(cli_output.models_columns(models))
        return
    if args.action == "status":
        statuses = client.model_status()
        if args.name:
            statuses = [status for status in statuses if status.name == args.name]
            if not statuses:
                raise NotFoundError(f"the server's repository has no model {args.name!r}")
        if args.json:
            line(cli_output.json_lines(statuses))
        else:
            terminal.table(cli_output.model_status_columns(statuses))
        return
    _run_control(args, client, terminal)


def _run_control(args: argparse.Namespace, client: Client, terminal: Terminal) -> None:
    """`load`, `reload` or `unload NAME`, then the model's status."""
    if args.action == "unload":
        status = client.unload_model(args.name)
    else:
        status = client.load_model(args.name, reload=args.action == "reload")
    # One model, so one JSON line.
    if args.json:
        line(cli_output.to_json(status))
    else:
        terminal.table(cli_output.model_status_columns([status]))
