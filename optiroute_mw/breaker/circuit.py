"""A circuit breaker per deployment.

closed → open on ``threshold`` consecutive failures, or when the failure rate over
a sliding window passes ``failure_rate`` with at least ``min_requests`` calls in it.
Open fails fast (no network call) until the cooldown has passed; half-open then
lets at most ``half_open_probes`` calls through at once, closes after
``close_after`` successes and reopens, with a fresh cooldown, on any failure.

Separately, a deployment can be told to cool down until a moment (a 429's
Retry-After): it is skipped until then without counting as broken.  A later,
shorter cooldown never shortens one already set.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class Circuit:
    __slots__ = (
        "clock",
        "close_after",
        "cool_until",
        "cooldown_s",
        "failure_rate",
        "failures",
        "half_open_probes",
        "in_probe",
        "min_requests",
        "open_until",
        "probe_successes",
        "state",
        "threshold",
        "window",
        "window_s",
    )

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        failure_rate: float = 0.5,
        window_s: float = 60.0,
        min_requests: int = 20,
        half_open_probes: int = 1,
        close_after: int = 1,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failure_rate = failure_rate
        self.window_s = window_s
        self.min_requests = min_requests
        self.half_open_probes = half_open_probes
        self.close_after = close_after
        self.state = "closed"
        self.failures = 0  # consecutive
        self.window: deque[tuple[float, bool]] = deque()
        self.open_until = 0.0
        self.cool_until = 0.0
        self.in_probe = 0
        self.probe_successes = 0

    def allow(self) -> bool:
        now = self.clock()
        if now < self.cool_until:
            return False
        if self.state == "closed":
            return True
        if self.state == "open":
            if now < self.open_until:
                return False
            self.state = "half_open"
            self.in_probe = 0
            self.probe_successes = 0
        if self.in_probe >= self.half_open_probes:
            return False
        self.in_probe += 1
        return True

    def ready_at(self) -> float:
        """When this circuit will next let a call through (now, if it would)."""
        blocked = max(self.cool_until, self.open_until if self.state == "open" else 0.0)
        return max(blocked, self.clock())

    def record_success(self) -> None:
        self._remember(True)
        self.failures = 0
        if self.state == "half_open":
            self.in_probe = max(0, self.in_probe - 1)
            self.probe_successes += 1
            if self.probe_successes >= self.close_after:
                self.state = "closed"
                self.window.clear()

    def record_failure(self) -> None:
        self._remember(False)
        self.failures += 1
        tripped = self.failures >= self.threshold or self._rate_exceeded()
        if self.state == "half_open" or (self.state == "closed" and tripped):
            self._open()

    def release(self) -> None:
        """A call that proved nothing either way (the caller's own error)."""
        if self.state == "half_open":
            self.in_probe = max(0, self.in_probe - 1)

    def cool_down(self, seconds: float) -> None:
        self.cool_until = max(self.cool_until, self.clock() + seconds)
        self.release()

    def _open(self) -> None:
        self.state = "open"
        self.in_probe = 0
        self.open_until = max(self.open_until, self.clock() + self.cooldown_s)

    def _remember(self, ok: bool) -> None:
        now = self.clock()
        self.window.append((now, ok))
        while self.window and self.window[0][0] < now - self.window_s:
            self.window.popleft()

    def _rate_exceeded(self) -> bool:
        if len(self.window) < self.min_requests:
            return False
        failed = sum(1 for _, ok in self.window if not ok)
        return failed / len(self.window) >= self.failure_rate


class CircuitBoard:
    """All circuits of a process, by deployment key, sharing one policy."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        **policy: float,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.policy = policy
        self.circuits: dict[str, Circuit] = {}

    def get(self, key: str) -> Circuit:
        circuit = self.circuits.get(key)
        if circuit is None:
            circuit = Circuit(self.threshold, self.cooldown_s, self.clock, **self.policy)  # type: ignore[arg-type]
            self.circuits[key] = circuit
        return circuit

    def states(self) -> dict[str, str]:
        return {key: circuit.state for key, circuit in self.circuits.items()}
