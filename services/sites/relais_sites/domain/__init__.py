"""The site registry's model and rules. Pure: no I/O, no framework."""

from relais_sites.domain.model import (
    NATIONAL_OPERATORS,
    OPERATOR_CODES,
    Address,
    Operator,
    Site,
    SiteKind,
    SiteRecord,
    Slot,
)
from relais_sites.domain.rules import InvalidSite, Problem

__all__ = [
    "NATIONAL_OPERATORS",
    "OPERATOR_CODES",
    "Address",
    "InvalidSite",
    "Operator",
    "Problem",
    "Site",
    "SiteKind",
    "SiteRecord",
    "Slot",
]
