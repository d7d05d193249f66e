"""The transport-neutral part of the call envelope: request id, bearer auth, per-client
limits, refusal while starting or draining, and the request metrics of one call.

The gRPC interceptor (`interceptors.py`) and the HTTP API (`api/http/`) both hold calls
to these rules; each transport only reads its own headers and writes its own statuses.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import grpc

from mozart_server.api.auth import BearerAuth, TokenRefusedError
from mozart_server.api.health import ServingState
from mozart_server.api.in_flight import InFlightCalls
from mozart_server.api.rate_limits import ClientLimits
from mozart_server.errors import RateLimitedError, UnavailableError
from mozart_server.observability.context import CallLabels, call_labels_var
from mozart_server.observability.logs import ThrottledLog, client_var, clip_text, request_id_var
from mozart_server.observability.metrics import LabelCache, ServerMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
# The model label of a call that named a model the server does not have: label values
# stay bounded whatever names clients send.
UNKNOWN_MODEL = "unknown"

Metadata = Sequence[tuple[str, str | bytes]]


def _no_model(name: str) -> bool:
    return False


class CallGate:
    """The rules every served call passes, whatever its transport (one per server)."""

    def __init__(
        self,
        metrics: ServerMetrics,
        state: ServingState,
        *,
        auth: BearerAuth | None = None,
        limits: ClientLimits | None = None,
        known_model: Callable[[str], bool] = _no_model,
        in_flight: InFlightCalls | None = None,
        http_series: bool = False,
    ) -> None:
        """Args:
        metrics, state: the server's metrics and serving state.
        auth: bearer-token auth, or None when every call is accepted.
        limits: per-client rate limits, or None for none.
        known_model: whether a name is a model of the repository (for the model label).
        in_flight: counts every call while it runs (shutdown waits for them).
        http_series: record calls in mozart_http_requests_total and
            mozart_http_request_duration_seconds, with a protocol label, instead of
            gRPC's mozart_requests_total and mozart_request_duration_seconds.

        Pass one `auth` and one `limits` to every transport's gate: an address's failed
        authentications and a client's rate buckets then count all its calls.
        """
        self.metrics = metrics
        self.state = state
        self.auth = auth
        # Limits that are all off (the default) are none at all.
        self.limits = limits if limits is not None and limits.active else None
        self.known_model = known_model
        self.in_flight = in_flight if in_flight is not None else InFlightCalls()
        self.auth_log = ThrottledLog(logger)
        self.limit_log = ThrottledLog(logger)
        self.http_series = http_series
        self.requests = LabelCache(metrics.http_requests if http_series else metrics.requests)
        self.request_duration = LabelCache(
            metrics.http_request_duration if http_series else metrics.request_duration
        )

    @property
    def counts_audio(self) -> bool:
        """Whether audio bytes must be counted against client_audio_s_per_s."""
        return self.limits is not None and self.limits.counts_audio

    def call(self, method: str, protocol: str, metadata: Metadata) -> GatedCall:
        """A new call of `method` (gRPC's method name, e.g. "Classify") over `protocol`."""
        return GatedCall(self, method, protocol, metadata)


class GatedCall:
    """One call's passage through the gate: `begin`, then `finish` with its status."""

    def __init__(self, gate: CallGate, method: str, protocol: str, metadata: Metadata) -> None:
        self._gate = gate
        self.method = method
        self._protocol = protocol
        self._metadata = tuple(metadata)
        self._started = time.monotonic()
        self.labels = CallLabels()
        self.client: str | None = None  # the token's name, with named tokens only
        self.limit_key = ""
        self._holds_call_slot = False
        self._entered = False
        self.request_id = ""
        self.code = grpc.StatusCode.OK

    def begin(self, peer: Callable[[], str], *, probe: bool = False, control: bool = False) -> None:
        """`enter`, then `admit`.

        Raises:
            MozartError: the call is refused (UNAUTHENTICATED, RESOURCE_EXHAUSTED,
                UNAVAILABLE).
        """
        self.enter()
        self.admit(peer, probe=probe, control=control)

    def enter(self) -> None:
        """Counts the call as in flight; sets its request id (the header's, clipped, or a
        new one) and its labels in this task's context."""
        self._gate.in_flight.enter()
        self._entered = True
        given = next(
            (value for key, value in self._metadata if key.lower() == REQUEST_ID_HEADER), None
        )
        if isinstance(given, bytes):
            given = given.decode("utf-8", "replace")
        self.request_id = clip_text(str(given or os.urandom(16).hex()), MAX_REQUEST_ID_CHARS)
        # Each call runs in its own task: these settings stay local to this call.
        request_id_var.set(self.request_id)
        call_labels_var.set(self.labels)

    def admit(
        self,
        peer: Callable[[], str],
        *,
        probe: bool = False,
        control: bool = False,
        peer_text: Callable[[], str] | None = None,
    ) -> None:
        """Authenticates the call, then refuses it while starting or draining, or over the
        client's limits.

        Args:
            peer: the client's address as rate limits key it (see
                `rate_limits.client_address`), asked only when auth or limits need it.
            probe: a health probe, answered while starting or draining, never limited.
            control: model control, answered once start-up loading is done.
            peer_text: how the log of a failed authentication names the peer (default:
                its key).

        Raises:
            MozartError: the call is refused (UNAUTHENTICATED, RESOURCE_EXHAUSTED,
                UNAVAILABLE).
        """
        gate = self._gate
        if gate.auth is not None or gate.limits is not None:
            self.limit_key = peer()
        if gate.auth is not None:
            client = self._authenticate(gate.auth, peer_text)
            if gate.auth.named:
                self.client = client
                self.limit_key = f"client:{client}"
                client_var.set(client)
        if probe:
            return
        state = gate.state
        if state.draining.is_set():
            raise UnavailableError("the server is draining for shutdown; retry on another replica")
        if not state.started:
            raise UnavailableError("the server is not ready yet (models are loading)")
        if not state.has_models and not control:
            raise UnavailableError(
                "the server is not ready: no model is loaded (see ListModelStatus)"
            )
        if gate.limits is not None:
            try:
                gate.limits.admit_call(self.limit_key)
            except RateLimitedError:
                self.count_rate_limited("requests")
                raise
            try:
                gate.limits.open_call(self.limit_key)
            except RateLimitedError:
                self.count_rate_limited("calls_in_flight")
                raise
            self._holds_call_slot = True

    def _authenticate(self, auth: BearerAuth, peer_text: Callable[[], str] | None) -> str:
        gate = self._gate
        try:
            return auth.identify(self._metadata)
        except TokenRefusedError as refused:
            peer = clip_text(peer_text() if peer_text is not None else self.limit_key, 100)
            try:
                auth.throttle_failure(self.limit_key)
            except RateLimitedError:
                gate.metrics.auth_failures.labels(reason="throttled").inc()
                gate.auth_log.warning(
                    "authentication failed", method=self.method, peer=peer, reason="throttled"
                )
                raise
            gate.metrics.auth_failures.labels(reason=refused.reason).inc()
            gate.auth_log.warning(
                "authentication failed", method=self.method, peer=peer, reason=refused.reason
            )
            raise

    def admit_audio(self, nbytes: int) -> None:
        """Counts `nbytes` of request audio against the client's audio rate.

        Raises:
            RateLimitedError: the client sent more audio than client_audio_s_per_s allows.
        """
        limits = self._gate.limits
        if limits is None or not limits.counts_audio:
            return
        try:
            limits.admit_audio(self.limit_key, nbytes)
        except RateLimitedError:
            self.count_rate_limited("audio")
            raise

    def count_rate_limited(self, limit: str) -> None:
        """Counts and logs (throttled) a refusal by one of the client's limits."""
        gate = self._gate
        gate.metrics.rate_limited.labels(limit=limit, client=self.client or "").inc()
        gate.limit_log.warning(
            "rate limited", method=self.method, limit=limit, client=self.limit_key
        )

    def _model_label(self) -> str:
        model, version = self.labels.model, self.labels.version
        if version:
            return model  # resolved to a loaded version: a name the server has
        if model:
            return model if self._gate.known_model(model) else UNKNOWN_MODEL
        return UNKNOWN_MODEL if self.code == grpc.StatusCode.NOT_FOUND else ""

    def finish(self, code: grpc.StatusCode | None = None) -> None:
        """Frees the client's call slot; records the outcome in the request metrics (once)."""
        if code is not None:
            self.code = code
        gate = self._gate
        if not self._entered:
            return
        self._entered = False
        gate.in_flight.leave()
        if self._holds_call_slot and gate.limits is not None:
            self._holds_call_slot = False
            gate.limits.close_call(self.limit_key)
        name = self.code.name
        elapsed_s = time.monotonic() - self._started
        model, version = self._model_label(), self.labels.version
        if gate.http_series:
            gate.requests.get(self.method, name, model, version, self._protocol).inc()
            gate.request_duration.get(self.method, self._protocol).observe(elapsed_s)
        else:
            gate.requests.get(self.method, name, model, version).inc()
            gate.request_duration.get(self.method).observe(elapsed_s)
        if self.client is not None:
            gate.metrics.client_requests.labels(client=self.client, code=name).inc()
