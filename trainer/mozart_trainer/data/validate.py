"""`mozart data validate`: decodes every file of a dataset and checks it; never writes to it.

Per file: decodes, sample rate and channels (against the manifest), at least one
window long, not silent, not clipped, no NaN or Inf, bytes matching the manifest.
Over the dataset: duplicate content, class balance, a label set consistent with
the manifest and the folders, no group (work, track) in two splits, and files on
disk that the manifest does not list.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
from pydantic import BaseModel, ConfigDict

from mozart_trainer.data.folder import KNOWN_SPLITS, scan_folder
from mozart_trainer.data.manifest import (
    AUDIO_SUFFIXES,
    MANIFEST_NAME,
    DatasetManifest,
    ManifestEntry,
    load_manifest,
)

Severity = Literal["error", "warning"]
#: Evaluation slices that re-render another split's groups on purpose.
SLICE_OF = {"test_timbre": "test"}


@dataclass(frozen=True)
class Thresholds:
    """Limits of the checks."""

    window_s: float = 3.0
    silence_rms: float = 1e-3
    clip_level: float = 0.999
    clip_warn_ratio: float = 1e-3
    clip_error_ratio: float = 1e-2
    balance_warn_ratio: float = 2.0
    max_error_fraction: float = 0.01


class Issue(BaseModel):
    """One finding."""

    model_config = ConfigDict(frozen=True)

    check: str
    severity: Severity
    detail: str
    path: str | None = None


class ValidationReport(BaseModel):
    """The JSON report of a validation run."""

    model_config = ConfigDict(frozen=True)

    root: str
    has_manifest: bool
    dataset_digest: str | None
    files_checked: int
    files_with_errors: int
    dataset_errors: int
    warnings: int
    error_fraction: float
    max_error_fraction: float
    passed: bool
    class_counts: dict[str, dict[str, int]]
    total_duration_s: float
    quarantine: list[str]
    issues: list[Issue]

    def summary(self) -> str:
        """A few lines for people."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"{verdict}: {self.files_checked} files, {self.total_duration_s / 60:.1f} min, "
            f"{self.files_with_errors} with errors, {self.dataset_errors} dataset errors, "
            f"{self.warnings} warnings (error threshold {self.max_error_fraction:.1%} of files)",
        ]
        for split, counts in self.class_counts.items():
            lines.append(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if self.quarantine:
            lines.append(f"  quarantine ({len(self.quarantine)}): " + ", ".join(self.quarantine))
        by_check = Counter((issue.severity, issue.check) for issue in self.issues)
        for (severity, check), count in sorted(by_check.items()):
            lines.append(f"  {severity} {check}: {count}")
        return "\n".join(lines)


def _check_audio(
    path: Path, relative: str, entry: ManifestEntry | None, limits: Thresholds
) -> tuple[list[Issue], float, int | None]:
    """Checks one file; returns its issues, duration and sample rate (None when unreadable)."""
    issues: list[Issue] = []

    def add(check: str, severity: Severity, detail: str) -> None:
        issues.append(Issue(check=check, severity=severity, detail=detail, path=relative))

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        add("decode", "error", f"cannot decode: {error}")
        return issues, 0.0, None
    duration_s = audio.shape[0] / rate
    if entry is not None:
        if rate != entry.sample_rate_hz:
            add("sample_rate", "error", f"{rate} Hz, manifest says {entry.sample_rate_hz} Hz")
        if audio.shape[1] != entry.channels:
            add("channels", "error", f"{audio.shape[1]} channels, manifest says {entry.channels}")
    if not np.isfinite(audio).all():
        add("nan_inf", "error", "NaN or Inf samples")
        return issues, duration_s, rate
    if duration_s < limits.window_s:
        add(
            "duration",
            "error",
            f"{duration_s:.2f} s is shorter than one {limits.window_s} s window",
        )
    rms = float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0
    if rms < limits.silence_rms:
        add("silence", "error", f"RMS {rms:.2e} below the floor {limits.silence_rms:.0e}")
    clipped = float(np.mean(np.abs(audio) >= limits.clip_level)) if audio.size else 0.0
    if clipped > limits.clip_error_ratio:
        add("clipping", "error", f"{clipped:.2%} of samples at full scale")
    elif clipped > limits.clip_warn_ratio:
        add("clipping", "warning", f"{clipped:.2%} of samples at full scale")
    return issues, duration_s, rate


def _on_disk(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    }


def _folder_label(relative: str, split_layout: bool) -> str | None:
    parts = relative.split("/")
    if split_layout and len(parts) >= 3 and parts[0] in KNOWN_SPLITS:
        return parts[1]
    return None


def _dataset_checks(
    manifest: DatasetManifest, on_disk: set[str], limits: Thresholds
) -> list[Issue]:
    issues: list[Issue] = []
    listed = {entry.path for entry in manifest.entries}
    quarantined = {item.path for item in manifest.quarantined}
    for path in sorted(on_disk - listed - quarantined):
        issues.append(
            Issue(check="untracked", severity="warning", detail="not in the manifest", path=path)
        )
    labels = set(manifest.labels)
    split_layout = all(entry.path.split("/")[0] in KNOWN_SPLITS for entry in manifest.entries)
    groups: dict[str, set[str]] = defaultdict(set)
    for entry in manifest.entries:
        unknown = set(entry.labels) - labels
        if unknown:
            issues.append(
                Issue(
                    check="labels",
                    severity="error",
                    path=entry.path,
                    detail=f"labels {sorted(unknown)} are not in the manifest's label set",
                )
            )
        folder = _folder_label(entry.path, split_layout)
        if folder is not None and manifest.task == "single_label" and folder != entry.label:
            issues.append(
                Issue(
                    check="labels",
                    severity="error",
                    path=entry.path,
                    detail=f"in folder {folder!r} but labelled {entry.label!r}",
                )
            )
        groups[entry.group].add(SLICE_OF.get(entry.split, entry.split))
    for group, splits in sorted(groups.items()):
        if len(splits) > 1:
            issues.append(
                Issue(
                    check="split_leak",
                    severity="error",
                    detail=f"group {group!r} is in splits {sorted(splits)}",
                )
            )
    for split in manifest.splits:
        counts = manifest.class_counts(split)
        empty = sorted(label for label, n in counts.items() if n == 0)
        if empty and split in ("train", "test"):
            issues.append(
                Issue(
                    check="class_balance",
                    severity="warning",
                    detail=f"{split} has no files for {empty}",
                )
            )
        present = [n for n in counts.values() if n > 0]
        if present and max(present) > limits.balance_warn_ratio * min(present):
            issues.append(
                Issue(
                    check="class_balance",
                    severity="warning",
                    detail=f"{split}: largest class {max(present)} files, smallest {min(present)}",
                )
            )
    return issues


@dataclass
class _Tally:
    """What the per-file pass collects."""

    issues: list[Issue]
    file_errors: set[str]
    quarantine: list[str]
    hashes: dict[str, list[tuple[str, str]]]
    counts: dict[str, Counter[str]]
    rates: Counter[int]
    total_s: float = 0.0


_Check = tuple[str, ManifestEntry | None, tuple[str, ...], str]


def _check_files(root: Path, checks: list[_Check], limits: Thresholds, tally: _Tally) -> None:
    for relative, entry, labels, split in checks:
        path = root / relative
        if not path.is_file():
            tally.issues.append(
                Issue(check="missing", severity="error", detail="not on disk", path=relative)
            )
            tally.file_errors.add(relative)
            continue
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        found, duration_s, rate = _check_audio(path, relative, entry, limits)
        if entry is not None and sha != entry.sha256:
            found.append(
                Issue(check="sha256", severity="error", detail="bytes differ", path=relative)
            )
        tally.issues.extend(found)
        tally.hashes[sha].append((relative, split))
        if rate is None:
            tally.quarantine.append(relative)
        else:
            tally.rates[rate] += 1
        if any(issue.severity == "error" for issue in found):
            tally.file_errors.add(relative)
        tally.total_s += duration_s
        tally.counts[split].update(labels)


def _duplicates(hashes: dict[str, list[tuple[str, str]]]) -> list[Issue]:
    issues = []
    for copies in hashes.values():
        if len(copies) > 1:
            across = len({SLICE_OF.get(split, split) for _, split in copies}) > 1
            issues.append(
                Issue(
                    check="duplicate",
                    severity="error" if across else "warning",
                    detail="same bytes: " + ", ".join(path for path, _ in copies),
                )
            )
    return issues


def validate_dataset(root: Path, limits: Thresholds | None = None) -> ValidationReport:
    """Validates a dataset root (with or without ``manifest.json``); reads, never writes."""
    limits = limits or Thresholds()
    manifest: DatasetManifest | None = None
    tally = _Tally([], set(), [], defaultdict(list), defaultdict(Counter), Counter())
    if (root / MANIFEST_NAME).is_file():
        try:
            manifest = load_manifest(root)
        except ValueError as error:
            tally.issues.append(Issue(check="manifest", severity="error", detail=str(error)))
    if manifest is not None:
        checks: list[_Check] = [(e.path, e, e.labels, e.split) for e in manifest.entries]
        tally.quarantine.extend(q.path for q in manifest.quarantined)
    else:
        checks = [(i.path, None, i.labels, i.split or "all") for i in scan_folder(root)]
    _check_files(root, checks, limits, tally)
    tally.issues.extend(_duplicates(tally.hashes))
    if manifest is None and len(tally.rates) > 1:
        tally.issues.append(
            Issue(check="sample_rate", severity="warning", detail=f"mixed {dict(tally.rates)}")
        )
    if manifest is not None:
        tally.issues.extend(_dataset_checks(manifest, _on_disk(root), limits))
    issues = tally.issues
    dataset_errors = sum(1 for i in issues if i.severity == "error" and i.path is None)
    error_fraction = len(tally.file_errors) / max(1, len(checks))
    if manifest is not None:
        label_order = list(manifest.labels)
    else:
        label_order = sorted({label for c in tally.counts.values() for label in c})
    return ValidationReport(
        root=str(root),
        has_manifest=manifest is not None,
        dataset_digest=manifest.dataset_digest if manifest else None,
        files_checked=len(checks),
        files_with_errors=len(tally.file_errors),
        dataset_errors=dataset_errors,
        warnings=sum(1 for i in issues if i.severity == "warning"),
        error_fraction=error_fraction,
        max_error_fraction=limits.max_error_fraction,
        passed=dataset_errors == 0 and error_fraction <= limits.max_error_fraction,
        class_counts={
            split: {label: c[label] for label in label_order}
            for split, c in sorted(tally.counts.items())
        },
        total_duration_s=round(tally.total_s, 3),
        quarantine=sorted(set(tally.quarantine)),
        issues=issues,
    )
