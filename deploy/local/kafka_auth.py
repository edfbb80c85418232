"""Kafka credentials of the platform on one machine: a local CA and the broker's TLS
certificate, one SCRAM principal per service, desk, tool and simulator with its own
random password, and the stored keys the authenticating front checks them against.
Kept in `<data>/kafka/` (the passwords file readable by its owner only), made once and
reused, grown when a principal is added."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from deploy.local.scram import HASHES, credential
from relais_kit.kafka import KafkaSecurity

MECHANISM = "SCRAM-SHA-512"
CERT_DAYS = 825


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


class LocalKafkaAuth:
    def __init__(self, directory: Path, hosts: Iterable[str] = ("127.0.0.1", "localhost")) -> None:
        self.directory = Path(directory)
        self.hosts = sorted(set(hosts))
        self.ca_file = self.directory / "ca.pem"
        self.cert_file = self.directory / "broker.pem"
        self.key_file = self.directory / "broker-key.pem"
        self.passwords_file = self.directory / "passwords.json"
        self.credentials_file = self.directory / "scram-credentials.json"

    # ------------------------------------------------------------------ making

    def ensure(self, principals: Iterable[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ensure_tls()
        passwords = self.passwords()
        wanted = sorted(set(principals))
        if all(p in passwords for p in wanted) and self.credentials_file.exists():
            return
        for principal in wanted:
            passwords.setdefault(principal, secrets.token_urlsafe(24))
        _write_private(self.passwords_file, json.dumps(passwords, indent=2, sort_keys=True))
        stored = {name: {mechanism: credential(mechanism, password).to_json() for mechanism in HASHES}
                  for name, password in passwords.items()}
        _write_private(self.credentials_file, json.dumps(stored, indent=2, sort_keys=True))

    def passwords(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.passwords_file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def _ensure_tls(self) -> None:
        if self.ca_file.exists() and self.cert_file.exists() and self.key_file.exists() and self._covers_hosts():
            return
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Relais local Kafka CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in self.hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relais-local-broker")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca_file.write_bytes(ca.public_bytes(pem))
        self.cert_file.write_bytes(cert.public_bytes(pem))
        _write_private(self.key_file, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()).decode())

    def _covers_hosts(self) -> bool:
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        found = {str(n) for n in names.get_values_for_type(x509.IPAddress)} | set(
            names.get_values_for_type(x509.DNSName))
        return set(self.hosts) <= found

    # ------------------------------------------------------------------ using

    def client_env(self, principal: str) -> dict[str, str]:
        """The variables a process connecting as `principal` gets."""
        password = self.passwords().get(principal)
        if password is None:
            raise KeyError(f"no Kafka principal {principal!r} in {self.passwords_file}")
        return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": MECHANISM,
                "KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD": password,
                "KAFKA_SSL_CA_FILE": str(self.ca_file)}

    def env_file(self, principal: str) -> Path:
        return self.directory / "env" / f"{principal}.env"

    def write_env_files(self, bootstrap: str) -> None:
        """One `<data>/kafka/env/<principal>.env` per principal (owner-only), to connect a
        tool or an example by hand: `set -a; . .data/kafka/env/relais-ops.env; set +a`."""
        for principal in self.passwords():
            lines = [f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}",
                     *(f"{k}={v}" for k, v in self.client_env(principal).items())]
            _write_private(self.env_file(principal), "\n".join(lines) + "\n")

    def security(self, principal: str) -> KafkaSecurity:
        return KafkaSecurity.from_env(self.client_env(principal))
