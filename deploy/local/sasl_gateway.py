"""An authenticating front for the embedded broker: SASL/SCRAM-SHA-512 and -256 over
TLS, the way a Kafka cluster's SASL_SSL listener behaves, in front of tansu.

Why it exists: tansu 0.6.0 (the only Kafka broker this machine can install) offers
`--authentication` and SCRAM, but its memory and S3 storage keep no SCRAM credential
(`upsert_user_scram_credential` does nothing, every lookup finds no user), so no user
can ever sign in; and a connection whose SCRAM exchange *fails* is still marked
authenticated (tansu-auth's SaslAuthenticate stores `Finished` whatever the proof), so
a client that ignores the failure goes on. This front does what a real broker's
listener does before the first Kafka request: TLS, then SCRAM against stored keys;
anything else before that is refused and the connection closed. After it, the bytes
are passed to tansu, which listens on loopback only and advertises this front's
address. It authenticates; it does not authorize: ACLs are Kafka's, checked against
the generated ones (deploy/kafka/), not here.

    python -m deploy.local.sasl_gateway --listen 127.0.0.1:9092 --upstream 127.0.0.1:19092 \
        --credentials .data/kafka/scram-credentials.json --cert broker.pem --key broker-key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.scram import HASHES, Credential, ScramError, ScramExchange

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58
MAX_FRAME = 100 * 1024 * 1024   # Kafka's socket.request.max.bytes
MAX_UNAUTHENTICATED_FRAME = 64 * 1024  # before sign-in, no request needs more
AUTH_TIMEOUT_S = 10.0


def log(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "logger": "sasl_gateway",
                      "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}),
          flush=True)


class Credentials:
    """{user: {mechanism: {salt, iterations, stored_key, server_key}}} from a JSON
    file, re-read when it changes (users added while running)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._users: dict[str, dict[str, Credential]] = {}

    def lookup(self, user: str, mechanism: str) -> Credential | None:
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return None
        if stamp != self._stamp:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self._users = {name: {m: Credential.from_json(m, c) for m, c in mechanisms.items()}
                           for name, mechanisms in raw.items()}
            self._stamp = stamp
        return self._users.get(user, {}).get(mechanism)


# --------------------------------------------------------------------------- wire

@dataclass(frozen=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    body: bytes          # what follows the header


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 28:
            raise ValueError("varint too long")


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _skip_tags(data: bytes, at: int) -> int:
    count, at = _uvarint(data, at)
    for _ in range(count):
        _tag, at = _uvarint(data, at)
        size, at = _uvarint(data, at)
        at += size
    return at


def flexible(api_key: int, api_version: int) -> bool:
    return api_key == SASL_AUTHENTICATE and api_version >= 2


def parse_request(frame: bytes) -> Request:
    api_key, api_version, correlation_id, client_id_length = struct.unpack_from(">hhih", frame)
    at = 10 + max(client_id_length, 0)
    if flexible(api_key, api_version):
        at = _skip_tags(frame, at)
    return Request(api_key, api_version, correlation_id, frame[at:])


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def handshake_request_mechanism(request: Request) -> str:
    (length,) = struct.unpack_from(">h", request.body)
    return request.body[2:2 + length].decode()


def handshake_response(request: Request, error: int, mechanisms: list[str]) -> bytes:
    body = struct.pack(">ih", request.correlation_id, error) + struct.pack(">i", len(mechanisms))
    return body + b"".join(_string(m) for m in mechanisms)


def authenticate_request_bytes(request: Request) -> bytes:
    if flexible(request.api_key, request.api_version):
        size, at = _uvarint(request.body, 0)
        return request.body[at:at + size - 1]
    (size,) = struct.unpack_from(">i", request.body)
    return request.body[4:4 + size]


def authenticate_response(request: Request, error: int, message: str | None, auth_bytes: bytes) -> bytes:
    version = request.api_version
    if flexible(request.api_key, version):
        out = struct.pack(">i", request.correlation_id) + b"\x00" + struct.pack(">h", error)
        out += b"\x00" if message is None else _put_uvarint(len(message.encode()) + 1) + message.encode()
        out += _put_uvarint(len(auth_bytes) + 1) + auth_bytes + struct.pack(">q", 0) + b"\x00"
        return out
    out = struct.pack(">ih", request.correlation_id, error)
    out += struct.pack(">h", -1) if message is None else _string(message)
    out += struct.pack(">i", len(auth_bytes)) + auth_bytes
    if version >= 1:
        out += struct.pack(">q", 0)  # session lifetime: no re-authentication asked
    return out


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if size < 10 or size > limit:
        raise ValueError(f"frame of {size} bytes refused")
    return await reader.readexactly(size)


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


# --------------------------------------------------------------------------- one client

class Refused(Exception):
    """The client is turned away; the text says why (logged, never a secret)."""


class Connection:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.reader, self.writer = reader, writer
        host, port = (writer.get_extra_info("peername") or ("?", "?"))[:2]
        self.peer = f"{host}:{port}"
        self.upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.mechanism: str | None = None

    async def serve(self) -> None:
        try:
            principal = await asyncio.wait_for(self._authenticate(), AUTH_TIMEOUT_S)
        except (Refused, ScramError, ValueError, TimeoutError) as exc:
            log("kafka_connection_refused", peer=self.peer, reason=str(exc) or type(exc).__name__)
            return
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        log("kafka_client_authenticated", peer=self.peer, principal=principal, mechanism=self.mechanism)
        self.gateway.principals.add(principal)
        await self._pipe()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream is None:
            host, port = self.gateway.upstream
            self.upstream = await asyncio.open_connection(host, port)
        return self.upstream

    async def _forward_one(self, payload: bytes) -> None:
        reader, writer = await self._upstream()
        writer.write(frame(payload))
        await writer.drain()
        self.writer.write(frame(await read_frame(reader, MAX_FRAME)))
        await self.writer.drain()

    async def _answer(self, payload: bytes) -> None:
        self.writer.write(frame(payload))
        await self.writer.drain()

    async def _authenticate(self) -> str:
        exchange: ScramExchange | None = None
        while True:
            payload = await read_frame(self.reader, MAX_UNAUTHENTICATED_FRAME)
            request = parse_request(payload)
            if request.api_key == API_VERSIONS:
                await self._forward_one(payload)
            elif request.api_key == SASL_HANDSHAKE:
                if request.api_version < 1:
                    raise Refused("SaslHandshake v0 (unframed SASL) is not supported")
                mechanism = handshake_request_mechanism(request)
                offered = sorted(HASHES, reverse=True)
                if mechanism not in HASHES:
                    await self._answer(handshake_response(request, UNSUPPORTED_SASL_MECHANISM, offered))
                    raise Refused(f"mechanism {mechanism!r} not offered")
                self.mechanism = mechanism
                exchange = ScramExchange(mechanism, self.gateway.credentials.lookup)
                await self._answer(handshake_response(request, 0, offered))
            elif request.api_key == SASL_AUTHENTICATE:
                if exchange is None:
                    await self._answer(authenticate_response(request, ILLEGAL_SASL_STATE,
                                                             "SaslHandshake first", b""))
                    raise Refused("SaslAuthenticate before SaslHandshake")
                token = authenticate_request_bytes(request).decode("utf-8", errors="replace")
                if not exchange.started:
                    await self._answer(authenticate_response(request, 0, None, exchange.first(token).encode()))
                    continue
                outcome = exchange.final(token)
                if not outcome.ok:
                    await self._answer(authenticate_response(
                        request, SASL_AUTHENTICATION_FAILED,
                        f"Authentication failed during authentication due to invalid credentials with "
                        f"SASL mechanism {exchange.mechanism}", b""))
                    raise Refused(f"invalid credentials for {outcome.principal!r}")
                await self._answer(authenticate_response(request, 0, None, outcome.message.encode()))
                return outcome.principal
            else:
                raise Refused(f"request {request.api_key} before authentication")

    async def _pipe(self) -> None:
        try:
            up_reader, up_writer = await self._upstream()
        except OSError as exc:
            log("kafka_upstream_unreachable", peer=self.peer, error=str(exc))
            return

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                while chunk := await source.read(256 * 1024):
                    sink.write(chunk)
                    await sink.drain()

        tasks = [asyncio.create_task(copy(self.reader, up_writer)),
                 asyncio.create_task(copy(up_reader, self.writer))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for writer in (self.writer, self.upstream[1] if self.upstream else None):
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


class Gateway:
    def __init__(self, upstream: tuple[str, int], credentials: Credentials,
                 tls: ssl.SSLContext | None) -> None:
        self.upstream = upstream
        self.credentials = credentials
        self.tls = tls
        self.principals: set[str] = set()
        self.connections: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            await connection.serve()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 1.0)  # a peer cut off never answers
            self.connections.discard(task)  # type: ignore[arg-type]

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.handle, host, port, ssl=self.tls, backlog=512)
        log("sasl_gateway_listening", listen=f"{host}:{port}", tls=self.tls is not None,
            upstream=f"{self.upstream[0]}:{self.upstream[1]}", mechanisms=sorted(HASHES))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        server.close()
        for task in list(self.connections):  # clients reconnect elsewhere: no draining
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)


def server_tls(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:  # a client certificate is checked when one is given
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="host:port clients connect to")
    parser.add_argument("--upstream", required=True, help="host:port of the broker (loopback)")
    parser.add_argument("--credentials", required=True, type=Path, help="SCRAM credentials (JSON, no passwords)")
    parser.add_argument("--cert", type=Path, help="TLS certificate (PEM); without it, SASL_PLAINTEXT")
    parser.add_argument("--key", type=Path)
    parser.add_argument("--client-ca", type=Path, help="CA of client certificates (mutual TLS, optional)")
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    tls = server_tls(args.cert, args.key, args.client_ca) if args.cert else None
    gateway = Gateway(_address(args.upstream), Credentials(args.credentials), tls)
    host, port = _address(args.listen)
    try:  # libuv's loop: about half the CPU of asyncio's for this byte pump
        import uvloop
    except ImportError:
        asyncio.run(gateway.serve(host, port))
    else:
        uvloop.run(gateway.serve(host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
