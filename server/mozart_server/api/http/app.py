"""The FastAPI application: v2 REST, Mozart REST, WebSocket streams, OpenAPI, the page.

Built by `app.MozartServer` (the composition root) from the same registry, model
control, clip classifier and stream sessions as the gRPC servicers, so both transports
share versions and batchers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from mozart_server import server_version
from mozart_server.api.health import ServingState
from mozart_server.inference.clips import ClipClassifier
from mozart_server.inference.streams import StreamSession
from mozart_server.models.control import ModelControl
from mozart_server.models.registry import ModelRegistry
from mozart_server.observability.logs import request_id_var
from mozart_server.settings import ServerSettings

from . import v1_routes, v2_routes
from .calls import HttpCallError, HttpGate
from .errors import GRPC_STATUS, error_response
from .websocket import WebSocketStreams

#: The web page's files (written by the page's own build; served as they are).
STATIC_DIR = Path(__file__).parent / "static"
EXPOSED_HEADERS = ["x-request-id", "inference-header-content-length", "retry-after",
                   "retry-after-ms"]  # fmt: skip


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "query")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "invalid request parameters: " + "; ".join(parts)


def create_app(
    settings: ServerSettings,
    *,
    gate: HttpGate,
    registry: ModelRegistry,
    control: ModelControl,
    clips: ClipClassifier,
    state: ServingState,
    new_stream: Callable[[], StreamSession],
) -> FastAPI:
    """The HTTP API's ASGI application."""
    app = FastAPI(
        title="Mozart",
        version=server_version(),
        description="Music audio classification: the Open Inference Protocol v2 (REST), "
        "Mozart's REST API and WebSocket streaming. Errors: see docs/http.md.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    @app.exception_handler(HttpCallError)
    async def call_failed(request: Request, error: HttpCallError) -> JSONResponse:
        return error_response(
            request.url.path, error.code, error.message, error.request_id, error.cause
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, error: RequestValidationError) -> Response:
        return error_response(
            request.url.path, grpc.StatusCode.INVALID_ARGUMENT, _validation_message(error),
            request_id_var.get() or "",
        )  # fmt: skip

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        code = GRPC_STATUS.get(error.status_code, grpc.StatusCode.UNKNOWN)
        response = error_response(request.url.path, code, str(error.detail), "")
        response.status_code = error.status_code
        return response

    app.include_router(v2_routes.router(
        gate, registry, control, clips, state,
        repository=settings.repository, float_samples=settings.streams.float_samples,
    ))  # fmt: skip
    app.include_router(v1_routes.router(gate, registry, clips))
    streams = WebSocketStreams(gate, registry, settings.streams, new_stream)
    app.add_api_websocket_route("/v1/models/{name}/stream", streams.serve)
    origins = settings.http.http_cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    # Last: every path no route above takes is a file of the page (or 404).
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True, check_dir=False), name="page")
    return app
