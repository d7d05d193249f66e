"""Serving state and grpc.health.v1: starting -> serving -> draining."""

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
        self.ready = False

    async def set_not_serving(self) -> None:
        """Reports NOT_SERVING for the server and every service (before models are ready)."""
        await self.health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        for name in self._service_names:
            await self.health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def set_serving(self) -> None:
        """Reports SERVING; call once the models are loaded and warmed."""
        self.ready = True
        for name in self._service_names:
            await self.health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def begin_draining(self) -> None:
        """Reports NOT_SERVING for good and tells open streams to finish."""
        self.draining.set()
        self.ready = False
        await self.health_servicer.enter_graceful_shutdown()
