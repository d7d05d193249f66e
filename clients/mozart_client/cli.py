"""The `mozart classify`, `stream`, `models` and `health` commands.

`mozart models` and its model-control actions live in `cli_models`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any

from mozart_client import cli_models, cli_output
from mozart_client.client import Client
from mozart_client.connection import AUDIO_CLASSIFIER, DEFAULT_TARGET, TlsConfig
from mozart_client.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidInputError,
    MozartError,
    NotFoundError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
)
from mozart_client.results import ClassifyResult, HealthStatus
from mozart_proto.v1.audio_formats import CONTAINER_NAMES


class ExitCode(IntEnum):
    """Exit codes of the client commands, one per failure class (docs/cli.md)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    UNREACHABLE = 3
    UNAUTHENTICATED = 4
    INVALID_INPUT = 5
    NOT_FOUND = 6
    DEADLINE_EXCEEDED = 7
    RESOURCE_EXHAUSTED = 8
    SERVER_ERROR = 9
    NOT_SERVING = 10
    FAILED_PRECONDITION = 11


_EXIT_BY_ERROR: tuple[tuple[type[MozartError], ExitCode], ...] = (
    (UnavailableError, ExitCode.UNREACHABLE),
    (UnauthenticatedError, ExitCode.UNAUTHENTICATED),
    (InvalidInputError, ExitCode.INVALID_INPUT),
    (NotFoundError, ExitCode.NOT_FOUND),
    (DeadlineExceededError, ExitCode.DEADLINE_EXCEEDED),
    (ResourceExhaustedError, ExitCode.RESOURCE_EXHAUSTED),
    (FailedPreconditionError, ExitCode.FAILED_PRECONDITION),
    (ServerError, ExitCode.SERVER_ERROR),
)

DEFAULT_SERVICES = ("", AUDIO_CLASSIFIER)


def exit_code_for(error: MozartError) -> ExitCode:
    """The exit code of a failure class."""
    for error_type, code in _EXIT_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return ExitCode.FAILURE


def _connection_arguments() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=os.environ.get("MOZART_SERVER", DEFAULT_TARGET),
        metavar="HOST:PORT",
        help="server address (env MOZART_SERVER; default %(default)s)",
    )
    group.add_argument("--tls", action="store_true", help="use TLS with the system's trusted CAs")
    group.add_argument(
        "--ca-cert", type=Path, metavar="PEM", help="CA of the server (implies --tls)"
    )
    group.add_argument("--client-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    group.add_argument("--client-key", type=Path, metavar="PEM", help="client private key (mTLS)")
    group.add_argument(
        "--server-name", metavar="NAME", help="name to check the server certificate against"
    )
    group.add_argument(
        "--token",
        default=os.environ.get("MOZART_TOKEN"),
        help="bearer token (env MOZART_TOKEN)",
    )
    group.add_argument(
        "--timeout-s",
        type=float,
        default=10.0,
        metavar="S",
        help="deadline of each call in seconds; streams: of the whole stream (default %(default)s)",
    )
    group.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parent


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="model name (default: the server's default)")
    parser.add_argument("--version", default="", help="model version (default: the newest)")
    parser.add_argument("--hop-ms", type=int, default=0, metavar="N", help="hop between windows")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="labels per result")


def register(subparsers: Any) -> None:
    """Adds the client commands to the `mozart` command."""
    connection = _connection_arguments()
    # A parent's actions are shared by every parser built from it, so stream's
    # set_defaults(timeout_s=None) would change --timeout-s for all; it gets its own.
    stream_connection = _connection_arguments()

    classify = subparsers.add_parser(
        "classify", parents=[connection], help=f"classify audio files ({CONTAINER_NAMES})"
    )
    classify.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    _model_arguments(classify)
    classify.add_argument("--windows", action="store_true", help="also list every window")
    classify.set_defaults(handler=_guarded(run_classify))

    stream = subparsers.add_parser(
        "stream", parents=[stream_connection], help="stream an audio file and print results live"
    )
    stream.add_argument("file", metavar="FILE", help="audio file")
    _model_arguments(stream)
    stream.add_argument(
        "--realtime", action="store_true", help="send audio no faster than it plays"
    )
    stream.add_argument(
        "--smoothing", type=float, default=0.0, help="EMA weight of the past in [0, 1)"
    )
    stream.add_argument(
        "--chunk-ms", type=int, default=100, metavar="N", help="audio per message (default 100)"
    )
    stream.set_defaults(handler=_guarded(run_stream), timeout_s=None)

    models = subparsers.add_parser(
        "models",
        parents=[connection],
        help="list the loaded models; show their status, load, reload or unload them",
        usage="%(prog)s [list | status [NAME] | load NAME | reload NAME | unload NAME | "
        "publish SOURCE] [options]",
    )
    cli_models.add_arguments(models)
    models.set_defaults(handler=_guarded(run_models))

    health = subparsers.add_parser("health", parents=[connection], help="check server health")
    health.add_argument(
        "--service",
        action="append",
        metavar="NAME",
        help="service to check, repeatable (default: the server and mozart.v1.AudioClassifier)",
    )
    health.set_defaults(handler=_guarded(run_health))


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turns SDK errors into a message on stderr and the exit code of their class."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except MozartError as error:
            print(f"error: {error}", file=sys.stderr)
            return exit_code_for(error)
        except KeyboardInterrupt:
            return 130

    return run


def _client(args: argparse.Namespace) -> Client:
    tls = None
    if args.tls or args.ca_cert or args.client_cert or args.client_key:
        tls = TlsConfig(
            ca_cert=args.ca_cert,
            client_cert=args.client_cert,
            client_key=args.client_key,
            server_name=args.server_name,
        )
    timeout_s = args.timeout_s if args.timeout_s is not None else 10.0
    return Client(args.server, tls=tls, token=args.token, timeout_s=timeout_s)


def run_classify(args: argparse.Namespace) -> int:
    """`mozart classify FILE...`: one summary per file."""
    results: list[tuple[str, ClassifyResult]] = []
    failures: list[dict[str, Any]] = []
    exit_code = ExitCode.OK
    with _client(args) as client:
        for path in args.files:
            try:
                result = client.classify(
                    path,
                    model=args.model,
                    version=args.version,
                    hop_ms=args.hop_ms,
                    top_k=args.top_k,
                )
            except (UnavailableError, UnauthenticatedError):
                raise  # every other file would fail the same way
            except MozartError as error:
                print(f"error: {path}: {error}", file=sys.stderr)
                code = error.code.name if error.code else None
                failures.append({"file": path, "error": error.details, "code": code})
                exit_code = exit_code or exit_code_for(error)
                continue
            results.append((path, result))
    if args.json:
        documents = [{"file": path, "result": result} for path, result in results]
        print(cli_output.to_json(documents + failures))
    elif results:
        print(cli_output.classify_table(results, args.windows))
    return exit_code


def run_stream(args: argparse.Namespace) -> int:
    """`mozart stream FILE`: one line per window as results arrive, then the summary."""
    with _client(args) as client:
        results = client.stream(
            args.file,
            model=args.model,
            version=args.version,
            realtime=args.realtime,
            hop_ms=args.hop_ms,
            top_k=args.top_k,
            smoothing=args.smoothing,
            chunk_ms=args.chunk_ms,
            timeout_s=args.timeout_s,
        )
        if not args.json:
            pace = "real time" if args.realtime else "as fast as accepted"
            print(f"streaming {args.file} to {args.server} ({pace})", file=sys.stderr)
            cli_output.print_line(cli_output.STREAM_HEADER, sys.stdout)
        for result in results:
            if args.json:
                cli_output.print_line(cli_output.stream_json(result), sys.stdout)
            else:
                cli_output.print_line(cli_output.stream_row(result), sys.stdout)
    return ExitCode.OK


def run_models(args: argparse.Namespace) -> int:
    """`mozart models [ACTION [NAME]]`: list, show the status of, load or unload models."""
    if args.action in cli_models.LOCAL_ACTIONS:
        return cli_models.run_local(args)
    problem = cli_models.usage_problem(args)
    if problem is not None:
        print(f"mozart models: error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    with _client(args) as client:
        cli_models.run(args, client)
    return ExitCode.OK


def run_health(args: argparse.Namespace) -> int:
    """`mozart health`: 0 when every service is SERVING, 10 otherwise."""
    services = args.service or list(DEFAULT_SERVICES)
    statuses: list[HealthStatus] = []
    with _client(args) as client:
        statuses = [client.health(service) for service in services]
    print(cli_output.to_json(statuses) if args.json else cli_output.health_table(statuses))
    return ExitCode.OK if all(s.serving for s in statuses) else ExitCode.NOT_SERVING


def main(argv: list[str] | None = None) -> int:
    """Runs only the client commands (`python -m mozart_client.cli ...`).

    The `mozart` command loads every installed distribution's commands; this
    entry point skips them, which starts faster where the trainer is installed.
    """
    parser = argparse.ArgumentParser(prog="mozart", description="Mozart client commands.")
    register(parser.add_subparsers(title="commands", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
