"""SemanticIndex: search, partition isolation, eviction and save/load (random vectors only)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("usearch")

from optiroute_mw.cache.semantic_index import Match, SemanticIndex

DIM = 384


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def nudge(v: npt.NDArray[np.float32], eps: float, seed: int = 1) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    out = v + eps * rng.standard_normal(v.shape).astype(np.float32)
    return (out / np.linalg.norm(out)).astype(np.float32)


def test_search_returns_nearest_first_with_cosine_similarity() -> None:
    vecs = unit_vectors(200)
    idx = SemanticIndex()
    for i, v in enumerate(vecs):
        idx.add("p", v, f"e{i}", f"text {i}")
    assert len(idx) == 200

    query = nudge(vecs[17], 0.02)
    hits = idx.search("p", query, k=4)
    assert len(hits) == 4
    assert isinstance(hits[0], Match)
    assert hits[0].entry_id == "e17"
    assert hits[0].text == "text 17"
    assert hits[0].similarity == pytest.approx(float(vecs[17] @ query), abs=1e-4)
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in sims)


def test_exact_vector_has_similarity_one_and_k_caps_results() -> None:
    vecs = unit_vectors(3)
    idx = SemanticIndex()
    for i, v in enumerate(vecs):
        idx.add("p", v, f"e{i}", "t")
    assert idx.search("p", vecs[1], k=1)[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert len(idx.search("p", vecs[1], k=10)) == 3
    assert idx.search("p", vecs[1], k=0) == []


def test_partitions_are_isolated() -> None:
    vecs = unit_vectors(50)
    idx = SemanticIndex()
    for i, v in enumerate(vecs):
        idx.add("model-a" if i % 2 == 0 else "model-b", v, f"e{i}", f"t{i}")
    # The exact vector of an entry in model-a must never be found from model-b.
    hits_b = idx.search("model-b", vecs[4], k=25)
    assert all(int(h.entry_id[1:]) % 2 == 1 for h in hits_b)
    assert len(hits_b) == 25
    assert idx.search("model-a", vecs[4], k=1)[0].entry_id == "e4"
    assert idx.search("unknown", vecs[4], k=4) == []
    assert sorted(idx.partitions) == ["model-a", "model-b"]


def test_remove_and_replace() -> None:
    vecs = unit_vectors(4)
    idx = SemanticIndex()
    for i in range(3):
        idx.add("p", vecs[i], f"e{i}", f"t{i}")
    assert idx.remove("e1") is True
    assert idx.remove("e1") is False
    assert "e1" not in idx
    assert len(idx) == 2
    assert all(h.entry_id != "e1" for h in idx.search("p", vecs[1], k=4))

    # Re-adding an id replaces the old vector and text (also across partitions).
    idx.add("q", vecs[3], "e0", "new text")
    assert len(idx) == 2
    assert idx.search("p", vecs[0], k=4)[0].entry_id != "e0"
    top = idx.search("q", vecs[3], k=1)[0]
    assert (top.entry_id, top.text) == ("e0", "new text")


def test_last_entry_removal_drops_the_partition() -> None:
    idx = SemanticIndex()
    idx.add("p", unit_vectors(1)[0], "only", "t")
    idx.remove("only")
    assert idx.partitions == []
    assert idx.search("p", unit_vectors(1)[0]) == []


def test_eviction_is_oldest_first_and_reports_ids() -> None:
    vecs = unit_vectors(12)
    idx = SemanticIndex(max_entries=5)
    evicted: list[str] = []
    for i, v in enumerate(vecs):
        evicted += idx.add(f"p{i % 2}", v, f"e{i}", f"t{i}")
    assert len(idx) == 5
    assert evicted == [f"e{i}" for i in range(7)]
    assert all(f"e{i}" in idx for i in range(7, 12))
    assert all(f"e{i}" not in idx for i in range(7))
    for i in range(7):
        for h in idx.search(f"p{i % 2}", vecs[i], k=5):
            assert h.entry_id not in evicted


def test_add_many_matches_add() -> None:
    vecs = unit_vectors(100)
    idx = SemanticIndex(max_entries=80)
    evicted = idx.add_many(
        [f"p{i % 4}" for i in range(100)],
        vecs,
        [f"e{i}" for i in range(100)],
        [f"t{i}" for i in range(100)],
    )
    assert evicted == [f"e{i}" for i in range(20)]
    assert len(idx) == 80
    assert idx.search("p3", vecs[99], k=1)[0].entry_id == "e99"


def test_rejects_bad_vectors() -> None:
    idx = SemanticIndex(ndim=8)
    with pytest.raises(ValueError):
        idx.add("p", np.ones(7, dtype=np.float32), "e", "t")
    with pytest.raises(ValueError):
        idx.add("p", np.full(8, np.nan, dtype=np.float32), "e", "t")
    with pytest.raises(ValueError):
        SemanticIndex(max_entries=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    vecs = unit_vectors(300)
    idx = SemanticIndex(max_entries=1000)
    for i, v in enumerate(vecs):
        idx.add(f"tenant-{i % 3}", v, f"id-{i}", f"prompt number {i} \u00e9\u4e2d")
    idx.remove("id-5")
    before = {p: idx.search(p, vecs[k], k=4) for k, p in ((7, "tenant-1"), (9, "tenant-0"))}

    path = tmp_path / "semantic"
    idx.save(path)
    idx.save(path)  # saving over an existing copy replaces it
    restored = SemanticIndex.load(path)

    assert len(restored) == len(idx) == 299
    assert sorted(restored.partitions) == sorted(idx.partitions)
    assert "id-5" not in restored
    for (k, p), hits in zip(((7, "tenant-1"), (9, "tenant-0")), before.values(), strict=True):
        again = restored.search(p, vecs[k], k=4)
        assert [h.entry_id for h in again] == [h.entry_id for h in hits]
        assert [h.text for h in again] == [h.text for h in hits]
        assert [h.similarity for h in again] == pytest.approx([h.similarity for h in hits])
    assert restored.search("tenant-0", vecs[9], k=1)[0].text == "prompt number 9 \u00e9\u4e2d"

    # The restored index keeps working: new ids, eviction order continues from the old one.
    restored.max_entries = 299
    assert restored.add("tenant-0", unit_vectors(1, seed=9)[0], "new", "fresh") == ["id-0"]
    assert restored.search("tenant-0", unit_vectors(1, seed=9)[0], k=1)[0].entry_id == "new"


def test_load_overrides_bound_and_rejects_garbage(tmp_path: Path) -> None:
    vecs = unit_vectors(10)
    idx = SemanticIndex()
    for i, v in enumerate(vecs):
        idx.add("p", v, f"e{i}", "t")
    idx.save(tmp_path / "ix")
    small = SemanticIndex.load(tmp_path / "ix", max_entries=4)
    assert len(small) == 4
    assert all(f"e{i}" in small for i in range(6, 10))

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError):
        SemanticIndex.load(tmp_path / "junk")
    with pytest.raises(ValueError):
        SemanticIndex.load(tmp_path / "missing")


def test_empty_index_round_trip(tmp_path: Path) -> None:
    SemanticIndex().save(tmp_path / "empty")
    restored = SemanticIndex.load(tmp_path / "empty")
    assert len(restored) == 0
    assert restored.search("p", unit_vectors(1)[0]) == []


def test_many_removals_compact_the_graph() -> None:
    vecs = unit_vectors(2600)
    idx = SemanticIndex(max_entries=300)
    for i, v in enumerate(vecs):
        idx.add("p", v, f"e{i}", "t")
    assert len(idx) == 300
    assert idx.search("p", vecs[2599], k=1)[0].entry_id == "e2599"
    assert idx.search("p", vecs[2400], k=1)[0].entry_id == "e2400"


def test_one_writer_many_readers() -> None:
    vecs = unit_vectors(400)
    idx = SemanticIndex(max_entries=150)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for h in idx.search("p", vecs[0], k=4):
                    assert h.entry_id.startswith("e")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i, v in enumerate(vecs):
        idx.add("p", v, f"e{i}", "t")
        if i % 7 == 0:
            idx.remove(f"e{i}")
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(idx) <= 150
