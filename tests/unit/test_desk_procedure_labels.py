"""The desk names procedures as the referral service's catalogue does (issue #12 item 6):
each service keeps its own words (no service imports another's code); this test keeps
them the same."""

from __future__ import annotations

from relais_desk.domain.forms import PROCEDURES
from relais_referral.domain.catalogue import load_catalogue


def test_the_desk_names_every_procedure_of_the_catalogue_with_the_catalogues_words() -> None:
    catalogue = {p.code: p.label for o in load_catalogue().operators.values() for p in o.procedures.values()}
    assert catalogue == PROCEDURES
    assert PROCEDURES["justice.casier-judiciaire"] == "Extrait de casier judiciaire"
