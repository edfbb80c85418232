"""The picture of a printed letter in the README (docs/screens/courrier.png): a sample
letter (invented citizen and site) laid out as the notifications service prints it,
page 1 rendered to PNG by Debian's pdftoppm (tools/print/install-poppler.sh).

    PYTHONPATH=libs/relais_kit:services/notifications .venv/bin/python tools/print/letter_picture.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from relais_notifications.adapters import letter_pdf, templates
from relais_notifications.adapters.store import PrintableLetter
from relais_notifications.domain.model import Step

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "screens" / "courrier.png"
SAMPLE = {
    "referral_id": "0b8f7c4e-5d2a-4f4b-9a51-2f1e3c4d5e6f", "visit_id": "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    "operator": "caf", "procedure": "caf.prime-activite", "site_id": "agen-leon-blum-poste",
    "adviser_id": "adv-agen-0142", "status": "answered", "occurred_at": "2026-03-18T16:10:00+01:00",
    "outcome": "documents_needed",
    "documents": ["votre dernier avis d'imposition", "un justificatif de domicile de moins de trois mois"],
    "message_to_citizen": "Nous avons bien reçu votre demande de prime d'activité. Il nous manque deux "
                          "documents pour calculer vos droits.",
    "message_to_adviser": "Dossier CAF-47-2026-000813.",
    "recipient": {"display_name": "Mme Élodie Dupont", "channel": "letter", "postal_address": {
        "street": "Résidence Les Tilleuls, bâtiment B, 12 avenue de la Libération", "postcode": "47000",
        "city": "Agen"}},
    "status_link": {"url": "https://france-services.example/suivi/K7QM-9TXH-2C", "code": "K7QM-9TXH-2C"},
}


def main() -> int:
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        print("letter_picture: pdftoppm missing: run tools/print/install-poppler.sh", file=sys.stderr)
        return 1
    answer = Step.from_event_data(SAMPLE)
    letter = PrintableLetter(uuid.UUID(int=1), answer.referral_id, answer.site_id, datetime.now(UTC),
                             templates.wordings().citizen_text(answer, letter=True), None,
                             "France Services Agen Léon-Blum",
                             "1 place du Docteur-Pierre-Esquirol", "47000", "Agen")
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "courrier.pdf"
        pdf.write_bytes(letter_pdf.pdf([letter]))
        subprocess.run([pdftoppm, "-png", "-r", "80", "-singlefile", str(pdf), str(OUT.with_suffix(""))],
                       check=True)
    print(f"letter_picture: {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
