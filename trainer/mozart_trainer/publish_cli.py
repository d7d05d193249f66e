"""`mozart models publish SOURCE`: the trainer's action on the client's `mozart models` command.

Loaded through the ``mozart.models_actions`` entry point at parse time, so it
imports nothing heavy; MLflow loads when the action runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds publish's options to the `models` parser."""
    group = parser.add_argument_group("publish (mozart-trainer)")
    group.add_argument(
        "--repository",
        type=Path,
        default=Path("models"),
        help="model repository to write <name>/<N+1>/ into (default %(default)s)",
    )
    group.add_argument(
        "--name",
        dest="publish_name",
        default=None,
        metavar="NAME",
        help="model folder to publish as (default: the name in the run's model.json)",
    )
    group.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow store (default: env MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlruns/mlflow.db)",
    )


def run(args: argparse.Namespace) -> int:
    """Publishes SOURCE and prints what was written; 2 on a usage or source problem."""
    if not args.name:
        print(
            "mozart models: error: `mozart models publish` needs a SOURCE "
            "(models:/NAME@ALIAS, models:/NAME/VERSION or a run id)",
            file=sys.stderr,
        )
        return 2
    from mozart_trainer.publish import PublishError, publish  # noqa: PLC0415 - MLflow is slow
    from mozart_trainer.tracking import default_tracking_uri  # noqa: PLC0415

    try:
        published = publish(
            args.name,
            args.repository,
            name=args.publish_name,
            tracking_uri=args.tracking_uri or default_tracking_uri(),
        )
    except PublishError as error:
        print(f"mozart models publish: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "folder": str(published.folder),
                    "name": published.name,
                    "version": published.version,
                    "source": published.source,
                    "run_id": published.run_id,
                    "registered": published.registered,
                    "metric": published.metric,
                    "value": published.value,
                    "promotion": published.promotion,
                }
            )
        )
        return 0
    print(f"published {published.name} version {published.version} to {published.folder}")
    origin = f"run {published.run_id}"
    if published.registered:
        origin = f"{published.registered} ({origin})"
    print(f"  source: {published.source} = {origin}")
    if published.metric:
        value = "not logged" if published.value is None else f"{published.value:.4f}"
        split = (
            "validation"
            if published.metric.startswith(("val_", "best_val_"))
            else "not validation: the run predates champion-by-validation"
        )
        print(f"  {published.metric} ({split}) = {value}")
    if published.promotion:
        print(f"  promotion: {published.promotion}")
    return 0
