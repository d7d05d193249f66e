"""Any labelled folder as a Mozart dataset: label folders, split folders, or a CSV of labels.

Three layouts are read:

- ``<root>/<label>/*.{wav,flac,ogg,mp3}``: one label per folder; a seeded split
  stratified by label, one file per group.
- ``<root>/<split>/<label>/*`` with splits from train, val, test (and evaluation
  slices such as test_timbre): the splits as given.
- a CSV with columns ``path,labels`` and optional ``split`` and ``group``; labels
  separated by ``;`` (several make it a multi-label task). Without a ``split``
  column files are split by group (default: the file).
Files that cannot be decoded are quarantined: listed in the manifest, left on disk.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from mozart_trainer.data.manifest import (
    AUDIO_SUFFIXES,
    SPLITS,
    DatasetManifest,
    ManifestEntry,
    QuarantinedFile,
    Task,
    make_manifest,
    sha256_file,
)
from mozart_trainer.data.splits import SplitFractions, stratified_group_split

#: Folder names read as splits rather than labels.
KNOWN_SPLITS = (*SPLITS, "test_timbre")


@dataclass(frozen=True)
class LabelledFile:
    """A file to describe: where it is, its labels, split and group (split may be unknown)."""

    path: str
    labels: tuple[str, ...]
    group: str
    split: str | None = None


def describe(root: Path, item: LabelledFile, split: str) -> ManifestEntry | QuarantinedFile:
    """Decodes a file fully; returns its manifest entry, or a quarantine record when unreadable."""
    path = root / item.path
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        return QuarantinedFile(path=item.path, reason=f"cannot decode: {error}")
    if audio.shape[0] == 0:
        return QuarantinedFile(path=item.path, reason="no audio frames")
    if not np.isfinite(audio).all():
        return QuarantinedFile(path=item.path, reason="NaN or Inf samples")
    return ManifestEntry(
        path=item.path,
        sha256=sha256_file(path),
        labels=item.labels,
        split=split,
        duration_s=audio.shape[0] / rate,
        sample_rate_hz=rate,
        channels=audio.shape[1],
        group=item.group,
    )


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )


def scan_folder(root: Path) -> list[LabelledFile]:
    """Lists the files of a label-folder or split/label-folder layout."""
    top = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_layout = bool(top) and all(name in KNOWN_SPLITS for name in top)
    items: list[LabelledFile] = []
    for path in _audio_files(root):
        parts = path.relative_to(root).parts
        if split_layout and len(parts) >= 3:
            split, label = parts[0], parts[1]
        elif not split_layout and len(parts) >= 2:
            split, label = None, parts[0]
        else:
            continue  # a file outside any label folder carries no label
        relative = path.relative_to(root).as_posix()
        items.append(LabelledFile(relative, (label,), f"{label}/{path.stem}", split))
    return items


def read_labels_csv(csv_path: Path) -> list[LabelledFile]:
    """Reads a ``path,labels[,split][,group]`` CSV; paths are relative to the CSV's folder."""
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "labels"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {sorted(missing)}")
        items = []
        for row in reader:
            labels = tuple(sorted({x.strip() for x in row["labels"].split(";") if x.strip()}))
            if not labels:
                raise ValueError(f"{csv_path}: {row['path']} has no labels")
            items.append(
                LabelledFile(
                    path=row["path"],
                    labels=labels,
                    group=row.get("group") or row["path"],
                    split=row.get("split") or None,
                )
            )
    return items


def assign_splits(
    items: Iterable[LabelledFile], seed: int, fractions: SplitFractions | None = None
) -> dict[str, str]:
    """The split of every file: its own when given, else seeded and stratified by first label."""
    items = list(items)
    groups_by_label: dict[str, list[str]] = {}
    for item in items:
        if item.split is None:
            groups_by_label.setdefault(item.labels[0], []).append(item.group)
    by_group = stratified_group_split(groups_by_label, seed, fractions)
    return {item.path: item.split or by_group[item.group] for item in items}


def folder_manifest(
    root: Path,
    *,
    csv_path: Path | None = None,
    seed: int = 0,
    fractions: SplitFractions | None = None,
    name: str | None = None,
) -> DatasetManifest:
    """Builds the manifest of a labelled folder (or of a CSV's files under ``root``)."""
    items = read_labels_csv(csv_path) if csv_path else scan_folder(root)
    if not items:
        raise ValueError(f"no labelled audio files under {root}")
    splits = assign_splits(items, seed, fractions)
    entries: list[ManifestEntry] = []
    quarantined: list[QuarantinedFile] = []
    for item in items:
        described = describe(root, item, splits[item.path])
        if isinstance(described, ManifestEntry):
            entries.append(described)
        else:
            quarantined.append(described)
    task: Task = "multi_label" if any(len(item.labels) > 1 for item in items) else "single_label"
    labels = sorted({label for item in items for label in item.labels})
    return make_manifest(
        name or root.name,
        labels,
        entries,
        task=task,
        quarantined=quarantined,
        source={"kind": "labelled folder" if csv_path is None else f"csv {csv_path.name}"},
    )
