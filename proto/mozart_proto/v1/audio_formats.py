"""The audio containers Classify decodes: the one list the server, the SDK, the trainer and
the docs share (tests/workspace/test_audio_contract.py checks that they agree).

Pure data, with no generated code and no audio library, so that every distribution can
import it. Each container is decoded by libsndfile; `libsndfile_formats` are the names
`soundfile` reports as `SoundFile.format` for files of that container.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioContainer:
    """One container format that Classify decodes."""

    name: str
    """How docs and messages write it: "WAV", "Ogg"."""
    key: str
    """Its lower-case name: the SDK's and CLI's `encoding=` value, the server's Encoding."""
    wire_name: str
    """The AudioEncoding value is `AUDIO_ENCODING_<wire_name>`."""
    libsndfile_formats: tuple[str, ...]
    """libsndfile's major formats that belong to it (`soundfile.SoundFile.format`)."""
    suffixes: tuple[str, ...]
    """File name endings, lower case, that the trainer reads as audio."""
    holds: str
    """What it may carry, for the docs."""


CONTAINERS: tuple[AudioContainer, ...] = (
    AudioContainer(
        name="WAV",
        key="wav",
        wire_name="WAV",
        libsndfile_formats=("WAV", "WAVEX", "RF64"),
        suffixes=(".wav",),
        holds="RIFF/WAVE, WAVEX or RF64: PCM 8/16/24/32-bit, 32/64-bit float, µ-law, A-law, ADPCM",
    ),
    AudioContainer(
        name="FLAC",
        key="flac",
        wire_name="FLAC",
        libsndfile_formats=("FLAC",),
        suffixes=(".flac",),
        holds="FLAC, 8 to 24 bits",
    ),
    AudioContainer(
        name="Ogg",
        key="ogg",
        wire_name="OGG",
        libsndfile_formats=("OGG",),
        suffixes=(".ogg", ".oga", ".opus"),
        holds="Ogg Vorbis or Opus",
    ),
    AudioContainer(
        name="MP3",
        key="mp3",
        wire_name="MP3",
        libsndfile_formats=("MP3",),
        suffixes=(".mp3",),
        holds="MPEG-1/2 Layer III",
    ),
    AudioContainer(
        name="AIFF",
        key="aiff",
        wire_name="AIFF",
        libsndfile_formats=("AIFF",),
        suffixes=(".aif", ".aiff", ".aifc"),
        holds="AIFF or AIFF-C: PCM 8/16/24/32-bit, 32/64-bit float, µ-law, A-law",
    ),
)

#: Every file name ending of a supported container, in the order of CONTAINERS.
AUDIO_SUFFIXES: tuple[str, ...] = tuple(s for c in CONTAINERS for s in c.suffixes)

#: "WAV, FLAC, Ogg, MP3, AIFF": for messages and help texts.
CONTAINER_NAMES: str = ", ".join(c.name for c in CONTAINERS)


def container_named(key: str) -> AudioContainer | None:
    """The container whose `key` this is ("wav", "mp3"), if any."""
    return next((c for c in CONTAINERS if c.key == key), None)


def container_of(libsndfile_format: str) -> AudioContainer | None:
    """The container a libsndfile major format belongs to ("WAVEX" -> WAV), if any."""
    return next((c for c in CONTAINERS if libsndfile_format in c.libsndfile_formats), None)
