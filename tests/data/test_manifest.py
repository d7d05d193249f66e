"""The content-addressed manifest: the same files give the same digest, any change shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mozart_trainer.data.folder import folder_manifest
from mozart_trainer.data.manifest import ManifestError, load_manifest, write_manifest

from .audio_files import write_tone


def _dataset(root: Path) -> Path:
    for index, label in enumerate(("cello", "flute", "organ") * 4):
        write_tone(root / label / f"{label}-{index}.flac", 3.5, 16_000, seed=index)
    return root


def test_identical_files_give_the_identical_digest_anywhere(tmp_path: Path) -> None:
    first = _dataset(tmp_path / "a")
    second = tmp_path / "elsewhere" / "b"
    shutil.copytree(first, second)
    assert folder_manifest(first).dataset_digest == folder_manifest(second).dataset_digest


def test_one_changed_byte_changes_the_digest(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "a")
    before = folder_manifest(root).dataset_digest
    write_tone(root / "flute" / "flute-1.flac", 3.5, 16_000, seed=99)
    assert folder_manifest(root).dataset_digest != before


def test_the_manifest_round_trips_and_rejects_tampering(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "a")
    manifest = folder_manifest(root)
    write_manifest(root, manifest)
    assert load_manifest(root) == manifest
    raw = json.loads((root / "manifest.json").read_text())
    raw["entries"][0]["split"] = "train" if raw["entries"][0]["split"] != "train" else "test"
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="does not match"):
        load_manifest(root)


def test_entries_carry_what_the_trainer_needs(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "a")
    manifest = folder_manifest(root)
    entry = manifest.entries[0]
    assert len(entry.sha256) == 64
    assert entry.sample_rate_hz == 16_000
    assert entry.channels == 1
    assert entry.duration_s == pytest.approx(3.5)
    assert entry.label in manifest.labels
    assert set(manifest.splits) == {"train", "val", "test"}
    assert sum(manifest.class_counts().values()) == 12
