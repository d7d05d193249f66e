"""What an embedded-corpus build makes: classes, sizes, palette, seed, and its digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import music21
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mozart_trainer.data.manifest import sha256_file

#: Bumped whenever the builder would write different files for the same configuration.
CORPUS_FORMAT_VERSION = 3

#: General MIDI programs (0-based) of the palette: training instruments plus the held-out ones.
GM_PALETTE: dict[int, str] = {
    0: "acoustic grand piano",
    6: "harpsichord",
    11: "vibraphone",
    19: "church organ",
    24: "nylon guitar",
    40: "violin",
    42: "cello",
    48: "string ensemble",
    52: "choir aahs",
    60: "french horn",
    71: "clarinet",
    73: "flute",
}

#: Held out globally: no class uses them in train, val or test; only test_timbre does.
#: Each has a relative left in training (piano, violin and string ensemble, flute).
DEFAULT_HELD_OUT = (6, 42, 71)  # harpsichord, cello, clarinet

DEFAULT_CLASSES = ("bach", "beethoven", "haydn", "monteverdi", "mozart", "palestrina")


class CorpusConfig(BaseModel):
    """The knobs of `mozart data build-corpus`; its digest names the build."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[str, ...] = Field(
        default=DEFAULT_CLASSES, description="Composers, one class each."
    )
    works_per_class: int = Field(
        default=16, ge=3, description="Most works taken from one composer."
    )
    segments_per_class: int = Field(
        default=48, ge=1, description="Target excerpts per class, spread over its works."
    )
    segment_s: float = Field(default=15.0, gt=0, description="Seconds per rendered excerpt.")
    max_measures: int = Field(
        default=80,
        ge=4,
        description="Excerpts come from a work's first measures only (render time).",
    )
    max_score_kb: int = Field(
        default=100,
        ge=1,
        description="Scores bigger than this are left out: parsing one takes 20-60 s.",
    )
    sample_rate_hz: int = 16_000
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    palette: tuple[int, ...] = tuple(GM_PALETTE)
    held_out: tuple[int, ...] = Field(
        default=DEFAULT_HELD_OUT,
        description="Palette programs no class uses outside test_timbre (held out globally).",
    )
    prefer_short_works: bool = Field(
        default=False, description="Take each class's smallest scores instead of a seeded sample."
    )

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if len(set(self.classes)) < 2:
            raise ValueError("classes: need at least two distinct composers")
        unknown = set(self.palette) - set(GM_PALETTE)
        if unknown:
            raise ValueError(f"palette: programs {sorted(unknown)} are not in GM_PALETTE")
        if not self.held_out or not set(self.held_out) <= set(self.palette):
            raise ValueError("held_out: need at least one program, all of them in the palette")
        if len(self.training_programs()) < 2:
            raise ValueError("held_out leaves fewer than two training instruments")
        return self

    def training_programs(self) -> tuple[int, ...]:
        """The programs every class draws from in train, val and test: the palette less held_out.

        The same for every class, so an instrument says nothing about the composer.
        Holding instruments out per class instead would make each one evidence
        *against* the classes it is held out for, and a slice played with a
        class's own held-out instruments would then be rigged against that class.
        """
        return tuple(p for p in self.palette if p not in self.held_out)


SMOKE_CONFIG = CorpusConfig(
    works_per_class=3,
    segments_per_class=3,
    segment_s=4.0,
    max_measures=16,
    prefer_short_works=True,
)


def config_digest(config: CorpusConfig, soundfont: Path) -> str:
    """sha256 over the configuration, the builder version, music21's version and the soundfont."""
    payload = {
        "config": config.model_dump(mode="json"),
        "format_version": CORPUS_FORMAT_VERSION,
        "music21": music21.__version__,
        "soundfont_sha256": sha256_file(soundfont),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
