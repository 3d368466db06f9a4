"""Word lists and patterns the look-alike guard reads text with."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

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
