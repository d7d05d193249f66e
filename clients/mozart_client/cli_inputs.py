"""What the client commands read: files, folders, glob patterns, and `-` for stdin.

Stdin holds a WAV (or, for `classify`, any container the server decodes), or raw
PCM when `--format`/`--rate` say so; `arecord -f S16_LE | mozart stream -` works.
"""

from __future__ import annotations

import argparse
import glob
import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from mozart_client.audio import AudioArray, AudioInput
from mozart_client.errors import InvalidInputError, MozartError
from mozart_proto.v1.audio_formats import AUDIO_SUFFIXES

STDIN = "-"
RAW_FORMATS: dict[str, np.dtype[np.generic]] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
"""`--format` names of raw PCM on stdin, and their samples."""

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class RawFormat:
    """Raw PCM on stdin: the sample type, the rate and the channel count."""

    sample: np.dtype[np.generic]
    sample_rate_hz: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample per channel)."""
        return self.sample.itemsize * self.channels


@dataclass(frozen=True)
class ClipInput:
    """One input of `classify`: a file, stdin, or an argument that named no file.

    Attributes:
        name: As printed and in JSON: the path, or "-" for stdin.
        problem: Why there is nothing to classify (a pattern matching no file, an
            empty folder); None when there is.
    """

    name: str
    problem: MozartError | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `--format`, `--rate` and `--channels` (raw PCM on stdin) to a command."""
    group = parser.add_argument_group("raw PCM on stdin (FILE -)")
    group.add_argument(
        "--format",
        choices=sorted(RAW_FORMATS),
        help="stdin holds raw little-endian PCM of this sample type (default: it holds a WAV)",
    )
    group.add_argument("--rate", type=int, metavar="HZ", help="sample rate of raw PCM")
    group.add_argument(
        "--channels", type=int, default=1, metavar="N", help="channels of raw PCM (default 1)"
    )


def raw_format(args: argparse.Namespace) -> RawFormat | None:
    """The raw PCM format the options describe, or None for a WAV (or other container).

    Raises:
        InvalidInputError: `--format` without `--rate`, or a rate or channel count below 1.
    """
    if args.format is None and args.rate is None:
        return None
    if args.rate is None:
        raise InvalidInputError("raw PCM on stdin needs --rate HZ")
    if args.rate < 1 or args.channels < 1:
        raise InvalidInputError("--rate and --channels must be positive")
    return RawFormat(RAW_FORMATS[args.format or "s16le"], args.rate, args.channels)


def expand(arguments: list[str], *, recursive: bool) -> list[ClipInput]:
    """The inputs the FILE arguments name, in order: files as given, a folder's audio
    files (`--recursive`: its subfolders' too) and a pattern's matches, each sorted.

    A path that does not exist and is no pattern stays as given, so that reading it
    reports why.
    """
    inputs: list[ClipInput] = []
    for argument in arguments:
        path = Path(argument)
        if argument == STDIN or path.is_file():
            inputs.append(ClipInput(argument))
        elif path.is_dir():
            inputs += _folder(path, recursive) or [
                ClipInput(argument, InvalidInputError(_no_audio_in(argument, recursive)))
            ]
        elif _GLOB_CHARACTERS & set(argument):
            matches = sorted(glob.glob(argument, recursive=recursive))
            files = [ClipInput(match) for match in matches if Path(match).is_file()]
            inputs += files or [
                ClipInput(argument, InvalidInputError(f"no file matches {argument!r}"))
            ]
        else:
            inputs.append(ClipInput(argument))
    return inputs


def _folder(folder: Path, recursive: bool) -> list[ClipInput]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return [
        ClipInput(str(path))
        for path in sorted(candidates)
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()
    ]


def _no_audio_in(folder: str, recursive: bool) -> str:
    where = "in or under" if recursive else "in"
    more = "" if recursive else " (--recursive looks in its subfolders too)"
    return f"no audio files ({', '.join(AUDIO_SUFFIXES)}) {where} {folder}{more}"


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def stdin_clip(raw: RawFormat | None) -> tuple[AudioInput, int | None]:
    """All of stdin as a clip for `classify`: the bytes of a container, or raw PCM as
    samples of shape (frames, channels), with their rate.

    Raises:
        InvalidInputError: Stdin is empty, or raw PCM ends in the middle of a frame.
    """
    data = _stdin().read()
    if not data:
        raise InvalidInputError("stdin is empty: pipe audio into `-`")
    if raw is None:
        return data, None
    return _samples(data, raw), raw.sample_rate_hz


def _samples(data: bytes, raw: RawFormat) -> AudioArray:
    if len(data) % raw.frame_bytes:
        raise InvalidInputError(
            f"raw PCM on stdin ends mid-frame: {len(data)} bytes is not a multiple of "
            f"{raw.frame_bytes} ({raw.channels} channel(s) of {raw.sample.itemsize} bytes)"
        )
    return np.frombuffer(data, dtype=raw.sample).reshape(-1, raw.channels)


@dataclass(frozen=True)
class StdinStream:
    """Stdin as a stream: chunks of samples, shape (frames, channels), at a rate."""

    chunks: Iterator[npt.NDArray[np.generic]]
    sample_rate_hz: int


def stdin_stream(raw: RawFormat | None, chunk_ms: int) -> StdinStream:
    """Reads stdin as it arrives, `chunk_ms` of audio at a time.

    Raises:
        InvalidInputError: Stdin is not a 16-bit PCM WAV and no raw format was given.
    """
    source = _stdin()
    if raw is None:
        return _wav_stream(source, chunk_ms)
    frames = max(1, raw.sample_rate_hz * chunk_ms // 1000)

    def chunks() -> Iterator[npt.NDArray[np.generic]]:
        while data := source.read(frames * raw.frame_bytes):
            yield _samples(data, raw)

    return StdinStream(chunks(), raw.sample_rate_hz)


def _wav_stream(source: BinaryIO, chunk_ms: int) -> StdinStream:
    # peek() shows the header without consuming it; a pipe's BufferedReader has it.
    head = source.peek(12)[:12] if hasattr(source, "peek") else b""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise InvalidInputError(
            "stdin is not a WAV; for raw PCM give --format s16le|f32le --rate HZ [--channels N]"
        )
    try:
        # Wave_read reads a pipe front to back; a length of "unknown" (arecord's) is fine.
        reader = wave.open(source, "rb")  # noqa: SIM115 - closed by chunks()
    except (wave.Error, EOFError) as error:
        raise InvalidInputError(f"cannot read the WAV on stdin: {error}") from None
    if reader.getsampwidth() != 2:
        width = reader.getsampwidth() * 8
        reader.close()
        raise InvalidInputError(
            f"the WAV on stdin has {width}-bit samples; streams from stdin take 16-bit WAV, "
            "or raw PCM with --format s16le|f32le --rate HZ"
        )
    rate, channels = reader.getframerate(), reader.getnchannels()
    frames = max(1, rate * chunk_ms // 1000)

    def chunks() -> Iterator[npt.NDArray[np.generic]]:
        with reader:
            while data := reader.readframes(frames):
                usable = len(data) - len(data) % (2 * channels)
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<i2").reshape(-1, channels)

    return StdinStream(chunks(), rate)
