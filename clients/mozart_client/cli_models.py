"""The `mozart models` command: list the loaded models, or show, load and unload them."""

from __future__ import annotations

import argparse

from mozart_client import cli_output
from mozart_client.client import Client
from mozart_client.errors import NotFoundError

ACTIONS = ("list", "status", "load", "reload", "unload")
"""What `mozart models` can do; `list` (the default) is what it did before model control."""

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
        help="the model to load, reload or unload; for status, the one model to show",
    )


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the ACTION and NAME given, or None when they fit together."""
    if args.action in _NEEDS_NAME and not args.name:
        return f"`mozart models {args.action}` needs the NAME of a model"
    if args.action == "list" and args.name:
        return "`mozart models` lists every model; use `mozart models status NAME` for one"
    return None


def run(args: argparse.Namespace, client: Client) -> None:
    """Runs one `mozart models` action and prints its result as a table or JSON.

    Raises:
        MozartError: The call failed; `status NAME` raises NotFoundError when
            the repository has no such model.
    """
    if args.action == "list":
        models = client.models()
        print(cli_output.to_json(models) if args.json else cli_output.models_table(models))
        return
    if args.action == "status":
        statuses = client.model_status()
        if args.name:
            statuses = [status for status in statuses if status.name == args.name]
            if not statuses:
                raise NotFoundError(f"the server's repository has no model {args.name!r}")
        print(
            cli_output.to_json(statuses) if args.json else cli_output.model_status_table(statuses)
        )
        return
    if args.action == "unload":
        status = client.unload_model(args.name)
    else:
        status = client.load_model(args.name, reload=args.action == "reload")
    # One model, so one JSON object (`status` prints an array of them).
    print(cli_output.to_json(status) if args.json else cli_output.model_status_table([status]))
