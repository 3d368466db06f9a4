"""What the guard reads out of one text: numbers, names, negations, units, question type."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexicon import (
    _ANTONYM_BASE,
    _CAP_WORD,
    _CAPITAL,
    _CLAUSE_BREAKERS,
    _CONTRACTION_MAP,
    _CONTRACTIONS,
    _DIGIT,
    _DOT_LETTER,
    _DOTTED,
    _FUNCTION_WORDS,
    _NAME_JOINERS,
    _NEGATION_SCOPE,
    _NEGATION_WINDOW,
    _NEGATORS,
    _NEVER_NAMES,
    _NUMBER,
    _NUMBER_PHRASE,
    _NUMBER_WORD_SET,
    _NUMBER_WORDS,
    _ORDINAL_SUFFIX,
    _PUNCT,
    _QUESTION,
    _QUESTION_WORD,
    _QUOTED,
    _QUOTES,
    _SCALES,
    _SENTENCE_END,
    _SEQUENCE_DROP,
    _UNIT,
    _UNIT_SYMBOL,
    _UNITS,
    _UPPER_WORD,
    _WORD,
    _WORD_OR_PUNCT,
    _YESNO,
)

# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """What the guard compares, extracted once per text."""

    words: tuple[str, ...]
    sequence: tuple[str, ...]
    word_set: frozenset[str]
    numbers: frozenset[str]
    negated: frozenset[str]
    affirmed: frozenset[str]
    names: frozenset[str]
    units: frozenset[tuple[str, str]]
    unit_order: tuple[tuple[str, str], ...]
    antonym_lemmas: frozenset[str]
    qtypes: frozenset[str]


def _expand_contraction(m: re.Match[str]) -> str:
    return _CONTRACTION_MAP.get(m.group(0).lower(), m.group(0))


def _format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e18:
        return str(int(value))
    return repr(value)


def _parse_number_words(words: list[str]) -> str:
    total, current = 0, 0
    for w in words:
        if w in _NUMBER_WORDS:
            current += _NUMBER_WORDS[w]
        elif w in ("one", "a"):
            current += 1
        elif w.removesuffix("s") in _SCALES:
            scale = _SCALES[w.removesuffix("s")]
            current = max(current, 1) * scale
            if scale >= 1000:
                total, current = total + current, 0
    return str(total + current)


def _numbers(low: str, found: set[str], glued_units: set[str]) -> None:
    """Numeric values and model codes into ``found``; units glued to a number into the other."""
    if _DIGIT.search(low) is not None:
        for m in _NUMBER.finditer(low):
            digits, suffix = m.groups()
            start = m.start()
            before = low[start - 1] if start else " "
            if before.isalpha():  # "t3", "gpt4", "mp3", "i7", "v2.1": the whole code is the value
                j = start - 1
                while j > 0 and low[j - 1].isalpha():
                    j -= 1
                found.add(low[j : m.end()])
                continue
            detached = start < 2 or not low[start - 2].isalnum()
            digits = digits.replace(",", "")
            if before == "." and detached:
                digits = "0." + digits  # ".125 mg"
            scale = 1
            if suffix in _SCALES:
                scale, suffix = _SCALES[suffix], ""
            else:
                tail = low[m.end() : m.end() + 12].split()
                if tail:
                    word = tail[0].removesuffix("s")
                    scale = _SCALES.get(word, 1) if word != "k" else 1
            if scale != 1 and digits.count(".") <= 1:
                value = _format_number(round(float(digits) * scale, 6))
            elif "." not in digits:
                value = str(int(digits))
            else:
                value = digits
            if before == "-" and detached:
                value = "-" + value
            if suffix and suffix not in _ORDINAL_SUFFIX and suffix not in ("%", "\u00b0"):
                if suffix in _UNITS:
                    glued_units.add(suffix)
                else:  # "6s", "3d", "4g", "x86": a model code, not a plain number
                    value += suffix
            found.add(value)


def _number_words(low: str, found: set[str]) -> None:
    """Spelled-out numbers: "twenty five" -> 25, "two million" -> 2000000."""
    for m in _NUMBER_PHRASE.finditer(low):
        found.add(_parse_number_words(_WORD.findall(m.group(0))))


def _names(text: str, n_words: int) -> set[str]:
    """Proper names, acronyms, product codes, domains and quoted terms, lower-cased."""
    names: set[str] = set()
    style: tuple[bool, bool] | None = None  # (all capitals, title case), computed on demand
    for m in _CAPITAL.finditer(text):
        start = m.start()
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in _NAME_JOINERS):
            start -= 1
        token = text[start : m.end()].strip("-")
        low = token.lower()
        inner = start < m.start() or not token[1:].islower()  # iPhone, LinkedIn, MBA, T3
        if not inner:
            i = start - 1
            while i >= 0 and text[i].isspace():
                i -= 1
            if i < 0 or text[i] in _SENTENCE_END:
                continue  # capitalised because it starts a sentence
        if low in _UNITS or (low in _FUNCTION_WORDS and (not inner or low in _NEVER_NAMES)):
            continue
        if style is None:
            style = (
                n_words >= 3 and len(_UPPER_WORD.findall(text)) > 0.6 * n_words,
                n_words >= 4 and len(_CAP_WORD.findall(text)) > 0.6 * n_words,
            )
        if style[0] or (not inner and style[1]):
            continue
        names.add(low)
    if _DOT_LETTER.search(text) is not None:
        names.update(d.lower() for d in _DOTTED.findall(text))
    if "'" in text or '"' in text:
        for m in _QUOTED.finditer(text):
            inner_text = m.group(2).strip()
            if inner_text and len(inner_text.split()) <= 3:
                names.update(
                    w for w in _WORD.findall(inner_text.lower()) if w not in _FUNCTION_WORDS
                )
    return names


def _qtypes(low: str) -> frozenset[str]:
    if _YESNO.search(low) is not None:
        return frozenset({"yesno"})
    m = _QUESTION.search(low)
    if m is None:
        return frozenset()
    kinds: set[str] = set()
    pos = m.end()
    while True:
        w = _QUESTION_WORD.match(low, pos)
        if w is None:
            break
        for kind, value in w.groupdict().items():
            if value is not None and kind != "more":
                kinds.add(kind)
                break
        if w.group("more") is None:
            break
        pos = w.end()
    kinds.discard("neutral")
    return frozenset(kinds)


def analyse(text: str) -> TextFeatures:
    """Extract the features ``LookalikeGuard`` compares (exposed for caching and tests)."""
    norm = text.translate(_QUOTES)
    low = norm.lower()
    if "'" in low or "cannot" in low:
        norm = _CONTRACTIONS.sub(_expand_contraction, norm)
        low = norm.lower()
    numbers: set[str] = set()
    unit_words: set[str] = set()
    _numbers(low, numbers, unit_words)

    tokens = _WORD_OR_PUNCT.findall(low)
    words = [t for t in tokens if t not in _PUNCT]
    word_set = frozenset(words)
    if not word_set.isdisjoint(_NUMBER_WORD_SET):
        _number_words(low, numbers)
    if word_set.isdisjoint(_NEGATORS):
        negated: frozenset[str] = frozenset()
        affirmed = word_set - _FUNCTION_WORDS
    else:
        negated, affirmed = _negation_scopes(tokens)

    unit_words.update(word_set & _UNITS.keys())
    unit_words.update(_UNIT_SYMBOL.findall(low))
    units = frozenset(dim_canon for w in unit_words for dim_canon in _UNITS[w])
    order: tuple[tuple[str, str], ...] = ()
    if len(units) > 1 and len({d for d, _ in units}) < len(units):
        # Two units of one kind: keep their order of appearance ("kg to lb").
        seen: list[tuple[str, str]] = []
        for w in _UNIT.findall(low):
            seen.extend(u for u in _UNITS[w] if u not in seen)
        order = tuple(seen)

    return TextFeatures(
        words=tuple(words),
        sequence=tuple(t for t in tokens if t not in _SEQUENCE_DROP),
        word_set=word_set,
        numbers=frozenset(numbers),
        negated=negated,
        affirmed=affirmed,
        names=frozenset(_names(norm, len(words))),
        units=units,
        unit_order=order,
        antonym_lemmas=frozenset(_ANTONYM_BASE[w] for w in word_set & _ANTONYM_BASE.keys()),
        qtypes=_qtypes(low),
    )


def _negation_scopes(tokens: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    """Content words governed by a negator, and the remaining content words."""
    negated: set[str] = set()
    affirmed: set[str] = set()
    scope = window = 0
    for tok in tokens:
        window -= 1
        if tok in _PUNCT:
            scope = 0
        elif tok in _NEGATORS:
            scope, window = _NEGATION_SCOPE, _NEGATION_WINDOW
        elif tok in _FUNCTION_WORDS:
            if tok in _CLAUSE_BREAKERS:
                scope = 0
        elif scope and window >= 0:
            negated.add(tok)
            scope -= 1
        else:
            affirmed.add(tok)
    return frozenset(negated), frozenset(affirmed)
