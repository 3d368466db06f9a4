"""A circuit breaker per deployment.

closed → open after ``failures`` consecutive failures; open fails fast (no network
call) until ``cooldown_s`` has passed; then half-open lets one probe through,
which closes the circuit on success or reopens it, with a fresh cooldown, on failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Circuit:
    __slots__ = ("clock", "cooldown_s", "failures", "opened_at", "probing", "state", "threshold")

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open":
            if self.clock() - self.opened_at < self.cooldown_s:
                return False
            self.state = "half_open"
            self.probing = False
        if self.probing:  # half-open: one probe at a time
            return False
        self.probing = True
        return True

    def record_success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.probing = False

    def record_failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state = "open"
            self.opened_at = self.clock()

    def release(self) -> None:
        """A call that proved nothing either way (the caller's own error)."""
        self.probing = False


class CircuitBoard:
    """All circuits of a process, by deployment key."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.circuits: dict[str, Circuit] = {}

    def get(self, key: str) -> Circuit:
        circuit = self.circuits.get(key)
        if circuit is None:
            circuit = self.circuits[key] = Circuit(self.threshold, self.cooldown_s, self.clock)
        return circuit

    def states(self) -> dict[str, str]:
        return {key: circuit.state for key, circuit in self.circuits.items()}
