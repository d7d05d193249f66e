"""Moves a registered model's alias back to the version that held it before.

`scripts/rollback.sh` calls this for the alias an overlay serves (models:/NAME@ALIAS).
MLflow keeps no history of aliases, so "before" is read from what training records:
each run that became champion is tagged `promotion=champion` (mozart_trainer.tracking).
The previous holder is the newest version below the current one whose run carries
that tag. The version rolled back from gets the alias `rolled-back`, so it can be
found later.

    python scripts/model_alias.py [--dry-run] previous models:/NAME@ALIAS
"""

from __future__ import annotations

import argparse
import re
import sys

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

ROLLED_BACK = "rolled-back"


def previous_holder(client: MlflowClient, name: str, alias: str) -> tuple[str, str]:
    """(current version, version to move the alias to) for NAME@ALIAS."""
    current = client.get_model_version_by_alias(name, alias)
    earlier = [
        version
        for version in client.search_model_versions(f"name = '{name}'")
        if int(version.version) < int(current.version) and version.run_id
    ]
    for version in sorted(earlier, key=lambda v: int(v.version), reverse=True):
        if client.get_run(version.run_id).data.tags.get("promotion") == "champion":
            return str(current.version), str(version.version)
    raise LookupError(f"no version of {name} below {current.version} was ever champion")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    parser.add_argument("command", choices=["previous"])
    parser.add_argument("uri", help="models:/NAME@ALIAS")
    args = parser.parse_args(argv)
    match = re.fullmatch(r"models:/([^/@]+)@([\w-]+)", args.uri)
    if match is None:
        parser.error(f"not models:/NAME@ALIAS: {args.uri}")
    name, alias = match.groups()
    client = MlflowClient()
    try:
        current, previous = previous_holder(client, name, alias)
    except (MlflowException, LookupError) as error:
        print(f"model_alias: {error}", file=sys.stderr)
        return 1
    verb = "would move" if args.dry_run else "moved"
    if not args.dry_run:
        client.set_registered_model_alias(name, alias, previous)
        client.set_registered_model_alias(name, ROLLED_BACK, current)
    print(f"{verb} {name}@{alias} from version {current} to {previous} ({ROLLED_BACK}: {current})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
