"""The words sent to the citizen and shown to the adviser. The citizen's mail and
letter come from one Jinja2 template per outcome (`templates/<outcome>.txt.j2`, read
from the package); the SMS is built here to fit one message."""

from __future__ import annotations

import re
import textwrap
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from relais_notifications.domain import sms
from relais_notifications.domain.french import (
    capitalised,
    date_fr,
    datetime_fr,
    of,
    operator_name,
    short_datetime_fr,
)
from relais_notifications.domain.model import Answer

WIDTH = 76

_templates = Environment(
    loader=PackageLoader("relais_notifications", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

_SUBJECTS = {
    "resolved": "{Operator} a répondu à votre demande",
    "appointment_offered": "{Operator} vous propose un rendez-vous",
    "documents_needed": "{Operator} a besoin de documents pour votre demande",
    "refused": "Réponse {operator_of} à votre demande",
    "other": "{Operator} a répondu à votre demande",
}


def subject(answer: Answer) -> str:
    return _SUBJECTS[answer.outcome].format(**_names(answer))


def citizen_text(answer: Answer, *, letter: bool = False) -> str:
    """The e-mail body, or with `letter` the printable letter (address block, date,
    subject line first, no 'do not reply' footer)."""
    context: dict[str, Any] = {
        **_names(answer),
        "display_name": answer.recipient.display_name,
        "message": answer.message_to_citizen,
        "letter": letter,
        "appointment": answer.appointment,
        "appointment_when": datetime_fr(answer.appointment.at) if answer.appointment else None,
        "documents": answer.documents,
        "address": answer.recipient.postal_address,
        "letter_date": date_fr(answer.occurred_at),
        "subject": subject(answer),
    }
    return _tidy(_templates.get_template(f"{answer.outcome}.txt.j2").render(context))


def sms_text(answer: Answer) -> str:
    """One SMS (160 GSM characters at most): who answered, the gist, who to ask."""
    who = capitalised(operator_name(answer.operator))
    tail = " Infos : votre conseiller France Services."
    if answer.outcome == "appointment_offered" and answer.appointment:
        head = f"{who} vous propose un RDV le {short_datetime_fr(answer.appointment.at)}, "
        return sms.fit(head, answer.appointment.place + ".", tail)
    if answer.outcome == "documents_needed":
        return sms.fit(f"{who} a besoin de : ", ", ".join(answer.documents) + ".", tail)
    head = {
        "resolved": f"{who} a répondu : votre démarche est réglée. ",
        "refused": f"{who} ne peut pas donner suite à votre demande. ",
    }.get(answer.outcome, f"{who} a répondu à votre demande. ")
    return sms.fit(head, answer.message_to_citizen, tail)


def adviser_text(answer: Answer) -> str:
    """What the adviser reads on their screen: the operator's note, as it came."""
    return answer.message_to_adviser


def _names(answer: Answer) -> dict[str, str]:
    name = operator_name(answer.operator)
    return {"operator": name, "Operator": capitalised(name), "operator_of": of(name)}


_BULLET = re.compile(r"^(\s+(?:[-*] )?)")


def _tidy(text: str) -> str:
    """Wraps long lines at 76 columns (keeping list indents) and collapses blank runs."""
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
