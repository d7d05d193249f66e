"""`mozart classify FILE...`: files, folders, patterns and stdin, `--jobs` at a time.

Results print in input order whatever order they finish in: as JSON lines (a
failure in its place, with its status name) or as one table at the end.
"""

from __future__ import annotations

import argparse
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from mozart_client import cli_inputs, cli_output
from mozart_client.cli_connection import open_client, uses_tls
from mozart_client.cli_console import Bar, Terminal, line
from mozart_client.cli_errors import (
    ExitCode,
    error_document,
    exit_code_for,
    message_lines,
    status_of,
)
from mozart_client.client import Client
from mozart_client.errors import (
    InvalidInputError,
    MozartError,
    UnauthenticatedError,
    UnavailableError,
)
from mozart_client.results import ClassifyResult

DEFAULT_JOBS = 4
"""Files in flight at once by default: enough to keep a server's batcher busy."""

_FATAL = (UnavailableError, UnauthenticatedError)
"""Failures every other input would meet too: the command stops at the first."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the inputs and `--jobs`, `--recursive`, `--windows` to the classify parser."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="audio files, folders (their audio files), glob patterns, or - for stdin",
    )
    parser.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="folders: their subfolders' files too; patterns: ** matches any depth",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"files classified at once (default {DEFAULT_JOBS}); output stays in input order",
    )
    parser.add_argument("--windows", action="store_true", help="also list every window")
    cli_inputs.add_arguments(parser)


@dataclass(frozen=True)
class _Outcome:
    name: str
    result: ClassifyResult | None = None
    error: MozartError | None = None


def _classify(client: Client, args: argparse.Namespace, item: cli_inputs.ClipInput) -> _Outcome:
    if item.problem is not None:
        return _Outcome(item.name, error=item.problem)
    options: dict[str, Any] = {
        "model": args.model,
        "version": args.version,
        "hop_ms": args.hop_ms,
        "top_k": args.top_k,
    }
    try:
        if item.name == cli_inputs.STDIN:
            audio, rate = cli_inputs.stdin_clip(cli_inputs.raw_format(args))
            result = client.classify(audio, sample_rate_hz=rate, **options)
        else:
            result = client.classify(item.name, **options)
    except MozartError as error:
        return _Outcome(item.name, error=error)
    return _Outcome(item.name, result=result)


def run(args: argparse.Namespace, terminal: Terminal) -> int:
    """Classifies every input; returns the exit code of the first failure in input order."""
    if args.jobs < 1:
        raise InvalidInputError(f"--jobs must be at least 1, got {args.jobs}")
    inputs = cli_inputs.expand(args.files, recursive=args.recursive)
    if sum(item.name == cli_inputs.STDIN for item in inputs) > 1:
        raise InvalidInputError("stdin (-) can be read only once")
    tls = uses_tls(args)
    rows: list[cli_output.ClassifyRow] = []
    exit_code = ExitCode.OK
    progress = (
        terminal.progress("classifying", total=len(inputs))
        if len(inputs) > 1
        else nullcontext(None)
    )
    with open_client(args) as client, progress as bar, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_classify, client, args, item) for item in inputs]
        _advance_on_completion(futures, bar)
        for future in futures:
            outcome = future.result()
            error = outcome.error
            if error is None:
                assert outcome.result is not None
                rows.append(cli_output.ClassifyRow(outcome.name, outcome.result))
                if args.json:
                    line(cli_output.to_json({"file": outcome.name, "result": outcome.result}))
                continue
            for message in message_lines(error, tls=tls, prefix=outcome.name):
                terminal.error(message)
            rows.append(cli_output.ClassifyRow(outcome.name, status=status_of(error).name))
            if args.json:
                line(cli_output.to_json(error_document(error, file=outcome.name)))
            exit_code = exit_code or exit_code_for(error)
            if isinstance(error, _FATAL):
                for pending in futures:
                    pending.cancel()
                break
    if not args.json and rows:
        tables = cli_output.classify_columns(rows, args.windows)
        for index, columns in enumerate(tables):
            if index:
                terminal.text("")
            terminal.table(columns)
    return exit_code


def _advance_on_completion(futures: list[Future[_Outcome]], bar: Bar | None) -> None:
    if bar is None:
        return
    for future in futures:
        future.add_done_callback(lambda _: bar.advance())
