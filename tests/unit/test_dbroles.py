"""The pure parts of one-role-per-service: names, URLs, password verifiers, the
launcher's schema of each service and its file of passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from deploy.local import pgroles
from deploy.local.launcher import service_of
from relais_kit import dbroles


def test_a_service_url_keeps_everything_but_the_credentials() -> None:
    assert (dbroles.with_credentials("postgresql://admin:secret@db.example:5433/relais?sslmode=require",
                                     "relais_referral", "p/w:@")
            == "postgresql://relais_referral:p%2Fw%3A%40@db.example:5433/relais?sslmode=require")
    # pgserver's own form: a Unix socket in the query, an empty password
    assert (dbroles.with_credentials("postgresql://postgres:@/postgres?host=/tmp/pg", "relais_sites", None)
            == "postgresql://relais_sites@/postgres?host=/tmp/pg")
    with pytest.raises(dbroles.RoleSetupError, match="postgresql://"):
        dbroles.with_credentials("host=db user=admin", "relais_sites", "x")


@pytest.mark.parametrize("name", ["Referral", "referral; DROP ROLE postgres", "a" * 64, "", "1sites", 'x"y'])
def test_only_plain_names_reach_the_sql(name: str) -> None:
    with pytest.raises(dbroles.RoleSetupError, match="plain lower-case identifier"):
        dbroles.check_identifier("schema", name)


def test_the_verifier_is_the_one_postgresql_computes() -> None:
    salt = bytes(range(16))
    verifier = dbroles.scram_verifier("pencil", salt=salt, iterations=4096)
    method, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    iterations, salt_b64 = params.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert (method, iterations, base64.b64decode(salt_b64)) == ("SCRAM-SHA-256", "4096", salt)
    assert stored == hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    assert server == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert "pencil" not in verifier
    assert dbroles.scram_verifier("pencil") != dbroles.scram_verifier("pencil")  # salted


@pytest.mark.parametrize("password", ["", "mot de passe\n", "pâté"])
def test_a_password_postgresql_would_normalise_is_refused(password: str) -> None:
    with pytest.raises(dbroles.RoleSetupError, match="printable ASCII"):
        dbroles.scram_verifier(password)


def test_each_child_maps_to_its_service_and_schema() -> None:
    assert [service_of(n) for n in ("referral", "referral-2", "desk", "simulator", "mailbox", "broker")] == [
        "referral", "referral", "desk", None, None, None]
    assert pgroles.schema_of("referral", {}) == "referral"
    assert pgroles.schema_of("referral", {"RELAIS_REFERRAL_DB_SCHEMA": "referral_eu"}) == "referral_eu"
    assert pgroles.schema_of("desk", {}, "la-poste") == "desk_la_poste"
    assert pgroles.schema_of("desk", {"RELAIS_DESK_DB_SCHEMA": "desk_x"}, "caf") == "desk_x"
    assert pgroles.schema_of("notifications", {}) == "notifications"
    assert pgroles.connection_limit(1) == dbroles.DEFAULT_CONNECTION_LIMIT
    assert pgroles.connection_limit(4) == 56


def test_passwords_are_kept_private_and_found_again(tmp_path: Path) -> None:
    secrets = pgroles.Secrets(tmp_path)
    first = secrets.password("relais_sites")
    assert (tmp_path / pgroles.SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    assert pgroles.Secrets(tmp_path).password("relais_sites") == first
    assert secrets.password("relais_referral") != first
    (tmp_path / pgroles.SECRETS_FILE).write_text("{not json")
    with pytest.raises(dbroles.RoleSetupError, match="not valid JSON"):
        pgroles.Secrets(tmp_path)
