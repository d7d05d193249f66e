"""Renders music21 scores to audio: score -> MIDI bytes -> note events -> FluidSynth, mono.

The path is music21's own MIDI writer, mido to read the MIDI back as timed events,
and pyfluidsynth (Debian's ``libfluidsynth3``) with a General MIDI soundfont to
synthesize them. Each rendering uses a fresh synthesizer so the same events always
give the same samples, whatever was rendered before in the same process.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import mido  # type: ignore[import-untyped]
import numpy as np
from music21 import bar, repeat, spanner, stream
from music21.midi import translate
from music21.repeat import ExpanderException
from numpy.typing import NDArray

_log = logging.getLogger(__name__)

# pyfluidsynth prints where it found the library to stdout on import when the CI
# environment variable is set, which would corrupt `mozart ... --json` output.
with contextlib.redirect_stdout(io.StringIO()) as _import_output:
    import fluidsynth
if _import_output.getvalue():
    _log.debug("pyfluidsynth: %s", _import_output.getvalue().strip())

#: The General MIDI percussion channel; parts never go there.
PERCUSSION_CHANNEL = 9


# FluidSynth's float writer: its s16 writer (pyfluidsynth's get_samples) adds dither
# from a table that libc rand() fills once per process, so the same notes could
# give different bytes in different processes. Float output has no dither.
_write_float = fluidsynth.cfunc(
    "fluid_synth_write_float",
    ctypes.c_int,
    ("synth", ctypes.c_void_p, 1),
    ("len", ctypes.c_int, 1),
    ("lout", ctypes.c_void_p, 1),
    ("loff", ctypes.c_int, 1),
    ("lincr", ctypes.c_int, 1),
    ("rout", ctypes.c_void_p, 1),
    ("roff", ctypes.c_int, 1),
    ("rincr", ctypes.c_int, 1),
)


def _stereo_samples(synth: fluidsynth.Synth, frames: int) -> NDArray[np.float32]:
    """The next ``frames`` stereo frames, interleaved float32."""
    buffer = np.zeros(2 * frames, dtype=np.float32)
    address = buffer.ctypes.data
    if _write_float(synth.synth, frames, address, 0, 2, address, 1, 2) != 0:
        raise RuntimeError("FluidSynth failed to render samples")
    return buffer


def default_soundfont() -> Path:
    """The small General MIDI soundfont (TimGM6mb, GPL-2) that ships inside pretty_midi."""
    return Path(str(resources.files("pretty_midi") / "TimGM6mb.sf2"))


@dataclass(frozen=True)
class NoteEvent:
    """A note starting or stopping on a MIDI channel; ``velocity`` 0 means note off."""

    time_s: float
    channel: int
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Performance:
    """A score's notes as timed events, as its MIDI file plays them."""

    events: tuple[NoteEvent, ...]
    channels: tuple[int, ...]
    duration_s: float
    repeats_stripped: bool


def strip_repeats(score: stream.Score) -> None:
    """Removes repeat barlines, volta brackets and repeat expressions, in place.

    The known fix for scores whose repeats music21 cannot expand (Mozart K458
    movement 1 raises ``ExpanderException: badly formed repeats``): the music
    then plays straight through once.
    """
    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline("regular")  # type: ignore[no-untyped-call]
    marks = score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))
    for mark in list(marks):
        score.remove(mark, recurse=True)


def score_to_midi(score: stream.Score) -> tuple[bytes, bool]:
    """Writes a score as MIDI bytes; returns them and whether repeats had to be stripped."""
    try:
        return translate.streamToMidiFile(score).writestr(), False
    except ExpanderException:
        strip_repeats(score)
        return translate.streamToMidiFile(score).writestr(), True


def _synth_channel(track_index: int) -> int:
    """The synthesizer channel of a MIDI track: one per part, skipping percussion."""
    channel = track_index % 15
    return channel + 1 if channel >= PERCUSSION_CHANNEL else channel


def _tick_to_seconds(midi_file: mido.MidiFile) -> Callable[[int], float]:
    """Maps absolute ticks to seconds through the file's tempo changes (from any track)."""
    changes: list[tuple[int, int]] = []
    for track in midi_file.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo":
                changes.append((tick, message.tempo))
    changes.sort()
    # Each segment: (start tick, start seconds, microseconds per beat).
    segments: list[tuple[int, float, int]] = [(0, 0.0, 500_000)]
    for tick, tempo in changes:
        start_tick, start_s, current = segments[-1]
        seconds = start_s + mido.tick2second(tick - start_tick, midi_file.ticks_per_beat, current)
        if tick == start_tick:
            segments[-1] = (tick, start_s, tempo)
        else:
            segments.append((tick, seconds, tempo))
    starts = [segment[0] for segment in segments]

    def convert(tick: int) -> float:
        start_tick, start_s, tempo = segments[bisect.bisect_right(starts, tick) - 1]
        return start_s + float(mido.tick2second(tick - start_tick, midi_file.ticks_per_beat, tempo))

    return convert


def read_performance(midi_bytes: bytes, *, repeats_stripped: bool = False) -> Performance:
    """Reads MIDI bytes into note events in seconds, one synthesizer channel per track.

    music21 may put several parts on one MIDI channel; keying voices by track
    instead lets every part get its own instrument.
    """
    midi_file = mido.MidiFile(file=io.BytesIO(midi_bytes))
    seconds = _tick_to_seconds(midi_file)
    events: list[NoteEvent] = []
    voices = [track for track in midi_file.tracks if any(m.type == "note_on" for m in track)]
    for index, track in enumerate(voices):
        channel = _synth_channel(index)
        tick = 0
        for message in track:
            tick += message.time
            if message.type not in ("note_on", "note_off"):
                continue
            if message.channel == PERCUSSION_CHANNEL:
                continue
            velocity = message.velocity if message.type == "note_on" else 0
            events.append(NoteEvent(seconds(tick), channel, message.note, velocity))
    # Note-offs first at equal times, so a repeated pitch sounds again.
    events.sort(key=lambda event: (event.time_s, event.velocity > 0, event.channel, event.pitch))
    channels = tuple(sorted({event.channel for event in events}))
    duration_s = events[-1].time_s if events else 0.0
    return Performance(tuple(events), channels, duration_s, repeats_stripped)


def excerpt(performance: Performance, start_s: float, length_s: float) -> list[NoteEvent]:
    """The events of ``[start_s, start_s + length_s)``, shifted to start at zero.

    Notes already sounding at ``start_s`` restart at zero, so an excerpt never
    opens on silence where the music is playing.
    """
    end_s = start_s + length_s
    sounding: dict[tuple[int, int], int] = {}
    out: list[NoteEvent] = []
    for event in performance.events:
        key = (event.channel, event.pitch)
        if event.time_s < start_s:
            if event.velocity > 0:
                sounding[key] = event.velocity
            else:
                sounding.pop(key, None)
            continue
        if event.time_s >= end_s:
            break
        if not out and sounding:
            out.extend(NoteEvent(0.0, ch, p, v) for (ch, p), v in sorted(sounding.items()))
            sounding.clear()
        out.append(NoteEvent(event.time_s - start_s, event.channel, event.pitch, event.velocity))
    if not out and sounding:
        out.extend(NoteEvent(0.0, ch, p, v) for (ch, p), v in sorted(sounding.items()))
    return out


def _batches(events: Sequence[NoteEvent]) -> Iterator[tuple[float, list[NoteEvent]]]:
    """Groups events that share a start time."""
    index = 0
    while index < len(events):
        time_s = events[index].time_s
        group: list[NoteEvent] = []
        while index < len(events) and events[index].time_s == time_s:
            group.append(events[index])
            index += 1
        yield time_s, group


def synthesize(
    events: Sequence[NoteEvent],
    programs: Mapping[int, int],
    length_s: float,
    sample_rate_hz: int,
    soundfont: Path,
) -> NDArray[np.float32]:
    """Synthesizes events to mono float32 of exactly ``length_s`` seconds.

    Args:
        events: note events sorted by time, times relative to the excerpt start.
        programs: the General MIDI program (0-127) of every channel in ``events``.
        length_s: length of the output.
        sample_rate_hz: output sample rate.
        soundfont: a General MIDI ``.sf2`` file.
    """
    total = round(length_s * sample_rate_hz)
    synth = fluidsynth.Synth(gain=0.4, samplerate=float(sample_rate_hz))
    try:
        soundfont_id = synth.sfload(str(soundfont))
        if soundfont_id < 0:
            raise FileNotFoundError(f"FluidSynth could not load the soundfont {soundfont}")
        for channel, program in programs.items():
            synth.program_select(channel, soundfont_id, 0, program)
        chunks: list[NDArray[np.float32]] = []
        rendered = 0
        for time_s, group in _batches(events):
            target = min(round(time_s * sample_rate_hz), total)
            if target > rendered:
                chunks.append(_stereo_samples(synth, target - rendered))
                rendered = target
            for event in group:
                if event.velocity > 0:
                    synth.noteon(event.channel, event.pitch, event.velocity)
                else:
                    synth.noteoff(event.channel, event.pitch)
        if total > rendered:
            chunks.append(_stereo_samples(synth, total - rendered))
    finally:
        synth.delete()
    stereo = np.concatenate(chunks).reshape(-1, 2)
    # FluidSynth always renders stereo; the corpus is mono.
    return np.ascontiguousarray(stereo.mean(axis=1), dtype=np.float32)[:total]
