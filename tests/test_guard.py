"""LookalikeGuard: look-alike prompts must miss, paraphrases must still hit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiroute_mw.cache.guard import LookalikeGuard, analyse

GUARD = LookalikeGuard()

REJECTED: list[tuple[str, str, str]] = [
    # versions, numbers, codes
    (
        "How do I install Docker on Ubuntu 22.04?",
        "How do I install Docker on Ubuntu 24.04?",
        "numbers",
    ),
    ("What's new in Python 3.12?", "What's new in Python 3.11?", "numbers"),
    ("What changed in Python 3.10?", "What changed in Python 3.1?", "numbers"),
    (
        "Is a layover of 13 hours enough to leave the airport?",
        "Is a layover of 3 hours enough to leave the airport?",
        "numbers",
    ),
    ("Best smartphone under 15000 rupees", "Best smartphone under 20000 rupees", "numbers"),
    ("Is a TSH of 4.1 normal?", "Is a TSH of 5.2 normal?", "numbers"),
    (
        "My eyesight is -0.5, do I need glasses?",
        "My eyesight is 0.5, do I need glasses?",
        "numbers",
    ),
    ("Review of the iPhone 6", "Review of the iPhone 6s", "numbers"),
    ("What does a high T3 level mean?", "What does a high T4 level mean?", "numbers"),
    ("What happened in 2016?", "What happened in 2017?", "numbers"),
    ("How do I invest two million dollars?", "How do I invest three million dollars?", "numbers"),
    (
        "What is the best laptop for students?",
        "What are the 5 best laptops for students?",
        "numbers",
    ),
    # negation
    (
        "Is it safe to take ibuprofen while pregnant?",
        "Is it not safe to take ibuprofen while pregnant?",
        "negation",
    ),
    (
        "Can I travel to Canada with a passport?",
        "Can I travel to Canada without a passport?",
        "negation",
    ),
    ("Why should I quit my job?", "Why shouldn't I quit my job?", "negation"),
    ("Is life for everyone?", "Is life not for everyone?", "negation"),
    ("Is it legal to record a phone call?", "Is it illegal to record a phone call?", None),
    ("Which plants are edible?", "Which plants are inedible?", "negation"),
    # names / entities
    ("How do I get a job at Google?", "How do I get a job at Microsoft?", "entity"),
    (
        "What is the weather like in Dubai in August compared to India?",
        "What is the weather like in Dubai in August compared to Qatar?",
        "entity",
    ),
    ("How does soyoung.com make money?", "How does linkis.com make money?", "entity"),
    ("What does 'rescind' mean?", "What does 'mischievous' mean?", "entity"),
    ("How do I install Docker on Ubuntu?", "How do I install Docker on Debian?", "entity"),
    # units and conversion direction
    ("How to lose weight in a week?", "How to lose weight in a month?", "units"),
    (
        "How many calories are in 100 grams of rice?",
        "How many calories are in 100 ounces of rice?",
        "units",
    ),
    ("Convert 5 kg to lb", "Convert 5 lb to kg", "units"),
    ("How much is 100 dollars in euros?", "How much is 100 rupees in euros?", "units"),
    ("Is 40 celsius a fever?", "Is 40 fahrenheit a fever?", "units"),
    # antonyms and comparatives
    ("Who is the best Python teacher?", "Who is the worst Python teacher?", "antonym"),
    ("How can I increase my credit score?", "How can I decrease my credit score?", "antonym"),
    ("When is the best time to buy a car?", "When is the best time to sell a car?", "antonym"),
    ("How do I gain weight quickly?", "How do I lose weight quickly?", "antonym"),
    ("What are the advantages of remote work?", "What are the disadvantages of remote work?", None),
    ("How do I know if he likes me?", "How do I know if she likes me?", "antonym"),
    ("Which metals are the most expensive?", "Which metals are the least expensive?", "antonym"),
    # question types
    ("Why is the sky blue?", "How is the sky blue?", "question"),
    ("How does cellular respiration occur?", "Why does cellular respiration occur?", "question"),
    ("How can I learn Python?", "How long does it take to learn Python?", "question"),
    ("Where can I buy a Tesla?", "When can I buy a Tesla?", "question"),
    ("Is money hard to earn?", "Why is money hard to earn?", "question"),
    ("How can I earn money online?", "How much money can I earn online?", "question"),
    # order around an asymmetric word
    ("Is Java better than Python?", "Is Python better than Java?", "order"),
    ("How do I convert PDF to Word?", "How do I convert Word to PDF?", "order"),
    ("Cheapest flights from Delhi to Mumbai", "Cheapest flights from Mumbai to Delhi", "order"),
    ("Are cats afraid of tigers?", "Are tigers afraid of cats?", "order"),
    (
        "Do Indian women find Pakistani men attractive?",
        "Do Pakistani women find Indian men attractive?",
        "order",
    ),
    # opposite derivations and prefixes
    (
        "What are the symptoms of hyperthyroidism?",
        "What are the symptoms of hypothyroidism?",
        "negation",
    ),
    ("Is this movie overrated?", "Is this movie underrated?", "negation"),
    ("How do I upgrade my phone?", "How do I downgrade my phone?", "negation"),
    ("Is this a useful feature?", "Is this a useless feature?", "negation"),
    ("Is the data correct?", "Is the data incorrect?", "negation"),
    (
        "How do I load data in streaming mode?",
        "How do I load data in non-streaming mode?",
        "negation",
    ),
    (
        "Who is the best general: Rommel or Patton?",
        "Who is the best general: Rommel or Zhukov?",
        "entity",
    ),
    (
        "What is the best gift you have ever given?",
        "What is the best gift you have ever received?",
        "antonym",
    ),
    (
        "What are the arguments for virtue ethics?",
        "What are the arguments against virtue ethics?",
        "antonym",
    ),
    (
        "I found a few thousand dollars, what should I do?",
        "I found a few hundred dollars, what should I do?",
        "numbers",
    ),
]

ACCEPTED: list[tuple[str, str]] = [
    ("What is the capital of France?", "What's the capital city of France?"),
    ("How can I lose weight fast?", "What is the fastest way to lose weight?"),
    ("How do I learn python", "How can I learn Python quickly?"),
    ("What are some good tips for self study?", "What are the smart tips for self studying?"),
    ("I took 20mg of Prozac, is that a lot?", "I took 20 mg of Prozac. Is that a lot?"),
    ("Which is the best smartphone under 15k?", "Which is the best smartphone under 15,000?"),
    ("What can I do with twenty five dollars?", "What can I do with 25 dollars?"),
    ("How do I go from Delhi to Mumbai?", "How do I get to Mumbai from Delhi?"),
    ("Can I lose weight by running?", "How can I lose weight by running?"),
    ("Why don't people answer my questions?", "Why do people not answer my questions?"),
    ("Is Spotify available in India?", "Is spotify available in india?"),
    ("Who will win the US election?", "Who is going to win the US election?"),
    ("What is the best way to learn Java?", "How should I learn Java?"),
    ("What Is The Best Way To Learn Java?", "what is the best way to learn java"),
    ("Is Java harder than Python?", "Is Java more difficult than Python?"),
    ("How do I reset my Gmail password?", "How can I reset the password of my Gmail account?"),
    ("What are the symptoms of diabetes?", "What are the signs and symptoms of diabetes?"),
    ("Can't sleep at night, what should I do?", "I cannot sleep at night. What should I do?"),
    ("How many hours a day should I study?", "How many hours per day should I study?"),
    ("Is it possible to hack WhatsApp?", "How can I hack WhatsApp?"),
    ("What is Docker?", "Can you explain what Docker is?"),
    (
        "How do I make an HTTP request in Javascript?",
        "How do I make an HTTP request in JavaScript?",
    ),
    ("Explain quantum computing in simple terms", "Explain quantum computing in simple words"),
    # symmetric relations and reordering keep the meaning
    (
        "What is the difference between Github and Bitbucket?",
        "What are the differences between BitBucket and GitHub?",
    ),
    ("Which is better, Java or Python?", "Which is better, Python or Java?"),
    (
        "Which is the best institute for distance MBA in India?",
        "Which is the best distance MBA institute in India?",
    ),
    ("How are the placements in CS at VIT?", "How are VIT CS placements?"),
    # the same name spelt, abbreviated or pluralised differently
    (
        "Who is most likely to be the next president of the United States of America?",
        "Who is going to be the next president of the USA?",
    ),
    ("Why do people hate Hilary Clinton?", "Why do people hate Hillary Clinton?"),
    ("What is the best laptop under INR 30,000?", "Which laptop is best under Rs 30,000?"),
    ("How can I join LinkedIn?", "How can I join linked in?"),
    # compatible question types and follow-ups
    ("How many times should you wash your hair?", "How often should you wash your hair?"),
    ("When and how did the Civil War begin?", "How did the Civil War begin?"),
    ("Are men funnier than women?", "Are men funnier than women? Why?"),
    ("What happened to the roll no. 1 student?", "What happened to the roll no.1 student?"),
    ("Is 0.125 mg of levothyroxine enough?", "Is .125 mg of levothyroxine enough?"),
    (
        "What does it mean when my 7th month scan shows this?",
        "What does it mean when my seventh month scan shows this?",
    ),
]


@pytest.mark.parametrize(("cached", "new", "why"), REJECTED)
def test_lookalikes_are_rejected(cached: str, new: str, why: str | None) -> None:
    reason = GUARD.reason(cached, new)
    assert reason is not None, (cached, new)
    if why is not None:
        assert reason == why
    assert not GUARD.accepts(cached, new)
    # The guard is symmetric: which prompt was cached does not matter.
    assert GUARD.reason(new, cached) is not None


@pytest.mark.parametrize(("cached", "new"), ACCEPTED)
def test_paraphrases_are_accepted(cached: str, new: str) -> None:
    assert GUARD.reason(cached, new) is None, (cached, new, GUARD.reason(cached, new))
    assert GUARD.accepts(cached, new)
    assert GUARD.accepts(new, cached)


def test_number_normalisation() -> None:
    assert analyse("under 15k or 15,000 or fifteen thousand").numbers == {"15000"}
    assert analyse("twenty-one pilots and two hundred and ten").numbers == {"21", "210"}
    assert analyse("which one is better?").numbers == frozenset()
    assert analyse("Ubuntu 22.04 vs 22.4").numbers == {"22.04", "22.4"}
    assert analyse("take 20mg").numbers == {"20"}
    assert ("mass", "mg") in analyse("take 20mg").units


def test_memo_does_not_change_answers() -> None:
    guard = LookalikeGuard(memo_size=2)
    pairs = [(a, b) for a, b, _ in REJECTED[:10]] + ACCEPTED[:10]
    first = [guard.reason(a, b) for a, b in pairs]
    second = [guard.reason(a, b) for a, b in pairs]
    unmemoised = [LookalikeGuard(memo_size=0).reason(a, b) for a, b in pairs]
    assert first == second == unmemoised


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_identical_text_is_always_accepted(text: str) -> None:
    assert LookalikeGuard().accepts(text, text)
    assert LookalikeGuard.compare(analyse(text), analyse(text)) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_guard_never_crashes_and_is_symmetric(a: str, b: str) -> None:
    guard = LookalikeGuard()
    assert (guard.reason(a, b) is None) == (guard.reason(b, a) is None)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9 ,.?'$%-]{0,80}", fullmatch=True))
def test_case_and_spacing_variants_of_the_same_text(text: str) -> None:
    # A copy differing only by surrounding whitespace must be accepted.
    assert LookalikeGuard().accepts(text, f"  {text}  ")
