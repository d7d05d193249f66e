"""The works of each composer in music21's bundled corpus, one per movement or piece."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from music21 import corpus

#: Score formats rendered; ``.rntxt`` files are Roman-numeral analyses, not scores.
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn")
#: When the same piece ships in several formats, the first of these wins.
_FORMAT_PREFERENCE = {".mxl": 0, ".musicxml": 1, ".xml": 2, ".krn": 3}


@dataclass(frozen=True)
class Work:
    """One movement or piece of a composer in the music21 corpus."""

    work_id: str
    label: str
    corpus_path: str
    size_bytes: int


def _relative(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("corpus") + 1 :])


def list_works(composer: str) -> list[Work]:
    """The distinct works of a composer, sorted by id.

    A work is a movement or a piece. Duplicates are dropped: the same movement in
    two formats (Beethoven's op. 18 no. 1 ships as ``.krn`` and ``.mxl``) and older
    editions (``madrigal.3.1_old``). Where a composer's corpus has per-movement
    files, files holding a whole multi-movement work are left out (Beethoven's
    op. 132 in one file takes minutes to render and would put four movements
    behind one split assignment).

    Raises:
        ValueError: the corpus has no scores for the composer.
    """
    paths = [Path(str(p)) for p in corpus.getComposer(composer)]
    # getComposer matches the name anywhere in the absolute path, so a checkout in a
    # folder called "mozart" would return every composer: keep the composer's own folder.
    scores = [
        p for p in paths if p.suffix in SCORE_SUFFIXES and _relative(p).split("/")[0] == composer
    ]
    if any("movement" in p.stem for p in scores):
        scores = [p for p in scores if "movement" in p.stem]
    chosen: dict[str, Path] = {}
    for path in scores:
        relative = _relative(path)
        key = relative.rsplit(".", 1)[0].removesuffix("_old")
        current = chosen.get(key)
        if current is None or _rank(path) < _rank(current):
            chosen[key] = path
    if not chosen:
        raise ValueError(f"the music21 corpus has no scores by {composer!r}")
    works = [
        Work(
            work_id=key.replace("/", "-").replace(".", "-"),
            label=composer,
            corpus_path=_relative(path),
            size_bytes=path.stat().st_size,
        )
        for key, path in chosen.items()
    ]
    return sorted(works, key=lambda work: work.work_id)


def _rank(path: Path) -> tuple[bool, int]:
    return path.stem.endswith("_old"), _FORMAT_PREFERENCE[path.suffix]
