"""`mozart stream FILE | - | --mic`: one row per window as results arrive, then the summary."""

from __future__ import annotations

import argparse
import wave
from dataclasses import dataclass

from mozart_client import cli_inputs, cli_output
from mozart_client.audio import StreamInput
from mozart_client.cli_connection import open_client
from mozart_client.cli_console import Terminal, line
from mozart_client.cli_errors import ExitCode
from mozart_client.errors import InvalidInputError
from mozart_client.microphone import microphone_chunks
from mozart_client.results import LabelScore, WindowResult

MIC_RATE_HZ = 16_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the source (FILE, - or --mic) and the stream options to the stream parser."""
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="audio file, or - for stdin (WAV or raw PCM)"
    )
    parser.add_argument(
        "--mic",
        action="store_true",
        help="stream from the default microphone (needs mozart-client[microphone])",
    )
    parser.add_argument(
        "--mic-device", metavar="DEVICE", help="a sounddevice input device index or name"
    )
    parser.add_argument(
        "--duration-s", type=float, metavar="S", help="--mic: stop after this much audio"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="send audio no faster than it plays"
    )
    parser.add_argument(
        "--smoothing",
        type=float,
        default=0.0,
        metavar="W",
        help="EMA weight of the past in [0, 1); above 0 the rows show smoothed labels",
    )
    parser.add_argument(
        "--chunk-ms", type=int, default=100, metavar="N", help="audio per message (default 100)"
    )
    cli_inputs.add_arguments(parser)


@dataclass(frozen=True)
class _Source:
    """What to stream, how to name it, and its length when known."""

    audio: StreamInput
    name: str
    sample_rate_hz: int | None = None
    duration_s: float | None = None


def _source(args: argparse.Namespace) -> _Source:
    if args.mic == (args.file is not None):
        raise InvalidInputError("`mozart stream` takes a FILE, - for stdin, or --mic (one)")
    if args.mic:
        device = args.mic_device
        rate = args.rate or MIC_RATE_HZ
        chunks = microphone_chunks(
            rate,
            chunk_ms=args.chunk_ms,
            channels=args.channels,
            device=int(device) if device and device.isdigit() else device,
            max_duration_s=args.duration_s,
        )
        return _Source(chunks, "the microphone", rate, args.duration_s)
    if args.file == cli_inputs.STDIN:
        stdin = cli_inputs.stdin_stream(cli_inputs.raw_format(args), args.chunk_ms)
        return _Source(stdin.chunks, "stdin", stdin.sample_rate_hz)
    return _Source(args.file, args.file, duration_s=_duration_s(args.file))


def _duration_s(path: str) -> float | None:
    """How long a file plays, for the progress bar; None when it cannot tell cheaply."""
    try:
        import soundfile  # noqa: PLC0415 - optional extra

        return float(soundfile.info(path).duration)
    except ImportError:
        pass
    except Exception:  # streaming reports the real problem
        return None
    try:
        with wave.open(path, "rb") as reader:
            return reader.getnframes() / reader.getframerate()
    except (OSError, wave.Error, EOFError, ZeroDivisionError):
        return None


def run(args: argparse.Namespace, terminal: Terminal) -> int:
    """Streams the source and prints each event as it arrives."""
    if not 0 <= args.smoothing < 1:
        raise InvalidInputError(f"--smoothing must be in [0, 1), got {args.smoothing}")
    source = _source(args)
    smoothing = args.smoothing > 0
    with open_client(args, default_timeout_s=10.0) as client:
        results = client.stream(
            source.audio,
            model=args.model,
            version=args.version,
            realtime=args.realtime,
            hop_ms=args.hop_ms,
            top_k=args.top_k,
            smoothing=args.smoothing,
            sample_rate_hz=source.sample_rate_hz,
            chunk_ms=args.chunk_ms,
            timeout_s=args.timeout_s,
        )
        if not args.json:
            pace = "real time" if args.realtime else "as fast as accepted"
            shown = (
                f"; labels and scores smoothed (EMA, weight {args.smoothing:g} on the past)"
                if smoothing
                else ""
            )
            terminal.note(f"streaming {source.name} to {args.server} ({pace}){shown}")
            line(cli_output.stream_header(args.smoothing))
        with terminal.progress("streaming", total=source.duration_s, unit="s of audio") as bar:
            for result in results:
                top: tuple[LabelScore, ...] | None = None
                if isinstance(result, WindowResult):
                    bar.update(result.end_ms / 1000)
                    if smoothing:
                        top = cli_output.smoothed_top_k(result)
                if args.json:
                    line(cli_output.stream_json(result))
                else:
                    line(cli_output.stream_row(result, top))
    return ExitCode.OK
