"""Serving state and grpc.health.v1: starting -> serving or not (as models change) -> draining."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

OVERALL = ""
# Answers SERVING while the process runs, before models load too: Kubernetes'
# liveness probe asks for it, so slow loading or draining never gets a pod killed.
LIVENESS = "liveness"


class ServingState:
    """What health checks report, and the drain signal open streams watch."""

    def __init__(self, service_names: Sequence[str]) -> None:
        self.health_servicer = health_aio.HealthServicer()
        self._service_names = [OVERALL, *service_names]
        self.draining = asyncio.Event()
        # Model-control calls are admitted once start-up loading is done, other calls while
        # some model serves; health says SERVING while ready (see the readiness setting).
        self.started = False
        self.has_models = False
        self.ready = False

    async def set_not_serving(self) -> None:
        """Reports NOT_SERVING for the server and every service (before models are ready)."""
        await self.health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        for name in self._service_names:
            await self.health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def set_ready(self, ready: bool, has_models: bool) -> None:
        """Admits calls, and reports SERVING or NOT_SERVING (ignored once draining began)."""
        if self.draining.is_set():
            return
        self.started = True
        self.has_models = has_models
        changed = ready != self.ready
        self.ready = ready
        if not changed:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._service_names:
            await self.health_servicer.set(name, status)

    async def begin_draining(self) -> None:
        """Reports NOT_SERVING for good and tells open streams to finish."""
        self.draining.set()
        self.ready = False
        await self.health_servicer.enter_graceful_shutdown()
