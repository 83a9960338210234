"""Failed sign-ins limited per client address: a token bucket each, shared by the WebView, the REST API and
gRPC, so a short or leaked-in-part token cannot be guessed at network speed.

Why failures only: a client with the right token is never slowed; one that keeps offering wrong tokens gets
``BURST`` tries at once, then one every ``1 / RATE`` seconds, and is answered 429 (REST, with ``Retry-After``) or
RESOURCE_EXHAUSTED (gRPC) without its token being checked until then. The address is the peer's: behind a proxy,
every client shares the proxy's bucket (the proxy should limit then).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: failed attempts a client may make at once ...
BURST = 30
#: ... and how many more it earns per second after that
RATE = 1.0
#: the most addresses tracked; beyond it the idle ones (bucket full again) are forgotten
MAX_CLIENTS = 10_000


class FailureLimiter:
    """Per-address token buckets of failed attempts (see the module docstring)."""

    def __init__(self, burst: int = BURST, rate: float = RATE, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.rate, self.clock = burst, rate, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)
        self._last_failure = -math.inf

    def quiet(self) -> bool:
        """True when no address can be limited now (no failure for as long as a bucket takes to refill), so a
        caller may skip looking its address up: gRPC learns the peer only inside the call."""
        return self.clock() - self._last_failure > self.burst / self.rate

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def retry_after(self, address: str) -> int:
        """0 when ``address`` may try now, else the whole seconds until it may (for ``Retry-After``)."""
        tokens = self._tokens(address, self.clock())
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def failed(self, address: str) -> None:
        """Count one failed attempt of ``address``."""
        now = self._last_failure = self.clock()
        self._buckets[address] = (max(0.0, self._tokens(address, now) - 1), now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets = {a: b for a, b in self._buckets.items() if self._tokens(a, now) < self.burst}
