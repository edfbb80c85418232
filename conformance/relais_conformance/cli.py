"""`python -m relais_conformance --operator caf --public-key caf.public.jwk.json`"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relais_conformance.checks import Settings, evaluate
from relais_conformance.contract import Contract, ContractError, Sealer, default_schemas_dir
from relais_conformance.report import passed, render, write_json
from relais_conformance.runner import KitError, run

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def load_jwk(text: str) -> dict[str, Any]:
    """A JWK given inline (`{...}`) or as a file path."""
    raw = text if text.lstrip().startswith("{") else Path(text).read_text(encoding="utf-8")
    jwk = json.loads(raw)
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    return jwk


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m relais_conformance",
        description="Relais operator conformance kit: plays the platform for one operator on "
                    "operator.<code>.inbox and checks the consumer's replies on operator.<code>.outbox. "
                    "Exit status: 0 conformant, 1 a check failed, 2 the kit could not run.")
    p.add_argument("--operator", required=True, help="the operator code under test, e.g. caf")
    p.add_argument("--public-key", help="the operator's public EC P-256 JWK (file path or inline JSON), used to "
                                        "encrypt personal data as the platform does")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                   help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    p.add_argument("--schemas", type=Path, help="the Relais schemas/ folder (default: the one next to the kit in "
                                                "the Relais repository, else ./schemas)")
    p.add_argument("--ack-within", type=positive, default=30.0, metavar="SECONDS",
                   help="a routed referral must be acknowledged within this time (default 30)")
    p.add_argument("--answer-within", type=positive, default=60.0, metavar="SECONDS",
                   help="...and answered, rejected or asked about within this time (default 60)")
    p.add_argument("--quiet-period", type=positive, default=5.0, metavar="SECONDS",
                   help="how long to keep watching for late, duplicate or forbidden replies (default 5)")
    p.add_argument("--procedure", help="procedure code of the test referrals (default: <operator>.conformance-kit, "
                                       "or the schema example's if it is this operator's)")
    env = os.environ
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    p.add_argument("--security-protocol", default=protocol,
                   choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                   help="Kafka security protocol (default: $KAFKA_SECURITY_PROTOCOL or PLAINTEXT)")
    p.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                   default=(env.get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper()
                   if protocol.startswith("SASL_") else None,
                   help="SASL mechanism (default: $KAFKA_SASL_MECHANISM or SCRAM-SHA-512 with SASL_*); "
                        "the password is read from $KAFKA_SASL_PASSWORD or the file $KAFKA_SASL_PASSWORD_FILE")
    p.add_argument("--sasl-username", default=env.get("KAFKA_SASL_USERNAME"),
                   help="SASL user name (default: $KAFKA_SASL_USERNAME): the operator's own principal")
    p.add_argument("--ssl-cafile", type=Path, default=env.get("KAFKA_SSL_CA_FILE") or None,
                   help="CA certificate(s) to trust for SSL (default: $KAFKA_SSL_CA_FILE, else the system's)")
    p.add_argument("--ssl-certfile", type=Path, default=env.get("KAFKA_SSL_CERT_FILE") or None,
                   help="client certificate for mutual TLS (default: $KAFKA_SSL_CERT_FILE)")
    p.add_argument("--ssl-keyfile", type=Path, default=env.get("KAFKA_SSL_KEY_FILE") or None,
                   help="its private key (default: $KAFKA_SSL_KEY_FILE)")
    p.add_argument("--report-json", type=Path, metavar="FILE", help="also write a machine-readable report")
    p.add_argument("-v", "--verbose", action="store_true", help="log every record sent and read (stderr)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        schemas = args.schemas or default_schemas_dir()
        if schemas is None:
            raise ContractError("no schemas/ folder found: give it with --schemas")
        contract = Contract(schemas)
        if args.operator not in contract.operators:
            raise ContractError(f"unknown operator {args.operator!r}; the contract knows "
                                f"{', '.join(contract.operators)}")
        seal = Sealer(load_jwk(args.public_key)) if args.public_key else None
        if seal is None and contract.encrypted("referral.routed"):
            raise ContractError("this contract encrypts personal data: give the operator's public key "
                                "with --public-key")
        procedure = args.procedure or default_procedure(contract, args.operator)
        settings = Settings(args.operator, args.ack_within, args.answer_within, args.quiet_period)
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        observation, referrals = asyncio.run(run(settings, contract, seal, args.bootstrap_servers, procedure,
                                                 client_options(args)))
    except (ContractError, KitError, OSError, ValueError) as exc:
        print(f"relais-conformance: cannot run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("relais-conformance: interrupted", file=sys.stderr)
        return 130
    results = evaluate(observation, contract)
    header = {"operator": args.operator, "bootstrap": args.bootstrap_servers, "started_at": started_at,
              "duration_s": round(observation.ended, 2), "settings": asdict(settings), "schemas": str(schemas),
              "replies": len(observation.replies), "referrals": referrals,
              "public_key_kid": seal.kid if seal else None}
    print(render(results, header))
    if args.report_json:
        write_json(args.report_json, results, header)
    return EXIT_PASS if passed(results) else EXIT_FAIL


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """aiokafka security settings from the command line (nothing for PLAINTEXT)."""
    options: dict[str, Any] = {}
    if args.security_protocol != "PLAINTEXT":
        options["security_protocol"] = args.security_protocol
    if "SSL" in args.security_protocol:
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=str(args.ssl_cafile) if args.ssl_cafile else None,
            certfile=str(args.ssl_certfile) if args.ssl_certfile else None,
            keyfile=str(args.ssl_keyfile) if args.ssl_keyfile else None)
    if args.sasl_mechanism and args.security_protocol.startswith("SASL_"):
        password = os.environ.get("KAFKA_SASL_PASSWORD", "")
        if not password and os.environ.get("KAFKA_SASL_PASSWORD_FILE"):
            password = Path(os.environ["KAFKA_SASL_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
        if not args.sasl_username or not password:
            raise ValueError(f"{args.security_protocol} needs --sasl-username (or $KAFKA_SASL_USERNAME) and "
                             "$KAFKA_SASL_PASSWORD (or $KAFKA_SASL_PASSWORD_FILE)")
        options.update(sasl_mechanism=args.sasl_mechanism, sasl_plain_username=args.sasl_username,
                       sasl_plain_password=password)
    return options


def default_procedure(contract: Contract, operator: str) -> str:
    for example in contract.schemas["referral.routed"].get("examples", []):
        procedure = example.get("procedure", "")
        if procedure.startswith(f"{operator}."):
            return str(procedure)
    return f"{operator}.conformance-kit"
