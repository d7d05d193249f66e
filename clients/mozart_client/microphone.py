"""Live microphone input through `sounddevice` (the `microphone` extra)."""

from __future__ import annotations

import importlib
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from mozart_client.errors import MozartError


def microphone_chunks(
    sample_rate_hz: int = 16_000,
    *,
    chunk_ms: int = 100,
    channels: int = 1,
    device: int | str | None = None,
    max_duration_s: float | None = None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Records from a microphone and yields float32 chunks as they are captured.

    Pass the chunks to `Client.stream(..., sample_rate_hz=sample_rate_hz)`; they
    already arrive at real-time pace, so `realtime=True` is not needed.

    Args:
        sample_rate_hz: Capture rate; the server resamples to the model rate.
        chunk_ms: Audio per chunk.
        channels: 1 or 2.
        device: A sounddevice device index or name; None for the default input.
        max_duration_s: Stop after this much audio; None records until the
            consumer stops iterating.

    Raises:
        MozartError: sounddevice (or its PortAudio library) is not installed.
    """
    try:
        # Imported here: sounddevice loads PortAudio, which most servers and CI lack.
        sounddevice: Any = importlib.import_module("sounddevice")
    except (ImportError, OSError) as error:
        raise MozartError(
            f"microphone input needs sounddevice and PortAudio ({error}); "
            "install mozart-client[microphone]"
        ) from error
    frames = max(1, sample_rate_hz * chunk_ms // 1000)
    captured: queue.Queue[npt.NDArray[np.float32]] = queue.Queue()

    def on_audio(indata: npt.NDArray[np.float32], frame_count: int, when: Any, status: Any) -> None:
        # Runs on PortAudio's thread; copy, because the buffer is reused.
        captured.put(indata.copy())

    limit = None if max_duration_s is None else int(max_duration_s * sample_rate_hz)
    recorded = 0
    with sounddevice.InputStream(
        samplerate=sample_rate_hz,
        channels=channels,
        dtype="float32",
        blocksize=frames,
        device=device,
        callback=on_audio,
    ):
        while limit is None or recorded < limit:
            chunk = captured.get()
            recorded += len(chunk)
            yield chunk if channels > 1 else chunk[:, 0]
