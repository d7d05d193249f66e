"""The Open Inference Protocol v2 over REST, as Triton and KServe publish it.

Each route answers what the v2 gRPC method of the same name answers, from the same
conversion functions (`api/v2/conversion.py`, `api/v2/statistics.py`), as JSON; errors
are the protocol's `{"error": "<message>"}`, with the HTTP status of the gRPC status.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from mozart_server import server_version
from mozart_server.api.health import ServingState
from mozart_server.api.v1.conversion import routing_key
from mozart_server.api.v2 import conversion, servicer
from mozart_server.api.v2.servicer import EXTENSIONS, SERVER_NAME
from mozart_server.api.v2.statistics import model_statistics
from mozart_server.errors import InvalidArgumentError, NotFoundError
from mozart_server.inference.clips import ClipClassifier
from mozart_server.models.control import ModelControl
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.observability.context import note_model
from mozart_server.settings import FloatSamples, RepositorySettings

from . import v2_json
from .calls import HttpGate
from .errors import REQUEST_ID_HEADER, V2ErrorBody, documented_errors
from .json_messages import message_to_json

NOT_READY_STATUS = 400  # Triton's answer to a readiness probe that is false


def _decompressed(body: bytes, encoding: str | None) -> bytes:
    """The body, inflated when Content-Encoding says gzip or deflate (tritonclient can)."""
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, EOFError, zlib.error) as error:
        raise InvalidArgumentError(f"the {encoding} body cannot be inflated: {error}") from None
    raise InvalidArgumentError(f"Content-Encoding {encoding!r} is not gzip or deflate")


def router(  # noqa: PLR0915 (one closure per route)
    gate: HttpGate,
    registry: ModelRegistry,
    control: ModelControl,
    clips: ClipClassifier,
    state: ServingState,
    *,
    repository: RepositorySettings,
    float_samples: FloatSamples,
) -> APIRouter:
    """The /v2 routes."""
    routes = APIRouter(
        prefix="/v2", tags=["inference v2"], responses=documented_errors(V2ErrorBody)
    )

    def resolve(name: str, version: str) -> ServingVersion:
        model = registry.resolve(name, version)
        note_model(model.name, model.version)
        return model

    def answer(body: object, request_id: str, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={REQUEST_ID_HEADER: request_id})

    @routes.get("", summary="Server metadata")
    async def server_metadata(request: Request) -> JSONResponse:
        """Name, version and the protocol extensions Mozart implements."""
        async with gate.call(request, "ServerMetadata") as call:
            return answer(
                {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)},
                call.request_id,
            )

    @routes.get("/health/live", summary="Liveness")
    async def server_live(request: Request) -> Response:
        """200 while the process answers, draining included."""
        async with gate.call(request, "ServerLive", probe=True) as call:
            return Response(status_code=200, headers={REQUEST_ID_HEADER: call.request_id})

    @routes.get("/health/ready", summary="Readiness")
    async def server_ready(request: Request) -> Response:
        """200 while health says SERVING, until draining starts; 400 otherwise."""
        async with gate.call(request, "ServerReady", probe=True) as call:
            ready = state.ready and not state.draining.is_set()
            return Response(
                status_code=200 if ready else NOT_READY_STATUS,
                headers={REQUEST_ID_HEADER: call.request_id},
            )

    async def model_ready(request: Request, name: str, version: str) -> Response:
        async with gate.call(request, "ModelReady", probe=True) as call:
            try:
                registry.resolve(name, version)
                ready = not state.draining.is_set()
            except NotFoundError:
                ready = False
            return Response(
                status_code=200 if ready else NOT_READY_STATUS,
                headers={REQUEST_ID_HEADER: call.request_id},
            )

    async def model_metadata(request: Request, name: str, version: str) -> JSONResponse:
        async with gate.call(request, "ModelMetadata") as call:
            model = resolve(name, version)
            message = conversion.model_metadata(registry.versions(model.name))
            return answer(message_to_json(message), call.request_id)

    async def model_config(request: Request, name: str, version: str) -> JSONResponse:
        async with gate.call(request, "ModelConfig") as call:
            config = conversion.model_config(resolve(name, version), repository).config
            return answer(message_to_json(config), call.request_id)

    async def model_stats(request: Request, name: str, version: str) -> JSONResponse:
        async with gate.call(request, "ModelStatistics") as call:
            if name and version:
                models = [resolve(name, version)]
            elif name:
                models = registry.versions(name)
                if not models:
                    resolve(name, "")  # NOT_FOUND with the loaded names
            else:
                models = registry.all_models()
            return answer(message_to_json(model_statistics(models)), call.request_id)

    async def model_infer(request: Request, name: str, version: str) -> Response:
        async with gate.call(request, "ModelInfer") as call:
            body = _decompressed(
                await gate.read_body(request, call), request.headers.get("content-encoding")
            )
            parsed = v2_json.infer_request(
                name, version, body, request.headers.get(v2_json.HEADER_LENGTH)
            )
            response = await servicer.infer(
                clips,
                parsed.message,
                float_samples,
                v2_json.deadline(parsed.message),
                routing_key(request.headers.items()),
            )
            content, header_length = v2_json.infer_response(response, parsed)
            headers = {REQUEST_ID_HEADER: call.request_id}
            if header_length is None:
                return Response(content, media_type="application/json", headers=headers)
            headers["Inference-Header-Content-Length"] = str(header_length)
            return Response(content, media_type="application/octet-stream", headers=headers)

    @routes.get("/models/stats", summary="Statistics of every model")
    async def all_stats(request: Request) -> JSONResponse:
        """Statistics of every serving version."""
        return await model_stats(request, "", "")

    # Each model route with and without /versions/{version} (Triton's paths).
    for path, version_path in (("/models/{name}", ""), ("/models/{name}/versions/{version}", "v")):
        suffix = " of a version" if version_path else ""
        routes.add_api_route(
            f"{path}/ready", _with_version(model_ready), methods=["GET"],
            summary=f"Model readiness{suffix}",
        )  # fmt: skip
        routes.add_api_route(
            path, _with_version(model_metadata), methods=["GET"],
            summary=f"Model metadata{suffix}",
        )  # fmt: skip
        routes.add_api_route(
            f"{path}/config", _with_version(model_config), methods=["GET"],
            summary=f"Model configuration{suffix}",
        )  # fmt: skip
        routes.add_api_route(
            f"{path}/stats", _with_version(model_stats), methods=["GET"],
            summary=f"Model statistics{suffix}",
        )  # fmt: skip
        routes.add_api_route(
            f"{path}/infer", _with_version(model_infer), methods=["POST"],
            summary=f"Inference{suffix}",
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }}},
        )  # fmt: skip

    @routes.post("/repository/index", summary="Repository index")
    async def repository_index(request: Request) -> JSONResponse:
        """Every model of the repository with each version's state."""
        async with gate.call(request, "RepositoryIndex", control=True) as call:
            document, _ = v2_json.split_body(
                await gate.read_body(request, call, audio=False) or b"{}", None
            )
            ready = bool(document.get("ready", False)) if isinstance(document, dict) else False
            index = conversion.repository_index(control.status(), ready)
            return answer(
                [message_to_json(entry, defaults=False) | {"name": entry.name}
                 for entry in index.models],
                call.request_id,
            )  # fmt: skip

    def check_load_body(call_body: bytes) -> None:
        document, _ = v2_json.split_body(call_body or b"{}", None)
        if isinstance(document, dict) and isinstance(document.get("parameters"), dict):
            conversion.check_parameters(document["parameters"])

    @routes.post("/repository/models/{name}/load", summary="Load a model")
    async def repository_load(request: Request, name: str) -> JSONResponse:
        """Loads or reloads a model (explicit model control only)."""
        async with gate.call(request, "RepositoryModelLoad", control=True) as call:
            check_load_body(await gate.read_body(request, call, audio=False))
            note_model(name, "")
            await control.load(name)
            return answer({}, call.request_id)

    @routes.post("/repository/models/{name}/unload", summary="Unload a model")
    async def repository_unload(request: Request, name: str) -> JSONResponse:
        """Unloads a model (explicit model control only)."""
        async with gate.call(request, "RepositoryModelUnload", control=True) as call:
            check_load_body(await gate.read_body(request, call, audio=False))
            note_model(name, "")
            await control.unload(name)
            return answer({}, call.request_id)

    return routes


ModelRoute = Callable[[Request, str, str], Awaitable[Response]]


def _with_version(handler: ModelRoute) -> ModelRoute:
    """A route for `handler(request, name, version)` whose path may lack the version."""

    async def route(request: Request, name: str, version: str = "") -> Response:
        return await handler(request, name, version)

    route.__doc__ = handler.__doc__
    route.__name__ = f"{handler.__name__}_route"
    return route
