"""The model repository on disk: model and version folders, the version policy, fingerprints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mozart_server.errors import ModelLoadError
from mozart_server.settings import VersionPolicy

#: A version's files as (name, size, mtime_ns): changes when anything in the folder changes.
Fingerprint = tuple[tuple[str, int, int], ...]


def version_key(version: str) -> tuple[int, str]:
    """Sort key of version names: numbers in numeric order."""
    return (int(version), version) if version.isdigit() else (-1, version)


@dataclass(frozen=True)
class VersionDir:
    """A model version folder found on disk."""

    name: str
    version: str
    path: Path


def model_names(repository: Path) -> list[str]:
    """Names of the model folders in the repository that hold at least one version folder.

    Raises:
        ModelLoadError: when the repository folder does not exist.
    """
    if not repository.is_dir():
        raise ModelLoadError(f"model_repository {str(repository)!r} is not a folder")
    return sorted(
        path.name for path in repository.iterdir() if path.is_dir() and version_dirs(path)
    )


def version_dirs(model_dir: Path) -> list[Path]:
    """The numbered version folders of one model folder, oldest first."""
    if not model_dir.is_dir():
        return []
    return sorted(
        (path for path in model_dir.iterdir() if path.is_dir() and path.name.isdigit()),
        key=lambda path: int(path.name),
    )


def select_versions(
    model_dir: Path, policy: VersionPolicy, latest_versions: int, specific_versions: Sequence[str]
) -> list[VersionDir]:
    """The versions of one model the policy selects, oldest first."""
    versions = version_dirs(model_dir)
    if policy is VersionPolicy.LATEST:
        versions = versions[-latest_versions:]
    elif policy is VersionPolicy.SPECIFIC:
        versions = [path for path in versions if path.name in set(specific_versions)]
    return [VersionDir(model_dir.name, path.name, path) for path in versions]


def fingerprint(path: Path) -> Fingerprint:
    """The sizes and modification times of a version folder's files (not recursive)."""
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return ()
    found = []
    for entry in entries:
        try:
            stat = entry.stat()
        except OSError:  # removed while we looked
            continue
        if entry.is_file():
            found.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def discover(
    repository: Path,
    policy: VersionPolicy,
    latest_versions: int,
    specific_versions: Sequence[str],
) -> list[VersionDir]:
    """Lists the model versions to load under `repository` according to the version policy.

    Raises:
        ModelLoadError: when the repository folder does not exist.
    """
    return [
        version
        for name in model_names(repository)
        for version in select_versions(
            repository / name, policy, latest_versions, specific_versions
        )
    ]
