"""The printed letter: the recipient's address written the way La Poste reads it, and
the parts of a stored letter (its text is the single source: the template of the
outcome wrote it, address block first — see templates/_base.txt.j2).

La Poste's rules for a postal address in France (norme NF Z 10-011, « Rédiger une
adresse », La Poste): at most 6 lines, at most 38 characters (spaces included) per
line, no blank line, the last line the postcode then the town in CAPITALS, without
accents nor punctuation (a hyphen or an apostrophe becomes a space), aligned left."""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass

MAX_LINES = 6
MAX_CHARS = 38
_OBJECT = "Objet : "


class UnreadableLetter(ValueError):
    """The stored text is not laid out as a letter (no address block, date or subject)."""


@dataclass(frozen=True)
class LetterParts:
    """A stored letter split for printing. `address` holds the recipient's lines as
    written in the text (name, street…, postcode and town)."""

    address: tuple[str, ...]
    date_line: str  # "Le 18 mars 2025"
    subject: str
    body: str  # from "Bonjour …" to the signature, paragraphs separated by blank lines


def postal_lines(lines: list[str] | tuple[str, ...]) -> list[str]:
    """The address lines (name, street lines…, "postcode town") as La Poste wants them:
    each line ≤ 38 characters (a long street is wrapped at a space, a long name or
    town cut), the town in capitals without accents or punctuation, 6 lines at most
    (the street lines in excess are joined, then cut)."""
    cleaned = [" ".join(line.split()) for line in lines]
    cleaned = [line for line in cleaned if line]
    if len(cleaned) < 2:
        raise UnreadableLetter("an address needs a name and a town")
    name, *street, town = cleaned
    return [_cut(name), *_street_lines(street, room=MAX_LINES - 2), last_line(town)]


def place_lines(street: str | None, postcode: str, city: str) -> list[str]:
    """A place's address without a name (a site's, as sender): street lines, then
    "postcode TOWN", by the same rules."""
    return [*_street_lines([street] if street else [], room=MAX_LINES - 1), last_line(f"{postcode} {city}")]


def _street_lines(street: list[str], *, room: int) -> list[str]:
    """Street lines of ≤ 38 characters: a long line is cut at its commas first (« Résidence
    Les Tilleuls, bâtiment B, 12 avenue… » gives a line per part), then at spaces."""
    lines: list[str] = []
    for line in street:
        current = ""
        for part in (p.strip() for p in " ".join(line.split()).split(",")):
            if not part:
                continue
            joined = f"{current}, {part}" if current else part
            if len(joined) <= MAX_CHARS:
                current = joined
                continue
            if current:
                lines.append(current)
            *full, current = textwrap.wrap(part, MAX_CHARS, break_long_words=True, break_on_hyphens=False)
            lines += full
        if current:
            lines.append(current)
    if len(lines) > room:  # too many: keep the first lines, the last one gathers the rest
        lines = [*lines[:room - 1], " ".join(lines[room - 1:])]
    return [_cut(line) for line in lines]


def _cut(line: str) -> str:
    """A line too long cut at its last space within 38 characters (else at 38)."""
    if len(line) <= MAX_CHARS:
        return line
    head = line[:MAX_CHARS + 1].rsplit(" ", 1)[0]
    return (head if " " in line[:MAX_CHARS + 1] else line[:MAX_CHARS]).rstrip()


def last_line(town_line: str) -> str:
    """`33127 Martignas-sur-Jalle` → `33127 MARTIGNAS SUR JALLE`: capitals, no accent,
    no punctuation, one space between words, 38 characters at most."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", town_line) if not unicodedata.combining(c))
    plain = plain.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    words = re.sub(r"[^0-9A-Za-z]+", " ", plain).upper().split()
    return " ".join(words)[:MAX_CHARS].rstrip()


def parts(text: str) -> LetterParts:
    """Splits a stored letter: the sender line, the address block, the date, the
    subject, then the body. Raises UnreadableLetter if it is laid out otherwise."""
    blocks = [block.strip("\n") for block in re.split(r"\n\s*\n", text.strip("\n"))]
    try:
        date_at = next(i for i, block in enumerate(blocks) if re.fullmatch(r"Le [^\n]+", block))
    except StopIteration:
        raise UnreadableLetter("no date line") from None
    if date_at < 1 or date_at + 1 >= len(blocks) or not blocks[date_at + 1].startswith(_OBJECT):
        raise UnreadableLetter("no address block before the date, or no subject after it")
    address = tuple(blocks[date_at - 1].splitlines())
    subject = " ".join(blocks[date_at + 1][len(_OBJECT):].split())
    body = "\n\n".join(blocks[date_at + 2:])
    if len(address) < 2 or not body:
        raise UnreadableLetter("address block or body missing")
    return LetterParts(address, blocks[date_at], subject, body)


def paragraphs(body: str, *, width: int = 76) -> list[list[str]]:
    """The body as paragraphs of lines, for HTML: the lines the text's wrapping at
    `width` columns cut are joined again (a line is the rest of the one before when
    its first word did not fit there), the lines written as such are kept."""
    found: list[list[str]] = []
    for block in re.split(r"\n\s*\n", body):
        lines: list[str] = []
        previous = ""
        for raw in block.splitlines():
            line = raw.rstrip()
            if not line.strip():
                continue
            first_word = line.split()[0]
            if lines and len(previous) + 1 + len(first_word) > width:
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.strip())
            previous = line
        if lines:
            found.append(lines)
    return found


_STATUS_URL = re.compile(r"https?://[^\s]+/suivi/[0-9A-Z]{4}-?[0-9A-Z]{4}-?[0-9A-Z]{2}\b")


def status_url(body: str) -> str | None:
    """The citizen's status link the letter's text gives (the templates write it under
    « Pour suivre votre demande »), to print it as a QR code too; None without one."""
    found = _STATUS_URL.search(body)
    return found.group(0) if found else None


_STATUS_CODE = re.compile(r"\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{2}\b")


def status_code(body: str) -> str | None:
    """The code of the status link written in the letter (« K7QM-9TXH-2C »), if any."""
    found = _STATUS_CODE.search(body)
    return found.group(0) if found else None
