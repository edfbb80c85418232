"""The printed letter (notifications service): the address as La Poste reads it, the
stored letter split into its parts, and the PDF of one letter or of a day's letters."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pypdf
import pytest

from relais_notifications.adapters import letter_pdf
from relais_notifications.adapters.store import PrintableLetter
from relais_notifications.adapters.templates import wordings
from relais_notifications.domain.letter import (
    MAX_CHARS,
    UnreadableLetter,
    last_line,
    paragraphs,
    parts,
    place_lines,
    postal_lines,
)
from relais_notifications.domain.model import Step

WORDINGS = wordings()


def answer(**recipient: Any) -> Step:
    return Step.from_event_data({
        "referral_id": str(uuid.uuid4()), "visit_id": str(uuid.uuid4()), "operator": "caf",
        "procedure": "caf.prime-activite", "site_id": "agen-leon-blum-poste", "adviser_id": "adv-agen-0142",
        "status": "answered", "occurred_at": "2025-03-18T16:10:00+01:00", "outcome": "documents_needed",
        "documents": ["un avis d'imposition 2024",
                      "un justificatif de domicile de moins de trois mois, au nom de la personne"],
        "message_to_citizen": "Un conseiller de la CAF vous recevra pour revoir votre prime d'activité.",
        "message_to_adviser": "Dossier CAF-47-2025-000813.",
        "recipient": {"display_name": "Mme Élodie Dupont", "channel": "letter", "postal_address": {
            "street": "Résidence Les Tilleuls, bâtiment B, 12 avenue de la Libération", "postcode": "33127",
            "city": "Martignas-sur-Jalle"}, **recipient}})


def printable(text: str, **site: Any) -> PrintableLetter:
    return PrintableLetter(uuid.uuid4(), uuid.uuid4(), "agen-leon-blum-poste", datetime.now(UTC), text, None,
                           **site)


# --- La Poste's rules ---------------------------------------------------------------------------

def test_the_last_line_is_the_postcode_and_the_town_in_capitals_without_accents_or_punctuation() -> None:
    assert last_line("33127 Martignas-sur-Jalle") == "33127 MARTIGNAS SUR JALLE"
    assert last_line("42000 Saint-Étienne") == "42000 SAINT ETIENNE"
    assert last_line("76000  L'Œuvre") == "76000 L OEUVRE"


def test_an_address_has_six_lines_at_most_of_38_characters_at_most() -> None:
    lines = postal_lines(["Mme Élodie Dupont-Lefèvre de La Rochefoucauld-Liancourt",
                          "Résidence Les Tilleuls, bâtiment B, escalier 4, appartement 1203, "
                          "12 avenue de la Libération du Huit Mai Mille Neuf Cent Quarante-Cinq",
                          "33127 Martignas-sur-Jalle"])
    assert len(lines) <= 6
    assert all(len(line) <= MAX_CHARS for line in lines), lines
    assert lines[0] == "Mme Élodie Dupont-Lefèvre de La"  # cut at a space
    assert lines[-1] == "33127 MARTIGNAS SUR JALLE"


def test_a_long_street_is_cut_at_its_commas_first() -> None:
    assert postal_lines(["Mme Élodie Dupont", "Résidence Les Tilleuls, bâtiment B, 12 avenue de la Libération",
                         "33127 Martignas-sur-Jalle"]) == [
        "Mme Élodie Dupont", "Résidence Les Tilleuls, bâtiment B", "12 avenue de la Libération",
        "33127 MARTIGNAS SUR JALLE"]


def test_a_short_address_is_kept_as_it_is_but_the_town() -> None:
    assert postal_lines(["M. Karim Benali", "  4 rue   des Lilas ", "47000 Agen"]) == [
        "M. Karim Benali", "4 rue des Lilas", "47000 AGEN"]
    assert place_lines(None, "47000", "Agen") == ["47000 AGEN"]


def test_an_address_without_a_town_is_refused() -> None:
    with pytest.raises(UnreadableLetter):
        postal_lines(["M. Karim Benali"])


# --- the stored letter ---------------------------------------------------------------------------

def test_a_stored_letter_splits_into_address_date_subject_and_body() -> None:
    found = parts(WORDINGS.citizen_text(answer(), letter=True))
    assert found.address == ("Mme Élodie Dupont", "Résidence Les Tilleuls, bâtiment B, 12 avenue de la Libération",
                             "33127 Martignas-sur-Jalle")
    assert found.date_line == "Le 18 mars 2025"
    assert found.subject == "La CAF a besoin de documents"
    assert found.body.startswith("Bonjour Mme Élodie Dupont,")
    assert found.body.rstrip().endswith("Votre conseiller France Services")


def test_the_body_joins_the_lines_its_wrapping_cut_and_keeps_the_others() -> None:
    found = paragraphs(parts(WORDINGS.citizen_text(answer(), letter=True)).body)
    assert ["- un avis d'imposition 2024",
            "- un justificatif de domicile de moins de trois mois, au nom de la personne"] in found
    # Short sentences, one a line, stay lines of their own.
    assert ["La CAF a bien reçu votre demande.", "Pour la traiter, la CAF a besoin de ces documents :"] in found


def test_a_text_that_is_not_a_letter_is_refused() -> None:
    with pytest.raises(UnreadableLetter):
        parts("Bonjour,\n\nVotre démarche est réglée.\n")


# --- the PDF -------------------------------------------------------------------------------------

def pdf_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def test_a_letter_prints_on_one_a4_page_with_the_sender_address_and_text() -> None:
    letter = printable(WORDINGS.citizen_text(answer(), letter=True), site_name="France Services d'Agen",
                       site_street="1 place Léon-Blum", site_postcode="47000", site_city="Agen")
    pdf = letter_pdf.pdf([letter])
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)
    (text,) = pdf_text(pdf)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    address = ["Mme Élodie Dupont", "Résidence Les Tilleuls, bâtiment B", "12 avenue de la Libération",
               "33127 MARTIGNAS SUR JALLE"]
    at = lines.index(address[0])
    assert lines[at:at + 4] == address
    assert {"RÉPUBLIQUE", "FRANÇAISE", "France Services d'Agen", "1 place Léon-Blum", "47000 AGEN",
            "Le 18 mars 2025"} <= set(lines)
    flat = " ".join(text.split())
    assert "Objet : La CAF a besoin de documents Bonjour" in flat
    assert "Un conseiller de la CAF vous recevra pour revoir votre prime d'activité." in flat
    assert "scannez" not in flat  # no status link yet, no QR


def test_a_status_link_prints_as_a_qr_code_with_the_short_link() -> None:
    letter = printable(WORDINGS.citizen_text(answer(), letter=True))
    html = letter_pdf.html([letter], {str(letter.referral_id): "https://relais.example/s/Xk3P9qLm"})
    assert "<svg" in html and "https://relais.example/s/Xk3P9qLm" in html
    assert "France Services" in html  # the sender while the site's name is unknown here


def test_the_letters_of_a_day_print_one_page_each() -> None:
    letters = [printable(WORDINGS.citizen_text(answer(display_name=name), letter=True))
               for name in ("Mme Élodie Dupont", "M. Karim Benali")]
    pages = pdf_text(letter_pdf.pdf(letters))
    assert len(pages) == 2
    assert "Mme Élodie Dupont" in pages[0] and "M. Karim Benali" in pages[1]


def test_names_are_escaped_in_the_printed_html() -> None:
    letter = printable(WORDINGS.citizen_text(answer(display_name="<b>Mme</b> Dupont"), letter=True))
    assert "&lt;b&gt;Mme&lt;/b&gt; Dupont" in letter_pdf.html([letter])
