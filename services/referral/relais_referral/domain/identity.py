"""What a citizen's records are found by without their identity stored in clear: the
texts the blind indexes are computed from (`Vault.blind_index`, which also folds case,
accents and spacing). The same person typed twice, at two counters, gives the same
texts. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from relais_kit.vault import normalise
from relais_referral.domain.model import Citizen

IDENTITY = "identity"
EMAIL = "email"
PHONE = "phone"
_NAME_SEPARATORS = re.compile(r"[-'’‐‑_.]+")
_NOT_DIGIT = re.compile(r"[^0-9]")


def name_key(name: str) -> str:
    """Jean-Pierre, Jean Pierre and « jean  pierre » are one name; d'Arc and d Arc too."""
    return " ".join(_NAME_SEPARATORS.sub(" ", name).split())


def identity_key(family_name: str, given_name: str, birth_date: date | None) -> str:
    """Family name, given name, birth date (empty when not known: then only a search
    without a birth date finds the person)."""
    born = birth_date.isoformat() if birth_date else ""
    return f"{name_key(family_name)}|{name_key(given_name)}|{born}"


def email_key(email: str) -> str:
    return email.strip()


def phone_key(phone: str) -> str:
    """06 12 34 56 78, 06.12.34.56.78, +33 6 12 34 56 78 and 0033 6 12 34 56 78 are one
    number (French numbers in their national form, others as +<country>…)."""
    raw = phone.strip()
    digits = _NOT_DIGIT.sub("", raw)
    if raw.startswith("+"):
        international = digits
    elif digits.startswith("00"):
        international = digits[2:]
    else:
        return digits
    return f"0{international[2:]}" if international.startswith("33") else f"+{international}"


@dataclass(frozen=True)
class LookupKeys:
    """The texts a visit is indexed under: (kind, text) pairs."""

    identity: tuple[str, str]
    contacts: tuple[tuple[str, str], ...]


def lookup_keys(citizen: Citizen) -> LookupKeys:
    contacts: list[tuple[str, str]] = []
    if citizen.email:
        contacts.append((EMAIL, email_key(citizen.email)))
    if citizen.phone:
        contacts.append((PHONE, phone_key(citizen.phone)))
    return LookupKeys((IDENTITY, identity_key(citizen.family_name, citizen.given_name, citizen.birth_date)),
                      tuple(contacts))


# Finding a citizen by the start of a name, without the name in clear: each word of the
# family and given names is indexed by its starts of 2 to 20 letters (folded as the vault
# folds), each a keyed hash. A search for « dup » then matches the stored hash of « du p »…
# of Dupont without the database ever holding a name; the cost is a few hashes a visit.
NAME_PREFIX = "name-prefix"
OPERATOR_REFERENCE = "operator-reference"
SHORTEST_PREFIX, LONGEST_PREFIX = 2, 20


def name_words(text: str) -> list[str]:
    """The words of a name as the index compares them (case, accents, hyphens folded)."""
    return normalise(name_key(text)).split()


def name_prefixes(citizen: Citizen) -> list[str]:
    """Every start of every word of the citizen's names that a search may type."""
    found: set[str] = set()
    for word in name_words(citizen.family_name) + name_words(citizen.given_name):
        word = word[:LONGEST_PREFIX]
        found.update(word[:n] for n in range(SHORTEST_PREFIX, len(word) + 1))
    return sorted(found)


def searched_prefix(word: str) -> str:
    """A typed word, as its indexed start (words longer than the index are cut)."""
    return word[:LONGEST_PREFIX]
