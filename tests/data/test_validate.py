"""`mozart data validate`: every check fires on the fault it names, and nothing is modified."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile

from mozart_proto.cli import main
from mozart_trainer.data.folder import folder_manifest
from mozart_trainer.data.manifest import write_manifest
from mozart_trainer.data.validate import validate_dataset

from .audio_files import noisy_tone, write_tone

RATE = 16_000


def _clean(root: Path) -> Path:
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for label in ("alto", "bass"):
            for index in range(count):
                write_tone(
                    root / split / label / f"{label}{split}{index}.flac",
                    3.5,
                    RATE,
                    seed=hash((split, label, index)) % 10_000,
                )
    write_manifest(root, folder_manifest(root))
    return root


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_a_clean_dataset_passes(tmp_path: Path) -> None:
    report = validate_dataset(_clean(tmp_path / "ds"))
    assert report.passed, report.summary()
    assert [i for i in report.issues if i.severity == "error"] == []
    assert report.class_counts["train"] == {"alto": 4, "bass": 4}


def test_each_fault_is_flagged_and_the_data_is_left_alone(tmp_path: Path, capsys) -> None:
    root = tmp_path / "faulty"
    audio = {
        "train/alto/silent.wav": np.zeros(RATE * 4, dtype=np.float32),
        "train/alto/clipped.wav": np.clip(noisy_tone(4, RATE, 1, level=3.0), -1, 1),
        "train/alto/short.wav": noisy_tone(1.0, RATE, 2),
        "train/bass/nan.wav": np.where(np.arange(RATE * 4) == 7, np.nan, noisy_tone(4, RATE, 3)),
        "train/bass/ok.wav": noisy_tone(4, RATE, 4),
        "test/bass/ok_copy.wav": noisy_tone(4, RATE, 4),
        "val/alto/ok.wav": noisy_tone(4, RATE, 5),
    }
    for relative, samples in audio.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(root / relative), samples.astype(np.float32), RATE, subtype="FLOAT")
    (root / "train" / "bass" / "unreadable.wav").write_bytes(b"\x00" * 64)
    before = _tree_digest(root)

    code = main(["data", "validate", str(root), "--report", str(tmp_path / "report.json")])

    assert code == 1
    assert _tree_digest(root) == before
    report = json.loads((tmp_path / "report.json").read_text())
    found = {(i["check"], i["path"]) for i in report["issues"]}
    assert ("silence", "train/alto/silent.wav") in found
    assert ("clipping", "train/alto/clipped.wav") in found
    assert ("duration", "train/alto/short.wav") in found
    assert ("nan_inf", "train/bass/nan.wav") in found
    assert ("decode", "train/bass/unreadable.wav") in found
    assert any(i["check"] == "duplicate" and "ok_copy" in i["detail"] for i in report["issues"])
    assert report["quarantine"] == ["train/bass/unreadable.wav"]
    assert "FAILED" in capsys.readouterr().out


def test_manifest_disagreements_are_errors(tmp_path: Path) -> None:
    root = _clean(tmp_path / "ds")
    # Same name, different sample rate: the bytes and the rate no longer match the manifest.
    write_tone(root / "train" / "alto" / "altotrain0.flac", 3.5, 22_050, seed=1)
    # A file moved into the other label's folder, and a file the manifest does not list.
    shutil.move(root / "val" / "bass" / "bassval0.flac", root / "val" / "alto" / "bassval0.flac")
    write_tone(root / "train" / "bass" / "extra.flac", 3.5, RATE, seed=2)
    report = validate_dataset(root)
    found = {(i.check, i.path) for i in report.issues}
    assert ("sample_rate", "train/alto/altotrain0.flac") in found
    assert ("sha256", "train/alto/altotrain0.flac") in found
    assert ("missing", "val/bass/bassval0.flac") in found
    assert ("untracked", "val/alto/bassval0.flac") in found
    assert ("untracked", "train/bass/extra.flac") in found
    assert not report.passed


def test_threshold_decides_the_exit_code(tmp_path: Path) -> None:
    root = _clean(tmp_path / "ds")
    (root / "manifest.json").unlink()
    soundfile.write(str(root / "train" / "alto" / "quiet.flac"), np.zeros(RATE * 4), RATE)
    report_path = tmp_path / "r.json"
    strict = ["data", "validate", str(root), "--report", str(report_path)]
    assert main(strict) == 1  # 1 of 17 files is over the default 1%
    assert main([*strict, "--max-error-fraction", "0.1"]) == 0
