"""Load balancing across the deployments of one model (replicas, keys, regions).

Power of two choices: two deployments are drawn at random, in proportion to their
``weight``, and the one with the lower load goes first, where load is

    (1 + calls in flight / weight) x latency EWMA

so busy deployments hold calls in flight in proportion to their weight.  A tie goes to
the deployment listed first in the registry: with nothing to tell them apart (idle, no
latency learned yet) the registry's order is a primary and its backups, as configured.
A deployment with no latency sample yet is assumed as fast as its group's average.  The
others follow as fallbacks, least loaded first.  Deployments whose circuit is open, or
that are cooling down after a 429, are skipped: they go last, behind every usable one,
so the breaker only reaches them when nothing else is left.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..health import Health
from ..registry import ModelSpec

DEFAULT_LATENCY_S = 1.0


class Balancer:
    def __init__(self, health: Health, rng: random.Random | None = None) -> None:
        self.health = health
        self.rng = rng or random.Random()

    def order(self, deployments: Sequence[ModelSpec]) -> list[ModelSpec]:
        """The deployments of one model, the one to call first at the head."""
        if len(deployments) <= 1:
            return list(deployments)
        health = self.health
        usable = [d for d in deployments if health.available(d.key)]
        skipped = [d for d in deployments if not health.available(d.key)]
        if not usable:
            return list(deployments)
        load = self._load_function(usable)
        first = usable[0] if len(usable) == 1 else self._pick(usable, load)
        # sorted() is stable: equal loads keep the registry's order
        rest = sorted((d for d in usable if d is not first), key=load)
        return [first, *rest, *skipped]

    def _load_function(self, group: Sequence[ModelSpec]) -> _Load:
        known = [x for x in (self.health.latency(d.key) for d in group) if x is not None]
        prior = sum(known) / len(known) if known else DEFAULT_LATENCY_S
        return _Load(self.health, prior)

    def _pick(self, group: Sequence[ModelSpec], load: _Load) -> ModelSpec:
        one = self._draw(group, None)
        two = self._draw(group, one)
        if group.index(two) < group.index(one):
            one, two = two, one  # a tie goes to the one listed first
        return two if load(two) < load(one) else one

    def _draw(self, group: Sequence[ModelSpec], exclude: ModelSpec | None) -> ModelSpec:
        pool = [d for d in group if d is not exclude]
        total = sum(d.weight for d in pool)
        point = self.rng.random() * total
        for deployment in pool:
            point -= deployment.weight
            if point < 0:
                return deployment
        return pool[-1]


class _Load:
    __slots__ = ("health", "prior")

    def __init__(self, health: Health, prior: float) -> None:
        self.health = health
        self.prior = prior

    def __call__(self, deployment: ModelSpec) -> float:
        latency = self.health.latency(deployment.key)
        seconds = self.prior if latency is None else latency
        return (1.0 + self.health.in_flight(deployment.key) / deployment.weight) * seconds
