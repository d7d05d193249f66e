"""Input and prediction drift of each model version against the reference_stats of its model.json.

Per window served, the batcher hands over the waveforms and probabilities of each batch,
and the batch's mel frames when the engine is split (`DriftMonitor.observe`, in the
engine's worker thread): the window's RMS in dBFS and its predicted class go into ring
buffers of the last `drift_window_windows` windows, and every `drift_mel_every_windows`-th
window is kept for the log-mel statistics (at most `MEL_PENDING_WINDOWS` wait at once; when
more come, the oldest are dropped). Everything costly happens on one timer thread
(`DriftScheduler`), every `drift_interval_s`:

- a sampled window's frames are the graph's own when the batch had them (the graph's
  front end is the trainer's, so they are what the reference was measured on); other
  sampled windows go through a numpy copy of the trainer's log-mel front end
  (trainer/mozart_trainer/frontend.py, with the parameters model.json records in
  `front_end`, normalisation included, as the reference was measured), and
- the scores are computed and exported as gauges once the window holds at least
  `drift_min_windows` windows:

  * ``rms_psi``, ``class_psi``: the population stability index
    ``sum((p - q) * ln(p / q))`` of the live RMS histogram (the reference's 5 dB bins,
    -80..0 dBFS) and of the predicted-class distribution, against the reference. Both sides
    are smoothed with half a count per bin (``(count + 0.5) / (n + 0.5 * bins)``; the class
    reference is stored as proportions, so it is given the reference's own bin count), so a
    bin that one side never saw gives a large but finite term.
  * ``mel_mean_shift``: the mean over mel bands of ``|live mean - reference mean| /
    reference std`` of the normalised log-mel, a standardised mean shift in units of
    the reference's per-band deviation.

numpy only: PSI is a few lines, so scipy (tens of MB in the server image) is not needed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mozart_server.observability.metrics import ServerMetrics
from mozart_server.tensors import FloatArray

logger = logging.getLogger(__name__)

Float64Array = npt.NDArray[np.float64]

#: Sampled windows waiting for the timer, per version; beyond this the oldest is dropped.
MEL_PENDING_WINDOWS = 64
#: Half a count added to every bin of both histograms before the PSI.
PSI_SMOOTHING_COUNTS = 0.5
#: RMS floor before the dB conversion (the trainer's), so silence is -200 dB, clipped to -80.
_RMS_FLOOR = 1e-10


@dataclass(frozen=True)
class FrontEnd:
    """The log-mel parameters model.json records in ``front_end`` (the trainer's FrontEndConfig)."""

    sample_rate_hz: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    f_min_hz: float
    f_max_hz: float
    log_floor: float
    norm_mean: float
    norm_std: float

    @classmethod
    def from_manifest(cls, front_end: dict[str, Any], sample_rate_hz: int) -> FrontEnd:
        """Reads ``front_end`` of model.json.

        Raises:
            ValueError: a parameter is missing or not a number.
        """
        try:
            return cls(
                sample_rate_hz=sample_rate_hz,
                n_fft=int(front_end["n_fft"]),
                hop_length=int(front_end["hop_length"]),
                win_length=int(front_end["win_length"]),
                n_mels=int(front_end["n_mels"]),
                f_min_hz=float(front_end["f_min_hz"]),
                f_max_hz=float(front_end["f_max_hz"]),
                log_floor=float(front_end["log_floor"]),
                norm_mean=float(front_end["norm_mean"]),
                norm_std=float(front_end["norm_std"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"front_end lacks a log-mel parameter: {error}") from error


def _hz_to_mel(hz: Float64Array) -> Float64Array:
    """Slaney's mel scale, as the trainer's front end computes it."""
    f_sp = 200.0 / 3.0
    min_log_mel = 1000.0 / f_sp
    log_step = math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= 1000.0
    mel[above] = min_log_mel + np.log(hz[above] / 1000.0) / log_step
    return mel


def _mel_to_hz(mel: Float64Array) -> Float64Array:
    f_sp = 200.0 / 3.0
    min_log_mel = 1000.0 / f_sp
    log_step = math.log(6.4) / 27.0
    hz = mel * f_sp
    above = mel >= min_log_mel
    hz[above] = 1000.0 * np.exp(log_step * (mel[above] - min_log_mel))
    return hz


def mel_filterbank(front_end: FrontEnd) -> Float64Array:
    """Slaney-normalised triangular filters ``[n_mels, n_fft // 2 + 1]``, the trainer's formula."""
    n_freqs = front_end.n_fft // 2 + 1
    fft_hz = np.linspace(0.0, front_end.sample_rate_hz / 2.0, n_freqs)
    mel_edges = np.linspace(
        _hz_to_mel(np.array([front_end.f_min_hz]))[0],
        _hz_to_mel(np.array([front_end.f_max_hz]))[0],
        front_end.n_mels + 2,
    )
    hz_edges = _mel_to_hz(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights


class LogMel:
    """The trainer's normalised log-mel in numpy: ``[n, samples]`` -> ``[n, n_mels, frames]``.

    Frames start every hop_length samples with no padding (``center=False``), each
    multiplied by a periodic Hann window of win_length centred in n_fft.
    """

    def __init__(self, front_end: FrontEnd) -> None:
        self.front_end = front_end
        window = np.zeros(front_end.n_fft)
        n = np.arange(front_end.win_length)
        offset = (front_end.n_fft - front_end.win_length) // 2
        window[offset : offset + front_end.win_length] = 0.5 - 0.5 * np.cos(
            2.0 * np.pi * n / front_end.win_length
        )
        self._window = window
        self._mel_basis = mel_filterbank(front_end).T.copy()  # [n_freqs, n_mels]

    def __call__(self, waveforms: FloatArray) -> Float64Array:
        front_end = self.front_end
        frames = np.lib.stride_tricks.sliding_window_view(
            waveforms.astype(np.float64), front_end.n_fft, axis=-1
        )[:, :: front_end.hop_length]
        spectrum = np.fft.rfft(frames * self._window, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        log_mel = np.log(np.maximum(power @ self._mel_basis, front_end.log_floor))
        normalised = (log_mel - front_end.norm_mean) / front_end.norm_std
        return np.swapaxes(normalised, 1, 2)


@dataclass(frozen=True)
class ReferenceStats:
    """``reference_stats`` of model.json, as arrays in the manifest's label order."""

    mel_mean: Float64Array
    mel_std: Float64Array
    rms_edges_db: Float64Array
    rms_counts: Float64Array
    class_distribution: Float64Array

    @property
    def windows(self) -> int:
        """Validation windows the reference was measured on (the RMS histogram's total)."""
        return int(self.rms_counts.sum())

    @classmethod
    def from_manifest(cls, stats: dict[str, Any], labels: tuple[str, ...]) -> ReferenceStats | None:
        """Reads ``reference_stats``; None when the manifest has none (e.g. ``{}``).

        Raises:
            ValueError: the statistics are present but inconsistent.
        """
        if not stats:
            return None
        try:
            histogram = stats["rms_histogram"]
            reference = cls(
                mel_mean=np.asarray(stats["mel_mean"], dtype=np.float64),
                mel_std=np.asarray(stats["mel_std"], dtype=np.float64),
                rms_edges_db=np.asarray(histogram["edges"], dtype=np.float64),
                rms_counts=np.asarray(histogram["counts"], dtype=np.float64),
                class_distribution=np.asarray(
                    [float(stats["class_distribution"][label]) for label in labels]
                ),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"reference_stats is incomplete: {error!r}") from error
        if reference.mel_mean.shape != reference.mel_std.shape or reference.mel_mean.ndim != 1:
            raise ValueError("reference_stats mel_mean and mel_std differ in length")
        if len(reference.rms_edges_db) != len(reference.rms_counts) + 1:
            raise ValueError("reference_stats rms_histogram needs one more edge than counts")
        if reference.windows <= 0 or np.any(np.diff(reference.rms_edges_db) <= 0):
            raise ValueError("reference_stats rms_histogram is empty or its edges do not rise")
        return reference


def population_stability_index(live: Float64Array, reference: Float64Array) -> float:
    """PSI of two histograms of counts over the same bins, each smoothed by half a count per bin."""
    p = (live + PSI_SMOOTHING_COUNTS) / (live.sum() + PSI_SMOOTHING_COUNTS * len(live))
    q = (reference + PSI_SMOOTHING_COUNTS) / (
        reference.sum() + PSI_SMOOTHING_COUNTS * len(reference)
    )
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass(frozen=True)
class DriftScores:
    """One evaluation of a version's drift; the mel shift is None until a window was sampled."""

    windows: int
    rms_psi: float
    class_psi: float
    mel_mean_shift: float | None
    mel_windows: int


@dataclass(frozen=True)
class DriftConfig:
    """How much serving history the scores cover and how it is sampled."""

    window_windows: int
    min_windows: int
    mel_every_windows: int


class DriftMonitor:
    """Running statistics of what one model version serves, and their drift scores.

    `observe` may be called from several engine threads at once; `evaluate` from the timer.
    """

    def __init__(
        self,
        reference: ReferenceStats,
        front_end: FrontEnd,
        config: DriftConfig,
        labels: dict[str, str],
        on_close: Callable[[DriftMonitor], None] | None = None,
    ) -> None:
        if len(reference.mel_mean) != front_end.n_mels:
            raise ValueError(
                f"reference_stats has {len(reference.mel_mean)} mel bands, "
                f"front_end n_mels is {front_end.n_mels}"
            )
        self.labels = labels
        self._on_close = on_close
        self._reference = reference
        self._config = config
        self._log_mel = LogMel(front_end)
        self._lock = threading.Lock()
        size = config.window_windows
        self._rms_db = np.zeros(size, dtype=np.float32)
        self._classes = np.zeros(size, dtype=np.int64)
        self._seen = 0  # windows observed since start; ring position is seen % size
        # A sampled window's samples [samples], or its frames [n_mels, frames].
        self._pending: deque[FloatArray] = deque(maxlen=MEL_PENDING_WINDOWS)
        self._until_sample = 0
        mel_size = max(1, math.ceil(size / config.mel_every_windows))
        self._mel_sums = np.zeros((mel_size, front_end.n_mels))
        self._mel_frames = np.zeros(mel_size)
        self._mel_seen = 0
        # A band that never varied on the validation set would divide by zero.
        self._mel_std = np.maximum(reference.mel_std, 1e-6)

    def observe(
        self, waveforms: FloatArray, probabilities: FloatArray, features: FloatArray | None = None
    ) -> None:
        """Takes in one batch: RMS and predicted class per window, and maybe a window's copy.

        With `features` ([rows, 1, n_mels, frames], the graph's normalised log-mel), a
        sampled window's frames are kept instead of its samples, so the timer need not
        compute them again.
        """
        n_mels = self._log_mel.front_end.n_mels
        if features is not None and (
            features.ndim != 4 or features.shape[:3] != (len(waveforms), 1, n_mels)
        ):
            features = None
        # float32 sums (4x faster than float64 here); their error is far below a 5 dB bin.
        squares = np.einsum("ij,ij->i", waveforms, waveforms).astype(np.float64)
        rms = np.sqrt(squares / waveforms.shape[1])
        rms_db = 20.0 * np.log10(np.maximum(rms, _RMS_FLOOR))
        classes = np.argmax(probabilities, axis=1)
        size = self._config.window_windows
        with self._lock:
            rows = len(rms_db)
            positions = (self._seen + np.arange(rows)) % size
            if rows > size:
                positions, rms_db, classes = positions[-size:], rms_db[-size:], classes[-size:]
            self._rms_db[positions] = rms_db
            self._classes[positions] = classes
            self._seen += rows
            # Every mel_every_windows-th window, counted across batches.
            row = self._until_sample
            while row < rows:
                # The oldest goes when full.
                kept = waveforms[row] if features is None else features[row, 0]
                self._pending.append(kept.copy())
                row += self._config.mel_every_windows
            self._until_sample = row - rows

    def close(self) -> None:
        """Stops the scoring of this version (its batcher closed) and removes its series."""
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

    def evaluate(self) -> DriftScores | None:
        """Turns the sampled windows into mel statistics, then scores; None below min_windows."""
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        if pending:
            samples = [window for window in pending if window.ndim == 1]
            features = [window.astype(np.float64) for window in pending if window.ndim == 2]
            if samples:
                features.extend(self._log_mel(np.stack(samples)))  # off the lock: the costly part
            with self._lock:
                for window in features:
                    slot = self._mel_seen % len(self._mel_frames)
                    self._mel_sums[slot] = window.sum(axis=1)
                    self._mel_frames[slot] = window.shape[1]
                    self._mel_seen += 1
        with self._lock:
            windows = min(self._seen, self._config.window_windows)
            if windows < self._config.min_windows:
                return None
            rms_db = self._rms_db[:windows].copy()
            classes = self._classes[:windows].copy()
            mel_windows = min(self._mel_seen, len(self._mel_frames))
            mel_sums = self._mel_sums[:mel_windows].sum(axis=0)
            mel_frames = float(self._mel_frames[:mel_windows].sum())
        reference = self._reference
        edges = reference.rms_edges_db
        rms_counts, _ = np.histogram(np.clip(rms_db, edges[0], edges[-1]), bins=edges)
        class_counts = np.bincount(classes, minlength=len(reference.class_distribution))
        mel_shift = None
        if mel_windows:
            live_mean = mel_sums / mel_frames
            mel_shift = float(np.mean(np.abs(live_mean - reference.mel_mean) / self._mel_std))
        return DriftScores(
            windows=windows,
            rms_psi=population_stability_index(rms_counts.astype(np.float64), reference.rms_counts),
            class_psi=population_stability_index(
                class_counts.astype(np.float64),
                reference.class_distribution * reference.windows,
            ),
            mel_mean_shift=mel_shift,
            mel_windows=mel_windows,
        )


class DriftScheduler:
    """One timer thread that evaluates every registered monitor and exports its gauges."""

    def __init__(self, metrics: ServerMetrics, interval_s: float) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._monitors: dict[int, DriftMonitor] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def monitor(
        self,
        reference: ReferenceStats,
        front_end: FrontEnd,
        config: DriftConfig,
        labels: dict[str, str],
    ) -> DriftMonitor:
        """A monitor of one version, scored from the next tick until its `close()`."""
        monitor = DriftMonitor(reference, front_end, config, labels, on_close=self.remove)
        with self._lock:
            self._monitors[id(monitor)] = monitor
        return monitor

    def remove(self, monitor: DriftMonitor) -> None:
        """Stops scoring `monitor` and removes its series from /metrics."""
        with self._lock:
            self._monitors.pop(id(monitor), None)
            self._clear(monitor)

    def start(self) -> None:
        """Starts the timer thread (daemon, so a crash elsewhere never waits on it)."""
        self._thread = threading.Thread(target=self._run, name="drift-scores", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the timer thread and waits for the tick in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def tick(self) -> None:
        """Evaluates every monitor now and sets its gauges."""
        with self._lock:
            monitors = list(self._monitors.values())
        for monitor in monitors:
            try:
                scores = monitor.evaluate()
            except Exception:
                logger.exception("drift evaluation failed", extra=monitor.labels)
                continue
            with self._lock:
                if id(monitor) in self._monitors:  # not removed meanwhile
                    self._export(monitor, scores)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()

    def _export(self, monitor: DriftMonitor, scores: DriftScores | None) -> None:
        labels = monitor.labels
        metrics = self._metrics
        if scores is None:
            return
        metrics.drift_windows.labels(**labels).set(scores.windows)
        metrics.drift_rms_psi.labels(**labels).set(scores.rms_psi)
        metrics.drift_class_psi.labels(**labels).set(scores.class_psi)
        if scores.mel_mean_shift is not None:
            metrics.drift_mel_mean_shift.labels(**labels).set(scores.mel_mean_shift)
            metrics.drift_mel_windows.labels(**labels).set(scores.mel_windows)

    def _clear(self, monitor: DriftMonitor) -> None:
        values = (monitor.labels["model"], monitor.labels["version"])
        metrics = self._metrics
        for gauge in (metrics.drift_windows, metrics.drift_rms_psi, metrics.drift_class_psi,
                      metrics.drift_mel_mean_shift, metrics.drift_mel_windows):  # fmt: skip
            with contextlib.suppress(KeyError):  # never exported: below min_windows
                gauge.remove(*values)
