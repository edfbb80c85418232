"""Personal data sealed for one operator: only that operator's private key opens it."""

from pathlib import Path

import pytest
from joserfc import jwe

from relais_kit import sealing
from relais_kit.sealing import OperatorKeys, SealingError
from relais_referral.settings import DEMO_OPERATOR_KEYS, ReferralSettings

REFERRAL = "6f1c2a52-3f0d-4a8e-9a55-1d2f3c4b5a69"
PLAIN = {"referral_id": REFERRAL, "summary": "Changement d'adresse après un déménagement.",
         "citizen": {"given_name": "Michel", "family_name": "Cordier"}}
OPERATORS = ("caf", "ants", "dgfip")


def private(operator: str) -> sealing.ECKey:
    return sealing.load_key(sealing.private_key_path(DEMO_OPERATOR_KEYS, operator), private=True)


@pytest.fixture(scope="module")
def keys() -> OperatorKeys:
    return OperatorKeys.from_folder(DEMO_OPERATOR_KEYS, OPERATORS)


def test_the_destination_operator_opens_what_was_sealed_for_it(keys: OperatorKeys) -> None:
    token = keys.seal("ants", PLAIN)
    assert sealing.unseal(token, private("ants"), referral_id=REFERRAL) == PLAIN
    assert jwe.decrypt_compact(token, private("ants")).protected["kid"] == keys.kid("ants") == "ants-demo-2026"


def test_the_token_is_a_standard_compact_jwe_with_no_clear_personal_data(keys: OperatorKeys) -> None:
    token = keys.seal("ants", PLAIN)
    parts = token.split(".")
    assert len(parts) == 5 and parts[1] == ""  # ECDH-ES direct: no encrypted key
    assert "Cordier" not in token and "Michel" not in token
    opened = jwe.decrypt_compact(token, private("ants"))
    assert {k: opened.protected[k] for k in ("alg", "enc", "cty")} == {
        "alg": "ECDH-ES", "enc": "A256GCM", "cty": "application/json"}
    assert keys.seal("ants", PLAIN) != token  # a fresh ephemeral key each time


@pytest.mark.parametrize("other", ["caf", "dgfip"])
def test_another_operators_key_cannot_read_it(keys: OperatorKeys, other: str) -> None:
    token = keys.seal("ants", PLAIN)
    with pytest.raises(SealingError) as caught:
        sealing.unseal(token, private(other), referral_id=REFERRAL)
    assert "cannot be decrypted" in str(caught.value) and "Cordier" not in str(caught.value)


def test_a_ciphertext_moved_to_another_referral_is_refused(keys: OperatorKeys) -> None:
    token = keys.seal("ants", PLAIN)
    with pytest.raises(SealingError, match="another referral"):
        sealing.unseal(token, private("ants"), referral_id="0b7e2b8e-7d1f-4c55-8a3e-2b9a1c0d4e5f")


@pytest.mark.parametrize("token", ["", "not-a-jwe", "a.b.c.d.e"])
def test_garbage_is_refused_with_a_reason(token: str) -> None:
    with pytest.raises(SealingError, match="cannot be decrypted"):
        sealing.unseal(token, private("ants"), referral_id=REFERRAL)


def test_a_tampered_ciphertext_is_refused(keys: OperatorKeys) -> None:
    parts = keys.seal("ants", PLAIN).split(".")
    parts[3] = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]
    with pytest.raises(SealingError):
        sealing.unseal(".".join(parts), private("ants"), referral_id=REFERRAL)


def test_missing_or_wrong_keys_are_named_at_start(tmp_path: Path) -> None:
    (tmp_path / "caf.public.jwk.json").write_text(
        sealing.private_key_path(DEMO_OPERATOR_KEYS, "caf").read_text())  # a private key by mistake
    (tmp_path / "ants.public.jwk.json").write_text('{"kty": "oct", "k": "abc"}')
    with pytest.raises(SealingError) as caught:
        OperatorKeys.from_folder(tmp_path, OPERATORS)
    message = str(caught.value)
    assert "caf: " in message and "expected a public key" in message
    assert "ants: " in message and "EC P-256" in message
    assert "dgfip: no public key" in message


def test_production_refuses_the_demo_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_ENV", "production")
    monkeypatch.setenv("RELAIS_JWT_SECRET", "a-real-secret-for-this-test")
    monkeypatch.setenv("RELAIS_DATA_KEYS_FILE", "/etc/relais/data-keys.json")
    with pytest.raises(ValueError, match="RELAIS_OPERATOR_KEYS_DIR"):
        ReferralSettings()
    monkeypatch.setenv("RELAIS_OPERATOR_KEYS_DIR", "/etc/relais/operator-keys")
    assert ReferralSettings().operator_keys_dir == Path("/etc/relais/operator-keys")
