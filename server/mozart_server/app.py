"""The composition root: settings -> metrics -> models (engine, batcher) -> servicers -> server.

It owns start-up and shutdown; nothing else constructs global state. To serve another API
on the same models, add its servicer in `_add_servicers`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from threading import Thread
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from mozart_proto.v1 import audio_classifier_pb2_grpc
from mozart_server.health import ServingState
from mozart_server.inference_v2 import INFERENCE_SERVICE_NAME, add_inference_service
from mozart_server.interceptors import ServingInterceptor
from mozart_server.metrics import ServerMetrics
from mozart_server.registry import ModelRegistry, load_models
from mozart_server.servicer import SERVICE_NAME, AudioClassifierServicer
from mozart_server.settings import ServerSettings

logger = logging.getLogger(__name__)

# Services behind the call envelope (auth, draining, error mapping, metrics).
SERVED_SERVICES = (SERVICE_NAME, INFERENCE_SERVICE_NAME)


class MozartServer:
    """One running server. `start()`, then `stop()` (or `serve_until_signal()`)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics(CollectorRegistry())
        self.registry = ModelRegistry()
        self.port = 0
        self.metrics_port = 0
        self._state: ServingState | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_http: tuple[WSGIServer, Thread] | None = None

    def _add_servicers(self, server: grpc.aio.Server, state: ServingState) -> None:
        audio_classifier_pb2_grpc.add_AudioClassifierServicer_to_server(  # type: ignore[no-untyped-call]
            AudioClassifierServicer(self.registry, self.settings, self.metrics, state), server
        )
        add_inference_service(server, self.registry, self.settings, self.metrics, state)

    async def start(self) -> None:
        """Binds the ports, loads and warms the models, then reports SERVING."""
        settings = self.settings
        httpd, thread = start_http_server(
            settings.metrics_port, settings.metrics_host, registry=self.metrics.registry
        )
        self._metrics_http = (httpd, thread)
        self.metrics_port = httpd.server_port
        state = ServingState(SERVED_SERVICES)
        self._state = state
        server = grpc.aio.server(
            interceptors=[
                ServingInterceptor(self.metrics, state, SERVED_SERVICES, settings.auth_token)
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
            ],
        )
        self._server = server
        health_pb2_grpc.add_HealthServicer_to_server(state.health_servicer, server)
        self._add_servicers(server, state)
        reflection.enable_server_reflection(
            (*SERVED_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
        address = f"{settings.host}:{settings.port}"
        credentials = _server_credentials(settings)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await state.set_not_serving()
        await server.start()
        logger.info(
            "server started",
            extra={"grpc_port": self.port, "metrics_port": self.metrics_port,
                   "tls": credentials is not None},
        )  # fmt: skip
        await load_models(self.registry, settings, self.metrics)
        self.registry.start()
        if self.registry.all_models():
            await state.set_serving()
            logger.info("serving", extra={"models": self.registry.names()})
        else:
            logger.error(
                "no model version loaded; health stays NOT_SERVING",
                extra={"failures": [failure.reason for failure in self.registry.failures]},
            )

    async def stop(self, grace_s: float | None = None) -> None:
        """Drains: NOT_SERVING, refuse new calls, let in-flight work finish, close engines."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        logger.info("draining", extra={"grace_s": grace})
        if self._state is not None:
            await self._state.begin_draining()
        if self._server is not None:
            await self._server.stop(grace)
        try:
            await asyncio.wait_for(self.registry.aclose(), timeout=max(grace, 0.1))
        except TimeoutError:
            logger.warning("model engines did not finish within the grace period")
        if self._metrics_http is not None:
            httpd, thread = self._metrics_http
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
            self._metrics_http = None
        logger.info("stopped")

    async def serve_until_signal(self) -> None:
        """Starts, waits for SIGTERM or SIGINT, then stops within the grace period."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


def _server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )
