"""``optiroute-mw eval router``: a router's cost/quality curve on per-prompt outcomes.

Each row of the CSV becomes a chat request (several ``--prompt-col`` columns are user
turns of one conversation) and is classified through the same router object, and the
same ``decide`` call, that the classify stage runs.  The router's score orders the
prompts (learned: P(weak suffices), with the rules' complex floor first; rules: the
negated rule score; random: uniform); sending the fraction ``f`` with the lowest scores
to the strong model gives the routed quality.
One JSON object per swept threshold, then the summary (the definitions are in
``optiroute_mw.classify.evaluation``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import structlog

from ..exchange import Exchange
from ..settings import Settings
from ..wire import encode, parse_request

ROUTERS = ("rules", "learned", "random")
TRUE = frozenset({"true", "yes", "y", "t"})
FALSE = frozenset({"false", "no", "n", "f"})


def add_parser(kinds: Any) -> None:
    p = kinds.add_parser("router", help="sweep a router's threshold over labelled prompts")
    p.add_argument("--data", required=True, help="CSV file, one prompt per row")
    p.add_argument(
        "--prompt-col", action="append", required=True, help="prompt column (repeat: turns)"
    )
    p.add_argument("--weak", required=True, help="weak model's outcome: True/False or a score")
    p.add_argument("--strong", required=True, help="strong model's outcome column")
    p.add_argument("--router", choices=ROUTERS, default="learned")
    p.add_argument("--points", type=int, default=21, help="swept strong shares (default 21)")
    p.add_argument("--drop-if", action="append", default=[], help="drop rows where COL is true")
    p.add_argument("--limit", type=int, help="only the first N usable rows")
    p.add_argument("--weights", help="learned router weights (default: the packaged ones)")
    p.add_argument("--seed", type=int, default=0, help="random router seed")


def outcome(value: str | None) -> float | None:
    """True/False, yes/no or a number; None for an empty cell."""
    text = (value or "").strip().lower()
    if not text:
        return None
    if text in TRUE:
        return 1.0
    if text in FALSE:
        return 0.0
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_rows(args: argparse.Namespace) -> tuple[list[list[str]], list[float], list[float], int]:
    csv.field_size_limit(1 << 26)
    prompts: list[list[str]] = []
    weak: list[float] = []
    strong: list[float] = []
    skipped = 0
    with open(args.data, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        wanted = [*args.prompt_col, args.weak, args.strong, *args.drop_if]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise SystemExit(f"optiroute-mw eval router: no column {', '.join(missing)!s}")
        for row in reader:
            if any(outcome(row[c]) for c in args.drop_if):
                continue
            turns = [row[c] for c in args.prompt_col if (row[c] or "").strip()]
            w, s = outcome(row[args.weak]), outcome(row[args.strong])
            if not turns or w is None or s is None:
                skipped += 1
                continue
            prompts.append(turns)
            weak.append(w)
            strong.append(s)
            if args.limit and len(prompts) >= args.limit:
                break
    return prompts, weak, strong, skipped


def exchange_for(turns: list[str]) -> Exchange:
    messages: list[dict[str, str]] = []
    for i, turn in enumerate(turns):
        if i:
            messages.append({"role": "assistant", "content": ""})
        messages.append({"role": "user", "content": turn})
    body = encode({"model": "auto", "messages": messages})
    return Exchange(
        request_id="eval",
        kind="chat",
        path="/v1/chat/completions",
        body=body,
        request=parse_request("chat", body),
    )


async def score_all(
    args: argparse.Namespace, settings: Settings, prompts: list[list[str]]
) -> tuple[list[float], list[float], int]:
    """Scores (higher = weak is safer), decision times in ms, and rows that fell back."""
    from ..classify.routers import routing_order_score
    from ..classify.setup import RouterSetup

    if args.router == "random":
        rng = random.Random(args.seed)
        return [rng.random() for _ in prompts], [0.0] * len(prompts), 0
    overrides: dict[str, Any] = {"router": args.router}
    if args.weights:
        overrides["router_weights"] = args.weights
    setup = RouterSetup(msgspec.structs.replace(settings, **overrides))
    await setup.start()
    if args.router == "learned" and not await setup.ready():
        raise SystemExit(
            "optiroute-mw eval router: the learned router could not start (is tokenizers "
            "installed, and are the weights readable?)"
        )
    scores: list[float] = []
    times: list[float] = []
    fallbacks = 0
    for i, turns in enumerate(prompts):
        exchange = exchange_for(turns)
        started = time.perf_counter()
        decision = await setup.decide(exchange)
        times.append((time.perf_counter() - started) * 1e3)
        if args.router == "learned" and decision.source != "learned":
            fallbacks += 1  # nothing to read (an empty prompt): ranked in the middle
            scores.append(0.5)
        else:
            scores.append(routing_order_score(decision))
        if (i + 1) % 2000 == 0:
            print(json.dumps({"progress": i + 1, "of": len(prompts)}), file=sys.stderr)
    return scores, times, fallbacks


def sweep(
    scores: list[float], weak: list[float], strong: list[float], points: int
) -> Iterator[dict[str, Any]]:
    from ..classify.evaluation import routed_quality_curve

    fractions, quality = routed_quality_curve(scores, weak, strong, max(2, points))
    ordered = sorted(scores)
    n = len(ordered)
    q_w, q_s = quality[0], quality[-1]
    gap = q_s - q_w
    for f, q in zip(fractions.tolist(), quality.tolist(), strict=True):
        k = round(f * n)
        yield {
            "strong_fraction": round(f, 4),
            # route to the strong model when the score is below this (None: all of them)
            "threshold": ordered[k] if k < n else None,
            "quality": round(q, 4),
            "quality_vs_strong": round(q / q_s, 4) if q_s else None,
            "pgr": round((q - q_w) / gap, 4) if gap > 1e-12 else None,
        }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


@contextmanager
def logs_on_stderr() -> Iterator[None]:
    """Warnings and errors to stderr while the evaluation runs; stdout stays JSON."""
    from ..observe.logging import configure

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    previous = structlog.get_config() if structlog.is_configured() else None
    configure("warning", "auto", stream=sys.stderr, cache=False)
    try:
        yield
    finally:
        if previous is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**previous)
        root.handlers[:] = handlers
        root.setLevel(level)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..classify.evaluation import summary

    prompts, weak, strong, skipped = read_rows(args)
    if not prompts:
        print("optiroute-mw eval router: no usable rows", file=sys.stderr)
        return 2
    with logs_on_stderr():
        scores, times, fallbacks = asyncio.run(score_all(args, settings, prompts))
    for line in sweep(scores, weak, strong, args.points):
        print(json.dumps(line))
    figures = summary(scores, weak, strong)
    result: dict[str, Any] = {
        "router": args.router,
        "rows": len(prompts),
        "weak_quality": figures["weak_quality"],
        "strong_quality": figures["strong_quality"],
        "strong_fraction_at_95": figures["strong_fraction_at_95"],
        "apgr": figures["apgr"],
        "decision_ms_p50": round(percentile(times, 0.5), 3),
        "decision_ms_p90": round(percentile(times, 0.9), 3),
        "cpt_pgr_95": figures["cpt_pgr_95"],
        "cpt_pgr_80": figures["cpt_pgr_80"],
        "skipped_rows": skipped,
        "fallback_rows": fallbacks,
    }
    print(json.dumps(result))
    return 0
