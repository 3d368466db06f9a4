"""Look-alike guard for the semantic cache.

Sentence embeddings put "How do I install Docker on Ubuntu 22.04?" and "... on Ubuntu 24.04?"
almost on top of each other, yet the cached answer for one is wrong for the other.  The guard is
a second, purely lexical check that runs only on pairs the vector search already found similar.
It looks for the small surface differences that flip the answer while barely moving an embedding:

* ``numbers``   - different numeric values, versions or model codes ("22.04" vs "24.04",
  "T3" vs "T4")
* ``negation``  - a negation on one side only ("not", "never", "without", "can't"), or a negated
  derivation ("legal" vs "illegal", "useful" vs "useless")
* ``entity``    - a different proper name, acronym, domain or quoted term on each side
  ("Ubuntu" vs "Debian", 'rescind' vs 'mischievous')
* ``units``     - a different unit of the same kind ("kg" vs "lb", "week" vs "month"), or the
  same units in the opposite direction ("kg to lb" vs "lb to kg")
* ``antonym``   - opposite words ("best" vs "worst", "buy" vs "sell", "he" vs "she")
* ``question``  - a different question type ("how" vs "why", "how" vs "how long", "is" vs "why")
* ``order``     - the same words swapped around an asymmetric word ("A better than B" vs
  "B better than A", "from A to B" vs "from B to A")

The rules are general English rather than lists fitted to a data set.  The guard only ever
turns hits into misses, so it can cost recall but never precision.  It is deterministic,
symmetric and allocation-light; ``accepts(a, a)`` is always True.
"""

from __future__ import annotations

from .analysis import (
    TextFeatures,
    analyse,
)
from .lexicon import (
    _ADJECTIVE_SUFFIXES,
    _ANTONYMS,
    _COORDINATORS,
    _FUNCTION_WORDS,
    _LATIN_NEG_PREFIXES,
    _MAX_SWAP_GAP,
    _NEG_PREFIX_FALSE,
    _NEG_PREFIXES,
    _NOT_ARGUMENT,
    _NOT_RELATION,
    _OPPOSITE_PREFIX_LENGTHS,
    _OPPOSITE_PREFIXES,
    _QTYPE_COMPATIBLE,
    _WORD,
)

__all__ = ["LookalikeGuard", "TextFeatures", "analyse"]

# --------------------------------------------------------------------------- comparison


def _near_spelling(a: str, b: str) -> bool:
    """At most one edit apart ("Hilary" / "Hillary", "Henri" / "Henry"), for names >= 5."""
    if len(a) < 5 or len(b) < 5 or abs(len(a) - len(b)) > 1 or a[0] != b[0]:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def _missing_names(names: frozenset[str], other: TextFeatures) -> list[str]:
    """Names absent from the other text under any casing, spacing, plural or acronym."""
    missing: list[str] = []
    compact: str | None = None
    for name in names:
        if name in other.word_set:
            continue
        parts = _WORD.findall(name)
        joined = "".join(parts)
        if not joined or all(p in other.word_set for p in parts):
            continue
        if (joined[-1] == "s" and joined[:-1] in other.word_set) or joined + "s" in other.word_set:
            continue
        if compact is None:
            compact = "".join(other.words)
        if len(joined) >= 4 and joined in compact:
            continue  # "LinkedIn" / "linked in"
        if 2 <= len(joined) <= 5 and _is_acronym_of(joined, other.words):
            continue  # "USA" / "United States of America"
        missing.append(joined)
    return missing


def _is_acronym_of(acronym: str, words: tuple[str, ...]) -> bool:
    return acronym in "".join(w[0] for w in words) or acronym in "".join(
        w[0] for w in words if w not in _FUNCTION_WORDS
    )


def _entity_substituted(a: TextFeatures, b: TextFeatures) -> bool:
    """Each side names something the other does not (Ubuntu vs Debian, Google vs Microsoft)."""
    only_a = _missing_names(a.names, b)
    if not only_a:
        return False
    only_b = _missing_names(b.names, a)
    if not only_b:
        return False
    # Spelling variants of one name are not a substitution.
    only_a = [x for x in only_a if not any(_near_spelling(x, w) for w in b.word_set)]
    only_b = [y for y in only_b if not any(_near_spelling(y, w) for w in a.word_set)]
    return bool(only_a) and bool(only_b)


def _negated_derivation(only_a: frozenset[str], only_b: frozenset[str]) -> bool:
    """A word on one side and its negated or opposite derivation on the other."""
    for x, others in ((only_a, only_b), (only_b, only_a)):
        for w in x:
            if len(w) < 4:
                continue
            for p in _NEG_PREFIXES:
                derived = p + w
                if (
                    derived in others
                    and derived not in _NEG_PREFIX_FALSE
                    and (p not in _LATIN_NEG_PREFIXES or w.endswith(_ADJECTIVE_SUFFIXES))
                ):
                    return True
            if w.endswith("ful") and w[:-3] + "less" in others:
                return True
            for n in _OPPOSITE_PREFIX_LENGTHS:
                opposites = _OPPOSITE_PREFIXES.get(w[:n])
                if opposites is not None and len(w) - n >= 3:
                    stem = w[n:]
                    if any(q + stem in others for q in opposites):
                        return True
    return False


def _conversion_reversed(a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...]) -> bool:
    """The same units of one kind in the opposite order ("kg to lb" / "lb to kg")."""
    for dim in {d for d, _ in a}:
        in_a = [u for u in a if u[0] == dim]
        if len(in_a) > 1 and in_a != [u for u in b if u[0] == dim]:
            return True
    return False


def _arguments_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two words trade places around the same relation ("A better than B" / "B better than A",
    "from A to B" / "from B to A", "X women like Y men" / "Y women like X men")."""
    pos_a: dict[str, int] = {}
    for i, w in enumerate(a):
        if w not in _NOT_ARGUMENT:
            pos_a[w] = -1 if w in pos_a else i
    pos_b: dict[str, int] = {}
    for i, w in enumerate(b):
        if w not in _NOT_ARGUMENT:
            pos_b[w] = -1 if w in pos_b else i
    shared = sorted((i, w) for w, i in pos_a.items() if i >= 0 and pos_b.get(w, -1) >= 0)
    for n, (ax, x) in enumerate(shared):
        bx = pos_b[x]
        for ay, y in shared[n + 1 :]:
            if ay - ax > _MAX_SWAP_GAP:
                break
            by = pos_b[y]
            if by > bx or bx - by > _MAX_SWAP_GAP:
                continue
            # The same relation between them on both sides, and not a symmetric one.
            raw_a = set(a[ax + 1 : ay])
            raw_b = set(b[by + 1 : bx])
            if not raw_a.isdisjoint(_COORDINATORS) or not raw_b.isdisjoint(_COORDINATORS):
                continue
            between_a = raw_a - _NOT_RELATION
            if between_a and between_a == raw_b - _NOT_RELATION:
                return True
    return False


class LookalikeGuard:
    """Rejects near-duplicate prompts whose answers differ; see the module docstring.

    ``accepts(cached, new)`` is True when serving the cached answer is safe as far as
    surface cues can tell; ``reason`` names the rule that fired.  A small per-instance
    memo of analysed texts makes repeated comparisons against the same cached prompt cheap.
    """

    __slots__ = ("_memo", "_memo_size")

    def __init__(self, memo_size: int = 4096) -> None:
        self._memo: dict[str, TextFeatures] = {}
        self._memo_size = memo_size

    def features(self, text: str) -> TextFeatures:
        feats = self._memo.get(text)
        if feats is None:
            feats = analyse(text)
            if self._memo_size > 0:
                if len(self._memo) >= self._memo_size:
                    self._memo.clear()
                self._memo[text] = feats
        return feats

    def accepts(self, cached_text: str, new_text: str) -> bool:
        return self.reason(cached_text, new_text) is None

    def reason(self, cached_text: str, new_text: str) -> str | None:
        if cached_text == new_text:
            return None
        return self.compare(self.features(cached_text), self.features(new_text))

    @staticmethod
    def compare(a: TextFeatures, b: TextFeatures) -> str | None:
        """The first rule that tells the two texts apart, or None."""
        if a.numbers != b.numbers:
            return "numbers"
        if bool(a.negated) != bool(b.negated) and (
            not a.negated.isdisjoint(b.affirmed) or not b.negated.isdisjoint(a.affirmed)
        ):
            return "negation"
        if a.units != b.units:
            dims_a = {d for d, _ in a.units - b.units}
            if dims_a and not dims_a.isdisjoint(d for d, _ in b.units - a.units):
                return "units"
        elif (
            len(a.unit_order) > 1
            and a.unit_order != b.unit_order
            and _conversion_reversed(a.unit_order, b.unit_order)
        ):
            return "units"
        if (
            a.qtypes != b.qtypes
            and a.qtypes
            and b.qtypes
            and a.qtypes.isdisjoint(b.qtypes)
            and not any(frozenset({x, y}) in _QTYPE_COMPATIBLE for x in a.qtypes for y in b.qtypes)
        ):
            return "question"
        if a.antonym_lemmas != b.antonym_lemmas:
            only_b = b.antonym_lemmas - a.antonym_lemmas
            for w in a.antonym_lemmas - b.antonym_lemmas:
                if not _ANTONYMS[w].isdisjoint(only_b):
                    return "antonym"
        if a.names != b.names and _entity_substituted(a, b):
            return "entity"
        if a.word_set != b.word_set and _negated_derivation(
            a.word_set - b.word_set, b.word_set - a.word_set
        ):
            return "negation"
        if a.words != b.words and _arguments_swapped(a.sequence, b.sequence):
            return "order"
        return None
