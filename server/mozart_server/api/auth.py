"""Bearer-token authentication of calls."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from mozart_server.errors import UnauthenticatedError


def check_bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None, token: str) -> None:
    """Accepts the call when its `authorization` metadata is `Bearer <token>`.

    Raises:
        UnauthenticatedError: the header is missing or carries another token.
    """
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, presented = text.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                presented.strip().encode(), token.encode()
            ):
                return
            raise UnauthenticatedError("the bearer token is wrong")
    raise UnauthenticatedError("this server needs 'authorization: Bearer <token>' metadata")
