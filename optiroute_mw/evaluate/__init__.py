"""``optiroute-mw eval …``: offline evaluations that run through the live code paths.

Each evaluation registers a sub-command here (``add_eval_parser``); ``run_eval``
dispatches to the chosen one.  Results are JSON lines on stdout.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..settings import Settings
from . import cache, router


def add_eval_parser(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="offline evaluations (JSON lines on stdout)")
    evaluate.set_defaults(host=None, port=None)  # the serve options main() reads
    kinds = evaluate.add_subparsers(dest="eval_command", required=True)
    router.add_parser(kinds)
    cache.add_parser(kinds)


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.eval_command == "router":
        return router.run(args, settings)
    if args.eval_command == "cache":
        return cache.run(args, settings)
    return 2
