"""`mozart models rollout status NAME` and `mozart models rollout set NAME --weights ...`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from mozart_client import cli_output
from mozart_client.client import Client
from mozart_client.errors import InvalidInputError
from mozart_client.results import RolloutStatus

SUBACTIONS = ("status", "set", "clear")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the rollout's model positional and the `set` options to the `models` parser."""
    parser.add_argument(
        "rollout_model",
        nargs="?",
        metavar="MODEL",
        help="for `rollout status|set|clear MODEL`: the model whose rollout to show or change",
    )
    group = parser.add_argument_group("rollout set")
    group.add_argument(
        "--weights",
        metavar="V=PCT,...",
        help="percent of unversioned calls by version, summing to 100, e.g. 3=90,4=10",
    )
    group.add_argument(
        "--shadow",
        default="",
        metavar="VERSION",
        help="a version that gets a copy of the baseline's calls",
    )
    group.add_argument(
        "--max-error-ratio",
        type=float,
        default=None,
        help="roll back above this share of failed calls (default 0.05)",
    )
    group.add_argument(
        "--max-p99-latency-ratio",
        type=float,
        default=0.0,
        help="roll back above this multiple of the baseline's p99 (0: off)",
    )
    group.add_argument(
        "--min-agreement",
        type=float,
        default=0.0,
        help="roll back a shadow below this top-1 agreement (0: off)",
    )
    group.add_argument(
        "--min-samples", type=int, default=0, help="outcomes before judging (default 100)"
    )
    group.add_argument(
        "--window-size",
        type=int,
        default=0,
        help="outcomes in each version's sliding window (default 500)",
    )
    group.add_argument(
        "--auto-promote",
        action="store_true",
        help="move the candidate up 10 -> 50 -> 100 while it holds",
    )
    group.add_argument(
        "--promote-after-s",
        type=float,
        default=600.0,
        help="how long each step must hold (default %(default)s)",
    )


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with `mozart models rollout ...`, or None."""
    if args.name not in SUBACTIONS:
        return f"`mozart models rollout` takes one of {', '.join(SUBACTIONS)}, then MODEL"
    if not args.rollout_model:
        return f"`mozart models rollout {args.name}` needs the MODEL"
    if args.name == "set" and not args.weights:
        return "`mozart models rollout set MODEL` needs --weights, e.g. --weights 3=90,4=10"
    return None


def parse_weights(text: str) -> dict[str, int]:
    """`3=90,4=10` as {"3": 90, "4": 10}.

    Raises:
        InvalidInputError: an entry is not VERSION=PERCENT.
    """
    weights: dict[str, int] = {}
    for entry in text.split(","):
        version, _, weight = entry.partition("=")
        if not version.strip() or not weight.strip().isdigit():
            raise InvalidInputError(f"--weights takes VERSION=PERCENT,...; got {entry!r}")
        weights[version.strip()] = int(weight)
    return weights


def run(args: argparse.Namespace, client: Client) -> None:
    """Shows or changes one model's rollout and prints it as a table or JSON."""
    if args.name == "status":
        status = client.rollout_status(args.rollout_model)
    elif args.name == "clear":
        status = client.set_rollout(args.rollout_model, None)
    else:
        status = client.set_rollout(
            args.rollout_model,
            parse_weights(args.weights),
            shadow=args.shadow,
            max_error_ratio=args.max_error_ratio,
            max_p99_latency_ratio=args.max_p99_latency_ratio,
            min_agreement=args.min_agreement,
            min_samples=args.min_samples,
            window_size=args.window_size,
            auto_promote=args.auto_promote,
            promote_after_s=args.promote_after_s,
        )
    print(cli_output.to_json(status) if args.json else rollout_text(status))


def rollout_text(status: RolloutStatus) -> str:
    """The rollout as a few lines and a table of versions."""
    weights = ", ".join(f"{v}={w}" for v, w in status.weights.items()) or "-"
    lines = [f"model:    {status.name}", f"state:    {status.state.value}"]
    if status.source:
        asked = ", ".join(f"{v}={w}" for v, w in status.policy_weights.items())
        lines += [
            f"source:   {status.source}",
            f"baseline: {status.baseline}",
            f"weights:  {weights} (as set: {asked})",
            f"shadow:   {status.shadow or '-'}",
        ]
    event = status.last_event
    if event is not None:
        when = datetime.fromtimestamp(event.unix_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        figures = ", ".join(f"{k}={v:.4g}" for k, v in sorted(event.figures.items()))
        target = f" version {event.version}" if event.version else ""
        lines.append(f"last:     {event.kind}{target} at {when}: {event.reason}")
        if figures:
            lines.append(f"          {figures}")
    if status.versions:
        rows = [
            [v.version, str(status.weights.get(v.version, 0)), str(v.samples), str(v.errors),
             f"{v.p99_latency_ms:.2f}",
             f"{v.agreement:.3f} ({v.agreement_samples})" if v.agreement_samples else "-"]
            for v in status.versions
        ]  # fmt: skip
        lines += ["", cli_output.table(
            ["VERSION", "WEIGHT", "SAMPLES", "ERRORS", "P99_MS", "AGREEMENT"], rows
        )]  # fmt: skip
    return "\n".join(lines)
