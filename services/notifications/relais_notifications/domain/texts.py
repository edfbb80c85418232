"""The words sent to the citizen and shown to the adviser. Every citizen text comes from
a Jinja2 template that an ops person can change without code (adapters/templates.py
loads the package's, overridden file by file from `RELAIS_NOTIFICATIONS_TEMPLATES`):

- `<wording>.txt.j2`: the e-mail and the printed letter (blocks `subject`, `body`,
  `advice`, extending `_base.txt.j2`);
- `sms/<wording>.txt.j2`: the SMS, whose one part that may be shortened to fit is
  marked with the `shortened` filter (`{{ message|shortened }}`).

`<wording>` is the moment (`sent`, `info_requested`, `rejected`) or the answer's outcome
(`resolved`, `appointment_offered`, `documents_needed`, `refused`, `other`)."""

from __future__ import annotations

import re
import textwrap
import uuid
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from relais_notifications.domain import sms
from relais_notifications.domain.french import (
    capitalised,
    date_fr,
    datetime_fr,
    of,
    operator_name,
    short_date_fr,
    short_datetime_fr,
)
from relais_notifications.domain.model import Appointment, PostalAddress, Recipient, StatusLink, Step
from relais_notifications.domain.sites import SiteState

WIDTH = 76
# An SMS is one message of 160 GSM characters; one that carries the status link may
# take two (concatenated: 2 × 153), the link being worth the second.
SMS_WITH_LINK_LIMIT = 306
WORDINGS = ("sent", "info_requested", "rejected", "resolved", "appointment_offered", "documents_needed",
            "refused", "other")
# Marks the part of an SMS that may be shortened (the `shortened` filter).
_CUT_START, _CUT_END = "\x02", "\x03"


def shortened(text: object) -> str:
    """The `shortened` filter: marks its text as the part to cut if the SMS is too long."""
    clean = str(text).replace(_CUT_START, "").replace(_CUT_END, "")
    return f"{_CUT_START}{clean}{_CUT_END}"


class Wordings:
    """The texts of every moment, from the templates of `env` (which must have the
    `shortened` filter: adapters/templates.py)."""

    def __init__(self, env: Environment) -> None:
        self._env = env

    def subject(self, step: Step, site: SiteState | None = None) -> str:
        template = self._env.get_template(f"{step.wording}.txt.j2")
        context = template.new_context(_context(step, site, letter=False))
        return " ".join("".join(template.blocks["subject"](context)).split())

    def citizen_text(self, step: Step, *, letter: bool = False, site: SiteState | None = None) -> str:
        """The e-mail body, or with `letter` the printable letter (address block, date,
        subject line first, no 'do not reply' footer)."""
        context = _context(step, site, letter=letter)
        context["subject"] = self.subject(step, site)
        return _tidy(self._env.get_template(f"{step.wording}.txt.j2").render(context))

    def sms_text(self, step: Step, site: SiteState | None = None) -> str:
        """The SMS, in the GSM alphabet, its marked part shortened to fit."""
        rendered = self._env.get_template(f"sms/{step.wording}.txt.j2").render(_context(step, site, letter=False))
        rendered = " ".join(rendered.split())
        limit = SMS_WITH_LINK_LIMIT if step.status_link else sms.SMS_LIMIT
        head, start, rest = rendered.partition(_CUT_START)
        if not start:
            return sms.fit(rendered, "", "", limit) if sms.gsm7_length(sms.to_gsm7(rendered)) <= limit \
                else sms.fit("", rendered, "", limit)
        flexible, _, tail = rest.partition(_CUT_END)
        return sms.fit(head, flexible, tail.replace(_CUT_START, "").replace(_CUT_END, ""), limit)


def adviser_text(step: Step) -> str:
    """What the adviser reads on their screen: the operator's note, as it came."""
    return step.message_to_adviser or ""


def _context(step: Step, site: SiteState | None, *, letter: bool) -> dict[str, Any]:
    name = operator_name(step.operator)
    suggested = operator_name(step.suggested_operator) if step.suggested_operator else None
    return {
        "operator": name, "Operator": capitalised(name), "operator_of": of(name),
        "display_name": step.recipient.display_name,
        "moment": step.moment,
        "outcome": step.outcome,
        "message": step.message_to_citizen,
        "letter": letter,
        "appointment": step.appointment,
        "appointment_when": datetime_fr(step.appointment.at) if step.appointment else None,
        "appointment_short": short_datetime_fr(step.appointment.at) if step.appointment else None,
        "documents": step.documents,
        "due_date": date_fr(step.due_at) if step.due_at else None,
        "due_short": short_date_fr(step.due_at) if step.due_at else None,
        "suggested": suggested,
        "Suggested": capitalised(suggested) if suggested else None,
        "status_link": step.status_link,
        "site": site if site is not None and site.name else None,
        "address": step.recipient.postal_address,
        "letter_date": date_fr(step.occurred_at),
    }


_BULLET = re.compile(r"^(\s+(?:[-*] )?)")


def _tidy(text: str) -> str:
    """Wraps long lines at 76 columns (keeping list indents, never cutting a link) and
    collapses blank runs."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= WIDTH:
            lines.append(line)
            continue
        lead = _BULLET.match(line)
        indent = " " * len(lead.group(1)) if lead else ""
        lines += textwrap.wrap(line, WIDTH, subsequent_indent=indent,
                               break_long_words=False, break_on_hyphens=False)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


SAMPLE_SITE = SiteState("fs-agen", datetime(2026, 1, 1, tzinfo=UTC), department="47",
                        name="France Services d'Agen", street="1 place du Pin", postcode="47000", city="Agen")


def samples() -> list[Step]:
    """A step of every wording, once with every detail and once with none of the
    optional ones: what a template is tried on (adapters/templates.py, the tests)."""
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    full = dict(
        referral_id=uuid.UUID(int=1), visit_id=uuid.UUID(int=2), operator="caf", procedure="caf.prime-activite",
        site_id="fs-agen", adviser_id="adv-1", occurred_at=at,
        recipient=Recipient("Mme Dupont", "letter", phone="+33612345678",
                            postal_address=PostalAddress("12 rue des Lilas", "47000", "Agen")),
        message_to_citizen="Votre dossier est complet.", message_to_adviser="Dossier complet.",
        appointment=Appointment(at, "CAF d'Agen, 2 place du Marché"), documents=("Avis d'impôt 2025",),
        due_at=at, suggested_operator="france-travail", status_link=StatusLink(
            "https://france-services.example/suivi/K7QM-9TXH-2C", "K7QM-9TXH-2C"))
    found: list[Step] = []
    for wording in WORDINGS:
        moment = wording if wording in ("sent", "info_requested", "rejected") else "answered"
        outcome = wording if moment == "answered" else None
        said = {} if outcome else {"message_to_citizen": None, "message_to_adviser": None}
        found.append(Step(**{**full, **said}, moment=moment, outcome=outcome))  # type: ignore[arg-type]
        bare = {**full, **said, "appointment": full["appointment"] if wording == "appointment_offered" else None,
                "documents": full["documents"] if wording == "documents_needed" else (),
                "due_at": None, "suggested_operator": None, "status_link": None}
        found.append(Step(**bare, moment=moment, outcome=outcome))  # type: ignore[arg-type]
    return found


def operator_words(step: Step) -> list[str | None]:
    """What the operator wrote that a text quotes (not ours to review)."""
    return [step.message_to_citizen, step.appointment.place if step.appointment else None, *step.documents]
