"""The data of the events the referral service publishes, built from the domain.
What goes on `referrals` carries no personal data but what the notifications service
needs to tell the citizen of a step (the recipient and the status link, on routing,
information requests, rejections and answers); what goes to an operator's inbox carries
only what the procedure needs, its personal part sealed for that operator, and never
the recipient or the link."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relais_referral.domain import status_link as links
from relais_referral.domain.catalogue import Procedure
from relais_referral.domain.model import Citizen, Referral, Site, Visit


def _time(at: datetime) -> str:
    return at.isoformat()


def lifecycle(referral: Referral, at: datetime, **extra: Any) -> dict[str, Any]:
    """Base fields of every event on `referrals`, plus the event's own."""
    data: dict[str, Any] = {
        "referral_id": referral.referral_id,
        "visit_id": referral.visit_id,
        "operator": referral.operator,
        "procedure": referral.procedure,
        "site_id": referral.site_id,
        "adviser_id": referral.adviser_id,
        "status": referral.status.value,
        "occurred_at": _time(at),
    }
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


def visit_opened(visit: Visit) -> dict[str, Any]:
    return {"visit_id": visit.visit_id, "site_id": visit.site_id, "adviser_id": visit.adviser_id,
            "channel": visit.channel, "opened_at": _time(visit.opened_at)}


def requested(referral: Referral) -> dict[str, Any]:
    return lifecycle(referral, referral.requested_at,
                     supersedes_referral_id=referral.supersedes_referral_id)


def routed(referral: Referral, at: datetime, inbox_topic: str, recipient: dict[str, Any] | None = None,
           status_link: dict[str, str] | None = None) -> dict[str, Any]:
    """The `referrals` copy: with whom to tell and the link, for the "sent" message."""
    assert referral.due_at is not None
    return lifecycle(referral, at, due_at=_time(referral.due_at), inbox_topic=inbox_topic,
                     recipient=recipient, status_link=status_link)


def status_link(public_url: str, code: str) -> dict[str, str]:
    """The citizen's link as the events carry it: the page's address and the code alone,
    grouped (`public_url`: where citizens reach the service, no trailing slash)."""
    grouped = links.grouped(code)
    return {"url": f"{public_url.rstrip('/')}/suivi/{grouped}", "code": grouped}


def routed_to_inbox(referral: Referral, at: datetime, site: Site, adviser_name: str,
                    procedure: Procedure, personal_data: str) -> dict[str, Any]:
    """`personal_data` is `personal_routed(...)` sealed for the operator."""
    assert referral.due_at is not None
    data = lifecycle(referral, at, due_at=_time(referral.due_at))
    data["site"] = {"site_id": site.site_id, "name": site.name, "kind": site.kind,
                    "postcode": site.postcode, "city": site.city}
    data["adviser"] = {"adviser_id": referral.adviser_id, "display_name": adviser_name}
    data["consent"] = {"given_at": _time(referral.consent_given_at),
                       "scope": f"Traitement de la démarche {procedure.label}",
                       "given_to": referral.operator}
    data["personal_data"] = personal_data
    return data


def personal_routed(referral: Referral, citizen: Citizen, procedure: Procedure) -> dict[str, Any]:
    """What only the operator may read (`schemas/personal/referral.routed.v1.json`)."""
    return {"referral_id": referral.referral_id, "summary": referral.summary,
            "citizen": citizen_for(citizen, procedure)}


def citizen_for(citizen: Citizen, procedure: Procedure) -> dict[str, Any]:
    """Only the identity and contact fields the procedure needs."""
    available: dict[str, Any] = {
        "given_name": citizen.given_name,
        "family_name": citizen.family_name,
        "birth_date": citizen.birth_date.isoformat() if citizen.birth_date else None,
        "email": citizen.email,
        "phone": citizen.phone,
        "postal_address": vars(citizen.postal_address) if citizen.postal_address else None,
    }
    return {k: v for k, v in available.items() if k in procedure.citizen_fields and v is not None}


# Whom an answer is for once the citizen's data was erased: nobody to notify.
ERASED_RECIPIENT = {"display_name": "Madame, Monsieur", "channel": "none"}


def recipient(citizen: Citizen | None) -> dict[str, Any]:
    """How the notifications service reaches the citizen: their channel and that
    channel's address only — and, for an SMS, the postal address when there is one, so
    that a message the telephone never received falls back to a letter."""
    if citizen is None:
        return dict(ERASED_RECIPIENT)
    data: dict[str, Any] = {"display_name": citizen.display_name, "channel": citizen.contact_channel}
    if citizen.contact_channel == "email":
        data["email"] = citizen.email
    elif citizen.contact_channel == "sms":
        data["phone"] = citizen.phone
        if citizen.postal_address:
            data["postal_address"] = vars(citizen.postal_address)
    elif citizen.contact_channel == "letter" and citizen.postal_address:
        data["postal_address"] = vars(citizen.postal_address)
    return data


def info_provided_to_inbox(referral: Referral, at: datetime, personal_data: str) -> dict[str, Any]:
    """`personal_data` is `personal_info_provided(...)` sealed for the operator."""
    return {"referral_id": referral.referral_id, "operator": referral.operator,
            "provided_at": _time(at), "personal_data": personal_data}


def personal_info_provided(referral: Referral, message: str) -> dict[str, Any]:
    return {"referral_id": referral.referral_id, "message": message}


def cancelled_to_inbox(referral: Referral, at: datetime, reason: str | None) -> dict[str, Any]:
    data = {"referral_id": referral.referral_id, "operator": referral.operator, "cancelled_at": _time(at)}
    return {**data, "reason": reason} if reason else data


def reminder(referral: Referral, at: datetime) -> dict[str, Any]:
    assert referral.due_at is not None
    return {"referral_id": referral.referral_id, "operator": referral.operator,
            "due_at": _time(referral.due_at), "overdue_since": _time(at)}
