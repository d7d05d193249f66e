"""Serving state and grpc.health.v1: starting -> serving or not (as models change) ->
shutting down (NOT_SERVING, calls still served) -> draining (calls refused) -> cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]

OVERALL = ""
# Answers SERVING while the process runs, before models load too: Kubernetes'
# liveness probe asks for it, so slow loading or draining never gets a pod killed.
LIVENESS = "liveness"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    """grpc.health.v1 Check and Watch, whose Watch streams end when the server drains.

    Registered with `health_pb2_grpc.add_HealthServicer_to_server`.

    grpc_health's own aio servicer keeps every Watch open until the server stops, so
    an open Watch would hold a draining process for its whole grace period; and it
    writes under a lock that one client that stops reading would hold for everyone.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, health_pb2.HealthCheckResponse.ServingStatus] = {}
        self._changed = asyncio.Event()
        self._watches_closed = False

    def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        """Sets a service's status; open Watch streams of it hear of a change."""
        if self._statuses.get(service) == status:
            return
        self._statuses[service] = status
        self._notify()

    def close_watches(self) -> None:
        """Ends every open Watch stream (after its last status), and any later one at once."""
        self._watches_closed = True
        self._notify()

    def _notify(self) -> None:
        # Watchers hold the event they saw; a fresh one is for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def Check(  # noqa: N802 (gRPC's method name)
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        """The service's status now; NOT_FOUND for a service the server does not know."""
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(  # noqa: N802 (gRPC's method name)
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then each change; ends (OK) once the server begins to drain."""
        last = None
        while True:
            changed = self._changed
            status = self._statuses.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if self._watches_closed:
                return
            await changed.wait()


class ServingState:
    """What health checks report, whether calls are admitted, and the shutdown signals
    open streams watch.

    Shutdown runs in three steps (see `MozartServer.stop`): `announce_shutdown` (health
    NOT_SERVING; calls still admitted, for `drain_delay_s`), `begin_draining` (`draining`
    is set: new calls are refused UNAVAILABLE, open streams stop reading and finish,
    Watch streams end) and `cut_streams` (`cut` is set: streams still open at the end of
    the grace period end UNAVAILABLE).
    """

    def __init__(self, service_names: Sequence[str]) -> None:
        self.health_servicer = HealthService()
        self._service_names = [OVERALL, *service_names]
        self.shutting_down = False
        self.draining = asyncio.Event()
        self.cut = asyncio.Event()
        # Model-control calls are admitted once start-up loading is done, other calls while
        # some model serves; health says SERVING while ready (see the readiness setting).
        self.started = False
        self.has_models = False
        self.ready = False

    async def set_not_serving(self) -> None:
        """Reports NOT_SERVING for the server and every service (before models are ready)."""
        self.health_servicer.set(LIVENESS, SERVING)
        for name in self._service_names:
            self.health_servicer.set(name, NOT_SERVING)

    async def set_ready(self, ready: bool, has_models: bool) -> None:
        """Admits calls, and reports SERVING or NOT_SERVING (ignored once shutdown began)."""
        if self.shutting_down:
            return
        self.started = True
        self.has_models = has_models
        changed = ready != self.ready
        self.ready = ready
        if not changed:
            return
        for name in self._service_names:
            self.health_servicer.set(name, SERVING if ready else NOT_SERVING)

    async def announce_shutdown(self) -> None:
        """Reports NOT_SERVING for good (Check, Watch, v2 ServerReady); calls still admitted.

        `liveness` stays SERVING: the process is alive until it exits.
        """
        self.shutting_down = True
        self.ready = False
        for name in self._service_names:
            self.health_servicer.set(name, NOT_SERVING)

    async def begin_draining(self) -> None:
        """Refuses new calls, tells open streams to finish, and ends open Watch streams."""
        if not self.shutting_down:
            await self.announce_shutdown()
        self.draining.set()
        self.health_servicer.close_watches()

    def cut_streams(self) -> None:
        """Tells streams still open at the end of the grace period to end (UNAVAILABLE)."""
        self.cut.set()
