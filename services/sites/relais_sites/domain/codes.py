"""The closed vocabularies of the registry: kinds of site and operator codes
(`contract.md`), and the shapes of identifiers."""

from __future__ import annotations

import re
from enum import StrEnum


class SiteKind(StrEnum):
    FIXED = "fixed"                          # a counter in a town hall, a station, a sub-prefecture…
    POST_OFFICE = "post_office"              # France Services inside a post office
    MOBILE_PERMANENCE = "mobile_permanence"  # an adviser holding rotating permanences
    BUS = "bus"                              # a France Services bus


class Operator(StrEnum):
    LA_POSTE = "la-poste"
    CAF = "caf"
    FRANCE_TRAVAIL = "france-travail"
    CNAM = "cnam"
    CNAV = "cnav"
    MSA = "msa"
    DGFIP = "dgfip"
    ANTS = "ants"
    JUSTICE = "justice"
    CROUS = "crous"                          # experimental
    BANQUE_DE_FRANCE = "banque-de-france"    # experimental


KINDS: tuple[str, ...] = tuple(k.value for k in SiteKind)
OPERATOR_CODES: tuple[str, ...] = tuple(o.value for o in Operator)
NATIONAL_OPERATORS: tuple[str, ...] = OPERATOR_CODES[:9]
"""The nine national operators every France Services site guarantees."""

#: Sites that move from place to place: each slot of their schedule says where.
ITINERANT_KINDS = frozenset({SiteKind.MOBILE_PERMANENCE.value, SiteKind.BUS.value})
#: Sites a mobile permanence or a bus may depend on.
PARENT_KINDS = frozenset({SiteKind.FIXED.value, SiteKind.POST_OFFICE.value})

SITE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,80}$")
POSTCODE = re.compile(r"^[0-9]{5}$")
DEPARTMENT = re.compile(r"^(0[1-9]|[1-8][0-9]|9[0-5]|2[AB]|97[1-6])$")
CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

MAX_NAME = 200
MAX_STREET = 300
MAX_CITY = 120
MAX_PLACE = 120
MAX_SLOTS = 100
