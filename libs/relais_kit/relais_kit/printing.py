"""Printed documents of the platform (letters to citizens, receipts handed over at the
counter): HTML rendered to an A4 PDF by WeasyPrint, in the State's typeface (Marianne,
from the DSFR's own fonts), and QR codes as inline SVG (segno).

`PRINT_CSS` is the base print stylesheet: the A4 page, the @font-face declarations of
Marianne (woff2, read from the DSFR's dist/fonts: WeasyPrint ≥ 61 reads woff2) and the
body text. `pdf_from_html` always applies it before the document's own styles, so a
template only adds its layout. Nothing is fetched from the network: the fonts are local
files and the documents carry no remote resources."""

from __future__ import annotations

from pathlib import Path

import segno

from relais_kit.webui import DSFR_DIR

FONTS_DIR = DSFR_DIR / "fonts"
_FACES = (("Regular", 400, "normal"), ("Regular_Italic", 400, "italic"), ("Medium", 500, "normal"),
          ("Bold", 700, "normal"), ("Bold_Italic", 700, "italic"), ("Light", 300, "normal"))


def _font_faces(fonts_dir: Path) -> str:
    return "\n".join(
        f'@font-face {{ font-family: "Marianne"; font-weight: {weight}; font-style: {style};'
        f' src: url("{(fonts_dir / f"Marianne-{name}.woff2").as_uri()}") format("woff2"); }}'
        for name, weight, style in _FACES
        if (fonts_dir / f"Marianne-{name}.woff2").is_file())


PRINT_CSS = _font_faces(FONTS_DIR) + """
@page { size: A4; margin: 20mm 20mm 20mm 20mm; }
html { font-family: "Marianne", "DejaVu Sans", Arial, sans-serif; font-size: 11pt; line-height: 1.45;
       color: #161616; }
body { margin: 0; }
h1, h2, h3 { font-weight: 700; line-height: 1.25; }
p { margin: 0 0 3mm 0; }
"""


def pdf_from_html(html: str, *, base_url: str | None = None) -> bytes:
    """The PDF (A4) of an HTML document, with `PRINT_CSS` applied first. `base_url`
    resolves the document's relative references (images, stylesheets), if any."""
    from weasyprint import CSS, HTML  # imported on use: WeasyPrint loads Pango at import
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()  # the @font-face rules of PRINT_CSS register there
    base = CSS(string=PRINT_CSS, font_config=fonts)  # a "user" sheet: the document's styles win
    return bytes(HTML(string=html, base_url=base_url).write_pdf(stylesheets=[base], font_config=fonts))


def qr_svg(url: str, *, module_mm: float = 1.0) -> str:
    """A QR code of `url` as inline SVG markup (error correction M, quiet zone of two
    modules, no XML declaration), sized in millimetres (`module_mm` per module: 1 mm
    gives a code of ~3 cm for a short link, read by any phone) and with a viewBox, so
    that a stylesheet may resize it."""
    qr = segno.make(url, error="m", micro=False, boost_error=False)
    scale: float = int(module_mm) if float(module_mm).is_integer() else module_mm  # "33mm", not "33.0mm"
    return str(qr.svg_inline(scale=scale, border=2, unit="mm", title=None, dark="#000"))
