"""The embedded corpus: deterministic builds, the cache, splits by work, the timbre slice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from music21 import bar, corpus, meter, note, stream

from mozart_proto.cli import main
from mozart_trainer.data import iter_split, load_manifest
from mozart_trainer.data.corpus import build_corpus, plan
from mozart_trainer.data.corpus_config import GM_PALETTE, SMOKE_CONFIG, CorpusConfig
from mozart_trainer.data.demo_clips import write_demo_clips
from mozart_trainer.data.render import default_soundfont, read_performance, score_to_midi
from mozart_trainer.data.sources import list_works
from mozart_trainer.data.validate import validate_dataset


def test_smoke_build_twice_gives_the_same_digest(smoke_corpus: Path, tmp_path: Path) -> None:
    first = load_manifest(smoke_corpus)
    # A second, uncached build into another folder renders everything again.
    again = build_corpus(SMOKE_CONFIG, tmp_path / "again", progress=False)
    assert not again.cached
    assert again.manifest.dataset_digest == first.dataset_digest
    assert [e.sha256 for e in again.manifest.entries] == [e.sha256 for e in first.entries]


def test_rebuild_of_the_same_config_is_served_from_the_cache(smoke_corpus: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in smoke_corpus.rglob("*.flac")}
    started = time.monotonic()
    result = build_corpus(SMOKE_CONFIG, smoke_corpus, progress=False)
    assert result.cached
    assert result.manifest.dataset_digest == load_manifest(smoke_corpus).dataset_digest
    assert {p: p.stat().st_mtime_ns for p in smoke_corpus.rglob("*.flac")} == before
    assert time.monotonic() - started < 60  # a cache hit only hashes files


def test_a_different_config_refuses_an_occupied_folder(smoke_corpus: Path, capsys) -> None:
    code = main(
        [
            "data",
            "build-corpus",
            "--smoke",
            "--seed",
            "7",
            "--no-progress",
            "--out",
            str(smoke_corpus),
        ]
    )
    assert code == 1
    assert "not a build of this configuration" in capsys.readouterr().err


def test_files_are_16k_mono_flac_in_the_documented_layout(smoke_corpus: Path) -> None:
    manifest = load_manifest(smoke_corpus)
    assert manifest.labels == SMOKE_CONFIG.classes
    assert manifest.entries
    for entry in manifest.entries:
        split, label, name = entry.path.split("/")
        assert (split, label) == (entry.split, entry.label)
        assert name.startswith(entry.group)
        assert name.endswith(".flac")
        info = soundfile.info(str(smoke_corpus / entry.path))
        assert (info.samplerate, info.channels, info.format) == (16_000, 1, "FLAC")
        assert abs(info.frames / info.samplerate - SMOKE_CONFIG.segment_s) < 1e-3
    assert set(manifest.class_counts("train").values()) != {0}


def test_no_work_appears_in_two_splits(smoke_corpus: Path) -> None:
    manifest = load_manifest(smoke_corpus)
    works: dict[str, set[str]] = {}
    for entry in manifest.entries:
        works.setdefault(entry.split, set()).add(entry.group)
    assert not works["train"] & works["val"]
    assert not works["train"] & works["test"]
    assert not works["val"] & works["test"]
    # The timbre slice replays test works only, with other instruments.
    assert works["test_timbre"] <= works["test"]


def test_timbre_slice_uses_only_instruments_no_class_ever_trained_on(
    smoke_corpus: Path,
) -> None:
    report = json.loads((smoke_corpus / "build-report.json").read_text())
    held_out = {GM_PALETTE[p] for p in SMOKE_CONFIG.held_out}
    assert report["works"], "no work was rendered"
    timbre_works = 0
    for work in report["works"].values():
        for split, instruments in work["instruments"].items():
            if split == "test_timbre":
                timbre_works += 1
                assert set(instruments) <= held_out
            else:
                assert split in {"train", "val", "test"}
                assert not set(instruments) & held_out
    assert timbre_works > 0


def test_every_class_draws_from_the_same_training_palette(smoke_corpus: Path) -> None:
    """No instrument is evidence for or against a class: all share one palette."""
    report = json.loads((smoke_corpus / "build-report.json").read_text())
    training = {GM_PALETTE[p] for p in SMOKE_CONFIG.training_programs()}
    used: dict[str, set[str]] = {}
    for work in report["works"].values():
        for split, instruments in work["instruments"].items():
            if split != "test_timbre":
                used.setdefault(work["label"], set()).update(instruments)
    assert set(used) == set(SMOKE_CONFIG.classes)
    for instruments in used.values():
        assert instruments <= training


def test_instrument_choice_does_not_depend_on_the_class() -> None:
    """The planned renditions of every class use the one training palette and one held-out set."""
    tasks = plan(SMOKE_CONFIG, default_soundfont(), Path("unused"))
    palettes: dict[str, set[tuple[int, ...]]] = {}
    for task in tasks:
        for rendition in task.renditions:
            palettes.setdefault(rendition.split, set()).add(rendition.programs)
    for split in ("train", "val", "test"):
        assert palettes[split] == {SMOKE_CONFIG.training_programs()}
    assert palettes["test_timbre"] == {SMOKE_CONFIG.held_out}
    assert {task.work.label for task in tasks} == set(SMOKE_CONFIG.classes)


def test_failures_are_reported_not_fatal(smoke_corpus: Path) -> None:
    report = json.loads((smoke_corpus / "build-report.json").read_text())
    assert report["works_rendered"] + report["works_failed"] == 6 * SMOKE_CONFIG.works_per_class
    assert all(f["reason"] for f in report["failures"])


def test_validate_reports_zero_errors_on_the_corpus(smoke_corpus: Path) -> None:
    report = validate_dataset(smoke_corpus)
    errors = [i for i in report.issues if i.severity == "error"]
    assert errors == []
    assert report.passed
    assert report.files_checked == len(load_manifest(smoke_corpus).entries)


def test_badly_formed_repeats_are_stripped_and_retried() -> None:
    part = stream.Part()
    for number in range(1, 5):
        measure = stream.Measure(number=number)
        if number == 1:
            measure.insert(0, meter.TimeSignature("4/4"))
        measure.append(note.Note(60 + number, quarterLength=4))
        part.append(measure)
    measures = list(part.getElementsByClass(stream.Measure))
    # An end repeat followed by a start repeat that never closes: music21 cannot expand it.
    measures[1].rightBarline = bar.Repeat(direction="end")
    measures[2].leftBarline = bar.Repeat(direction="start")
    score = stream.Score()
    score.insert(0, part)
    midi, stripped = score_to_midi(score)
    performance = read_performance(midi, repeats_stripped=stripped)
    assert stripped
    assert len([e for e in performance.events if e.velocity > 0]) == 4  # played straight through


def test_duplicate_editions_and_whole_quartet_files_are_not_works() -> None:
    beethoven = list_works("beethoven")
    assert all("movement" in work.corpus_path for work in beethoven)
    assert len({w.work_id for w in beethoven}) == len(beethoven) == 16
    monteverdi = list_works("monteverdi")
    assert not any("_old" in w.corpus_path or w.corpus_path.endswith(".rntxt") for w in monteverdi)
    assert len(list_works("mozart")) == 16


def test_held_out_instruments_are_global_and_disjoint_from_training() -> None:
    config = CorpusConfig()
    training, held = set(config.training_programs()), set(config.held_out)
    assert held
    assert not training & held
    assert training | held == set(config.palette) == set(GM_PALETTE)


def test_a_held_out_program_outside_the_palette_is_refused() -> None:
    with pytest.raises(ValueError, match="held_out"):
        CorpusConfig(held_out=(1,))
    with pytest.raises(ValueError, match="fewer than two training instruments"):
        CorpusConfig(palette=(0, 6, 42), held_out=(6, 42))


@pytest.mark.slow
def test_mozart_k458_movement_1_renders_after_stripping_its_repeats() -> None:
    score = corpus.parse("mozart/k458/movement1.mxl")
    midi, stripped = score_to_midi(score)
    performance = read_performance(midi, repeats_stripped=stripped)
    assert stripped  # music21 raises ExpanderException: badly formed repeats
    assert performance.duration_s > 60


def test_the_trainer_api_decodes_a_split_at_any_rate(smoke_corpus: Path) -> None:
    manifest = load_manifest(smoke_corpus)
    decoded = list(iter_split(smoke_corpus, manifest, "val", 22_050))
    assert [entry for entry, _ in decoded] == list(manifest.split("val"))
    for entry, audio in decoded:
        assert audio.dtype == np.float32
        assert audio.ndim == 1
        assert len(audio) == round(entry.duration_s * 22_050)


def test_demo_clips_come_from_test_works_of_different_composers(
    smoke_corpus: Path, tmp_path: Path
) -> None:
    clips = write_demo_clips(smoke_corpus, tmp_path / "clips")
    manifest = load_manifest(smoke_corpus)
    test_works = {entry.group for entry in manifest.split("test")}
    assert len({clip.label for clip in clips}) == len(clips) >= 4
    for clip in clips:
        assert clip.work in test_works
        info = soundfile.info(str(tmp_path / "clips" / clip.file))
        assert (info.samplerate, info.channels) == (16_000, 1)
        assert info.frames <= 6 * 16_000
    readme = (tmp_path / "clips" / "README.md").read_text()
    assert all(clip.file in readme for clip in clips)
