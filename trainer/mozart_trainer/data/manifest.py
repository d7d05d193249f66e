"""The content-addressed dataset manifest: one entry per audio file plus a dataset digest.

``<root>/manifest.json`` lists every usable file with its sha256, labels, split,
duration and sample rate. The dataset digest is a sha256 over those entries in a
canonical form, so the same files (same bytes, same labels, same splits) always
give the same digest, wherever they sit on disk and whenever they were built.
The trainer logs it to MLflow as the run's dataset input.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mozart_proto.v1.audio_formats import AUDIO_SUFFIXES as CONTAINER_SUFFIXES

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
#: File endings read as audio: every container Classify decodes (one list, shared).
AUDIO_SUFFIXES = CONTAINER_SUFFIXES
#: The splits every Mozart dataset may use, in order.
SPLITS = ("train", "val", "test")

Task = Literal["single_label", "multi_label"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ManifestEntry(_Frozen):
    """One audio file of a dataset."""

    path: str = Field(description="POSIX path relative to the dataset root.")
    sha256: str = Field(description="sha256 of the file's bytes.")
    labels: tuple[str, ...] = Field(description="Its labels; exactly one for single-label tasks.")
    split: str = Field(description="train, val, test, or an evaluation slice such as test_timbre.")
    duration_s: float
    sample_rate_hz: int
    channels: int
    group: str = Field(
        description="What must never cross splits: the work (corpus) or track (GTZAN)."
    )

    @property
    def label(self) -> str:
        """The single label of a single-label entry."""
        return self.labels[0]


class QuarantinedFile(_Frozen):
    """A file found under the root but left out of the dataset (kept on disk, not deleted)."""

    path: str
    reason: str


class DatasetManifest(_Frozen):
    """A dataset: its label set, files, splits and digest (``<root>/manifest.json``)."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str
    task: Task = "single_label"
    labels: tuple[str, ...]
    entries: tuple[ManifestEntry, ...]
    quarantined: tuple[QuarantinedFile, ...] = ()
    dataset_digest: str
    source: dict[str, str] = Field(
        default_factory=dict, description="Provenance: how the files were made or fetched."
    )

    def split(self, name: str) -> tuple[ManifestEntry, ...]:
        """The entries of one split, in manifest order."""
        return tuple(entry for entry in self.entries if entry.split == name)

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names present, train/val/test first."""
        present = {entry.split for entry in self.entries}
        ordered = [name for name in SPLITS if name in present]
        return (*ordered, *sorted(present - set(SPLITS)))

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Files per label, in one split or overall."""
        counts: Counter[str] = Counter()
        for entry in self.entries:
            if split is None or entry.split == split:
                counts.update(entry.labels)
        return {label: counts[label] for label in self.labels}

    @property
    def total_duration_s(self) -> float:
        """Seconds of audio over all entries."""
        return sum(entry.duration_s for entry in self.entries)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compute_digest(
    labels: Iterable[str], entries: Iterable[ManifestEntry], task: Task = "single_label"
) -> str:
    """The dataset digest: sha256 over the task, label set and sorted entries, canonical JSON."""
    rows = sorted((entry.model_dump(mode="json") for entry in entries), key=lambda row: row["path"])
    for row in rows:
        # Round so that float formatting can never change the digest of the same files.
        row["duration_s"] = round(row["duration_s"], 3)
    canonical = json.dumps(
        {"task": task, "labels": list(labels), "entries": rows},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def make_manifest(
    name: str,
    labels: Iterable[str],
    entries: Iterable[ManifestEntry],
    *,
    task: Task = "single_label",
    quarantined: Iterable[QuarantinedFile] = (),
    source: dict[str, str] | None = None,
) -> DatasetManifest:
    """Builds a manifest with entries sorted by path and its digest filled in."""
    label_tuple = tuple(labels)
    entry_tuple = tuple(sorted(entries, key=lambda entry: entry.path))
    return DatasetManifest(
        name=name,
        task=task,
        labels=label_tuple,
        entries=entry_tuple,
        quarantined=tuple(sorted(quarantined, key=lambda item: item.path)),
        dataset_digest=compute_digest(label_tuple, entry_tuple, task),
        source=dict(source or {}),
    )


def write_manifest(root: Path, manifest: DatasetManifest) -> Path:
    """Writes ``<root>/manifest.json`` and returns its path."""
    path = root / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=1) + "\n")
    return path


class ManifestError(ValueError):
    """A manifest that cannot be read or whose digest does not match its entries."""


def load_manifest(root: Path) -> DatasetManifest:
    """Reads and checks ``<root>/manifest.json``.

    Raises:
        FileNotFoundError: the root has no manifest.
        ManifestError: the manifest is malformed or its digest does not match its entries.
    """
    path = root / MANIFEST_NAME
    try:
        manifest = DatasetManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise
    except ValueError as error:
        raise ManifestError(f"{path} is not a valid dataset manifest: {error}") from error
    expected = compute_digest(manifest.labels, manifest.entries, manifest.task)
    if manifest.dataset_digest != expected:
        raise ManifestError(
            f"{path}: dataset_digest {manifest.dataset_digest} does not match its entries "
            f"({expected}); the manifest was edited by hand or is corrupt"
        )
    return manifest
