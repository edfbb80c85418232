"""The referral service's personal data at rest, on a real PostgreSQL and the real
broker: a dump of its schema shows none of a citizen's identity, contact, summary,
questions or messages, while the pages and the API still show them; a citizen's
records are found by blind indexes, whatever the spelling (rows stored in clear before
encryption at rest: test_referral_sealing_upgrade.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from markupsafe import escape

from tests.referral_app import (
    citizen_visit,
    open_visit,
    operator_says,
    privacy_command,
    refer_visit,
    referral_api,
    signed_in,
    status_is,
)
from tests.support import dump_schema, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with referral_api(module_database_url, kafka_bootstrap) as client:
        yield client


async def test_a_dump_of_the_schema_shows_no_personal_data_the_pages_and_api_still_do(
        api: httpx.AsyncClient, module_database_url: str, kafka_bootstrap: str) -> None:
    given, family, born = "Zéphyrine", "Quintavalle", "1958-07-21"
    email, phone, street = "zephyrine.quintavalle@example.org", "06 98 76 54 32", "17 rue des Glycines"
    summary = "Madame Quintavalle ne perçoit plus son aide au logement depuis mars."
    question = "Merci de fournir le bail signé de l'appartement de la rue des Glycines."
    provided = "Bail transmis par courriel le 12 mars, avec la quittance."
    to_citizen, to_adviser = "Votre aide est rétablie à compter d'avril.", "Dossier ALG-47-998877 régularisé."
    place, case = "Agence CAF du quartier des Glycines", "ALG-47-998877"
    visit_id = await open_visit(api, citizen_visit(given, family, birth_date=born, email=email, phone=phone,
                                                   street=street, channel="letter"))
    referral_id = await refer_visit(api, visit_id, summary=summary)
    await operator_says(kafka_bootstrap, "operator.acknowledged", referral_id, case_reference=case)
    await operator_says(kafka_bootstrap, "operator.info_requested", referral_id, question=question)
    await eventually(lambda: status_is(api, referral_id, "info_requested"), what="info_requested")
    assert (await api.post(f"/api/v1/referrals/{referral_id}/info", json={"message": provided})).status_code == 200
    await operator_says(kafka_bootstrap, "operator.answered", referral_id, outcome="appointment_offered",
                        appointment={"at": "2026-12-02T10:00:00+01:00", "place": place},
                        message_to_citizen=to_citizen, message_to_adviser=to_adviser)
    body = await eventually(lambda: status_is(api, referral_id, "answered"), what="answered")

    dump = dump_schema(module_database_url, "referral")
    assert visit_id in dump and referral_id in dump  # the rows are there…
    for secret in (given, family, born, email, phone, "0698765432", street, summary, question, provided,
                   to_citizen, to_adviser, place, case):
        assert secret not in dump, f"{secret!r} is in clear in the dump"  # …their personal data is not

    details = {e["event"]: e["detail"] for e in body["timeline"]}  # the API reads them
    assert details["info_requested"]["question"] == question and details["acknowledged"]["case_reference"] == case
    assert details["answered"]["message_to_citizen"] == to_citizen
    assert details["answered"]["appointment"]["place"] == place
    async with signed_in(api) as web:  # the pages too
        referral_page = (await web.get(f"/demandes/{referral_id}")).text
        visit_page = (await web.get(f"/visites/{visit_id}")).text
    for shown in (summary, question, to_adviser, f"{given} {family}"):
        assert str(escape(shown)) in referral_page, shown
    for shown in (f"{given} {family}", email, phone, street, "21/07/1958"):
        assert str(escape(shown)) in visit_page, shown


async def test_a_citizen_is_found_by_blind_indexes_whatever_the_spelling(api: httpx.AsyncClient) -> None:
    first = await open_visit(api, citizen_visit("Jean-Éric", "Dupré-Laforêt", birth_date="1971-02-03",
                                                email="Jean.Eric.Dupre@Example.org", phone="+33 6 11 22 33 44"))
    again = await open_visit(api, citizen_visit("jean eric", "DUPRE LAFORET", birth_date="1971-02-03",
                                                phone="06.11.22.33.44", channel="sms"))
    homonym = await open_visit(api, citizen_visit("Jean-Éric", "Dupré-Laforêt", birth_date="1980-01-01",
                                                  channel="none"))
    referral_id = await refer_visit(api, first)

    code, out = await privacy_command(api, "find", "--by", "ops.test", "--family-name", "Dupre-Laforet",
                                      "--given-name", "Jean Eric", "--birth-date", "1971-02-03")
    assert code == 0 and listed(out) == {first, again}
    assert "Dupr" not in out and "Jean" not in out  # ids, dates, places and statuses: no identity
    code, out = await privacy_command(api, "find", "--by", "ops.test", "--email", " jean.eric.dupre@EXAMPLE.org ")
    assert code == 0 and listed(out) == {first} and referral_id in out and "caf.prime-activite" in out
    code, out = await privacy_command(api, "find", "--by", "ops.test", "--phone", "0611223344")
    assert code == 0 and listed(out) == {first, again}
    code, out = await privacy_command(api, "find", "--by", "ops.test", "--referral", referral_id)
    assert code == 0 and listed(out) == {first}
    code, out = await privacy_command(api, "find", "--by", "ops.test", "--visit", homonym)
    assert code == 0 and listed(out) == {homonym}
    code, out = await privacy_command(api, "find", "--by", "ops.test", "--email", "nobody@example.org")
    assert code == 1 and listed(out) == set()

    async with api.app.state.runtime.pool.acquire() as conn:  # type: ignore[attr-defined]
        indexes = await conn.fetch("SELECT identity_index, contact_index FROM visits WHERE visit_id = ANY($1::uuid[])",
                                   [first, again])
        requests = await conn.fetch("SELECT * FROM privacy_requests WHERE requested_by = 'ops.test'"
                                    " ORDER BY requested_at")
    assert indexes[0]["identity_index"] == indexes[1]["identity_index"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for row in indexes for i in [row["identity_index"],
                                                                            *row["contact_index"]])
    assert [(r["kind"], r["selector"]) for r in requests] == [
        ("find", "identity"), ("find", "email"), ("find", "phone"), ("find", "referral"), ("find", "visit"),
        ("find", "email")]
    assert sorted(str(v) for v in requests[0]["visit_ids"]) == sorted([first, again])
    assert json.loads(requests[0]["counts"]) == {"visits": 2, "referrals": 1}
    assert "Dupr" not in str([dict(r) for r in requests])


def listed(out: str) -> set[str]:
    return set(re.findall(r"^visit ([0-9a-f-]{36})", out, flags=re.MULTILINE))
