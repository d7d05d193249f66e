"""Builds the embedded corpus: music21 scores rendered through FluidSynth, split by work.

Layout of a build::

    <root>/manifest.json                         the dataset manifest (splits, digest)
    <root>/build-report.json                     works, instruments, failures, timing
    <root>/<split>/<label>/<work-id>_seg<NN>.flac   16 kHz mono excerpts

Splits are ``train``, ``val``, ``test`` and the evaluation slice ``test_timbre``:
the test works again, played only by the globally held-out instruments that
no class uses in train, val or test. Each work is one task for a worker process; a score that
fails is skipped and counted, it never stops the build.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from music21 import corpus, stream
from tqdm import tqdm  # type: ignore[import-untyped]

from mozart_trainer.data import render
from mozart_trainer.data.corpus_config import GM_PALETTE, CorpusConfig, config_digest
from mozart_trainer.data.manifest import (
    DatasetManifest,
    ManifestEntry,
    ManifestError,
    load_manifest,
    make_manifest,
    sha256_file,
    write_manifest,
)
from mozart_trainer.data.sources import Work, list_works
from mozart_trainer.data.splits import SplitFractions, seeded_rng, stratified_group_split

logger = logging.getLogger(__name__)

TIMBRE_SPLIT = "test_timbre"
REPORT_NAME = "build-report.json"
#: An excerpt quieter than this RMS (about -60 dBFS) is a rest, not music: dropped.
SILENCE_RMS = 1e-3


@dataclass(frozen=True)
class Rendition:
    """One way a work is rendered: the split it goes to and the programs it may use."""

    split: str
    programs: tuple[int, ...]


@dataclass(frozen=True)
class WorkTask:
    """What a worker renders for one work."""

    work: Work
    renditions: tuple[Rendition, ...]
    segments: int
    config: CorpusConfig
    soundfont: Path
    staging: Path


@dataclass(frozen=True)
class WorkResult:
    """What a worker made of one work."""

    work: Work
    files: tuple[tuple[str, str], ...] = ()  # (relative path, split)
    instruments: dict[str, list[str]] = field(default_factory=dict)
    duration_s: float = 0.0
    repeats_stripped: bool = False
    skipped_segments: int = 0
    failure: str | None = None


@dataclass(frozen=True)
class BuildResult:
    """The outcome of a build: where it is, its manifest, and whether the cache served it."""

    root: Path
    manifest: DatasetManifest
    cached: bool
    config_digest: str


def default_corpus_root(digest: str, data_dir: Path | None = None) -> Path:
    """``<data dir>/corpus/<first 16 hex of the config digest>``; the data dir is ``./data``."""
    base = data_dir or Path(os.environ.get("MOZART_DATA_DIR", "data"))
    return base / "corpus" / digest[:16]


def plan(config: CorpusConfig, soundfont: Path, staging: Path) -> list[WorkTask]:
    """Chooses each class's works, assigns splits and renditions, and sizes the excerpts."""
    selected: dict[str, list[Work]] = {}
    for label in config.classes:
        works = [w for w in list_works(label) if w.size_bytes <= config.max_score_kb * 1024]
        if config.prefer_short_works:
            # Small scores render fast; the smallest quarter are fragments (a few seconds).
            works.sort(key=lambda work: (work.size_bytes, work.work_id))
            works = works[len(works) // 4 :]
        else:
            seeded_rng(config.seed, "works", label).shuffle(works)
        selected[label] = sorted(works[: config.works_per_class], key=lambda w: w.work_id)
    assignment = stratified_group_split(
        {label: [w.work_id for w in works] for label, works in selected.items()},
        config.seed,
        SplitFractions(val=config.val_fraction, test=config.test_fraction),
    )
    training_palette = config.training_programs()
    tasks: list[WorkTask] = []
    for works in selected.values():
        segments = max(1, math.ceil(config.segments_per_class / len(works)))
        for work in works:
            split = assignment[work.work_id]
            renditions = [Rendition(split, training_palette)]
            if split == "test":
                renditions.append(Rendition(TIMBRE_SPLIT, config.held_out))
            tasks.append(WorkTask(work, tuple(renditions), segments, config, soundfont, staging))
    # Biggest scores first, so the last worker is not left with the slowest one.
    return sorted(tasks, key=lambda task: -task.work.size_bytes)


def _segment_starts(duration_s: float, segment_s: float, wanted: int) -> list[float]:
    """Non-overlapping excerpt starts, each centred in an equal slice of the work."""
    count = min(wanted, int(duration_s // segment_s))
    slot = duration_s / count if count else 0.0
    return [index * slot + (slot - segment_s) / 2 for index in range(count)]


def _load_score(work: Work, max_measures: int) -> stream.Score:
    parsed = corpus.parse(work.corpus_path)
    if not isinstance(parsed, stream.Score):
        raise TypeError(f"{work.corpus_path} parses to a {type(parsed).__name__}, not a score")
    excerpt = parsed.measures(0, max_measures)  # type: ignore[no-untyped-call]
    return excerpt if isinstance(excerpt, stream.Score) else parsed


def render_work(task: WorkTask) -> WorkResult:
    """Renders every excerpt and rendition of one work into the staging folder.

    Never raises: a failure comes back as ``WorkResult.failure`` with the reason.
    """
    work, config = task.work, task.config
    try:
        score = _load_score(work, config.max_measures)
        midi_bytes, stripped = render.score_to_midi(score)
        performance = render.read_performance(midi_bytes, repeats_stripped=stripped)
    except Exception as error:  # one bad score must never stop the build
        return WorkResult(work, failure=f"{type(error).__name__}: {error}")
    starts = _segment_starts(performance.duration_s, config.segment_s, task.segments)
    if not starts:
        return WorkResult(
            work,
            repeats_stripped=stripped,
            failure=(
                f"too short: {performance.duration_s:.1f} s in its first "
                f"{config.max_measures} measures, below one {config.segment_s} s excerpt"
            ),
        )
    files: list[tuple[str, str]] = []
    instruments: dict[str, list[str]] = {}
    skipped = 0
    for rendition in task.renditions:
        rng = seeded_rng(config.seed, "instruments", work.work_id, rendition.split)
        programs = {channel: rng.choice(rendition.programs) for channel in performance.channels}
        instruments[rendition.split] = [GM_PALETTE[programs[c]] for c in performance.channels]
        folder = task.staging / rendition.split / work.label
        folder.mkdir(parents=True, exist_ok=True)
        for index, start_s in enumerate(starts):
            events = render.excerpt(performance, start_s, config.segment_s)
            audio = render.synthesize(
                events, programs, config.segment_s, config.sample_rate_hz, task.soundfont
            )
            if float(np.sqrt(np.mean(np.square(audio)))) < SILENCE_RMS:
                skipped += 1
                continue
            peak = float(np.max(np.abs(audio)))
            audio = audio * (0.7 / peak)  # the same peak level for every excerpt
            relative = f"{rendition.split}/{work.label}/{work.work_id}_seg{index:02d}.flac"
            soundfile.write(task.staging / relative, audio, config.sample_rate_hz, "PCM_16")
            files.append((relative, rendition.split))
    return WorkResult(
        work,
        files=tuple(files),
        instruments=instruments,
        duration_s=performance.duration_s,
        repeats_stripped=stripped,
        skipped_segments=skipped,
    )


def _entries(staging: Path, results: Sequence[WorkResult]) -> list[ManifestEntry]:
    entries: list[ManifestEntry] = []
    for result in results:
        for relative, split in result.files:
            path = staging / relative
            info = soundfile.info(str(path))
            entries.append(
                ManifestEntry(
                    path=relative,
                    sha256=sha256_file(path),
                    labels=(result.work.label,),
                    split=split,
                    duration_s=info.frames / info.samplerate,
                    sample_rate_hz=info.samplerate,
                    channels=info.channels,
                    group=result.work.work_id,
                )
            )
    return entries


def _report(
    *,
    config: CorpusConfig,
    digest: str,
    manifest: DatasetManifest,
    results: Sequence[WorkResult],
    elapsed_s: float,
    workers: int,
) -> dict[str, object]:
    failures = [
        {"work": r.work.work_id, "score": r.work.corpus_path, "reason": r.failure}
        for r in results
        if r.failure
    ]
    split_counts = {name: manifest.class_counts(name) for name in manifest.splits}
    return {
        "config": config.model_dump(mode="json"),
        "config_digest": digest,
        "dataset_digest": manifest.dataset_digest,
        "build_seconds": round(elapsed_s, 1),
        "workers": workers,
        "files": len(manifest.entries),
        "total_duration_s": round(manifest.total_duration_s, 1),
        "class_counts": split_counts,
        "works_rendered": sum(1 for r in results if not r.failure),
        "works_failed": len(failures),
        "failures": failures,
        "repeats_stripped": sorted(r.work.work_id for r in results if r.repeats_stripped),
        "silent_excerpts_dropped": sum(r.skipped_segments for r in results),
        "works": {
            r.work.work_id: {
                "label": r.work.label,
                "score": r.work.corpus_path,
                "instruments": r.instruments,
            }
            for r in sorted(results, key=lambda r: r.work.work_id)
            if not r.failure
        },
    }


def _cached(root: Path, digest: str) -> DatasetManifest | None:
    """The manifest at ``root`` when it is a complete, intact build of this configuration."""
    try:
        manifest = load_manifest(root)
    except (FileNotFoundError, ManifestError):
        return None
    if manifest.source.get("config_digest") != digest:
        return None
    for entry in manifest.entries:
        path = root / entry.path
        if not path.is_file() or sha256_file(path) != entry.sha256:
            return None
    return manifest


def build_corpus(
    config: CorpusConfig,
    out: Path | None = None,
    *,
    workers: int = 2,
    soundfont: Path | None = None,
    progress: bool = True,
) -> BuildResult:
    """Builds the corpus, or returns the cached build of the same configuration.

    Files are written to a temporary folder beside ``out`` and moved into place
    at the end, so an interrupted build never leaves a half-written corpus.

    Args:
        config: what to build.
        out: the dataset root; ``default_corpus_root(config digest)`` when None.
        workers: worker processes (one work per task).
        soundfont: the General MIDI soundfont; pretty_midi's TimGM6mb when None.
        progress: show a progress bar.

    Raises:
        FileExistsError: ``out`` holds something other than a build of this configuration.
    """
    soundfont = soundfont or render.default_soundfont()
    digest = config_digest(config, soundfont)
    root = out or default_corpus_root(digest)
    cached = _cached(root, digest)
    if cached is not None:
        logger.info("corpus cached", extra={"root": str(root), "digest": digest})
        return BuildResult(root, cached, True, digest)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} is not empty and is not a build of this configuration; "
            "choose another --out or remove it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        tasks = plan(config, soundfont, staging)
        results: list[WorkResult] = []
        # Spawned, not forked: a fork of a process that already runs threads (gRPC,
        # a test's in-process server) can leave the child stuck on a lock it copied.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=spawn) as pool:
            futures = [pool.submit(render_work, task) for task in tasks]
            bar = tqdm(
                total=len(futures), desc="rendering works", unit="work", disable=not progress
            )
            for future in as_completed(futures):
                result = future.result()
                if result.failure:
                    logger.warning(
                        "work skipped",
                        extra={"work": result.work.work_id, "reason": result.failure},
                    )
                results.append(result)
                bar.update()
            bar.close()
        manifest = make_manifest(
            "embedded-corpus",
            config.classes,
            _entries(staging, results),
            source={
                "kind": "music21 corpus rendered with FluidSynth",
                "config_digest": digest,
                "soundfont": soundfont.name,
            },
        )
        write_manifest(staging, manifest)
        elapsed_s = time.monotonic() - started
        report = _report(
            config=config,
            digest=digest,
            manifest=manifest,
            results=results,
            elapsed_s=elapsed_s,
            workers=workers,
        )
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n")
        if root.exists():
            root.rmdir()  # empty, checked above
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "corpus built",
        extra={
            "root": str(root),
            "dataset_digest": manifest.dataset_digest,
            "files": len(manifest.entries),
            "works_failed": report["works_failed"],
            "build_seconds": round(elapsed_s, 1),
        },
    )
    return BuildResult(root, manifest, False, digest)


def works_by_split(manifest: DatasetManifest) -> dict[str, set[str]]:
    """The groups (works) present in every split."""
    found: dict[str, set[str]] = {}
    for entry in manifest.entries:
        found.setdefault(entry.split, set()).add(entry.group)
    return found
