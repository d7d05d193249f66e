"""Reads a split dataset folder into memory as waveforms plus a window index.

The layout is the one `mozart data` writes: ``<root>/<split>/<label>/<work>.<ext>``
and ``<root>/manifest.json``. Audio is decoded with soundfile and resampled with
soxr (torchaudio is not a dependency). Windows are cut after the split, from
whole works, so no work contributes windows to two splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr
from numpy.typing import NDArray

from mozart_proto.v1.audio_formats import AUDIO_SUFFIXES as CONTAINER_SUFFIXES

#: File endings read as audio: every container Classify decodes (one list, shared).
AUDIO_SUFFIXES = CONTAINER_SUFFIXES
MANIFEST_NAME = "manifest.json"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """The files of one split, decoded, and the windows cut from them.

    ``works`` names each file; ``groups`` names the work it was cut from (the
    manifest's ``group``: several excerpts of one movement share it), which is
    what work-level accuracy aggregates over.
    """

    name: str
    works: tuple[str, ...]
    groups: tuple[str, ...]
    waveforms: tuple[NDArray[np.float32], ...]
    work_labels: NDArray[np.int64]
    window_work: NDArray[np.int64]
    window_start: NDArray[np.int64]

    @property
    def n_windows(self) -> int:
        """Number of windows in the split."""
        return len(self.window_work)

    @property
    def window_labels(self) -> NDArray[np.int64]:
        """The label index of every window."""
        return self.work_labels[self.window_work]

    def windows(self, indices: NDArray[np.int64], window_samples: int) -> NDArray[np.float32]:
        """Stacks the given windows, ``[len(indices), window_samples]``."""
        out = np.zeros((len(indices), window_samples), dtype=np.float32)
        for row, index in enumerate(indices):
            audio = self.waveforms[self.window_work[index]]
            start = int(self.window_start[index])
            chunk = audio[start : start + window_samples]
            out[row, : len(chunk)] = chunk
        return out


def decode(path: Path, sample_rate_hz: int) -> NDArray[np.float32]:
    """Decodes an audio file to mono float32 at ``sample_rate_hz``."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != sample_rate_hz:
        mono = soxr.resample(mono, rate, sample_rate_hz, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def window_starts(n_samples: int, window_samples: int, hop_samples: int) -> NDArray[np.int64]:
    """Start offsets of the windows in a clip; a clip shorter than a window gives one (padded)."""
    if n_samples <= window_samples:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, n_samples - window_samples + 1, hop_samples, dtype=np.int64)


def list_labels(root: Path, split: str) -> list[str]:
    """Label names in score order: the manifest's ``labels`` when it has them, else the
    sorted folder names of a split."""
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        labels = json.loads(manifest.read_text()).get("labels")
        if isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels):
            return list(labels)
    return sorted(p.name for p in (root / split).iterdir() if p.is_dir())


def list_splits(root: Path) -> list[str]:
    """Split folders present under a dataset root."""
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def load_split(
    root: Path,
    split: str,
    labels: list[str],
    *,
    sample_rate_hz: int,
    window_samples: int,
    hop_samples: int,
) -> Split:
    """Decodes every work of a split and indexes its windows."""
    group_of = _manifest_groups(root)
    works: list[str] = []
    groups: list[str] = []
    waveforms: list[NDArray[np.float32]] = []
    work_labels: list[int] = []
    window_work: list[NDArray[np.int64]] = []
    window_start: list[NDArray[np.int64]] = []
    for label_index, label in enumerate(labels):
        folder = root / split / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            audio = decode(path, sample_rate_hz)
            starts = window_starts(len(audio), window_samples, hop_samples)
            window_work.append(np.full(len(starts), len(works), dtype=np.int64))
            window_start.append(starts)
            works.append(f"{label}/{path.stem}")
            groups.append(group_of.get(path.relative_to(root).as_posix(), works[-1]))
            waveforms.append(audio)
            work_labels.append(label_index)
    if not works:
        raise FileNotFoundError(f"no audio under {root / split}")
    logger.info("split loaded", extra={"split": split, "works": len(works)})
    return Split(
        name=split,
        works=tuple(works),
        groups=tuple(groups),
        waveforms=tuple(waveforms),
        work_labels=np.asarray(work_labels, dtype=np.int64),
        window_work=np.concatenate(window_work),
        window_start=np.concatenate(window_start),
    )


def _manifest_groups(root: Path) -> dict[str, str]:
    """File path -> work group, from the manifest's entries when it lists them."""
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    entries = json.loads(manifest.read_text()).get("entries")
    if not isinstance(entries, list):
        return {}
    return {
        str(entry["path"]): str(entry["group"])
        for entry in entries
        if isinstance(entry, dict) and "path" in entry and "group" in entry
    }


def dataset_digest(root: Path) -> str:
    """The dataset's digest: the manifest's own when present, else a hash of the manifest file.

    Without a manifest, hashes every audio file's relative path and bytes so the
    same files always give the same digest.
    """
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        content = json.loads(manifest.read_text())
        for key in ("dataset_digest", "digest"):
            value = content.get(key) if isinstance(content, dict) else None
            if isinstance(value, str) and value:
                return value
        return hashlib.sha256(manifest.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
