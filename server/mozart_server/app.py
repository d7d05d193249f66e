"""The composition root, and the only place that builds objects.

settings -> metrics -> engine factory -> version loader (batchers) -> registry ->
model control -> inference (clips, stream sessions) -> servicers -> gRPC server.
It owns start-up and shutdown. To serve another API on the same models, build its
servicer in `_add_servicers` from the same inference objects.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from threading import Thread
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2_grpc
from mozart_server.api.auth import BearerAuth
from mozart_server.api.envelope import CallGate
from mozart_server.api.health import ServingState
from mozart_server.api.http.app import create_app
from mozart_server.api.http.calls import HttpGate
from mozart_server.api.http.server import HttpServer
from mozart_server.api.in_flight import InFlightCalls
from mozart_server.api.interceptors import ServingInterceptor
from mozart_server.api.rate_limits import ClientLimits
from mozart_server.api.reflection import enable_reflection
from mozart_server.api.v1.servicer import SERVICE_NAME, AudioClassifierServicer
from mozart_server.api.v2.servicer import INFERENCE_SERVICE_NAME, InferenceServicer
from mozart_server.batching.batcher import BatcherConfig
from mozart_server.engines import EngineFactory
from mozart_server.errors import StartupError
from mozart_server.inference.clips import ClipClassifier
from mozart_server.inference.streams import StreamSession
from mozart_server.models.control import ModelControl
from mozart_server.models.loader import VersionLoader
from mozart_server.models.registry import ModelRegistry
from mozart_server.models.rollout import RolloutRouter
from mozart_server.observability.drift import DriftConfig, DriftScheduler
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import BatchingSettings, ServerSettings, TlsSettings

logger = logging.getLogger(__name__)

# Services behind the call envelope (auth, draining, error mapping, metrics).
SERVED_SERVICES = (SERVICE_NAME, INFERENCE_SERVICE_NAME)
# At the end of shutdown: how long streams that were cut get to send their status, the
# port stays open answering UNAVAILABLE (no longer than drain_delay_s), and calls that
# just finished get to send their status, before the gRPC server cancels what is left.
CLOSING_S = 1.0


def batcher_config(settings: BatchingSettings) -> BatcherConfig:
    """The batcher knobs of every model version."""
    return BatcherConfig(
        max_batch_size=settings.max_batch_size,
        max_queue_delay_us=settings.max_queue_delay_us,
        preferred_batch_sizes=tuple(settings.preferred_batch_sizes),
        max_queue_windows=settings.max_queue_windows,
    )


def log_layout(settings: ServerSettings) -> None:
    """Logs the engine layout and batch limits once, with the CPUs and where each came from."""
    onnx, batching, cpus = settings.engine.onnx, settings.batching, settings.engine.onnx.usable_cpus
    logger.info(
        "engine layout chosen",
        extra={
            "cpus": cpus.count,
            "cpus_affinity": cpus.affinity,
            "cpus_quota": cpus.quota,
            "instances": onnx.instances,
            "intra_op_threads": onnx.intra_op_threads,
            "allow_spinning": onnx.allow_spinning,
            "max_batch_size": batching.max_batch_size,
            "max_queue_delay_us": batching.max_queue_delay_us,
            "preferred_batch_sizes": batching.preferred_batch_sizes,
            "sources": settings.sources(),
        },
    )


def log_listening(service: str, host: str, port: int) -> None:
    """Logs "listening on HOST:PORT (service)" with the port actually bound (port 0 picks one)."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    logger.info(f"listening on {address} ({service})", extra={"service": service, "port": port})


class MozartServer:
    """One running server. `start()`, then `stop()` (or `serve_until_signal()`)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics(CollectorRegistry())
        self.router = RolloutRouter(self.metrics)
        self.registry = ModelRegistry(self.metrics, self.router)
        drift = settings.drift
        self.drift = (
            DriftScheduler(self.metrics, drift.drift_interval_s) if drift.drift_interval_s else None
        )
        drift_config = DriftConfig(
            drift.drift_window_windows, drift.drift_min_windows, drift.drift_mel_every_windows
        )
        loader = VersionLoader(
            EngineFactory(settings.engine),
            batcher_config(settings.batching),
            self.metrics,
            drift=None if self.drift is None else (self.drift, drift_config),
        )
        self.control = ModelControl(settings.repository, self.registry, loader, self.metrics)
        self.clips = ClipClassifier(
            self.registry, settings.streams, settings.admission, self.metrics
        )
        self.state = ServingState(SERVED_SERVICES)
        self._calls = InFlightCalls()
        # One set of per-client limits for every transport: a client's gRPC and HTTP
        # calls count against the same buckets.
        self._limits = ClientLimits(settings.rate_limits)
        self.control.add_listener(self._update_health)
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0
        self._http: HttpServer | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_http: tuple[WSGIServer, Thread] | None = None

    def _new_stream(self) -> StreamSession:
        return StreamSession(
            self.registry, self.settings.streams, self.metrics, self.state.draining, self.state.cut
        )

    def _add_servicers(self, server: grpc.aio.Server) -> None:
        audio_classifier_pb2_grpc.add_AudioClassifierServicer_to_server(  # type: ignore[no-untyped-call]
            AudioClassifierServicer(self.registry, self.control, self.clips, self._new_stream),
            server,
        )
        v2_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceServicer(
                self.registry,
                self.control,
                self.clips,
                self.state,
                repository=self.settings.repository,
                float_samples=self.settings.streams.float_samples,
            ),
            server,
        )

    def _http_server(self, auth: BearerAuth | None) -> HttpServer:
        """The HTTP API over the same inference objects, behind the same call rules."""
        settings = self.settings
        gate = CallGate(
            self.metrics,
            self.state,
            auth=auth,
            limits=self._limits,
            known_model=self.control.knows,
            in_flight=self._calls,
            http_series=True,
        )
        app = create_app(
            settings,
            gate=HttpGate(gate, settings.network.max_message_bytes),
            registry=self.registry,
            control=self.control,
            clips=self.clips,
            state=self.state,
            new_stream=self._new_stream,
        )
        return HttpServer(
            app,
            settings.http,
            tls=settings.tls,
            ws_max_bytes=settings.network.max_message_bytes,
            closing_s=CLOSING_S,
        )

    async def _update_health(self) -> None:
        ready = self.control.ready()
        first = not self.state.started
        changed = ready != self.state.ready
        await self.state.set_ready(ready, has_models=bool(self.registry.names()))
        if self.state.shutting_down or not (first or changed):
            return
        if ready:
            logger.info("serving", extra={"models": self.registry.names()})
        else:
            logger.error(
                "no model version loaded; health stays NOT_SERVING"
                if not self.registry.names()
                else "not every model has a serving version; health says NOT_SERVING",
                extra={"reasons": self.control.not_ready_reasons()},
            )

    async def start(self) -> None:
        """Binds the ports, loads and warms the models, then reports SERVING when ready."""
        settings = self.settings
        log_layout(settings)
        network = settings.network
        try:
            httpd, thread = start_http_server(
                network.metrics_port, network.metrics_host, registry=self.metrics.registry
            )
        except OSError as error:
            raise StartupError(
                f"cannot serve metrics on {network.metrics_host}:{network.metrics_port} "
                f"(metrics_host, metrics_port): {error.strerror or error}"
            ) from None
        self._metrics_http = (httpd, thread)
        self.metrics_port = httpd.server_port
        # One auth for both transports: an address's failures are throttled across them.
        auth = BearerAuth.from_settings(network)
        server = grpc.aio.server(
            interceptors=[
                ServingInterceptor(
                    self.metrics,
                    self.state,
                    SERVED_SERVICES,
                    auth=auth,
                    limits=self._limits,
                    known_model=self.control.knows,
                    in_flight=self._calls,
                ),
            ],
            options=[
                ("grpc.max_receive_message_length", network.max_message_bytes),
                ("grpc.max_send_message_length", network.max_message_bytes),
            ],
        )
        self._server = server
        health_pb2_grpc.add_HealthServicer_to_server(self.state.health_servicer, server)
        self._add_servicers(server)
        enable_reflection(
            (*SERVED_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
        )
        address = f"{network.host}:{network.port}"
        credentials = _server_credentials(settings.tls)
        try:
            if credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, credentials)
        except RuntimeError as error:
            tls = ", tls_cert_file, tls_key_file" if credentials is not None else ""
            raise StartupError(f"cannot listen on {address} (host, port{tls}): {error}") from None
        self._http = self._http_server(auth) if settings.http.http_enabled else None
        if self._http is not None:
            self.http_port = self._http.bind()
        await self.state.set_not_serving()
        if self.drift is not None:
            self.drift.start()
        await server.start()
        if self._http is not None:
            await self._http.start()
        logger.info(
            "server started",
            extra={"grpc_port": self.port, "metrics_port": self.metrics_port,
                   "http_port": self.http_port if self._http is not None else None,
                   "tls": credentials is not None,
                   "model_control_mode": settings.repository.model_control_mode.value},
        )  # fmt: skip
        log_listening("grpc", network.host, self.port)
        log_listening("metrics", network.metrics_host, self.metrics_port)
        if self._http is not None:
            log_listening("http", settings.http.http_host, self.http_port)
        await self.control.start()

    async def stop(self, grace_s: float | None = None, drain_delay_s: float | None = None) -> None:
        """Shuts down in steps that clients can see (docs/server.md, "Shutdown").

        Health says NOT_SERVING at once, and calls are still served for `drain_delay_s`,
        so load balancers take this replica out. Then new calls get UNAVAILABLE (the
        port stays open, so clients hear why), health Watch streams end, open streams
        stop reading and send a summary marked DRAINED, and calls in flight get
        `shutdown_grace_s` to finish. Streams still open after that end UNAVAILABLE;
        only then does the gRPC server stop and the engines close.
        """
        process = self.settings.process
        grace = process.shutdown_grace_s if grace_s is None else grace_s
        delay = process.drain_delay_s if drain_delay_s is None else drain_delay_s
        logger.info("draining", extra={"drain_delay_s": delay, "grace_s": grace})
        await self.state.announce_shutdown()
        if delay > 0 and self._server is not None:
            await asyncio.sleep(delay)
        grace_ends = time.monotonic() + grace
        await self.state.begin_draining()
        logger.info("refusing new calls", extra={"calls_in_flight": self._calls.count})
        await self.control.aclose()
        if not await self._calls.wait_idle(grace_ends - time.monotonic()):
            logger.warning(
                "calls still open at the end of the grace period are cut",
                extra={"calls_in_flight": self._calls.count},
            )
            self.state.cut_streams()
            await self._calls.wait_idle(CLOSING_S)
        # A call racing the end still hears UNAVAILABLE from the interceptor instead of
        # finding the port closed (with no drain delay, nothing is expected to race).
        await asyncio.sleep(min(CLOSING_S, delay))
        if self._http is not None:
            await self._http.stop()
        if self._server is not None:
            await self._server.stop(CLOSING_S)
        await self.router.aclose()  # shadow copies nobody waits for
        try:
            await asyncio.wait_for(self.registry.aclose(), timeout=max(grace, 0.1))
        except TimeoutError:
            logger.warning("model engines did not finish within the grace period")
        if self.drift is not None:
            await asyncio.to_thread(self.drift.stop)
        if self._metrics_http is not None:
            httpd, thread = self._metrics_http
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
            self._metrics_http = None
        logger.info("stopped")

    async def serve_until_signal(self) -> None:
        """Starts, waits for SIGTERM or SIGINT, then stops (SIGINT without the drain delay)."""
        received: list[signal.Signals] = []
        stop = asyncio.Event()

        def on_signal(signum: signal.Signals) -> None:
            received.append(signum)
            stop.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await self.start()
        await stop.wait()
        # Ctrl-C: no load balancer is waiting to take this process out.
        await self.stop(drain_delay_s=0.0 if received[0] is signal.SIGINT else None)


def _server_credentials(settings: TlsSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )
