"""Short texts that fit one SMS: 160 characters of the GSM 03.38 alphabet. French
letters outside it (â, ê, î, ô, û, ç, œ…) are written without their accent so that
the message is not sent as UCS-2, where one SMS holds only 70 characters."""

from __future__ import annotations

import unicodedata

SMS_LIMIT = 160
ELLIPSIS = "..."

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each

_REPLACEMENTS = {
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "«": '"', "»": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u202f": " ",
    "œ": "oe", "Œ": "OE", "ç": "c",
}


def to_gsm7(text: str) -> str:
    out = []
    for char in text:
        if char in GSM7_BASIC or char in GSM7_EXTENDED:
            out.append(char)
        elif char in _REPLACEMENTS:
            out.append(_REPLACEMENTS[char])
        else:
            stripped = "".join(c for c in unicodedata.normalize("NFKD", char)
                               if not unicodedata.combining(c))
            out.append(stripped if stripped and all(c in GSM7_BASIC for c in stripped) else "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    """Septets used by `text` (already in the GSM alphabet)."""
    return sum(2 if c in GSM7_EXTENDED else 1 for c in text)


def fit(head: str, flexible: str, tail: str, limit: int = SMS_LIMIT) -> str:
    """`head + flexible + tail` in the GSM alphabet, `flexible` cut (with `...`) so that
    the whole fits in `limit` septets; `head` and `tail` are kept whole."""
    head, flexible, tail = to_gsm7(head), to_gsm7(" ".join(flexible.split())), to_gsm7(tail)
    room = limit - gsm7_length(head) - gsm7_length(tail)
    if gsm7_length(flexible) <= room:
        return head + flexible + tail
    room -= len(ELLIPSIS)
    cut = ""
    for char in flexible:
        if gsm7_length(cut + char) > room:
            break
        cut += char
    # Cut on a word boundary when one is close enough.
    if " " in cut and len(cut) - cut.rfind(" ") < 20:
        cut = cut[: cut.rfind(" ")]
    return head + cut.rstrip(" ,;:.") + ELLIPSIS + tail
