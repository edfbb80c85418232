"""Replies from telephones (Kannel's MO messages): whether a text asks to stop the
SMS, and the number in one form (E.164) so that the opt-out matches the number the
platform sends to, however the operator wrote it. Pure functions, unit-tested."""

from __future__ import annotations

import re
import unicodedata

# What a French telephone user types to stop SMS (the operators' usual words).
STOP_WORDS = frozenset({"stop", "arret", "stop sms", "desinscrire", "desinscription"})
OPTED_OUT_REASON = "la personne a demandé à ne plus recevoir de SMS"


def fold(text: str) -> str:
    """Case, accents, punctuation and spacing folded: ' Arrêt. ' -> 'arret'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", letters).split())


def is_stop(text: str) -> bool:
    return fold(text) in STOP_WORDS


def e164(number: str) -> str | None:
    """The number as +<digits> (French national numbers 0X... become +33X...); None
    when it is not a telephone number (an alphanumeric sender, for instance)."""
    compact = re.sub(r"[\s.\-()/]", "", number)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if re.fullmatch(r"0[1-9]\d{8}", compact):
        compact = "+33" + compact[1:]
    elif re.fullmatch(r"33[1-9]\d{8}", compact):
        compact = "+" + compact
    return compact if re.fullmatch(r"\+[1-9]\d{6,14}", compact) else None
