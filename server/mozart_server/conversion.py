"""Proto <-> domain conversion for mozart.v1: request checks and response building."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_server.audio import AudioFormat, Encoding
from mozart_server.engine import FloatArray
from mozart_server.errors import InvalidArgumentError
from mozart_server.registry import ServingModel
from mozart_server.repository import Manifest

_ENCODINGS = {
    pb.AUDIO_ENCODING_PCM_S16LE: Encoding.PCM_S16LE,
    pb.AUDIO_ENCODING_PCM_F32LE: Encoding.PCM_F32LE,
    pb.AUDIO_ENCODING_WAV: Encoding.WAV,
    pb.AUDIO_ENCODING_FLAC: Encoding.FLAC,
    pb.AUDIO_ENCODING_OGG: Encoding.OGG,
}
_TASKS = {"multiclass": pb.TASK_MULTICLASS, "multilabel": pb.TASK_MULTILABEL}


@dataclass(frozen=True)
class WindowOptions:
    """How a request wants its windows cut and reported."""

    hop_ms: int
    top_k: int
    smoothing: float


def audio_format(message: pb.AudioFormat) -> AudioFormat:
    """Converts an AudioFormat message; checks happen when the audio is decoded.

    Raises:
        InvalidArgumentError: the encoding is unspecified or unknown.
    """
    encoding = _ENCODINGS.get(message.encoding)
    if encoding is None:
        raise InvalidArgumentError(
            f"format.encoding {message.encoding} is unspecified or unknown; use one of "
            "PCM_S16LE, PCM_F32LE, WAV, FLAC, OGG"
        )
    return AudioFormat(encoding, int(message.sample_rate_hz), int(message.channels))


def window_options(
    manifest: Manifest, hop_ms: int, top_k: int, smoothing: float, default_top_k: int
) -> WindowOptions:
    """Applies defaults and checks hop, top_k and smoothing against the model.

    Raises:
        InvalidArgumentError: naming the field that is out of range.
    """
    hop = hop_ms or manifest.default_hop_ms
    if hop > manifest.window_ms:
        raise InvalidArgumentError(
            f"hop_ms is {hop}; it must not exceed the model's window of {manifest.window_ms} ms"
        )
    labels = len(manifest.labels)
    if top_k > labels:
        raise InvalidArgumentError(f"top_k is {top_k}; the model has only {labels} labels")
    if not (math.isfinite(smoothing) and 0.0 <= smoothing < 1.0):
        raise InvalidArgumentError(f"smoothing is {smoothing}; it must lie in [0, 1)")
    return WindowOptions(hop, top_k or min(default_top_k, labels), smoothing)


def top_k_scores(labels: Sequence[str], scores: FloatArray, k: int) -> list[pb.LabelScore]:
    """The k best labels, best first (ties keep label order)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [pb.LabelScore(label=labels[i], score=float(scores[i])) for i in order]


def window_result(
    model: ServingModel,
    *,
    index: int,
    start_sample: int,
    scores: FloatArray,
    smoothed: FloatArray,
    top_k: int,
    queue_time_s: float,
    compute_time_s: float,
) -> pb.WindowResult:
    """Builds one window's result; times are in the model's sample clock."""
    manifest = model.manifest
    rate = manifest.sample_rate_hz
    return pb.WindowResult(
        index=index,
        start_ms=start_sample * 1000 // rate,
        end_ms=(start_sample + manifest.window_samples) * 1000 // rate,
        top_k=top_k_scores(manifest.labels, scores, top_k),
        scores=scores.tolist(),
        smoothed_scores=smoothed.tolist(),
        model_name=manifest.name,
        model_version=manifest.version,
        queue_time_us=round(queue_time_s * 1e6),
        compute_time_us=round(compute_time_s * 1e6),
    )


def summary(
    manifest: Manifest, score_rows: Sequence[FloatArray], top_k: int, audio_duration_s: float
) -> pb.Summary:
    """The mean of the window scores."""
    if score_rows:
        mean: FloatArray = np.asarray(np.stack(score_rows).mean(axis=0), dtype=np.float32)
    else:
        mean = np.zeros(len(manifest.labels), dtype=np.float32)
    return pb.Summary(
        top_k=top_k_scores(manifest.labels, mean, top_k) if score_rows else [],
        scores=mean.tolist(),
        window_count=len(score_rows),
        audio_duration_ms=round(audio_duration_s * 1000),
    )


def model_info(versions: Sequence[ServingModel]) -> pb.ModelInfo:
    """Describes a model from its serving versions (oldest first)."""
    newest = versions[-1].manifest
    return pb.ModelInfo(
        name=newest.name,
        versions=[model.version for model in versions],
        labels=list(newest.labels),
        task=_TASKS[newest.task],
        sample_rate_hz=newest.sample_rate_hz,
        window_samples=newest.window_samples,
        window_ms=newest.window_ms,
        default_hop_ms=newest.default_hop_ms,
    )
