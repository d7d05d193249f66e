"""Fixtures of the HTTP API tests: a real server on port 0 and an httpx client on it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import InProcessServer


@pytest.fixture(scope="module")
def client(server: InProcessServer) -> Iterator[httpx.Client]:
    """An HTTP client of the module's server (see tests/conftest.py)."""
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        yield http
