"""Mozart's own REST API: classify a whole clip, list the serving models.

Requests become the same `mozart.v1` messages as over gRPC (`api/v1/conversion.py`
checks and converts them), and answers are the ClassifyResponse and ListModelsResponse
as JSON, so both transports answer alike.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_server.api.v1 import conversion
from mozart_server.errors import InvalidArgumentError
from mozart_server.inference.clips import ClipClassifier
from mozart_server.models.registry import ModelRegistry

from .calls import HttpGate
from .errors import REQUEST_ID_HEADER, ErrorBody, PayloadTooLargeError, documented_errors
from .json_messages import message_to_json

#: `encoding` query values, as the WebSocket config names them; AUTO detects a container.
ENCODINGS: dict[str, pb.AudioEncoding] = {
    "auto": pb.AUDIO_ENCODING_AUTO,
    "pcm_s16le": pb.AUDIO_ENCODING_PCM_S16LE,
    "pcm_f32le": pb.AUDIO_ENCODING_PCM_F32LE,
    "wav": pb.AUDIO_ENCODING_WAV,
    "flac": pb.AUDIO_ENCODING_FLAC,
    "ogg": pb.AUDIO_ENCODING_OGG,
    "mp3": pb.AUDIO_ENCODING_MP3,
    "aiff": pb.AUDIO_ENCODING_AIFF,
}
#: Media types that name a container; any other (application/octet-stream, none) is AUTO.
MEDIA_TYPES: dict[str, str] = {
    "audio/wav": "wav", "audio/wave": "wav", "audio/x-wav": "wav", "audio/vnd.wave": "wav",
    "audio/flac": "flac", "audio/x-flac": "flac",
    "audio/ogg": "ogg", "audio/opus": "ogg", "application/ogg": "ogg",
    "audio/mpeg": "mp3", "audio/mp3": "mp3",
    "audio/aiff": "aiff", "audio/x-aiff": "aiff",
}  # fmt: skip
MULTIPART = "multipart/form-data"
UPLOAD_FIELDS = ("file", "audio")
AUDIO_BODY = {
    "requestBody": {
        "description": "The clip: a container file (WAV, FLAC, Ogg, MP3, AIFF; named by "
        "Content-Type or detected) or raw PCM (`encoding`, `sample_rate_hz`, `channels`); "
        "or a multipart/form-data upload with the clip in the field `file`.",
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def encoding_of(query: str | None, content_type: str | None) -> pb.AudioEncoding:
    """The AudioEncoding a request names: `encoding` first, then the media type, else AUTO.

    Raises:
        InvalidArgumentError: an `encoding` that is not one of ENCODINGS.
    """
    if query:
        value = ENCODINGS.get(query.strip().lower())
        if value is None:
            raise InvalidArgumentError(
                f"encoding {query!r} is unknown; use one of {', '.join(ENCODINGS)}"
            )
        return value
    return ENCODINGS[MEDIA_TYPES.get(_media_type(content_type), "auto")]


def router(gate: HttpGate, registry: ModelRegistry, clips: ClipClassifier) -> APIRouter:
    """The /v1 routes."""
    routes = APIRouter(prefix="/v1", tags=["mozart"], responses=documented_errors(ErrorBody))

    @routes.post(
        "/models/{name}/classify",
        summary="Classify a whole clip",
        openapi_extra=AUDIO_BODY,
    )
    async def classify(
        request: Request,
        name: str,
        *,
        version: Annotated[str, Query(description="Model version; empty: the newest.")] = "",
        hop_ms: Annotated[int, Query(ge=0, description="Hop between windows; 0: default.")] = 0,
        top_k: Annotated[int, Query(ge=0, description="Labels per window; 0: default.")] = 0,
        encoding: Annotated[
            str | None, Query(description=f"One of {', '.join(ENCODINGS)}.")
        ] = None,
        sample_rate_hz: Annotated[int, Query(ge=0, description="Raw PCM only.")] = 0,
        channels: Annotated[int, Query(ge=0, description="Raw PCM only.")] = 0,
        include_embedding: bool = False,
    ) -> JSONResponse:
        """The ClassifyResponse of the clip, as JSON (per-window results and a summary)."""
        async with gate.call(request, "Classify") as call:
            content_type = request.headers.get("content-type")
            if _media_type(content_type) == MULTIPART:
                audio, content_type = await _upload(request, gate)
                call.admit_audio(len(audio))
            else:
                audio = await gate.read_body(request, call)
            message = pb.ClassifyRequest(
                model=pb.ModelRef(name=name, version=version),
                format=pb.AudioFormat(
                    encoding=encoding_of(encoding, content_type),
                    sample_rate_hz=sample_rate_hz,
                    channels=channels,
                ),
                audio=audio,
                hop_ms=hop_ms,
                top_k=top_k,
                include_embedding=include_embedding,
            )
            routing = conversion.routing_key(request.headers.items())
            result = await clips.classify(conversion.clip_request(message, routing), None)
            response = conversion.classify_response(result, call.request_id)
            return JSONResponse(
                message_to_json(response), headers={REQUEST_ID_HEADER: call.request_id}
            )

    @routes.get("/models", summary="The serving models")
    async def list_models(request: Request) -> JSONResponse:
        """Every serving model with its versions, labels and window (ListModelsResponse)."""
        async with gate.call(request, "ListModels") as call:
            response = pb.ListModelsResponse(
                models=[conversion.model_info(registry.versions(n)) for n in registry.names()]
            )
            return JSONResponse(
                message_to_json(response), headers={REQUEST_ID_HEADER: call.request_id}
            )

    return routes


async def _upload(request: Request, gate: HttpGate) -> tuple[bytes, str | None]:
    """The clip of a multipart upload, and its part's media type.

    Raises:
        InvalidArgumentError: no `file` (or `audio`) part, or a form that cannot be parsed.
    """
    limit = gate.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"the request body of {declared} bytes exceeds max_message_bytes ({limit})"
        )
    try:
        form = await request.form(max_files=1, max_fields=16, max_part_size=limit)
    except Exception as error:  # python-multipart's and Starlette's parse errors
        raise InvalidArgumentError(f"the multipart form cannot be read: {error}") from None
    try:
        for field in UPLOAD_FIELDS:
            part = form.get(field)
            if isinstance(part, UploadFile):
                data = await part.read()
                if len(data) > limit:
                    raise PayloadTooLargeError(
                        f"the uploaded file exceeds max_message_bytes ({limit} bytes)"
                    )
                return data, part.content_type
    finally:
        await form.close()
    raise InvalidArgumentError("the multipart form carries no file part named 'file'")
