"""The kit's printing (relais_kit.printing): HTML to an A4 PDF in Marianne, QR codes as
inline SVG."""

from __future__ import annotations

import io
import re
from typing import Any

import pypdf

from relais_kit.printing import FONTS_DIR, PRINT_CSS, pdf_from_html, qr_svg

A4_POINTS = (595, 842)


def test_a_document_prints_on_a4_with_its_text() -> None:
    pdf = pdf_from_html("<h1>Votre demande</h1><p>Bonjour Élodie, votre dossier avance.</p>")
    assert pdf.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    page = reader.pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == A4_POINTS
    text = page.extract_text()
    assert "Votre demande" in text and "Bonjour Élodie, votre dossier avance." in text


def test_the_text_is_set_in_marianne_from_the_dsfr() -> None:
    assert (FONTS_DIR / "Marianne-Regular.woff2").is_file()
    assert "Marianne" in PRINT_CSS and "@page { size: A4" in PRINT_CSS
    reader = pypdf.PdfReader(io.BytesIO(pdf_from_html("<p>Liberté</p><p><b>Égalité</b></p>")))
    resources: Any = reader.pages[0]["/Resources"]
    names = {str(font.get_object()["/BaseFont"]) for font in resources["/Font"].values()}
    assert any(name.endswith("+Marianne") for name in names), names
    assert any("Marianne-Bold" in name for name in names), names


def test_the_documents_own_styles_win_over_the_base_stylesheet() -> None:
    pdf = pdf_from_html("<style>@page { size: A5 }</style><p>Petit format</p>")
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    assert round(float(page.mediabox.width)) == 420  # A5: 148 mm


def test_a_qr_code_is_inline_svg_sized_in_millimetres() -> None:
    svg = qr_svg("https://relais.example/s/AbCdEfGh12")
    assert svg.startswith("<svg") and "<?xml" not in svg
    assert re.search(r'width="\d+mm"', svg) and "viewBox=" in svg
    larger = qr_svg("https://relais.example/s/AbCdEfGh12", module_mm=1.5)
    assert float(re.findall(r'width="([\d.]+)mm"', larger)[0]) > 40


def test_a_qr_code_prints_inside_a_pdf() -> None:
    pdf = pdf_from_html(f"<p>Suivre ma demande</p>{qr_svg('https://relais.example/s/AbCdEfGh12')}")
    assert "Suivre ma demande" in pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
