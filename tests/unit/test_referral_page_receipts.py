"""The adviser's referral page tells where each message to the person stands, from the
notifications service's events on the timeline: sent (and by which channel), received
by the telephone (an SMS's delivery report), failed — with the reason. The timeline
is rendered by the page's own template and labels, without a service."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from types import SimpleNamespace
from typing import Any

from relais_kit.auth import REFERRAL_ISSUER
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner
from relais_referral.entrypoints.ui.pages import make_pages
from relais_referral.entrypoints.ui.referral_rules import CHANNELS, EVENT_LABELS

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
LOST = "le SMS n'est pas arrivé sur le téléphone de la personne (éteint, hors réseau ou numéro hors service)"
OPTED_OUT = "la personne a demandé à ne plus recevoir de SMS (STOP)"


def entry(event: str, minutes: int, **detail: Any) -> dict[str, Any]:
    return {"event": event, "at": T0 + timedelta(minutes=minutes), "actor": "notifications", "detail": detail}


def timeline(*entries: dict[str, Any]) -> list[str]:
    """Each entry of the rendered timeline, as its text."""
    pages = make_pages(TokenSigner(FixedKeys(TokenKeySet.of(new_key("k1"))), REFERRAL_ISSUER), production=False)
    view = SimpleNamespace(timeline=list(entries), seq=len(entries),
                           referral=SimpleNamespace(referral_id="3f2c1d5e-8a4b-4c1e-9f00-2a7d7b1e0c11"))
    module = pages.env.get_template("ui/_referral.html.j2").make_module(vars={
        "v": view, "event_labels": EVENT_LABELS, "notify_channels": CHANNELS, "actor": lambda a: "Relais",
        "reason_codes": {}, "answer_outcomes": {}, "close_outcomes": {}})
    html = str(module.timeline())  # type: ignore[attr-defined]
    items = re.findall(r"<li [^>]*>(.*?)</li>", html, re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", item)).split()) for item in items]


def test_an_sms_sent_then_received_by_the_telephone():
    sent, received = timeline(entry("notification.sent", 0, channel="sms", recipient="citizen"),
                              entry("notification.delivered", 1, channel="sms", recipient="citizen"))
    assert sent.startswith("Message envoyé à la personne") and sent.endswith("par SMS")
    assert received.startswith("SMS reçu par la personne") and received.endswith("par SMS")


def test_a_failed_message_says_why():
    lost, stopped, letter = timeline(
        entry("notification.failed", 0, channel="sms", recipient="citizen", reason=LOST),
        entry("notification.failed", 5, channel="sms", recipient="citizen", reason=OPTED_OUT),
        entry("notification.sent", 6, channel="letter", recipient="citizen"))
    assert lost.startswith("La personne n'a pas pu être informée")
    assert "par SMS" in lost and lost.endswith(f"Motif : {LOST}")
    assert stopped.endswith(f"Motif : {OPTED_OUT}")
    assert "Motif" not in letter and "par courrier" in letter


def test_a_failure_without_a_reason_says_no_motif():
    [failed] = timeline(entry("notification.failed", 0, channel="email", recipient="citizen"))
    assert failed.endswith("par courriel") and "Motif" not in failed
