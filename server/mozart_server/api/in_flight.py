"""Counts the calls of the served APIs that are running, so shutdown waits for them and
no longer. The call envelope (`interceptors.py`) enters and leaves the count."""

from __future__ import annotations

import asyncio


class InFlightCalls:
    """How many calls run now, and a way to wait until none does."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """One more call runs."""
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        """A call that entered has ended."""
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Waits until no call runs, for at most `timeout_s`; True if none does."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout_s, 0.0))
        except TimeoutError:
            return False
        return True
