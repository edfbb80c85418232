"""The letter as a PDF (issue #13 item 2), from the notifications service on a real
PostgreSQL and the real broker: the PDF of one letter (A4, the address in La Poste's
order, the site as sender, the letter's text), and a site's letters of the day in one
PDF, for the readers the text route allows only, every read audited."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pypdf
import pytest
import pytest_asyncio

from relais_kit.embedded import free_port
from relais_kit.runtime import until_ready
from relais_notifications.app import create_app
from relais_notifications.domain.french import PARIS
from relais_notifications.settings import NotificationsSettings
from tests.integration.test_notifications_privacy import (
    AGEN,
    AGEN_BUS,
    MARTIGNAS,
    MERIGNAC,
    OPS,
    Service,
    _sites_known,
    adviser,
    answered,
    site,
    supervisor,
    token,
)
from tests.support import eventually, produce
from tests.tokens_support import JWKS_URL

pytestmark = pytest.mark.asyncio(loop_scope="module")

A4 = (595, 842)
AGEN_SITE = {**site(AGEN, "47"), "name": "France Services Agen Léon-Blum",
             "address": {"street": "1 place du Docteur-Pierre-Esquirol", "postcode": "47000", "city": "Agen"}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def svc(module_database_url: str, kafka_bootstrap: str,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    spool: Path = tmp_path_factory.mktemp("sms")
    settings = NotificationsSettings(
        DATABASE_URL=module_database_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, RELAIS_TOKEN_JWKS_URL=JWKS_URL,
        RELAIS_SMTP_PORT=free_port(), RELAIS_SMTP_TIMEOUT_S=5, RELAIS_SMS_SPOOL=spool,
        RELAIS_NOTIFICATIONS_POLL_S=0.5)  # type: ignore[call-arg]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await until_ready(app)
        db = await asyncpg.connect(module_database_url)
        try:
            for data in (AGEN_SITE, site(AGEN_BUS, "47", AGEN), site(MERIGNAC, "33"), site(MARTIGNAS, "33", MERIGNAC)):
                await produce(kafka_bootstrap, "sites", "site.upserted", data, subject=data["site_id"],
                              source="/relais/sites")
            await eventually(lambda: _sites_known(db, [AGEN, AGEN_BUS, MERIGNAC, MARTIGNAS]), timeout=45.0,
                             what="the sites to reach the view")
            await eventually(lambda: db.fetchval("SELECT name IS NOT NULL FROM notifications.sites"
                                                 " WHERE site_id = $1", AGEN), timeout=45.0, what="the site's name")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://notifications") as client:
                yield Service(app, client, db, kafka_bootstrap, module_database_url)
        finally:
            await db.close()


def pages_of(response: httpx.Response) -> list[pypdf.PageObject]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"] == "no-store"
    return list(pypdf.PdfReader(io.BytesIO(response.content)).pages)


def lines_of(page: pypdf.PageObject) -> list[str]:
    return [" ".join(line.split()) for line in page.extract_text().splitlines()]


async def test_a_letter_prints_as_an_a4_pdf_with_the_address_in_la_postes_order(svc: Service) -> None:
    referral = await svc.answer(answered(AGEN, "letter", name="Mme Élodie Dupont",
                                         street="Résidence Les Tilleuls, bâtiment B, 12 avenue de la Libération",
                                         to_citizen="Votre prime d'activité a été recalculée."))
    letter_id = (await svc.rows(referral))[0]["id"]
    agen = adviser(AGEN)
    response = await svc.client.get(f"/api/v1/notifications/{letter_id}/letter.pdf", headers=token(agen))
    (page,) = pages_of(response)
    assert response.headers["content-disposition"] == f'inline; filename="courrier-{str(letter_id)[:8]}.pdf"'
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == A4
    lines = lines_of(page)
    address = ["Mme Élodie Dupont", "Résidence Les Tilleuls, bâtiment B", "12 avenue de la Libération",
               "47000 AGEN"]
    at = lines.index(address[0])
    assert lines[at:at + len(address)] == address
    assert all(len(line) <= 38 for line in address)
    # The sender: the site, from the sites view; the State's identity as text.
    assert {"France Services Agen Léon-Blum", "1 place du Docteur-Pierre-Esquirol", "RÉPUBLIQUE", "FRANÇAISE",
            "Liberté", "Égalité", "Fraternité"} <= set(lines)
    flat = " ".join(lines)
    assert "Objet : La CAF a répondu à votre demande" in flat
    assert "Votre prime d'activité a été recalculée." in flat
    assert await svc.audit(agen) == [("adviser", "letter", referral, str(letter_id))]


async def test_the_pdf_is_refused_as_the_text_is(svc: Service) -> None:
    referral = await svc.answer(answered(AGEN, "letter"))
    letter_id, screen_id = [r["id"] for r in await svc.rows(referral)]
    martignas, sup33 = adviser(MARTIGNAS), supervisor("33")
    for reader, delivery in ((martignas, letter_id), (sup33, letter_id), (adviser(AGEN), screen_id),
                             (martignas, uuid.uuid4())):
        refused = await svc.client.get(f"/api/v1/notifications/{delivery}/letter.pdf", headers=token(reader))
        assert refused.status_code == 404 and refused.json() == {"detail": "no letter with this id"}
    assert (await svc.client.get(f"/api/v1/notifications/{letter_id}/letter.pdf")).status_code == 401
    assert await svc.audit(martignas) == [] and await svc.audit(sup33) == []
    assert len(pages_of(await svc.client.get(f"/api/v1/notifications/{letter_id}/letter.pdf",
                                             headers=token(OPS)))) == 1


async def test_a_sites_letters_of_the_day_print_in_one_pdf_one_page_each(svc: Service) -> None:
    names = [f"M. Karim Benali {uuid.uuid4().hex[:4]}", f"Mme Odile Roussel {uuid.uuid4().hex[:4]}"]
    referrals = [await svc.answer(answered(AGEN, "letter", name=name)) for name in names]
    await svc.answer(answered(AGEN, "sms"))  # not a letter
    at_martignas = await svc.answer(answered(MARTIGNAS, "letter", name="Mme Hors Périmètre"))
    today = datetime.now(PARIS).date()
    agen, martignas = adviser(AGEN), adviser(MARTIGNAS)

    response = await svc.client.get("/api/v1/notifications/letters.pdf",
                                    params={"site_id": AGEN, "date": today.isoformat()}, headers=token(agen))
    pages = pages_of(response)
    assert response.headers["content-disposition"] == f'inline; filename="courriers-{today.isoformat()}.pdf"'
    texts = [page.extract_text() for page in pages]
    assert len(texts) == len(set(texts))  # one page per letter
    for name in names:
        assert sum(name in text for text in texts) == 1
    assert not any("Hors Périmètre" in text for text in texts)
    audited = {(action, referral) for _, action, referral, _ in await svc.audit(agen)}
    assert {("letter", referral) for referral in referrals} <= audited
    assert at_martignas not in {referral for _, referral in audited}

    # Another site's adviser, another day, a forged site: nothing, and nothing audited.
    for reader, params in ((martignas, {"site_id": AGEN, "date": today.isoformat()}),
                           (agen, {"site_id": AGEN, "date": (today - timedelta(days=400)).isoformat()}),
                           (agen, {"site_id": MARTIGNAS, "date": today.isoformat()})):
        refused = await svc.client.get("/api/v1/notifications/letters.pdf", params=params, headers=token(reader))
        assert refused.status_code == 404, params
    assert await svc.audit(martignas) == []
    bad = await svc.client.get("/api/v1/notifications/letters.pdf", params={"site_id": "Agen'--", "date": "hier"},
                               headers=token(agen))
    assert bad.status_code == 422
