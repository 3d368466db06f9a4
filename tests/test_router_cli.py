"""``optiroute-mw eval router`` end to end on small CSV files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from optiroute_mw.cli import main

DESIGN = (
    "Design a distributed, horizontally scalable rate limiter for a microservices "
    "architecture.\n1. First describe the algorithm and its complexity.\n2. Then explain "
    "the consensus protocol and analyze the latency and throughput trade-offs.\n3. Finally "
    "justify the database choice; the answer must be at most 800 words."
)
SUMMARY_KEYS = {
    "router",
    "rows",
    "weak_quality",
    "strong_quality",
    "strong_fraction_at_95",
    "apgr",
    "decision_ms_p50",
}


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["eval", "router", *args]) == 0
    # only the command's JSON lines: a background task of an earlier test may log here
    out = capsys.readouterr().out.splitlines()
    return [json.loads(line) for line in out if line.startswith("{")]


def test_rules_router_on_a_hand_computed_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The rule score ranks the design brief hardest, "hi there" easiest.  Only the
    # design brief needs the strong model: q_w = 3/4, q_s = 1, and sending that one
    # prompt (a quarter of them) strong reaches the all-strong quality.
    data = write(
        tmp_path / "t.csv",
        [
            {"q": "hi there", "w": "True", "s": "True", "bad": "False"},
            {"q": "Write a python function that reverses a string.", "w": "1", "s": "1",
             "bad": ""},
            {"q": DESIGN, "w": "False", "s": "true", "bad": "no"},
            {"q": "Explain why the sky is blue, and compare it with sunsets.", "w": "yes",
             "s": "yes", "bad": "0"},
            {"q": "a row whose outcome is missing", "w": "", "s": "True", "bad": "False"},
            {"q": "a contaminated row", "w": "True", "s": "True", "bad": "True"},
        ],
    )  # fmt: skip
    lines = run(
        capsys, "--data", data, "--prompt-col", "q", "--weak", "w", "--strong", "s",
        "--router", "rules", "--drop-if", "bad", "--points", "5",
    )  # fmt: skip
    *curve, summary = lines
    assert set(summary) >= SUMMARY_KEYS
    assert summary["router"] == "rules" and summary["rows"] == 4
    assert summary["skipped_rows"] == 1
    assert summary["weak_quality"] == 0.75 and summary["strong_quality"] == 1.0
    assert summary["strong_fraction_at_95"] == 0.25
    assert summary["cpt_pgr_95"] == 0.25
    assert summary["decision_ms_p50"] >= 0.0
    assert [p["strong_fraction"] for p in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p["quality"] for p in curve] == [0.75, 1.0, 1.0, 1.0, 1.0]
    assert [p["pgr"] for p in curve] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert curve[-1]["threshold"] is None
    # APGR over 101 points: PGR climbs linearly to 1 over the first quarter
    assert summary["apgr"] == pytest.approx(1 - 0.25 / 2, abs=1e-3)


def test_random_router_numeric_outcomes_and_turns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"t1": f"question {i}", "t2": "and a follow-up" if i % 2 else "", "w": 6 + i % 3,
         "s": 9}
        for i in range(30)
    ]  # fmt: skip
    data = write(tmp_path / "scores.csv", rows)
    args = ["--data", data, "--prompt-col", "t1", "--prompt-col", "t2", "--weak", "w"]
    lines = run(capsys, *args, "--strong", "s", "--router", "random", "--seed", "3")
    summary = lines[-1]
    assert len(lines) == 21 + 1
    assert summary["rows"] == 30 and summary["strong_quality"] == 9.0
    assert summary["weak_quality"] == pytest.approx(7.0)
    assert 0.0 < summary["strong_fraction_at_95"] < 1.0
    assert lines[0]["quality"] == pytest.approx(7.0)
    again = run(capsys, *args, "--strong", "s", "--router", "random", "--seed", "3")
    assert again[-1]["strong_fraction_at_95"] == summary["strong_fraction_at_95"]


def test_missing_columns_are_named(tmp_path: Path) -> None:
    data = write(tmp_path / "t.csv", [{"prompt": "x", "w": "1", "s": "0"}])
    with pytest.raises(SystemExit, match="nope"):
        main(["eval", "router", "--data", data, "--prompt-col", "nope", "--weak", "w",
              "--strong", "s"])  # fmt: skip


def test_learned_router_through_the_middleware_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"prompt": "What is 2 + 2?", "weak": "True", "strong": "True"},
        {"prompt": DESIGN, "weak": "False", "strong": "True"},
        {"prompt": "Name the capital of Italy.", "weak": "True", "strong": "True"},
        {"prompt": "Thanks!", "weak": "True", "strong": "True"},
    ]
    data = write(tmp_path / "l.csv", rows)
    lines = run(
        capsys, "--data", data, "--prompt-col", "prompt", "--weak", "weak", "--strong",
        "strong", "--router", "learned",
    )  # fmt: skip
    summary = lines[-1]
    assert summary["router"] == "learned" and summary["rows"] == 4
    assert summary["fallback_rows"] == 0
    # the design brief is ranked first (the rules' complex floor), so one strong call
    # out of four recovers everything
    assert summary["strong_fraction_at_95"] == 0.25
    assert summary["decision_ms_p50"] > 0.0


def test_learned_router_without_readable_weights_is_an_error(tmp_path: Path) -> None:
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"garbage")
    data = write(tmp_path / "t.csv", [{"prompt": "x", "w": "1", "s": "0"}])
    with pytest.raises(SystemExit, match="learned router could not start"):
        main(["eval", "router", "--data", data, "--prompt-col", "prompt", "--weak", "w",
              "--strong", "s", "--router", "learned", "--weights", str(weights)])  # fmt: skip
