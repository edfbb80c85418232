"""The Kannel adapter's sendsms request and the meaning of Kannel's delivery reports."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from relais_notifications.adapters.kannel import (
    KannelSettings,
    KannelSmsGateway,
    coding,
    dlr_secret,
    sendsms_params,
)
from relais_notifications.adapters.ports import DeliveryError
from relais_notifications.service_layer.reports import MEANINGS

SETTINGS = KannelSettings(sendsms_url="http://kannel:13013/cgi-bin/sendsms", user="relais", password="pw",
                          sender="FranceSvcs", dlr_url="http://notifications:8002/kannel/dlr",
                          dlr_secret="s" * 24)
ID = uuid.UUID("0b6f3a4e-2c1d-4f5e-8a9b-1c2d3e4f5a6b")


def test_sendsms_params() -> None:
    params = sendsms_params(SETTINGS, notification_id=ID, to="+33612345678", text="RDV à 10h30")
    assert {k: params[k] for k in ("username", "password", "from", "to", "text", "charset", "coding", "dlr-mask")} \
        == {"username": "relais", "password": "pw", "from": "FranceSvcs", "to": "+33612345678",
            "text": "RDV à 10h30", "charset": "UTF-8", "coding": "0", "dlr-mask": "31"}
    callback = urlsplit(params["dlr-url"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == "http://notifications:8002/kannel/dlr"
    assert parse_qs(callback.query) == {"id": [str(ID)], "secret": [dlr_secret("s" * 24, ID)], "type": ["%d"]}
    # Kannel substitutes %d itself: it must reach it as such once the request is encoded.
    sent = httpx.Request("GET", SETTINGS.sendsms_url, params=params)
    assert parse_qs(sent.url.query.decode())["dlr-url"] == [params["dlr-url"]]


def test_secret_per_delivery() -> None:
    assert dlr_secret("k" * 24, ID) != dlr_secret("k" * 24, uuid.uuid4())
    assert dlr_secret("k" * 24, ID) != dlr_secret("j" * 24, ID)
    assert len(dlr_secret("k" * 24, ID)) == 32


def test_coding_gsm7_unless_a_character_is_outside_it() -> None:
    assert coding("Bonjour, votre RDV est à 10h30 € [x]") == 0
    assert coding("Привет") == 2


@pytest.mark.parametrize("sender", ["", "FranceServices", "France Svc"])
def test_sender_name_alphanumeric_11_at_most(sender: str) -> None:
    with pytest.raises(ValueError):
        KannelSmsGateway(KannelSettings(**{**SETTINGS.__dict__, "sender": sender}))


@pytest.mark.parametrize(("status", "permanent"), [(403, True), (400, True), (503, False)])
async def test_refusals_and_outages(status: int, permanent: bool) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text="Authorization failed for sendsms"))
    async with httpx.AsyncClient(transport=transport) as client:
        gateway = KannelSmsGateway(SETTINGS, client)
        with pytest.raises(DeliveryError) as raised:
            await gateway.send(notification_id=ID, to="+33612345678", text="x")
    assert raised.value.permanent is permanent
    assert "+336" not in raised.value.reason


async def test_accepted() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, text="0: Accepted for delivery")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        await KannelSmsGateway(SETTINGS, client).send(notification_id=ID, to="+33612345678", text="x")
    assert seen[0].url.params["to"] == "+33612345678"


async def test_gateway_unreachable_is_temporary() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
        with pytest.raises(DeliveryError) as raised:
            await KannelSmsGateway(SETTINGS, client).send(notification_id=ID, to="+33612345678", text="x")
    assert not raised.value.permanent


def test_report_meanings() -> None:
    assert {t: (m.report, m.final) for t, m in MEANINGS.items()} == {
        1: ("delivered", True), 2: ("failed", True), 4: ("buffered", False), 8: ("submitted", False),
        16: ("rejected", True)}
    assert MEANINGS[1].reason is None
    assert MEANINGS[2].reason and MEANINGS[16].reason
