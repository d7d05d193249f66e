"""Per-client limits: token buckets for calls and audio, and a cap on calls open at once.

A client is its token's name when the server has named tokens (`auth_tokens_file`),
otherwise its address without the port (an IPv6 client counts by its /64 network, so
one host cannot become millions of clients). Limits are checked before the request is
read; audio is counted from the bytes of each request message as they are read.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from mozart_server.errors import RateLimitedError
from mozart_server.settings import RateLimitSettings

# What one request byte is worth in audio: 16-bit mono PCM at 16 kHz. Compressed audio
# counts less than it lasts, 32-bit float or stereo more: an estimate made before any
# decoding, so that a refusal costs nothing.
AUDIO_BYTES_PER_S = 32_000

# Most clients remembered per limit; beyond that the least recently seen are forgotten
# (which at worst forgives a forgotten client its debt).
MAX_CLIENTS = 10_000

RETRY_AFTER_METADATA = "retry-after-ms"
# The retry hint for a client at its client_calls_in_flight: when a slot frees is unknown.
CALL_SLOT_RETRY_S = 0.1


class TokenBuckets:
    """One token bucket per key, refilled at `rate_per_s` up to `burst` tokens."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        max_keys: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Takes `cost` tokens from `key`'s bucket if it holds them.

        A cost larger than the burst is taken from a full bucket, leaving a debt that
        later calls wait for.

        Returns:
            0.0 when taken; otherwise the seconds until the bucket will hold them
            (nothing is taken then).
        """
        now = self._clock()
        tokens = self._tokens(key, now)
        needed = min(cost, self._burst)
        if tokens < needed:
            self._store(key, tokens, now)
            return (needed - tokens) / self._rate_per_s
        self._store(key, tokens - cost, now)
        return 0.0

    def _tokens(self, key: str, now: float) -> float:
        stored = self._buckets.get(key)
        if stored is None:
            return self._burst
        tokens, updated = stored
        return min(self._burst, tokens + (now - updated) * self._rate_per_s)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


def client_address(peer: str) -> str:
    """The client part of `context.peer()`: `ipv4:10.0.0.7`, `ipv6:2001:db8::/64`, `unix:...`."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return f"ipv4:{rest.rpartition(':')[0] or rest}"
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]") if rest.startswith("[") else rest
        try:
            network = ipaddress.ip_network(f"{host.split('%')[0]}/64", strict=False)
        except ValueError:
            return f"ipv6:{host}"
        return f"ipv6:{network}"
    return peer


def retry_metadata(retry_after_s: float) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that tells a refused client when to try again."""
    return ((RETRY_AFTER_METADATA, str(max(1, math.ceil(retry_after_s * 1000)))),)


class ClientLimits:
    """The request and audio limits of every client, from the settings (each 0 is off)."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self._settings = settings
        self._open: dict[str, int] = {}  # calls open per client (only clients with some)
        self._requests = (
            TokenBuckets(settings.client_requests_per_s, settings.client_request_burst)
            if settings.client_requests_per_s > 0
            else None
        )
        self._audio = (
            TokenBuckets(settings.client_audio_s_per_s, settings.client_audio_burst_s)
            if settings.client_audio_s_per_s > 0
            else None
        )

    def open_call(self, client: str) -> None:
        """Counts a call of `client` as open until `close_call`.

        Raises:
            RateLimitedError: the client has client_calls_in_flight calls open already.
        """
        limit = self._settings.client_calls_in_flight
        if not limit:
            return
        open_now = self._open.get(client, 0)
        if open_now >= limit:
            raise RateLimitedError(
                f"this client has {open_now} calls open, the most client_calls_in_flight "
                "allows; retry once one has finished",
                CALL_SLOT_RETRY_S,
            )
        self._open[client] = open_now + 1

    def close_call(self, client: str) -> None:
        """Ends one open call of `client` (see `open_call`)."""
        if not self._settings.client_calls_in_flight:
            return
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    @property
    def active(self) -> bool:
        """Whether any limit is on, so that a call can be refused for its client's rate."""
        return (
            self._requests is not None
            or self._audio is not None
            or self._settings.client_calls_in_flight > 0
        )

    @property
    def counts_audio(self) -> bool:
        """Whether request bytes need to be counted as audio."""
        return self._audio is not None

    def admit_call(self, client: str) -> None:
        """Counts one call of `client`.

        Raises:
            RateLimitedError: the client started more calls than client_requests_per_s
                allows.
        """
        if self._requests is None:
            return
        wait_s = self._requests.take(client)
        if wait_s:
            raise RateLimitedError(
                f"this client started more than {self._settings.client_requests_per_s:g} calls "
                f"per second (client_requests_per_s); retry in {math.ceil(wait_s * 1000)} ms",
                wait_s,
            )

    def admit_audio(self, client: str, message_bytes: int) -> None:
        """Counts a request message of `message_bytes` as audio of `client`.

        Raises:
            RateLimitedError: the client sent more audio than client_audio_s_per_s allows.
        """
        if self._audio is None:
            return
        wait_s = self._audio.take(client, message_bytes / AUDIO_BYTES_PER_S)
        if wait_s:
            raise RateLimitedError(
                f"this client sent more than {self._settings.client_audio_s_per_s:g} seconds "
                f"of audio per second (client_audio_s_per_s, counting {AUDIO_BYTES_PER_S} "
                f"request bytes as one second); retry in {math.ceil(wait_s * 1000)} ms",
                wait_s,
            )
