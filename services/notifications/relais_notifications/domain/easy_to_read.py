"""A review of a citizen's text against the rules of easy-to-read French (« Facile à lire
et à comprendre », the European rules of Inclusion Europe, and the State's « langage
clair » guide) that a machine can check: short sentences, everyday words, no
abbreviation left unexplained. It does not replace a reader (the rules on structure,
tone and pictures are a person's to check); it catches the drift when a template is
changed. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A sentence longer than this is two ideas: the easy-to-read rules ask for one per sentence.
MAX_WORDS = 15
# Administrative words with an everyday equivalent (what to write instead).
HARD_WORDS = {
    "suite favorable": "accepter",
    "susmentionné": "dit plus haut",
    "ci-joint": "avec ce message",
    "afférent": "qui concerne",
    "nonobstant": "malgré",
    "dématérialis": "en ligne",
    "à l'effet de": "pour",
    "en vue de": "pour",
    "subséquemment": "ensuite",
    "préalablement": "avant",
    "pièce justificative": "document",
    "pièces justificatives": "documents",
    "malheureusement": "(à retirer)",
    "RDV": "rendez-vous",
}
# Abbreviations a citizen knows (the operators' own names among them).
KNOWN_ABBREVIATIONS = frozenset({"CAF", "CPAM", "MSA", "ANTS", "CNAV", "SMS", "DGFIP", "DGFiP"})
_URL = re.compile(r"https?://\S+")
_CODE = re.compile(r"\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{2}\b")
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n")
_ABBREVIATION = re.compile(r"\b[A-Z][A-Za-z]*[A-Z]\b")


def review(text: str, *, quoted: Iterable[str | None] = ()) -> list[str]:
    """What breaks the rules in `text`, each said in a sentence (empty: nothing found).
    `quoted`: the operator's own words inside it (its message, a place, documents),
    which are theirs and not reviewed."""
    for theirs in quoted:
        if theirs:
            text = text.replace(theirs, " ")
    text = _CODE.sub(" ", _URL.sub(" ", text))
    problems: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        words = sentence.split()
        if len(words) > MAX_WORDS:
            problems.append(f"phrase de {len(words)} mots (au plus {MAX_WORDS}) : « {sentence} »")
    lowered = text.lower()
    for word, instead in HARD_WORDS.items():
        if (word in text) if word.isupper() else (word.lower() in lowered):
            problems.append(f"mot difficile « {word} » : écrire plutôt « {instead} »")
    for abbreviation in sorted(set(_ABBREVIATION.findall(text)) - KNOWN_ABBREVIATIONS):
        if abbreviation.isupper() and abbreviation not in HARD_WORDS:
            problems.append(f"sigle « {abbreviation} » non expliqué")
    return problems
