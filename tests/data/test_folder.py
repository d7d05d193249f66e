"""Any labelled folder or labels CSV becomes a dataset with a manifest."""

from __future__ import annotations

from pathlib import Path

from mozart_proto.cli import main
from mozart_trainer.data import load_manifest
from mozart_trainer.data.folder import folder_manifest

from .audio_files import write_tone


def test_label_folders_in_any_supported_format(tmp_path: Path, capsys) -> None:
    root = tmp_path / "instruments"
    for index in range(3):
        write_tone(root / "harp" / f"h{index}.wav", 3.2, 22_050, seed=index)
        write_tone(root / "oboe" / f"o{index}.flac", 3.2, 44_100, seed=10 + index)
        write_tone(root / "tuba" / f"t{index}.ogg", 3.2, 16_000, seed=20 + index)
    (root / "tuba" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (root / "notes.txt").write_text("not audio")

    assert main(["data", "manifest", str(root)]) == 0
    assert "quarantined tuba/broken.wav" in capsys.readouterr().out
    manifest = load_manifest(root)
    assert manifest.labels == ("harp", "oboe", "tuba")
    assert manifest.task == "single_label"
    assert len(manifest.entries) == 9
    assert [q.path for q in manifest.quarantined] == ["tuba/broken.wav"]
    assert (root / "tuba" / "broken.wav").exists()  # listed, never deleted
    assert {e.sample_rate_hz for e in manifest.entries} == {16_000, 22_050, 44_100}
    for label in manifest.labels:
        assert {e.split for e in manifest.entries if e.label == label} == {"train", "val", "test"}


def test_csv_manifest_for_a_multilabel_task(tmp_path: Path) -> None:
    root = tmp_path / "tags"
    rows = ["path,labels,split"]
    for index, tags in enumerate(["piano;calm", "piano;loud", "drums;loud", "calm"]):
        write_tone(root / "clips" / f"c{index}.flac", 3.1, 16_000, seed=index)
        rows.append(f"clips/c{index}.flac,{tags},{'train' if index < 3 else 'test'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")

    manifest = folder_manifest(root, csv_path=root / "labels.csv")
    assert manifest.task == "multi_label"
    assert manifest.labels == ("calm", "drums", "loud", "piano")
    by_path = {e.path: e for e in manifest.entries}
    assert by_path["clips/c0.flac"].labels == ("calm", "piano")
    assert by_path["clips/c3.flac"].split == "test"
