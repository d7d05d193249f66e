"""`mozart data fetch-gtzan` end to end, with only the Kaggle download faked.

The fake writes a zip in Kaggle's exact layout (``Data/genres_original``, the
images folder, both feature CSVs, an unreadable ``jazz.00054.wav``); extraction,
decoding, quarantine, the artist-filtered split and the manifest all run for real.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
import soundfile

from mozart_proto.cli import main
from mozart_trainer.data import gtzan, load_manifest
from mozart_trainer.data.gtzan import GENRES, artist_filtered_split, find_kaggle_credentials
from mozart_trainer.data.validate import validate_dataset

from .audio_files import noisy_tone

RATE = 22_050


def _clips() -> list[str]:
    """Per genre: two train, one val, one test clip from the artist-filtered lists, plus one
    clip the lists leave out where there is one (blues and rock have none)."""
    split = artist_filtered_split()
    chosen: list[str] = []
    for genre in GENRES:
        for name, wanted in (("train", 2), ("val", 1), ("test", 1)):
            members = sorted(c for c, s in split.items() if s == name and c.startswith(genre + "/"))
            chosen.extend(members[:wanted])
        outside = [f"{genre}/{genre}.{n:05d}.wav" for n in range(100)]
        chosen.extend([clip for clip in outside if clip not in split][:1])
    return chosen


def _kaggle_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for seed, clip in enumerate(_clips()):
            buffer = io.BytesIO()
            soundfile.write(
                buffer, noisy_tone(3.2, RATE, seed), RATE, format="WAV", subtype="PCM_16"
            )
            bundle.writestr(f"Data/genres_original/{clip}", buffer.getvalue())
        # The Kaggle copy's jazz.00054.wav cannot be decoded.
        bundle.writestr("Data/genres_original/jazz/jazz.00054.wav", b"RIFF\x24\x00\x00\x00WAVEjunk")
        bundle.writestr("Data/images_original/blues/blues00000.png", b"\x89PNG\r\n\x1a\n")
        bundle.writestr("Data/features_30_sec.csv", "filename,length,label\n")
        bundle.writestr("Data/features_3_sec.csv", "filename,length,label\n")
    return path


@pytest.fixture
def kaggle_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Importing kaggle would authenticate and could exit: prove that nothing here imports it.
    monkeypatch.setitem(sys.modules, "kaggle", None)


def test_fetch_quarantines_the_bad_clip_and_applies_the_artist_split(
    kaggle_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    calls: list[str] = []

    def fake_download(dataset: str, destination: Path) -> Path:
        calls.append(dataset)
        destination.mkdir(parents=True, exist_ok=True)
        return _kaggle_zip(destination / "gtzan-dataset-music-genre-classification.zip")

    monkeypatch.setattr(gtzan, "download_dataset_zip", fake_download)
    out = tmp_path / "data" / "gtzan"

    assert main(["data", "fetch-gtzan", "--out", str(out)]) == 0

    assert calls == ["andradaolteanu/gtzan-dataset-music-genre-classification"]
    printed = capsys.readouterr().out
    assert "quarantined quarantine/jazz/jazz.00054.wav" in printed
    manifest = load_manifest(out)
    assert manifest.labels == GENRES
    assert (out / "quarantine" / "jazz" / "jazz.00054.wav").is_file()
    assert "jazz.00054" not in {e.group for e in manifest.entries}
    lists = artist_filtered_split()
    for entry in manifest.entries:
        clip = "/".join(entry.path.split("/")[1:])
        assert lists[clip] == entry.split
        assert entry.sample_rate_hz == RATE
    assert {len(manifest.split(s)) for s in ("train", "val", "test")} == {20, 10}
    excluded = [q.path for q in manifest.quarantined if q.path.startswith("excluded/")]
    assert len(excluded) == len(GENRES) - 2  # blues and rock: every clip is in the lists
    # Only the genre clips were kept: no images, CSVs, zip or staging folders.
    assert not list(out.rglob("*.png"))
    assert not list(out.rglob("*.csv"))
    assert not list(out.rglob("*.zip"))
    assert [p.name for p in out.parent.iterdir()] == ["gtzan"]
    report = validate_dataset(out)
    assert report.passed, report.summary()
    assert "quarantine/jazz/jazz.00054.wav" in report.quarantine


def test_random_split_is_stratified_by_track(
    kaggle_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    monkeypatch.setattr(
        gtzan, "download_dataset_zip", lambda _dataset, dest: _kaggle_zip(dest.parent / "k.zip")
    )
    out = tmp_path / "gtzan"
    assert main(["data", "fetch-gtzan", "--out", str(out), "--split", "random"]) == 0
    manifest = load_manifest(out)
    assert len(manifest.entries) == len(_clips())  # every readable clip, none excluded
    for genre in GENRES:
        assert {e.split for e in manifest.entries if e.label == genre} == {"train", "val", "test"}


def test_no_credentials_exits_2_naming_the_three_ways(
    kaggle_env: None, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "gtzan"
    assert main(["data", "fetch-gtzan", "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert "KAGGLE_API_TOKEN" in message
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in message
    assert "kaggle.json" in message
    assert not out.exists()


def test_a_network_failure_leaves_nothing_behind(
    kaggle_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")

    def broken_download(dataset: str, destination: Path) -> Path:
        destination.mkdir(parents=True)
        (destination / "partial.zip").write_bytes(b"PK\x03\x04 half a zip")
        raise ConnectionError("Connection reset by peer")

    monkeypatch.setattr(gtzan, "download_dataset_zip", broken_download)
    parent = tmp_path / "data"
    assert main(["data", "fetch-gtzan", "--out", str(parent / "gtzan")]) == 1
    assert "Connection reset by peer" in capsys.readouterr().err
    assert list(parent.iterdir()) == []


def test_credentials_are_found_in_kaggle_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    assert find_kaggle_credentials({}, home) is None
    (home / ".kaggle" / "kaggle.json").write_text("{}")
    assert find_kaggle_credentials({}, home) == str(home / ".kaggle" / "kaggle.json")
    config = tmp_path / "cfg"
    config.mkdir()
    assert find_kaggle_credentials({"KAGGLE_CONFIG_DIR": str(config)}, home) is None
    env = {"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    assert find_kaggle_credentials(env, home) == "KAGGLE_USERNAME and KAGGLE_KEY"
    (home / ".kaggle" / "access_token").write_text("t")
    assert find_kaggle_credentials(env, home) == str(home / ".kaggle" / "access_token")
    assert find_kaggle_credentials({**env, "KAGGLE_API_TOKEN": "t"}, home) == "KAGGLE_API_TOKEN"
