"""How every client of ours connects to Kafka (relais_kit.kafka.KafkaSecurity) and the
SCRAM server side of the authenticating front (deploy/local/scram.py), checked against
RFC 7677's test vector."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from deploy.local.scram import ScramError, ScramExchange, credential
from relais_kit.kafka import KafkaSecurity, KafkaSettingsError


def test_plaintext_is_the_default_and_carries_no_principal() -> None:
    security = KafkaSecurity.from_env({})
    assert security.protocol == "PLAINTEXT" and security.principal is None
    assert security.aiokafka_options() == {"security_protocol": "PLAINTEXT"}
    assert not security.encrypted_and_authenticated


def test_sasl_ssl_gives_aiokafka_its_principal_and_a_verifying_tls_context(tmp_path: Path) -> None:
    from deploy.local.kafka_auth import LocalKafkaAuth

    auth = LocalKafkaAuth(tmp_path / "kafka")
    auth.ensure(["relais-sites"])
    ca = auth.ca_file
    security = KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "relais-sites",
                                       "KAFKA_SASL_PASSWORD": "pw", "KAFKA_SSL_CA_FILE": str(ca)})
    options = security.aiokafka_options()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "relais-sites"
    context = options["ssl_context"]
    import ssl

    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert security.encrypted_and_authenticated
    assert "pw" not in repr(security.describe())


def test_the_password_may_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-secret\n")
    security = KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u",
                                       "KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert security.password == "from-a-secret"


@pytest.mark.parametrize(("env", "named"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": "x"}, "KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "x",
      "KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/nowhere/ca.pem"}, "KAFKA_SSL_CA_FILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/nowhere/c.pem"}, "KAFKA_SSL_KEY_FILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD_FILE": "/nowhere/pw"}, "KAFKA_SASL_PASSWORD_FILE"),
])
def test_wrong_settings_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(KafkaSettingsError, match=named):
        KafkaSecurity.from_env(env)


# --------------------------------------------------------------------------- SCRAM

RFC7677 = {  # RFC 7677 §3: SCRAM-SHA-256, user "user", password "pencil"
    "salt": base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="),
    "client_first": "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "server_first": "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "client_final": "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "server_final": "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}


def _rfc_exchange(password: str = "pencil") -> ScramExchange:
    stored = credential("SCRAM-SHA-256", password, salt=RFC7677["salt"], iterations=4096)  # type: ignore[arg-type]
    return ScramExchange("SCRAM-SHA-256", lambda user, m: stored if user == "user" else None,
                         server_nonce=lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")


def test_the_rfc_7677_exchange_gives_the_rfc_answers() -> None:
    exchange = _rfc_exchange()
    assert exchange.first(RFC7677["client_first"]) == RFC7677["server_first"]
    outcome = exchange.final(RFC7677["client_final"])
    assert outcome.ok and outcome.message == RFC7677["server_final"] and outcome.principal == "user"


def test_a_wrong_password_fails_at_the_proof() -> None:
    exchange = _rfc_exchange(password="not-pencil")
    exchange.first(RFC7677["client_first"])
    outcome = exchange.final(RFC7677["client_final"])
    assert not outcome.ok and outcome.message == "e=invalid-proof"


def test_an_unknown_user_gets_a_stable_made_up_salt_then_fails() -> None:
    """The answer to the first message must not tell who exists."""
    first = ScramExchange("SCRAM-SHA-512", lambda u, m: None).first("n,,n=mallory,r=abc")
    again = ScramExchange("SCRAM-SHA-512", lambda u, m: None).first("n,,n=mallory,r=abc")
    assert first.split(",")[1:] == again.split(",")[1:]  # same salt and iterations
    exchange = ScramExchange("SCRAM-SHA-512", lambda u, m: None)
    server_first = exchange.first("n,,n=mallory,r=abc")
    nonce = server_first.split(",")[0][2:]
    outcome = exchange.final(f"c=biws,r={nonce},p={base64.b64encode(b'x' * 64).decode()}")
    assert not outcome.ok


def test_a_replayed_final_message_with_another_nonce_fails() -> None:
    exchange = _rfc_exchange()
    exchange.first("n,,n=user,r=someothernonce")
    assert not exchange.final(RFC7677["client_final"]).ok


@pytest.mark.parametrize("client_first", ["p=tls-unique,,n=user,r=x", "n,,r=x", "garbage", "n,,n=us=er,r=x"])
def test_malformed_or_channel_bound_first_messages_are_refused(client_first: str) -> None:
    with pytest.raises(ScramError):
        ScramExchange("SCRAM-SHA-512", lambda u, m: None).first(client_first)


def test_stored_credentials_hold_no_password() -> None:
    stored = credential("SCRAM-SHA-512", "s3cret-password")
    text = repr(stored.to_json())
    assert "s3cret" not in text
    salted = hashlib.pbkdf2_hmac("sha512", b"s3cret-password", stored.salt, stored.iterations)
    assert stored.server_key == hmac.new(salted, b"Server Key", "sha512").digest()


def test_a_tool_that_cannot_sign_in_says_as_whom_and_how_to_fix_it() -> None:
    from relais_kit.kafka import unreachable

    plain = unreachable("127.0.0.1:9092", ConnectionError("closed"), KafkaSecurity())
    assert "no principal" in plain and "relais-ops.env" in plain
    signed = unreachable("b:9093", ConnectionError("refused"),
                         KafkaSecurity("SASL_PLAINTEXT", username="relais-ops", password="s3cret"))
    assert "as relais-ops (SASL_PLAINTEXT, SCRAM-SHA-512)" in signed and "s3cret" not in signed
