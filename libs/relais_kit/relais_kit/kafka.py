"""Kafka clients with the settings that do not lose data, set on purpose:
producers wait for every in-sync replica (`acks=all`); consumers commit by hand,
after the work. The embedded broker refuses idempotent producers, so duplicates
are dropped by consumers on `ce_id` instead.

Every client of ours connects the same way, from the same environment variables
(`KafkaSecurity.from_env`): the security protocol, the SASL mechanism and this
process's own principal, the TLS CA and an optional client certificate."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from relais_kit import autocreate  # noqa: F401  (our clients never create a topic by asking)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# The variables, named alike in every service, tool, example and the conformance kit.
VARIABLES = {
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (default PLAINTEXT)",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512 (default) | SCRAM-SHA-256",
    "KAFKA_SASL_USERNAME": "this process's own principal",
    "KAFKA_SASL_PASSWORD": "its password (or KAFKA_SASL_PASSWORD_FILE: a file holding it)",
    "KAFKA_SSL_CA_FILE": "the CA that signed the brokers' certificates (PEM)",
    "KAFKA_SSL_CERT_FILE": "a client certificate (PEM), with KAFKA_SSL_KEY_FILE, for mutual TLS",
}


class KafkaSettingsError(ValueError):
    """The Kafka connection settings are wrong; the message names the variable."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSettingsError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)} "
                                     f"(got {self.protocol!r})")
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSettingsError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)} "
                                         f"(got {self.mechanism!r})")
            if not self.username:
                raise KafkaSettingsError(f"KAFKA_SASL_USERNAME is required with {self.protocol}")
            if not self.password:
                raise KafkaSettingsError(f"KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE) is required "
                                         f"with {self.protocol}")
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSettingsError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        for variable, path in (("KAFKA_SSL_CA_FILE", self.ca_file), ("KAFKA_SSL_CERT_FILE", self.cert_file),
                               ("KAFKA_SSL_KEY_FILE", self.key_file)):
            if path is not None and not path.is_file():
                raise KafkaSettingsError(f"{variable}: no such file {path}")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @property
    def encrypted_and_authenticated(self) -> bool:
        """What production requires: TLS, and a principal proven by SCRAM or a client
        certificate."""
        return self.tls and (self.sasl or self.cert_file is not None)

    @property
    def principal(self) -> str | None:
        return self.username if self.sasl else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if environ is None else environ
        password = env.get("KAFKA_SASL_PASSWORD") or None
        password_file = env.get("KAFKA_SASL_PASSWORD_FILE")
        if password is None and password_file:
            try:
                password = Path(password_file).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise KafkaSettingsError(f"KAFKA_SASL_PASSWORD_FILE: cannot read {password_file}: "
                                         f"{exc.strerror}") from exc

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        return cls(protocol=(env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
                   mechanism=(env.get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper(),
                   username=env.get("KAFKA_SASL_USERNAME") or None, password=password,
                   ca_file=path("KAFKA_SSL_CA_FILE"), cert_file=path("KAFKA_SSL_CERT_FILE"),
                   key_file=path("KAFKA_SSL_KEY_FILE"))

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def aiokafka_options(self) -> dict[str, object]:
        """The connection options of any aiokafka client (producer, consumer, admin)."""
        options: dict[str, object] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def describe(self) -> dict[str, object]:
        """For the start-up log: never the password."""
        return {"kafka_security_protocol": self.protocol,
                "kafka_principal": self.principal,
                "kafka_mechanism": self.mechanism if self.sasl else None,
                "kafka_mutual_tls": self.cert_file is not None}


def unreachable(bootstrap: str, error: BaseException, security: KafkaSecurity | None = None) -> str:
    """What a command line tool says when it cannot reach or sign in to the broker."""
    try:
        security = security or KafkaSecurity.from_env()
    except KafkaSettingsError as exc:
        return str(exc)
    who = (f"as {security.principal} ({security.protocol}, {security.mechanism})" if security.sasl
           else f"with {security.protocol} and no principal (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_USERNAME...)")
    return (f"cannot reach or sign in to the broker at {bootstrap} {who}: {error}. "
            "Against `make run`: set -a; . .data/kafka/env/relais-ops.env; set +a")


def connection(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, object]:
    """bootstrap_servers and the security options, for any aiokafka client."""
    return {"bootstrap_servers": bootstrap, **(security or KafkaSecurity.from_env()).aiokafka_options()}


def producer(bootstrap: str, security: KafkaSecurity | None = None, **overrides: object) -> AIOKafkaProducer:
    options: dict[str, object] = {
        **connection(bootstrap, security),
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 2,
        "request_timeout_ms": 30000,
        "retry_backoff_ms": 200,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def consumer(bootstrap: str, group_id: str | None, *topics: str, security: KafkaSecurity | None = None,
             **overrides: object) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        **connection(bootstrap, security),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 1000,
        "rebalance_timeout_ms": 10000,
        "max_poll_interval_ms": 300000,
        # tansu holds a fetch for this long even when records arrive meanwhile (Apache
        # Kafka answers at once): the wait bounds the latency of every hop.
        "fetch_max_wait_ms": 25,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)  # type: ignore[arg-type]


def admin(bootstrap: str, security: KafkaSecurity | None = None, **overrides: object) -> AIOKafkaAdminClient:
    options = {**connection(bootstrap, security), **overrides}
    return AIOKafkaAdminClient(**options)  # type: ignore[arg-type]
