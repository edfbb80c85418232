"""Finding a referral (issue #12 item 5): what the search box understands, who may
search by name, the keyed index of the starts of names, and the letters a page may
print (item 7). No I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from relais_kit.vault import FileKeyRing, Vault, new_key_set, write_key_file
from relais_referral.domain import identity
from relais_referral.domain.model import Citizen
from relais_referral.service_layer.letters import letter_ids
from relais_referral.service_layer.search import Filters, Searched, understand

UUID = "3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"


@pytest.mark.parametrize(("typed", "expected"), [
    ("3f2a", Searched(reference="3f2a", operator_reference="3f2a")),
    (UUID.upper(), Searched(reference=UUID, operator_reference=UUID.upper())),
    ("CNAM-2026-77Q", Searched(operator_reference="CNAM-2026-77Q")),
    # made of hexadecimal digits: the operator's reference, or the start of ours
    ("CAF-2026-B6D91E3C", Searched(reference="caf-2026-b6d91e3c", operator_reference="CAF-2026-B6D91E3C")),
    ("Dupont", Searched(names=("dupont",))),
    ("nadia DUP", Searched(names=("nadia", "dup"))),
    ("Élodie Le Gall-Hervé", Searched(names=("elodie", "le", "gall", "herve"))),
    ("Jeanne d'Arc", Searched(names=("jeanne", "arc"))),  # a single letter is not indexed: left out
    ("Abbe", Searched(reference="abbe", names=("abbe",))),  # hexadecimal letters: a name, or our reference
    ("", Searched()),
])
def test_the_search_box_understands_names_and_both_references(typed: str, expected: Searched) -> None:
    assert understand(typed) == expected


@pytest.mark.parametrize("typed", ["zz'--", "dupont@example.fr", "%", "a", "x" * 101, "12 rue des Lilas"])
def test_what_is_not_understood_is_said_not_dropped(typed: str) -> None:
    searched = understand(typed)
    assert searched.not_understood and not (searched.names or searched.reference or searched.operator_reference)


def test_the_former_reference_field_still_works_and_pages_keep_the_search() -> None:
    filters = Filters.parse({"reference": "3F2A", "page": "2"})
    assert filters.searched.reference == "3f2a" and filters.recherche == "3F2A"
    assert filters.query(page=3) == {"recherche": "3F2A", "page": "3"}
    assert Filters.parse({"recherche": "Dupont", "reference": "3f2a"}).searched.names == ("dupont",)


def test_names_are_for_advisers_and_supervisors_ops_get_references_only() -> None:
    by_name = Filters.parse({"recherche": "Dupont"})
    assert by_name.for_role("adviser").names == ("dupont",)
    assert by_name.for_role("supervisor").names == ("dupont",)
    refused = by_name.for_role("ops")
    assert refused.names == () and "réservée aux conseillers" in refused.not_understood
    ambiguous = Filters.parse({"recherche": "cafe"}).for_role("ops")  # hexadecimal: still our reference
    assert ambiguous == Searched(reference="cafe")
    assert Filters.parse({"recherche": "CAF-2026-B6D91E3C"}).for_role("ops").operator_reference


def test_every_start_of_every_word_of_the_names_is_indexed_from_two_letters() -> None:
    citizen = Citizen("Jean-Éric", "Dupont", "letter")
    prefixes = identity.name_prefixes(citizen)
    assert {"du", "dup", "dupont", "je", "jean", "er", "eric"} <= set(prefixes)
    assert "d" not in prefixes and "dupontx" not in prefixes
    long = identity.name_prefixes(Citizen("A", "Wolfeschlegelsteinhausenbergerdorff", "letter"))
    assert max(map(len, long)) == identity.LONGEST_PREFIX
    assert identity.searched_prefix("wolfeschlegelsteinhausenbergerdorff") in long


def test_the_name_index_matches_what_a_search_hashes_and_holds_no_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_key_file(path, new_key_set())
    vault = Vault(FileKeyRing(path, recheck_s=0))
    nadia = Citizen("Nadia", "Dupont", "letter")
    stored = {vault.blind_index(identity.NAME_PREFIX, p) for p in identity.name_prefixes(nadia)}
    for typed in ("dup", "DUPONT", "nadia dup", "Nad"):
        searched = understand(typed)
        assert {vault.blind_index(identity.NAME_PREFIX, w) for w in searched.names} <= stored, typed
    assert vault.blind_index(identity.NAME_PREFIX, "durand") not in stored
    assert not any("dup" in h or "nadia" in h for h in stored)
    assert vault.blind_index(identity.OPERATOR_REFERENCE, "caf-2026-b6d91e3c") == \
        vault.blind_index(identity.OPERATOR_REFERENCE, "CAF-2026-B6D91E3C")


def test_a_page_prints_only_the_letters_its_timeline_names() -> None:
    timeline = [
        {"event": "answered", "detail": {"outcome": "accepted"}},
        {"event": "notification.sent", "detail": {"channel": "email", "notification_id": "e-mail"}},
        {"event": "notification.sent", "detail": {"channel": "letter", "notification_id": "d1"}},
        {"event": "notification.sent", "detail": {"channel": "letter"}},  # noted before item 7
    ]
    assert letter_ids(timeline) == ["d1"]


def test_a_notifications_service_that_does_not_answer_is_said_down() -> None:
    import asyncio
    import socket

    from relais_referral.adapters import notifications_api

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(notifications_api.LetterUnavailable) as raised:
        asyncio.run(notifications_api.letter(f"http://127.0.0.1:{port}", "token", "d1", timeout_s=2))
    assert raised.value.why == "down"
