"""How long a clip is, from its size or its header alone: admission checks before decoding."""

from __future__ import annotations

import io

import soundfile

from mozart_server.audio.decode import RAW_ENCODINGS, AudioFormat, frame_bytes


def estimated_length(data: bytes, audio_format: AudioFormat) -> tuple[int, int] | None:
    """The clip's (frames, sample rate) without decoding it; None when they cannot be told.

    Raw PCM: exact, from the byte count (a bad rate or channel count gives None; decoding
    reports it). Containers: what the header declares, read by libsndfile (headers may
    lie: decoding enforces the limits again).
    """
    if audio_format.encoding in RAW_ENCODINGS:
        if audio_format.sample_rate_hz <= 0 or audio_format.channels not in (1, 2):
            return None
        frames = len(data) // frame_bytes(audio_format.encoding, audio_format.channels)
        return frames, audio_format.sample_rate_hz
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError):
        return None  # undecodable: decoding says why
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return int(info.frames), int(info.samplerate)
