"""Bearer-token authentication of calls, with named tokens and a throttle on failures."""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping, Sequence

from mozart_server.api.rate_limits import TokenBuckets
from mozart_server.errors import RateLimitedError, UnauthenticatedError
from mozart_server.settings import NetworkSettings


class TokenRefusedError(UnauthenticatedError):
    """The call's token was missing, malformed or wrong; `reason` says which (for metrics)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BearerAuth:
    """Checks `authorization: Bearer <token>` against the tokens the server accepts."""

    def __init__(
        self, tokens: Mapping[str, str], failures_per_s: float, failure_burst: int
    ) -> None:
        """Args:
        tokens: the accepted tokens by client name ("" for the single unnamed token).
        failures_per_s, failure_burst: how fast one address may fail before it is
            answered RESOURCE_EXHAUSTED instead of UNAUTHENTICATED.
        """
        if not tokens or not all(tokens.values()):
            raise ValueError("bearer auth needs at least one non-empty token")
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]
        self.named = any(tokens)
        self._failures = TokenBuckets(failures_per_s, failure_burst)

    @classmethod
    def from_settings(cls, settings: NetworkSettings) -> BearerAuth | None:
        """The auth the settings ask for (reading token files now); None when it is off."""
        tokens = settings.bearer_tokens()
        if tokens is None:
            return None
        return cls(tokens, settings.auth_failures_per_s, settings.auth_failure_burst)

    def identify(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        """The name of the client whose token the call carries ("" for the unnamed token).

        Raises:
            TokenRefusedError: the header is missing, not `Bearer <token>`, or the token is
                not one the server accepts.
        """
        values = [value for key, value in metadata or () if key.lower() == "authorization"]
        if not values:
            raise TokenRefusedError(
                "this server needs 'authorization: Bearer <token>' metadata", "missing"
            )
        value = values[0]
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, presented = text.strip().partition(" ")
        credential = presented.strip().encode()
        if scheme.lower() != "bearer" or not credential:
            raise TokenRefusedError(
                "the authorization metadata must be 'Bearer <token>' with a token", "malformed"
            )
        found = None
        for name, token in self._tokens:
            # Every token is compared, so the time taken does not tell which one matched.
            if hmac.compare_digest(credential, token):
                found = name
        if found is None:
            raise TokenRefusedError("the bearer token is wrong", "wrong")
        return found

    def throttle_failure(self, address: str) -> None:
        """Counts a failed authentication from `address`.

        Raises:
            RateLimitedError: the address failed more often than auth_failures_per_s
                allows; it is told when to retry.
        """
        wait_s = self._failures.take(address)
        if wait_s:
            raise RateLimitedError(
                "too many failed authentications from this address (auth_failures_per_s); "
                f"retry in {math.ceil(wait_s * 1000)} ms",
                wait_s,
            )
