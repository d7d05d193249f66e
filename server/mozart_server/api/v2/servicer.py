"""inference.GRPCInferenceService: the Triton / KServe Open Inference Protocol v2.

It serves the same model versions through the same batchers as the native API,
and sits behind the same call envelope (request id, draining, bearer token,
error mapping, request metrics), so errors get the same statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_server import server_version
from mozart_server.api.health import ServingState
from mozart_server.api.interceptors import deadline_of
from mozart_server.api.v2 import conversion
from mozart_server.api.v2.statistics import model_statistics
from mozart_server.errors import MozartError, NotFoundError
from mozart_server.inference.clips import ClipClassifier
from mozart_server.models.control import ModelControl
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.observability.context import note_model
from mozart_server.settings import FloatSamples, RepositorySettings

if TYPE_CHECKING:
    from mozart_server.api.interceptors import Context

INFERENCE_SERVICE_NAME = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "mozart"
# Optional protocol extensions that Mozart implements (Triton's names).
EXTENSIONS = (
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "binary_tensor_data",
)


class InferenceServicer(v2_grpc.GRPCInferenceServiceServicer):
    """The v2 protocol on top of the inference layer and model control."""

    def __init__(
        self,
        registry: ModelRegistry,
        control: ModelControl,
        clips: ClipClassifier,
        state: ServingState,
        *,
        repository: RepositorySettings,
        float_samples: FloatSamples,
    ) -> None:
        self._registry = registry
        self._control = control
        self._clips = clips
        self._state = state
        self._repository = repository
        self._float_samples = float_samples

    async def ServerLive(  # noqa: N802 (gRPC's method name)
        self, request: v2.ServerLiveRequest, context: Context
    ) -> v2.ServerLiveResponse:
        """The process answers, so it is live."""
        return v2.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802 (gRPC's method name)
        self, request: v2.ServerReadyRequest, context: Context
    ) -> v2.ServerReadyResponse:
        """Ready while health says SERVING (see the readiness setting), until draining starts."""
        ready = self._state.ready and not self._state.draining.is_set()
        return v2.ServerReadyResponse(ready=ready)

    async def ModelReady(  # noqa: N802 (gRPC's method name)
        self, request: v2.ModelReadyRequest, context: Context
    ) -> v2.ModelReadyResponse:
        """True when the model (and version, if given) is serving; false, not an error, if not."""
        try:
            self._registry.resolve(request.name, request.version)
        except NotFoundError:
            return v2.ModelReadyResponse(ready=False)
        return v2.ModelReadyResponse(ready=not self._state.draining.is_set())

    async def ServerMetadata(  # noqa: N802 (gRPC's method name)
        self, request: v2.ServerMetadataRequest, context: Context
    ) -> v2.ServerMetadataResponse:
        """Server name, version and the protocol extensions it implements."""
        return v2.ServerMetadataResponse(
            name=SERVER_NAME, version=server_version(), extensions=list(EXTENSIONS)
        )

    async def ModelMetadata(  # noqa: N802 (gRPC's method name)
        self, request: v2.ModelMetadataRequest, context: Context
    ) -> v2.ModelMetadataResponse:
        """Versions and tensor signatures; NOT_FOUND for an unknown model or version."""
        model = self._resolve(request.name, request.version)
        return conversion.model_metadata(self._registry.versions(model.name))

    async def ModelConfig(  # noqa: N802 (gRPC's method name)
        self, request: v2.ModelConfigRequest, context: Context
    ) -> v2.ModelConfigResponse:
        """The batching, instance and tensor configuration of a version."""
        model = self._resolve(request.name, request.version)
        return conversion.model_config(model, self._repository)

    async def ModelStatistics(  # noqa: N802 (gRPC's method name)
        self, request: v2.ModelStatisticsRequest, context: Context
    ) -> v2.ModelStatisticsResponse:
        """Counters of one version, every version of a model, or every model."""
        if request.name:
            if request.version:
                models = [self._resolve(request.name, request.version)]
            else:
                models = self._registry.versions(request.name)
                if not models:
                    self._resolve(request.name, "")  # raises NOT_FOUND with the loaded names
        else:
            models = self._registry.all_models()
        return model_statistics(models)

    async def ModelInfer(  # noqa: N802 (gRPC's method name)
        self, request: v2.ModelInferRequest, context: Context
    ) -> v2.ModelInferResponse:
        """Runs the request's windows through the model's batcher."""
        return await self._infer(request, context)

    async def ModelStreamInfer(  # noqa: N802 (gRPC's method name)
        self, request_iterator: AsyncIterator[v2.ModelInferRequest], context: Context
    ) -> AsyncIterator[v2.ModelStreamInferResponse]:
        """One response per request, in order; a failed request is reported in-band."""
        async for request in request_iterator:
            try:
                response = await self._infer(request, context)
            except MozartError as error:
                yield v2.ModelStreamInferResponse(error_message=error.message)
                continue
            yield v2.ModelStreamInferResponse(infer_response=response)

    async def RepositoryIndex(  # noqa: N802 (gRPC's method name)
        self, request: v2.RepositoryIndexRequest, context: Context
    ) -> v2.RepositoryIndexResponse:
        """Every model of the repository with the state of each version."""
        conversion.check_repository(request.repository_name)
        return conversion.repository_index(self._control.status(), request.ready)

    async def RepositoryModelLoad(  # noqa: N802 (gRPC's method name)
        self, request: v2.RepositoryModelLoadRequest, context: Context
    ) -> v2.RepositoryModelLoadResponse:
        """Loads or reloads a model (explicit mode only); see mozart.v1 LoadModel."""
        conversion.check_repository(request.repository_name)
        conversion.check_parameters(request.parameters)
        note_model(request.model_name, "")
        await self._control.load(request.model_name)
        return v2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(  # noqa: N802 (gRPC's method name)
        self, request: v2.RepositoryModelUnloadRequest, context: Context
    ) -> v2.RepositoryModelUnloadResponse:
        """Unloads a model (explicit mode only); see mozart.v1 UnloadModel."""
        conversion.check_repository(request.repository_name)
        conversion.check_parameters(request.parameters)
        note_model(request.model_name, "")
        await self._control.unload(request.model_name)
        return v2.RepositoryModelUnloadResponse()

    def _resolve(self, name: str, model_version: str) -> ServingVersion:
        model = self._registry.resolve(name, model_version)
        note_model(model.name, model.version)
        return model

    async def _infer(
        self, request: v2.ModelInferRequest, context: Context
    ) -> v2.ModelInferResponse:
        return await infer(self._clips, request, self._float_samples, deadline_of(context))


async def infer(
    clips: ClipClassifier,
    request: v2.ModelInferRequest,
    float_samples: FloatSamples,
    deadline: float | None,
    routing_key: str = "",
) -> v2.ModelInferResponse:
    """ModelInfer, whatever the transport (gRPC here, REST in api/http/v2_routes.py).

    Raises:
        MozartError: bad tensors or outputs, admission, the registry or the batcher.
    """
    requested = conversion.requested_outputs(request)
    model, outputs = await clips.infer(
        request.model_name,
        request.model_version,
        lambda model: conversion.waveforms_from_request(request, model, float_samples),
        deadline,
        routing_key,
    )
    return conversion.infer_response(request, model, outputs, requested)
