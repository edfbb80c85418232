"""Letters as PDF (relais_kit.printing: WeasyPrint, A4, Marianne): one page per letter,
laid out for a window envelope (templates/print/letter.html.j2), signed by the France
Services site that wrote it, with the citizen's status link as a QR code when there is
one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from relais_kit.logs import log
from relais_kit.printing import pdf_from_html, qr_svg
from relais_notifications.adapters.store import PrintableLetter
from relais_notifications.domain import letter as layout

SENDER_FALLBACK = "France Services"

_templates = Environment(loader=PackageLoader("relais_notifications", "templates"), autoescape=True,
                         undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def sender(found: PrintableLetter) -> dict[str, Any]:
    """The site's name and address lines, as La Poste writes them; "France Services"
    alone while the site's address is not known here."""
    lines: list[str] = []
    if found.site_postcode and found.site_city:
        lines = layout.place_lines(found.site_street, found.site_postcode, found.site_city)
    name = found.site_name or SENDER_FALLBACK
    if found.site_name and "france services" not in found.site_name.lower():
        name = f"France Services — {found.site_name}"
    return {"name": name, "lines": lines}


def page(found: PrintableLetter, status_url: str | None = None) -> dict[str, Any]:
    """What the template prints of one letter."""
    assert found.text is not None, "an erased letter is not printed"
    parts = layout.parts(found.text)
    paragraphs = layout.paragraphs(parts.body)
    written = layout.status_url(parts.body)
    if written:  # the QR box below says it, with the code: not twice
        paragraphs = [p for p in paragraphs if not any(written in line for line in p)]
    status_url = status_url or written
    return {
        "sender": sender(found),
        "address": layout.postal_lines(parts.address),
        "date_line": parts.date_line,
        "subject": parts.subject,
        "paragraphs": paragraphs,
        "status_code": layout.status_code(parts.body),
        "status_url": status_url,
        # segno's markup (no text of the letter in it): safe to insert as is.
        "qr": Markup(qr_svg(status_url)) if status_url else "",  # noqa: S704
    }


def html(letters: Sequence[PrintableLetter], status_urls: Mapping[str, str] | None = None) -> str:
    """The HTML of these letters, one page each. A letter whose text is not laid out as
    a letter (it should not happen: the templates write it) is left out and logged."""
    pages = []
    for found in letters:
        try:
            pages.append(page(found, (status_urls or {}).get(str(found.referral_id))))
        except layout.UnreadableLetter as exc:
            log.warning("letter_unprintable", referral_id=str(found.referral_id), delivery_id=str(found.id),
                        why=str(exc))
    if not pages:
        raise layout.UnreadableLetter("no printable letter")
    return _templates.get_template("print/letter.html.j2").render(letters=pages)


def pdf(letters: Sequence[PrintableLetter], status_urls: Mapping[str, str] | None = None) -> bytes:
    return pdf_from_html(html(letters, status_urls))
