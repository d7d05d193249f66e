"""GTZAN from Kaggle: credentials, the download, and the dataset it becomes.

Kaggle's copy (``andradaolteanu/gtzan-dataset-music-genre-classification``) is a
zip holding ``Data/genres_original/<genre>/<genre>.000NN.wav`` (10 genres x 100
clips, 22,050 Hz mono), plus images and feature CSVs that Mozart does not use.
The fetched dataset has Mozart's layout::

    <root>/manifest.json
    <root>/<split>/<genre>/<genre>.000NN.wav     train, val, test
    <root>/quarantine/<genre>/...                unreadable files (jazz.00054.wav)
    <root>/excluded/<genre>/...                  clips the artist-filtered split leaves out

The ``kaggle`` package authenticates when imported and exits the process when it
finds no credentials, so credentials are looked up first and ``kaggle`` is
imported only inside :func:`download_dataset_zip`, the one function that talks to
Kaggle (and the one a test replaces).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

from mozart_trainer.data.folder import LabelledFile, describe
from mozart_trainer.data.manifest import (
    DatasetManifest,
    ManifestEntry,
    QuarantinedFile,
    make_manifest,
    write_manifest,
)
from mozart_trainer.data.splits import stratified_group_split

logger = logging.getLogger(__name__)

KAGGLE_DATASET = "andradaolteanu/gtzan-dataset-music-genre-classification"
GENRES = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip
_CLIP = re.compile(r"(?:^|/)genres_original/([a-z]+)/([a-z]+\.\d{5}\.wav)$")
_ARTIST_SPLITS = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}

NO_CREDENTIALS_MESSAGE = """\
No Kaggle credentials found. Provide them in one of three ways:
  1. an API token: set KAGGLE_API_TOKEN, or save the token as ~/.kaggle/access_token
  2. set both KAGGLE_USERNAME and KAGGLE_KEY
  3. save kaggle.json (from kaggle.com > Settings > API > Create New Token) in
     $KAGGLE_CONFIG_DIR or ~/.kaggle, readable only by you (chmod 600)"""

SplitMode = Literal["artist-filtered", "random"]
Downloader = Callable[[str, Path], Path]


class KaggleCredentialsError(RuntimeError):
    """No Kaggle credentials are available."""


class GtzanDownloadError(RuntimeError):
    """The Kaggle download failed (network, permission, or a broken zip)."""


def find_kaggle_credentials(
    env: Mapping[str, str] | None = None, home: Path | None = None
) -> str | None:
    """Names the first credential source found, in Kaggle's order, or None."""
    env = os.environ if env is None else env
    kaggle_home = (home or Path.home()) / ".kaggle"
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if (kaggle_home / "access_token").is_file():
        return str(kaggle_home / "access_token")
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    config_dir = Path(env["KAGGLE_CONFIG_DIR"]) if env.get("KAGGLE_CONFIG_DIR") else kaggle_home
    if (config_dir / "kaggle.json").is_file():
        return str(config_dir / "kaggle.json")
    return None


def download_dataset_zip(dataset: str, destination: Path) -> Path:
    """Downloads a Kaggle dataset's zip into ``destination``; the only call into ``kaggle``."""
    import kaggle  # noqa: PLC0415 - authenticates on import; only after credentials are found

    destination.mkdir(parents=True, exist_ok=True)
    kaggle.api.dataset_download_files(dataset, path=str(destination), quiet=False, unzip=False)
    archives = sorted(destination.glob("*.zip"))
    if not archives:
        raise GtzanDownloadError(f"Kaggle returned no zip for {dataset}")
    return archives[0]


def artist_filtered_split() -> dict[str, str]:
    """The artist-filtered split: ``<genre>/<file>.wav`` -> train, val or test."""
    folder = resources.files("mozart_trainer.data") / "gtzan_artist_filtered"
    split: dict[str, str] = {}
    for name, filename in _ARTIST_SPLITS.items():
        for line in (folder / filename).read_text().splitlines():
            if line.strip():
                split[line.strip()] = name
    return split


def _extract_clips(archive: Path, destination: Path) -> list[str]:
    """Extracts only the genre clips; returns their ``<genre>/<file>`` paths."""
    clips: list[str] = []
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                match = _CLIP.search(member.filename)
                if member.is_dir() or match is None:
                    continue
                relative = f"{match.group(1)}/{match.group(2)}"
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                clips.append(relative)
    except zipfile.BadZipFile as error:
        raise GtzanDownloadError(f"the downloaded file is not a valid zip: {error}") from error
    if not clips:
        raise GtzanDownloadError("the zip holds no Data/genres_original/<genre>/*.wav clips")
    return sorted(clips)


def _assign(clips: list[str], mode: SplitMode, seed: int) -> dict[str, str | None]:
    if mode == "artist-filtered":
        lists = artist_filtered_split()
        return {clip: lists.get(clip) for clip in clips}
    by_genre: dict[str, list[str]] = {}
    for clip in clips:
        by_genre.setdefault(clip.split("/")[0], []).append(clip)
    assigned = stratified_group_split(by_genre, seed)
    return {clip: assigned[clip] for clip in clips}


def fetch_gtzan(
    out: Path,
    *,
    split_mode: SplitMode = "artist-filtered",
    seed: int = 0,
    downloader: Downloader | None = None,
) -> DatasetManifest:
    """Downloads GTZAN, quarantines unreadable clips, applies the split, writes the manifest.

    Everything happens in a temporary folder beside ``out`` that is moved into place
    only when complete; on any failure it is removed and ``out`` is untouched.

    Args:
        out: the dataset root to create.
        split_mode: ``artist-filtered`` (default) or a seeded, stratified ``random`` split.
        seed: the random split's seed.
        downloader: fetches the zip; :func:`download_dataset_zip` (looked up at call time).

    Raises:
        KaggleCredentialsError: no credentials (the caller prints the three ways).
        GtzanDownloadError: the download or the archive failed.
        FileExistsError: ``out`` exists and is not empty.
    """
    if find_kaggle_credentials() is None:
        raise KaggleCredentialsError(NO_CREDENTIALS_MESSAGE)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        try:
            download = downloader or download_dataset_zip
            archive = download(KAGGLE_DATASET, staging / "download")
        except Exception as error:
            message = f"downloading {KAGGLE_DATASET} failed: {type(error).__name__}: {error}"
            raise GtzanDownloadError(message) from error
        raw = staging / "raw"
        clips = _extract_clips(archive, raw)
        archive.unlink()
        shutil.rmtree(staging / "download", ignore_errors=True)
        splits = _assign(clips, split_mode, seed)
        entries: list[ManifestEntry] = []
        left_out: list[QuarantinedFile] = []
        for clip in clips:
            genre, name = clip.split("/")
            split = splits[clip]
            item = LabelledFile(path=clip, labels=(genre,), group=name.removesuffix(".wav"))
            found = describe(raw, item, split or "excluded")
            if isinstance(found, QuarantinedFile):
                target = f"quarantine/{clip}"
                left_out.append(QuarantinedFile(path=target, reason=found.reason))
            elif split is None:
                target = f"excluded/{clip}"
                left_out.append(
                    QuarantinedFile(path=target, reason="not in the artist-filtered split")
                )
            else:
                target = f"{split}/{clip}"
                entries.append(found.model_copy(update={"path": target}))
            (staging / target).parent.mkdir(parents=True, exist_ok=True)
            (raw / clip).rename(staging / target)
        shutil.rmtree(raw)
        labels = sorted({clip.split("/")[0] for clip in clips})
        manifest = make_manifest(
            "gtzan",
            labels,
            entries,
            quarantined=left_out,
            source={"kind": "kaggle", "dataset": KAGGLE_DATASET, "split": split_mode},
        )
        write_manifest(staging, manifest)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for left in manifest.quarantined:
        if left.path.startswith("quarantine/"):
            logger.warning("quarantined", extra={"path": left.path, "reason": left.reason})
    return manifest
