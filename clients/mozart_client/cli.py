"""The `mozart classify`, `stream`, `models` and `health` commands.

Each command's work lives in its own module (`cli_classify`, `cli_stream`,
`cli_models`); this one builds the parsers and turns failures into exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from mozart_client import cli_classify, cli_connection, cli_models, cli_output, cli_stream
from mozart_client.cli_console import Terminal, line
from mozart_client.cli_errors import (
    ExitCode,
    error_document,
    exit_code_for,
    message_lines,
)
from mozart_client.connection import AUDIO_CLASSIFIER
from mozart_client.errors import MozartError, NotFoundError
from mozart_client.results import HealthStatus, ServingStatus
from mozart_proto.cli import VersionAction
from mozart_proto.v1.audio_formats import CONTAINER_NAMES

__all__ = ["DEFAULT_SERVICES", "ExitCode", "exit_code_for", "main", "register"]

DEFAULT_SERVICES = ("", AUDIO_CLASSIFIER)

Handler = Callable[[argparse.Namespace, Terminal], int]

_UNARY_TIMEOUT = "deadline of each call in seconds (default 10)"


def _connection(timeout_help: str = _UNARY_TIMEOUT) -> argparse.ArgumentParser:
    # Each command gets its own parent: argparse shares a parent's actions between
    # the parsers built from it, so one command's default would show in another's help.
    parent = argparse.ArgumentParser(add_help=False)
    cli_connection.add_arguments(parent, timeout_help=timeout_help)
    return parent


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="model name (default: the server's default)")
    parser.add_argument("--version", default="", help="model version (default: the newest)")
    parser.add_argument("--hop-ms", type=int, default=0, metavar="N", help="hop between windows")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="labels per result")


def register(subparsers: Any) -> None:
    """Adds the client commands to the `mozart` command."""
    classify = subparsers.add_parser(
        "classify", parents=[_connection()], help=f"classify audio files ({CONTAINER_NAMES})"
    )
    cli_classify.add_arguments(classify)
    _model_arguments(classify)
    classify.set_defaults(handler=_guarded(cli_classify.run))

    stream = subparsers.add_parser(
        "stream",
        parents=[_connection("deadline of the whole stream in seconds (default: none)")],
        help="stream a file, stdin or the microphone and print results live",
    )
    cli_stream.add_arguments(stream)
    _model_arguments(stream)
    stream.set_defaults(handler=_guarded(cli_stream.run))

    models = subparsers.add_parser(
        "models",
        parents=[_connection()],
        help="list the loaded models; show their status, load, reload or unload them",
        usage="%(prog)s [list | status [NAME] | load NAME | reload NAME | unload NAME | "
        "publish SOURCE] [options]",
    )
    cli_models.add_arguments(models)
    models.set_defaults(handler=_guarded(run_models))

    health = subparsers.add_parser("health", parents=[_connection()], help="check server health")
    health.add_argument(
        "--service",
        action="append",
        metavar="NAME",
        help="service to check, repeatable (default: the server and mozart.v1.AudioClassifier)",
    )
    health.set_defaults(handler=_guarded(run_health))


def _guarded(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Runs a command on this run's terminal; SDK errors become a message on stderr
    (with a hint and the request id where there is one), with `--json` a last JSON
    line `{"error", "code"}` too, and their class's exit code."""

    def run(args: argparse.Namespace) -> int:
        terminal = Terminal()
        try:
            return handler(args, terminal)
        except MozartError as error:
            tls = _uses_tls(args)
            for message in message_lines(error, tls=tls):
                terminal.error(message)
            if getattr(args, "json", False):  # in place: after whatever was printed
                line(cli_output.to_json(error_document(error)))
            return exit_code_for(error)
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as cat does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return ExitCode.FAILURE

    return run


def _uses_tls(args: argparse.Namespace) -> bool:
    try:
        return cli_connection.uses_tls(args)
    except MozartError:  # the address itself was the problem
        return False


def run_models(args: argparse.Namespace, terminal: Terminal) -> int:
    """`mozart models [ACTION [NAME]]`: list, show the status of, load or unload models."""
    if args.action in cli_models.LOCAL_ACTIONS:
        return cli_models.run_local(args)
    problem = cli_models.usage_problem(args)
    if problem is not None:
        terminal.error(f"mozart models: error: {problem}")
        return ExitCode.USAGE
    with cli_connection.open_client(args) as client:
        cli_models.run(args, client, terminal)
    return ExitCode.OK


def run_health(args: argparse.Namespace, terminal: Terminal) -> int:
    """`mozart health`: each service's answer, in the order asked.

    Exit code 0 when every service is SERVING, 6 when one is unknown to the server
    (NOT_FOUND), 10 when one answered but is not SERVING.
    """
    services = args.service or list(DEFAULT_SERVICES)
    statuses: list[HealthStatus] = []
    exit_code = ExitCode.OK
    with cli_connection.open_client(args) as client:
        for service in services:
            try:
                status = client.health(service)
            except NotFoundError as error:  # other failures would meet every service
                for message in message_lines(error, tls=_uses_tls(args), prefix=service):
                    terminal.error(message)
                statuses.append(HealthStatus(service, ServingStatus.SERVICE_UNKNOWN))
                exit_code = exit_code or exit_code_for(error)
                if args.json:
                    document = error_document(error, service=service)
                    line(cli_output.to_json({**document, "status": "SERVICE_UNKNOWN"}))
                continue
            statuses.append(status)
            if args.json:
                line(cli_output.to_json(status))
    if not args.json:
        terminal.table(cli_output.health_columns(statuses))
    if exit_code:
        return exit_code
    return ExitCode.OK if all(s.serving for s in statuses) else ExitCode.NOT_SERVING


def main(argv: list[str] | None = None) -> int:
    """Runs only the client commands (`python -m mozart_client.cli ...`).

    The `mozart` command loads every installed distribution's commands; this
    entry point skips them, which starts faster where the trainer is installed.
    It starts after `grpc` is imported, so gRPC's own logging follows
    GRPC_VERBOSITY as set (the `mozart` command quiets it).
    """
    parser = argparse.ArgumentParser(prog="mozart", description="Mozart client commands.")
    parser.add_argument("--version", action=VersionAction, help="print the installed versions")
    register(parser.add_subparsers(title="commands", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
