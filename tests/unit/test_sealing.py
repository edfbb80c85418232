"""Personal data sealed for one operator: only that operator's private key opens it."""

import json
from pathlib import Path

import pytest
from joserfc import jwe
from joserfc.jwk import ECKey

from relais_kit import sealing, tokenkeys
from relais_kit.sealing import OperatorKeys, SealingError
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import load_topics
from relais_referral.app import create_app
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


ALL_OPERATORS = load_topics(REPO_ROOT / "deploy" / "topics.yaml").operators


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("RELAIS_ENV", "production")
    tokens = tmp_path_factory.mktemp("tokens") / "referral-token-keys.json"
    tokenkeys.cmd_new(tokens)
    monkeypatch.setenv("RELAIS_TOKEN_KEYS_FILE", str(tokens))
    monkeypatch.setenv("RELAIS_DATA_KEYS_FILE", "/etc/relais/data-keys.json")
    monkeypatch.setenv("RELAIS_PUBLIC_URL", "https://relais.example.fr")


def registered_keys(folder: Path, operators: list[str]) -> Path:
    """Fresh key pairs, as operators register them (their public halves in `folder`)."""
    for operator in operators:
        key = ECKey.generate_key("P-256", parameters={"kid": f"{operator}-2027"}, private=True)
        sealing.public_key_path(folder, operator).write_text(json.dumps(key.as_dict(private=False)))
    return folder


@pytest.mark.usefixtures("production")
def test_production_refuses_the_demo_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="RELAIS_OPERATOR_KEYS_DIR") as refused:
        create_app(ReferralSettings())
    assert f"the keys of {', '.join(sorted(ALL_OPERATORS))} are public demo keys" in str(refused.value)


@pytest.mark.usefixtures("production")
def test_production_refuses_the_demo_keys_wherever_they_were_copied(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """Compared by content (the key's thumbprint), not by folder: copied, renamed, re-kid'ed."""
    for operator in ALL_OPERATORS:
        demo = json.loads(sealing.public_key_path(DEMO_OPERATOR_KEYS, operator).read_text())
        sealing.public_key_path(tmp_path, operator).write_text(json.dumps({**demo, "kid": f"{operator}-prod"}))
    registered_keys(tmp_path, [o for o in ALL_OPERATORS if o != "caf"])  # CAF kept the demo key
    monkeypatch.setenv("RELAIS_OPERATOR_KEYS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="RELAIS_OPERATOR_KEYS_DIR: the keys of caf are public demo keys"):
        create_app(ReferralSettings())
    registered_keys(tmp_path, ["caf"])
    assert create_app(ReferralSettings()).state.settings.operator_keys_dir == tmp_path


def test_outside_production_the_demo_keys_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_ENV", "test")
    assert create_app(ReferralSettings()).state.settings.operator_keys_dir == DEMO_OPERATOR_KEYS


@pytest.mark.parametrize("env", ["prod", "Production", "staging", ""])
def test_an_unknown_environment_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    """`prod` used to run with the demo accounts, the dev secret and the demo keys."""
    monkeypatch.setenv("RELAIS_ENV", env)
    with pytest.raises(ValueError, match="RELAIS_ENV must be one of dev, test, production"):
        ReferralSettings()
