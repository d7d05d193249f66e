"""WebSocket streaming (`/v1/models/{name}/stream`): StreamClassify over a browser's socket.

The protocol is docs/http.md's: a JSON config first (the bearer token may ride in it,
since browsers cannot set a WebSocket's headers), then binary audio, then
`{"type": "end"}`; results come back as JSON messages, and a stream that fails ends with
an `error` message and close code 4000 + the gRPC status number. The stream itself is
an `inference.streams.StreamSession`, as for gRPC: same limits, notices and statuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from starlette.websockets import WebSocket, WebSocketDisconnect

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_server.api.envelope import GatedCall
from mozart_server.api.v1 import conversion
from mozart_server.errors import InvalidArgumentError, MozartError
from mozart_server.inference.options import window_options
from mozart_server.inference.results import Summary, WindowScores
from mozart_server.inference.streams import StreamEnd, StreamRequest, StreamSession
from mozart_server.models.manifest import Manifest
from mozart_server.models.registry import ModelRegistry
from mozart_server.settings import StreamSettings

from .calls import HttpCallError, HttpGate, failure, peer_address
from .json_messages import message_to_json
from .v1_routes import ENCODINGS

logger = logging.getLogger(__name__)

#: Largest config message; a config is a few hundred bytes.
MAX_CONFIG_CHARS = 64 * 1024
NORMAL_CLOSURE = 1000
ERROR_CLOSE_BASE = 4000
CONFIG_KEYS = frozenset(
    {"version", "format", "hop_ms", "top_k", "smoothing", "token", "include_embedding"}
)
FORMAT_KEYS = frozenset({"encoding", "sample_rate_hz", "channels"})
_WINDOW_FIELDS = (
    "index", "start_ms", "end_ms", "top_k", "smoothed_top_k", "scores", "smoothed_scores",
    "model_version", "queue_time_us", "compute_time_us", "rms_dbfs", "silent", "low_confidence",
)  # fmt: skip


class ClientGoneError(Exception):
    """The client closed the socket or went away (the call counts as CANCELLED)."""


def close_code(code: grpc.StatusCode) -> int:
    """The WebSocket close code of a stream that ended with a gRPC status."""
    number: int = code.value[0]
    return ERROR_CLOSE_BASE + number


def _count(config: dict[str, Any], key: str) -> int:
    value = config.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise InvalidArgumentError(f"{key} must be a whole number >= 0, got {value!r}")
    return value


def parse_config(text: str | None) -> dict[str, Any]:
    """The first message as a JSON object.

    Raises:
        InvalidArgumentError: the message is binary, too long, not JSON, or not an object.
    """
    if text is None:
        raise InvalidArgumentError(
            "the first message must be the JSON config (a text message), before any audio"
        )
    if len(text) > MAX_CONFIG_CHARS:
        raise InvalidArgumentError(f"the config message exceeds {MAX_CONFIG_CHARS} characters")
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise InvalidArgumentError(f"the config message is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise InvalidArgumentError("the config message must be a JSON object")
    return config


def stream_config(name: str, config: dict[str, Any]) -> pb.StreamConfig:
    """The StreamConfig that a WebSocket config stands for.

    Raises:
        InvalidArgumentError: unknown keys, or values of the wrong type or range.
    """
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise InvalidArgumentError(
            f"unknown config keys {unknown}; a config has {sorted(CONFIG_KEYS)}"
        )
    version = config.get("version", "")
    if not isinstance(version, str):
        raise InvalidArgumentError("version must be a string")
    audio = config.get("format")
    if not isinstance(audio, dict):
        raise InvalidArgumentError(
            'the config needs "format": {"encoding", "sample_rate_hz", "channels"}'
        )
    unknown = sorted(set(audio) - FORMAT_KEYS)
    if unknown:
        raise InvalidArgumentError(f"unknown format keys {unknown}; use {sorted(FORMAT_KEYS)}")
    encoding = audio.get("encoding")
    if not isinstance(encoding, str) or encoding.lower() not in ENCODINGS:
        raise InvalidArgumentError(
            f"format.encoding {encoding!r} is unknown; streams carry pcm_s16le, pcm_f32le or wav"
        )
    smoothing = config.get("smoothing", 0.0)
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
        raise InvalidArgumentError(f"smoothing must be a number, got {smoothing!r}")
    include_embedding = config.get("include_embedding", False)
    if not isinstance(include_embedding, bool):
        raise InvalidArgumentError("include_embedding must be true or false")
    return pb.StreamConfig(
        model=pb.ModelRef(name=name, version=version),
        format=pb.AudioFormat(
            encoding=ENCODINGS[encoding.lower()],
            sample_rate_hz=_count(audio, "sample_rate_hz"),
            channels=_count(audio, "channels"),
        ),
        hop_ms=_count(config, "hop_ms"),
        top_k=_count(config, "top_k"),
        smoothing=float(smoothing),
        include_embedding=include_embedding,
    )


async def _receive(websocket: WebSocket) -> Mapping[str, Any]:
    try:
        message = await websocket.receive()
    except (WebSocketDisconnect, RuntimeError, OSError):
        raise ClientGoneError() from None
    if message["type"] == "websocket.disconnect":
        raise ClientGoneError()
    return message


async def _send(websocket: WebSocket, body: dict[str, Any]) -> None:
    try:
        await websocket.send_text(json.dumps(body, separators=(",", ":")))
    except (WebSocketDisconnect, RuntimeError, OSError):
        raise ClientGoneError() from None


class WebSocketSource:
    """The stream's config (already read) and its binary audio messages."""

    def __init__(self, websocket: WebSocket, request: StreamRequest, call: GatedCall) -> None:
        self._websocket = websocket
        self._request = request
        self._call = call

    async def config(self) -> StreamRequest:
        """The config the first message carried."""
        return self._request

    async def audio(self) -> bytes | None:
        """The next binary message; None at `{"type": "end"}`.

        Raises:
            InvalidArgumentError: a text message other than the end.
            ClientGoneError: the client closed the socket.
        """
        message = await _receive(self._websocket)
        data = message.get("bytes")
        if data is not None:
            self._call.admit_audio(len(data))
            return bytes(data)
        text = message.get("text") or ""
        try:
            body = json.loads(text) if len(text) <= MAX_CONFIG_CHARS else None
        except (json.JSONDecodeError, RecursionError):
            body = None
        if isinstance(body, dict) and body.get("type") == "end":
            return None
        raise InvalidArgumentError(
            'after the config, send audio as binary messages, then {"type": "end"}'
        )


class WebSocketSink:
    """Writes windows, notices and the summary as JSON text messages."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def window(self, manifest: Manifest, window: WindowScores, top_k: int) -> None:
        """A `window` message."""
        result = message_to_json(conversion.window_result(manifest, window, top_k))
        body: dict[str, Any] = {"type": "window"} | {k: result[k] for k in _WINDOW_FIELDS}
        if result.get("embedding"):
            body["embedding"] = result["embedding"]
        await _send(self._websocket, body)

    async def notice(self, code: str, message: str) -> None:
        """A `notice` message (a window the server could not classify, and why)."""
        await _send(self._websocket, {"type": "notice", "code": code, "message": message})

    async def summary(
        self, manifest: Manifest, summary: Summary, top_k: int, end: StreamEnd
    ) -> None:
        """The `summary` message: the mean of every window, and why the stream ended."""
        result = message_to_json(conversion.summary(manifest, summary, top_k))
        await _send(
            self._websocket,
            {"type": "summary", "top_k": result["top_k"], "scores": result["scores"],
             "windows": summary.window_count, "duration_s": summary.audio_duration_s,
             "silent_windows": summary.silent_window_count,
             "low_confidence_windows": summary.low_confidence_window_count,
             "end_reason": end.value},
        )  # fmt: skip


class WebSocketStreams:
    """Serves `/v1/models/{name}/stream`."""

    def __init__(
        self,
        gate: HttpGate,
        registry: ModelRegistry,
        settings: StreamSettings,
        new_stream: Callable[[], StreamSession],
    ) -> None:
        self._gate = gate
        self._registry = registry
        self._settings = settings
        self._new_stream = new_stream

    async def serve(self, websocket: WebSocket, name: str) -> None:
        """One stream, from the config to the summary or the error, then the close."""
        await websocket.accept()
        call: GatedCall | None = None
        try:
            async with asyncio.timeout(self._settings.stream_idle_timeout_s):
                first = await _receive(websocket)
            text = first.get("text")
            try:
                config = parse_config(text)
            except InvalidArgumentError:
                config = None
            token = config.get("token") if config is not None else None
            metadata: list[tuple[str, str]] = []
            if isinstance(token, str) and token and "authorization" not in websocket.headers:
                metadata.append(("authorization", f"Bearer {token}"))
            call = self._gate.open(websocket, "StreamClassify", "websocket", metadata)
            call.begin(lambda: peer_address(websocket.client))
            config = parse_config(text)  # raises now that the call is counted
            config.pop("token", None)
            message = stream_config(name, config)
            routing = conversion.routing_key(websocket.headers.items())
            request = conversion.stream_request(message, routing)
            await self._ready(websocket, request, call.request_id)
            await self._new_stream().run(
                WebSocketSource(websocket, request, call), WebSocketSink(websocket)
            )
            await websocket.close(NORMAL_CLOSURE)
        except ClientGoneError:
            if call is not None:
                call.code = grpc.StatusCode.CANCELLED
        except TimeoutError:
            error = InvalidArgumentError(
                f"no config arrived for {self._settings.stream_idle_timeout_s} s "
                "(stream_idle_timeout_s)"
            )
            await self._fail(websocket, error, call)
        except asyncio.CancelledError:
            if call is not None:
                call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            await self._fail(websocket, error, call)
        finally:
            if call is not None:
                call.finish()

    async def _ready(self, websocket: WebSocket, request: StreamRequest, request_id: str) -> None:
        """Checks the config against the model, then says `ready` with what the stream uses.

        Raises:
            MozartError: NOT_FOUND, or INVALID_ARGUMENT for hop, top_k or smoothing.
        """
        manifest = self._registry.resolve(request.model_name, request.model_version).manifest
        options = window_options(
            manifest, request.hop_ms, request.top_k, request.smoothing,
            self._settings.default_top_k,
        )  # fmt: skip
        await _send(
            websocket,
            {"type": "ready", "model_name": manifest.name, "model_version": manifest.version,
             "labels": list(manifest.labels), "window_ms": manifest.window_ms,
             "hop_ms": options.hop_ms, "sample_rate_hz": manifest.sample_rate_hz,
             "request_id": request_id},
        )  # fmt: skip

    async def _fail(
        self, websocket: WebSocket, error: BaseException, call: GatedCall | None
    ) -> None:
        """Sends the `error` message and closes with 4000 + the status number."""
        if call is None:  # it failed before its config was read: count it all the same
            call = self._gate.open(websocket, "StreamClassify", "websocket")
            try:
                call.begin(lambda: peer_address(websocket.client), probe=True)
            except MozartError as refused:
                error = refused
        answer = error if isinstance(error, HttpCallError) else failure(error, call)
        try:
            await _send(
                websocket,
                {"type": "error", "code": answer.code.name, "message": answer.message,
                 "request_id": answer.request_id},
            )  # fmt: skip
            await websocket.close(close_code(answer.code), answer.code.name)
        except (ClientGoneError, RuntimeError, OSError):
            call.code = grpc.StatusCode.CANCELLED
        finally:
            call.finish()
