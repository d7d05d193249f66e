"""mozart.v1.AudioClassifier: thin handlers over the inference and models layers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.api.interceptors import deadline_of
from mozart_server.api.v1 import conversion
from mozart_server.api.v1.streaming import GrpcStreamSink, GrpcStreamSource
from mozart_server.inference.clips import ClipClassifier
from mozart_server.inference.streams import StreamSession
from mozart_server.models.control import ModelControl
from mozart_server.models.registry import ModelRegistry
from mozart_server.observability.context import current_request_id, note_model

if TYPE_CHECKING:
    from mozart_server.api.interceptors import Context

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AudioClassifier"].full_name


class AudioClassifierServicer(pb_grpc.AudioClassifierServicer):
    """The native API on top of the inference layer and model control."""

    def __init__(
        self,
        registry: ModelRegistry,
        control: ModelControl,
        clips: ClipClassifier,
        new_stream: Callable[[], StreamSession],
    ) -> None:
        self._registry = registry
        self._control = control
        self._clips = clips
        self._new_stream = new_stream

    async def Classify(  # noqa: N802 (gRPC's method name)
        self, request: pb.ClassifyRequest, context: Context
    ) -> pb.ClassifyResponse:
        """Classifies a whole clip: per-window results and the mean as summary."""
        routing = conversion.routing_key(context.invocation_metadata())
        result = await self._clips.classify(
            conversion.clip_request(request, routing), deadline_of(context)
        )
        return conversion.classify_response(result, current_request_id())

    async def StreamClassify(  # noqa: N802 (gRPC's method name)
        self,
        request_iterator: AsyncIterator[pb.StreamClassifyRequest],
        context: Context,
    ) -> None:
        """Classifies a live stream; see inference.streams.StreamSession."""
        request_id = current_request_id()
        sink = GrpcStreamSink(context, request_id)
        await self._new_stream().run(GrpcStreamSource(context, request_id), sink)

    async def ListModels(  # noqa: N802 (gRPC's method name)
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        """Every serving model with its versions."""
        return pb.ListModelsResponse(
            models=[
                conversion.model_info(self._registry.versions(name))
                for name in self._registry.names()
            ]
        )

    async def GetModel(  # noqa: N802 (gRPC's method name)
        self, request: pb.GetModelRequest, context: Context
    ) -> pb.ModelInfo:
        """One model; NOT_FOUND when it (or the version asked for) is not serving."""
        model = self._registry.resolve(request.model.name, request.model.version)
        note_model(model.name, model.version)
        return conversion.model_info(self._registry.versions(model.name))

    async def ListModelStatus(  # noqa: N802 (gRPC's method name)
        self, request: pb.ListModelStatusRequest, context: Context
    ) -> pb.ListModelStatusResponse:
        """Every model of the repository with each version's state."""
        return pb.ListModelStatusResponse(
            models=[conversion.model_status(status) for status in self._control.status()]
        )

    async def LoadModel(  # noqa: N802 (gRPC's method name)
        self, request: pb.LoadModelRequest, context: Context
    ) -> pb.ModelStatus:
        """Loads or brings up to date a model (explicit mode only)."""
        note_model(request.name, "")
        return conversion.model_status(await self._control.load(request.name, request.reload))

    async def UnloadModel(  # noqa: N802 (gRPC's method name)
        self, request: pb.UnloadModelRequest, context: Context
    ) -> pb.ModelStatus:
        """Unloads a model; what is in flight on it finishes (explicit mode only)."""
        note_model(request.name, "")
        return conversion.model_status(await self._control.unload(request.name))

    async def GetRollout(  # noqa: N802 (gRPC's method name)
        self, request: pb.GetRolloutRequest, context: Context
    ) -> pb.RolloutStatus:
        """A model's rollout now; NOT_FOUND for a model the server does not know."""
        note_model(request.name, "")
        return conversion.rollout_status(request.name, self._control.rollout_status(request.name))

    async def SetRollout(  # noqa: N802 (gRPC's method name)
        self, request: pb.SetRolloutRequest, context: Context
    ) -> pb.RolloutStatus:
        """Sets or clears a model's rollout and loads the versions it names."""
        note_model(request.name, "")
        policy = None if request.clear else conversion.rollout_policy(request.policy)
        status = await self._control.set_rollout(request.name, policy)
        return conversion.rollout_status(request.name, status)
