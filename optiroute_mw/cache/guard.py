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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["LookalikeGuard", "TextFeatures"]

# --------------------------------------------------------------------------- lexicons

_CONTRACTIONS: Final = re.compile(
    r"\b(can't|cannot|won't|shan't|ain't)\b|n't\b|'(?:re|ve|ll|d|m)\b", re.IGNORECASE
)
_CONTRACTION_MAP: Final[Mapping[str, str]] = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "is not",
    "n't": " not",
    "'re": " are",
    "'ve": " have",
    "'ll": " will",
    "'d": " would",
    "'m": " am",
}
# fmt: off
_QUOTES: Final = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                                "\u2032": "'", "`": "'", "\u2212": "-", "\u2013": "-"})
# fmt: on

_WORD: Final = re.compile(r"[^\W\d_]+")
# Words and clause punctuation, for negation scope.
_WORD_OR_PUNCT: Final = re.compile(r"[^\W\d_]+|[.,;:!?()\[\]\"/&]")
_PUNCT: Final[frozenset[str]] = frozenset('.,;:!?()[]"/&')
# Punctuation kept in the token sequence: list separators are symmetric connectors.
_LIST_PUNCT: Final[frozenset[str]] = frozenset(",/&")
_SEQUENCE_DROP: Final[frozenset[str]] = _PUNCT - _LIST_PUNCT
# Starts at a digit; the character before it (sign, decimal point, code letters) is read apart.
_NUMBER: Final = re.compile(r"(\d+(?:,\d{3})+(?!\d)|\d+(?:\.\d+)*)([a-z%\u00b0]*)")
_DIGIT: Final = re.compile(r"\d")
# Names: a token with a capital letter that is not just the first word of a sentence
# (Ubuntu, iPhone, LinkedIn, MBA), a dotted name (node.js, example.com) or a quoted term.
_CAPITAL: Final = re.compile(r"[A-Z][\w&+#-]*")
_NAME_JOINERS: Final[frozenset[str]] = frozenset("&+#-_")
_SENTENCE_END: Final[frozenset[str]] = frozenset('.!?:;"([*-')
_DOT_LETTER: Final = re.compile(r"\w\.[a-z]")
_DOTTED: Final = re.compile(r"(?<![\w.])[A-Za-z][\w-]+(?:\.[a-z][\w-]+)+(?![\w.])")
_CAP_WORD: Final = re.compile(r"\b[A-Z][A-Za-z]+")
_UPPER_WORD: Final = re.compile(r"\b[A-Z]{2,}\b")
_QUOTED: Final = re.compile(
    r"""(?:(?<=^)|(?<=[\s(\[:]))(["'])([^"'\n]{1,40}?)\1(?=[\s.,?!;:)\]]|$)"""
)

# A question that opens with an auxiliary is a yes/no question ("Is it ...?", "Can I ...?").
_YESNO: Final = re.compile(
    r"^\W*(?:(?:hi|hello|hey|ok|okay|so|and|but|doctor|doc|please)\W+)*"
    r"(?:is|are|was|were|am|do|does|did|can|could|should|would|will|shall|may|might|must|"
    r"has|have|had)\b"
)
# Otherwise the first clause-initial question word decides, together with any question words
# coordinated with it ("when and how", "where/how").
_QUESTION: Final = re.compile(
    r"(?:^|[.!?:;,\"(\[])\s*"
    r"(?:(?:and|but|so|then|also|hi|hello|hey|ok|okay|please|doctor|doc|docs)\b\s*,?\s*)*"
    r"(?=how|why|when|where|who|what|which)"
)
_QUESTION_WORD: Final = re.compile(
    r"(?:(?P<quantity>how\s+(?:many|much))|(?P<duration>how\s+long)|"
    r"(?P<frequency>how\s+(?:often|frequently))|(?P<distance>how\s+far)|(?P<age>how\s+old)|"
    r"(?P<reason>why|how\s+come|what\s+is\s+the\s+reason)|(?P<manner>how)|"
    r"(?P<time>when|what\s+(?:time|year|date|day|month))|(?P<place>where)|"
    r"(?P<person>who|whom|whose)|(?P<neutral>what|which))\b(?P<more>\s*(?:and|or|&|/|,)\s*)?"
)
# Question types whose answers can stand in for each other (besides equal ones).
_QTYPE_COMPATIBLE: Final[frozenset[frozenset[str]]] = frozenset(
    {
        frozenset({"yesno", "manner"}),
        frozenset({"quantity", "duration"}),
        frozenset({"quantity", "frequency"}),
    }
)

# fmt: off
_NEGATORS: Final[frozenset[str]] = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor", "without",
     "non", "absence", "absent", "unable"}
)
# fmt: on
# A negator governs the next few content words of its clause ("not [safe]", "without [visa]").
_NEGATION_SCOPE: Final = 1
# ... within this many tokens ("not [safe]", "without a [passport]", "not for [everyone]").
_NEGATION_WINDOW: Final = 3
# fmt: off
_CLAUSE_BREAKERS: Final[frozenset[str]] = frozenset(
    {"but", "and", "or", "because", "if", "when", "while", "although", "though", "which",
     "that", "who", "so", "since", "unless", "whether"}
)
# fmt: on

# fmt: off
_NUMBER_WORDS: Final[Mapping[str, int]] = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "dozen": 12, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
}
# fmt: on
# fmt: off
_SCALES: Final[Mapping[str, int]] = {
    "hundred": 100, "thousand": 1000, "k": 1000, "million": 1_000_000, "billion": 1_000_000_000,
    "trillion": 1_000_000_000_000, "lakh": 100_000, "crore": 10_000_000,
}
# fmt: on
_NUMBER_WORD: Final = (
    r"(?:zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|dozen|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|"
    r"eleventh|twelfth)"
)
_SCALE_WORD: Final = r"(?:hundred|thousand|million|billion|trillion|lakh|crore)s?"
# "twenty-five", "two hundred and ten", "a million", "one thousand"; a lone "one" is a pronoun.
_NUMBER_PHRASE: Final = re.compile(
    rf"\b(?:{_NUMBER_WORD}|(?<![\d.]\s)(?<!\d){_SCALE_WORD}|(?:a|one)(?=[\s-]+{_SCALE_WORD}))"
    rf"(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}|{_SCALE_WORD}|one\b))*\b"
)
_NUMBER_WORD_SET: Final[frozenset[str]] = frozenset(
    set(_NUMBER_WORDS) | {w + s for w in _SCALES for s in ("", "s") if w != "k"}
)
_ORDINAL_SUFFIX: Final[frozenset[str]] = frozenset({"st", "nd", "rd", "th"})

# Unit word -> (dimension, canonical unit).  "pound" is both mass and money.
_UNIT_GROUPS: Final[Mapping[str, Mapping[str, Iterable[str]]]] = {
    "mass": {
        "mg": ("mg", "milligram", "milligrams", "mgs"),
        "g": ("gram", "grams", "gm", "gms"),
        "kg": ("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"),
        "lb": ("lb", "lbs", "pound", "pounds"),
        "oz": ("oz", "ounce", "ounces"),
        "t": ("ton", "tons", "tonne", "tonnes"),
        "mcg": ("mcg", "microgram", "micrograms", "ug"),
    },
    "length": {
        "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
        "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
        "m": ("meter", "meters", "metre", "metres"),
        "km": ("km", "kms", "kilometer", "kilometers", "kilometre", "kilometres"),
        "in": ("inch", "inches"),
        "ft": ("ft", "foot", "feet"),
        "yd": ("yard", "yards", "yd", "yds"),
        "mi": ("mile", "miles"),
    },
    "temperature": {
        "c": ("celsius", "centigrade", "\u00b0c"),
        "f": ("fahrenheit", "\u00b0f"),
        "k": ("kelvin",),
    },
    "money": {
        "usd": ("$", "usd", "dollar", "dollars", "bucks"),
        "eur": ("\u20ac", "eur", "euro", "euros"),
        "gbp": ("\u00a3", "gbp", "sterling", "pound", "pounds"),
        "inr": ("\u20b9", "inr", "rs", "rupee", "rupees"),
        "jpy": ("\u00a5", "yen", "jpy"),
        "cny": ("yuan", "rmb", "cny", "renminbi"),
        "btc": ("btc", "bitcoin", "bitcoins"),
        "cad": ("cad",),
        "aud": ("aud",),
        "peso": ("peso", "pesos"),
    },
    "volume": {
        "ml": ("ml", "milliliter", "milliliters", "millilitre", "millilitres", "cc"),
        "l": ("liter", "liters", "litre", "litres"),
        "gal": ("gallon", "gallons", "gal"),
        "pt": ("pint", "pints"),
        "qt": ("quart", "quarts"),
        "cup": ("cup", "cups"),
        "tsp": ("tsp", "teaspoon", "teaspoons"),
        "tbsp": ("tbsp", "tablespoon", "tablespoons"),
    },
    "time": {
        "s": ("second", "seconds", "sec", "secs"),
        "min": ("minute", "minutes", "min", "mins"),
        "h": ("hour", "hours", "hr", "hrs"),
        "day": ("day", "days"),
        "week": ("week", "weeks", "wk", "wks"),
        "month": ("month", "months"),
        "year": ("year", "years", "yr", "yrs"),
        "decade": ("decade", "decades"),
    },
    "data": {
        "bit": ("bit", "bits"),
        "byte": ("byte", "bytes"),
        "kb": ("kb", "kilobyte", "kilobytes"),
        "mb": ("mb", "megabyte", "megabytes"),
        "gb": ("gb", "gigabyte", "gigabytes"),
        "tb": ("tb", "terabyte", "terabytes"),
    },
    "area": {
        "acre": ("acre", "acres"),
        "ha": ("hectare", "hectares"),
        "sqft": ("sqft",),
    },
    "speed": {
        "mph": ("mph",),
        "kmh": ("kmh", "kph"),
    },
    "energy": {
        "kcal": ("calorie", "calories", "kcal", "cal"),
        "j": ("joule", "joules", "kj"),
        "kwh": ("kwh",),
    },
    "power": {
        "w": ("watt", "watts", "kw", "kilowatt", "kilowatts"),
        "hp": ("hp", "horsepower"),
    },
}


def _build_units() -> dict[str, tuple[tuple[str, str], ...]]:
    table: dict[str, list[tuple[str, str]]] = {}
    for dim, units in _UNIT_GROUPS.items():
        for canon, words in units.items():
            for w in words:
                table.setdefault(w, []).append((dim, canon))
    return {w: tuple(v) for w, v in table.items()}


_UNITS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = _build_units()
_UNIT_SYMBOL: Final = re.compile(r"[$\u20ac\u00a3\u20b9\u00a5]")
# Unit words and symbols, also glued to a number ("20mg", "$5"), never inside a longer word.
_UNIT: Final = re.compile(
    r"[$\u20ac\u00a3\u20b9\u00a5]|(?<![^\W\d_])(?:"
    + "|".join(re.escape(w) for w in sorted(_UNITS, key=len, reverse=True) if len(w) > 1)
    + r")(?![^\W\d_])"
)

# Opposites: general English antonyms, comparatives, converses and gendered pairs.
_ANTONYM_PAIRS: Final[str] = """
good:bad better:worse best:worst more:less more:fewer most:least many:few much:little
high:low higher:lower highest:lowest big:small bigger:smaller biggest:smallest
large:small larger:smaller largest:smallest long:short longer:shorter longest:shortest
fast:slow faster:slower fastest:slowest quick:slow easy:hard easy:difficult easier:harder
easiest:hardest early:late earlier:later earliest:latest old:new old:young older:younger
oldest:youngest hot:cold warm:cold hotter:colder rich:poor richer:poorer strong:weak
stronger:weaker heavy:light thick:thin fat:thin wide:narrow deep:shallow cheap:expensive
cheaper:costlier cheapest:costliest loud:quiet dark:bright wet:dry clean:dirty full:empty
true:false right:wrong positive:negative success:failure succeed:fail pass:fail win:lose
winner:loser gain:lose gain:loss profit:loss increase:decrease increase:reduce
raise:lower rise:fall maximum:minimum max:min maximize:minimize upper:lower top:bottom
above:below over:under inside:outside internal:external interior:exterior input:output
import:export upload:download send:receive sender:receiver push:pull buy:sell buyer:seller
lend:borrow lender:borrower employer:employee landlord:tenant teacher:student
credit:debit deposit:withdraw deposit:withdrawal income:expense asset:liability
accept:reject allow:block allow:forbid include:exclude add:remove add:subtract
create:delete install:uninstall encrypt:decrypt encode:decode compress:decompress
open:close start:stop start:finish start:end begin:end beginning:end first:last
before:after arrive:leave arrival:departure enter:exit entrance:exit attack:defend
offense:defense offensive:defensive love:hate like:hate happy:sad happiness:sadness
friend:enemy agree:disagree same:different similar:different always:never everyone:nobody
everything:nothing all:none north:south east:west northern:southern eastern:western
left:right front:back forward:backward past:future yesterday:tomorrow day:night
morning:evening summer:winter spring:autumn spring:fall sunrise:sunset ascending:descending
vertical:horizontal odd:even urban:rural public:private online:offline wired:wireless
manual:automatic liberal:conservative democrat:republican introvert:extrovert
optimist:pessimist optimistic:pessimistic inhale:exhale acid:alkaline acidic:alkaline
male:female man:woman men:women boy:girl boys:girls guy:girl guys:girls he:she him:her
his:her himself:herself husband:wife boyfriend:girlfriend father:mother dad:mom dad:mum
son:daughter brother:sister uncle:aunt nephew:niece king:queen prince:princess
gay:straight legal:illegal safe:dangerous safe:unsafe healthy:unhealthy alive:dead
life:death birth:death born:died live:die living:dead question:answer ask:answer
cause:effect cause:cure advantage:disadvantage pro:con pros:cons benefit:drawback
benefits:drawbacks benefit:risk strength:weakness strengths:weaknesses
minimum:maximum min:max least:most for:against support:oppose supporter:opponent
pro:anti give:receive giver:receiver real:fake true:fake natural:artificial
approve:reject approve:deny allow:deny permit:forbid accept:decline inbound:outbound
incoming:outgoing upstream:downstream client:server frontend:backend uppercase:lowercase
row:column serialize:deserialize activate:deactivate increment:decrement mount:unmount
ascend:descend import:export
"""


def _inflections(word: str) -> set[str]:
    forms = {word, word + "s", word + "es", word + "ed", word + "ing"}
    if word.endswith("e"):
        forms |= {word + "d", word[:-1] + "ing"}
    if word.endswith("y") and len(word) > 3:
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    if (
        len(word) >= 3
        and word[-1] not in "aeiouwxy"
        and word[-2] in "aeiou"
        and word[-3] not in "aeiou"
    ):
        forms |= {word + word[-1] + "ing", word + word[-1] + "ed"}
    return forms


def _build_antonyms() -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    lemma: dict[str, str] = {}
    opposite: dict[str, set[str]] = {}
    bases: set[str] = set()
    for pair in _ANTONYM_PAIRS.split():
        a, b = pair.split(":")
        bases |= {a, b}
        opposite.setdefault(a, set()).add(b)
        opposite.setdefault(b, set()).add(a)
    for base in sorted(bases):
        for form in _inflections(base):
            if form not in bases:
                lemma.setdefault(form, base)
    for irregular, base in (
        ("lost", "lose"),
        ("sold", "sell"),
        ("bought", "buy"),
        ("began", "begin"),
        ("begun", "begin"),
        ("won", "win"),
        ("sent", "send"),
        ("lent", "lend"),
        ("gave", "give"),
        ("given", "give"),
        ("hated", "hate"),
        ("loved", "love"),
        ("liked", "like"),
    ):
        if base in bases:
            lemma[irregular] = base
    return lemma, {k: frozenset(v) for k, v in opposite.items()}


_ANTONYM_TABLES: Final = _build_antonyms()
_ANTONYM_LEMMA: Final[Mapping[str, str]] = _ANTONYM_TABLES[0]
_ANTONYMS: Final[Mapping[str, frozenset[str]]] = _ANTONYM_TABLES[1]
# Every form, base forms included, to its base.
_ANTONYM_BASE: Final[Mapping[str, str]] = {**{b: b for b in _ANTONYMS}, **_ANTONYM_LEMMA}

# Negated derivations: "legal" / "illegal", "able" / "unable", "like" / "dislike".
_NEG_PREFIXES: Final[tuple[str, ...]] = ("un", "non", "dis", "in", "im", "il", "ir")
# The Latin prefixes negate adjectives only ("inactive", "illegal"), not "in" + "front".
_LATIN_NEG_PREFIXES: Final[frozenset[str]] = frozenset({"in", "im", "il", "ir"})
# fmt: off
_ADJECTIVE_SUFFIXES: Final[tuple[str, ...]] = (
    "ive", "able", "ible", "ent", "ant", "al", "ate", "ect", "ete", "ure", "id", "ile", "ic",
    "ous", "ar", "ite", "ial", "ful",
)
# fmt: on
# Prefixes with opposite meanings: "hyperthyroidism" / "hypothyroidism", "overrated" /
# "underrated", "prenatal" / "postnatal", "upgrade" / "downgrade".
# fmt: off
_OPPOSITE_PREFIXES: Final[Mapping[str, tuple[str, ...]]] = {
    "hyper": ("hypo",), "hypo": ("hyper",), "over": ("under",), "under": ("over",),
    "pre": ("post",), "post": ("pre",), "up": ("down",), "down": ("up",), "inter": ("intra",),
    "intra": ("inter",), "micro": ("macro",), "macro": ("micro",), "in": ("out", "ex"),
    "out": ("in",), "im": ("ex",), "ex": ("im", "in"), "max": ("min",), "min": ("max",),
}
# fmt: on
_OPPOSITE_PREFIX_LENGTHS: Final[tuple[int, ...]] = tuple(
    sorted({len(p) for p in _OPPOSITE_PREFIXES})
)
# fmt: off
_NEG_PREFIX_FALSE: Final[frozenset[str]] = frozenset(
    {
        "display", "discover", "discovery", "disease", "distance", "discuss", "dismiss", "dispose",
        "dispatch", "dispense", "distill", "distinct", "distort", "distress", "district", "disturb",
        "install", "import", "impress", "impact", "income", "inform", "insight", "inspire",
        "instance", "insure", "invest", "invent", "index", "inside", "intend", "increase", "indent",
        "induce", "infix", "inflate", "inject", "inlet", "input", "inset", "instep", "intake",
        "invoice", "inbox", "impose", "improve", "implant", "imprint", "impair", "imply", "irate",
        "island", "illustrate", "unite", "union", "universe", "unit", "until", "untold",
        "unless", "discount", "discharge", "distract", "dissent", "disclose", "nonsense",
        "dismay", "dispel", "disarray", "disband", "unto"
    }
)
# fmt: on

# Words that never count as names even when capitalised mid-sentence.
# fmt: off
_FUNCTION_WORDS: Final[frozenset[str]] = frozenset(
    {
        "a", "an", "the", "i", "me", "my", "mine", "we", "us", "our", "you", "your", "he", "him",
        "his", "she", "her", "it", "its", "they", "them", "their", "this", "that", "these", "those",
        "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "done",
        "have", "has", "had", "can", "could", "should", "would", "will", "shall", "may", "might",
        "must", "not", "no", "yes", "and", "or", "but", "if", "then", "so", "as", "of", "in", "on",
        "at", "to", "for", "from", "by", "with", "about", "into", "over", "under", "after",
        "before", "between", "through", "during", "without", "within", "what", "which", "who",
        "whom", "whose", "when", "where", "why", "how", "there", "here", "all", "any", "some",
        "each", "every", "both", "either", "neither", "other", "another", "such", "only", "also",
        "just", "very", "too", "more", "most", "less", "least", "than", "much", "many", "few",
        "please", "hi", "hello", "thanks", "thank", "ok", "okay", "dear", "sir", "madam", "doctor",
        "dr", "mr", "mrs", "ms", "vs", "etc", "eg", "ie"
    }
)
# fmt: on

# Function words that stay function words even in capitals ("OK", "AM"); "US" and "IT" do not.
# fmt: off
_NEVER_NAMES: Final[frozenset[str]] = frozenset(
    {"i", "a", "ok", "okay", "hi", "am", "pm", "vs", "etc", "eg", "ie", "dr", "mr", "mrs"}
)
# fmt: on

# Words that relate two things symmetrically: "A and B" = "B and A".
# fmt: off
_COORDINATORS: Final[frozenset[str]] = frozenset(
    {"and", "or", "nor", "vs", "versus", "v", "with", "between", ",", "/", "&", "compared",
     "compare", "comparison", "difference", "differences", "same", "similar", "like"}
)
# fmt: on
# Prepositions and comparatives carry the direction of a relation; other function words
# (articles, auxiliaries, pronouns, the "s" of a possessive) do not.
# fmt: off
_RELATIONAL: Final[frozenset[str]] = frozenset(
    {"than", "to", "into", "from", "over", "under", "before", "after", "for", "of", "in", "on",
     "at", "by", "about", "against", "toward", "towards", "more", "less", "most", "least"}
)
# fmt: on
_NOT_RELATION: Final[frozenset[str]] = (_FUNCTION_WORDS - _RELATIONAL) | {"s"}
_NOT_ARGUMENT: Final[frozenset[str]] = _FUNCTION_WORDS | _LIST_PUNCT | {"s"}
# Role swaps are local: only words at most this many tokens apart count.
_MAX_SWAP_GAP: Final = 5


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
