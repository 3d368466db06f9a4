"""``optiroute-mw eval cache``: metric definitions and a run through the live cache stage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from optiroute_mw.cache.semantic_index import DEFAULT_SIMILARITY_THRESHOLD
from optiroute_mw.cli import main
from optiroute_mw.evaluate.cache import SWEEP, label_of, score

KEYS = ["threshold", "pairs", "precision", "recall", "false_hit_rate", "f1"]
PAIRS = [
    ("What is the capital of France?", "What's the capital city of France?", 1),
    ("How do I reset my banking password?", "How can I reset my banking password?", 1),
    ("How can I lose weight fast?", "How can I lose weight fast?", 1),  # an exact repeat
    ("How to install Docker on Ubuntu 22.04?", "How to install Docker on Ubuntu 24.04?", 0),
    ("Is Python faster than Java?", "Is Java faster than Python?", 0),
    ("What is the capital of France?", "How do I bake sourdough bread?", 0),
    ("Why is the sky blue?", "What makes the sky look blue?", 1),
]


def write(path: Path, rows: list[tuple[str, str, int]], header: tuple[str, str, str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["pair_id", *header])
        writer.writerows([i, *row] for i, row in enumerate(rows))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, float]]:
    assert main(["eval", "cache", *args]) == 0
    # only the command's JSON lines: a background task of an earlier test may log here
    out = capsys.readouterr().out.splitlines()
    return [json.loads(line) for line in out if line.startswith("{")]


def test_metric_definitions_on_a_hand_counted_table() -> None:
    # similarity of the served hit (-1: miss) and the labels
    sims = [0.99, 0.95, 0.91, -1.0, 0.97, 0.90, -1.0, 1.0]
    labels = [1, 1, 1, 1, 0, 0, 0, 1]
    # at 0.92: hits 0,1,4,7 -> tp 3, fp 1; positives 5, negatives 3
    assert score(sims, labels, 0.92) == {
        "threshold": 0.92,
        "pairs": 8,
        "precision": 0.75,
        "recall": 0.6,
        "false_hit_rate": round(1 / 3, 4),
        "f1": round(2 * 0.75 * 0.6 / 1.35, 4),
    }
    nothing = score([-1.0] * 3, [1, 0, 0], 0.9)
    assert nothing["precision"] == 1.0 and nothing["recall"] == 0.0 and nothing["f1"] == 0.0
    assert [label_of(v) for v in ("1", "0", "True", "false", "1.0", "", "x")] == [
        1, 0, 1, 0, 1, None, None,
    ]  # fmt: skip


def test_sweep_through_the_live_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = write(tmp_path / "pairs.csv", PAIRS, ("question1", "question2", "is_duplicate"))
    lines = run(capsys, "--pairs", str(pairs), "--sweep", "--embed-cache", str(tmp_path / "emb"))
    assert all(list(line) == KEYS for line in lines)
    assert [line["threshold"] for line in lines] == [
        *(t for t in SWEEP if t != DEFAULT_SIMILARITY_THRESHOLD),
        DEFAULT_SIMILARITY_THRESHOLD,  # the configured default, last
    ]
    default = lines[-1]
    assert default["pairs"] == len(PAIRS)
    assert default["precision"] == 1.0  # no look-alike served
    assert default["recall"] >= 0.75 and default["false_hit_rate"] == 0.0
    recalls = [line["recall"] for line in lines[:-1]]
    assert recalls == sorted(recalls, reverse=True)  # a higher bar never hits more
    assert lines[-2]["recall"] <= default["recall"]  # 0.98: little more than the repeat
    assert list((tmp_path / "emb").rglob("chunk0000.npy"))  # embeddings kept for next time
    again = run(capsys, "--pairs", str(pairs), "--embed-cache", str(tmp_path / "emb"))
    assert again == [default]


def test_columns_threshold_and_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = write(tmp_path / "p.csv", PAIRS, ("origin", "similar", "label"))
    args = ["--pairs", str(pairs), "--a", "origin", "--b", "similar", "--label", "label"]
    lines = run(capsys, *args, "--threshold", "0.99", "--limit", "4")
    assert [line["threshold"] for line in lines] == [0.99, DEFAULT_SIMILARITY_THRESHOLD]
    assert all(line["pairs"] == 4 for line in lines)
    positives = [(a, b, 1) for a, b, y in PAIRS if y]
    only = write(tmp_path / "o.csv", positives, ("origin", "similar", "unused"))
    args = ["--pairs", str(only), "--a", "origin", "--b", "similar", "--label", "none"]
    (line,) = run(capsys, *args, "--mismatched")
    assert line["pairs"] == 2 * len(positives)
    assert line["precision"] == 1.0 and line["false_hit_rate"] == 0.0 and line["recall"] == 1.0
    with pytest.raises(SystemExit, match="no column question1"):
        main(["eval", "cache", "--pairs", str(pairs)])
