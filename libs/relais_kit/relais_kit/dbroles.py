"""One PostgreSQL role per service: a LOGIN role `relais_<schema>` that owns the
service's schema and can reach no other one.

With an administrator's connection, `ensure_service_role` (idempotent):
- creates the role, or brings an existing one back to: LOGIN, no superuser, no
  CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, NOINHERIT, a connection limit;
- sets its password from a SCRAM-SHA-256 verifier computed here, so that the clear
  password never reaches the server (nor its statement log);
- lets it CONNECT to the database, and nothing else there: no CREATE on the database,
  nothing on the `public` schema (`REVOKE ALL ... FROM PUBLIC`, which also closes the
  CREATE that PUBLIC had on it before PostgreSQL 15);
- makes it the owner of the schema (created when missing) and of everything already in
  it (a schema that an earlier version made as the administrator is handed over);
  withdraws from PUBLIC whatever was granted on the schema and its objects, and the
  default EXECUTE/USAGE that PUBLIC would get on its future functions and types.
`isolation_problems` checks the result for a set of roles; the CLI wraps both:

    RELAIS_DB_ADMIN_URL=postgresql://admin@db/relais \
        python -m relais_kit.dbroles create referral        # prints the service's DSN
    python -m relais_kit.dbroles check referral sites notifications desk_caf

The password: `RELAIS_DB_PASSWORD` (or `--password-stdin`) if given, else generated
for a new role; an existing role keeps its password unless `--rotate-password`.
deploy/postgres/service-role.sql does the same by hand."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import structlog

from relais_kit.logs import configure_logging, log

ROLE_PREFIX = "relais_"
# Per instance: a pool of at most 10, plus the one that checks the schema at start; and
# room for a second instance and the ops commands (accounts, privacy, data keys).
DEFAULT_CONNECTION_LIMIT = 32
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RETRIES = 5  # concurrent set-ups of the same role (parallel test runs) collide on the catalogs


class RoleSetupError(RuntimeError):
    """The role cannot be set up as asked (the message says what to change)."""


@dataclass(frozen=True)
class ServiceRole:
    role: str
    schema: str
    # The service's DATABASE_URL; without a password when an existing role kept its own.
    dsn: str = field(repr=False)
    password_set: bool = False


def role_name(schema: str) -> str:
    return f"{ROLE_PREFIX}{schema}"


def check_identifier(kind: str, name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise RoleSetupError(f"{kind} name {name!r} must be a plain lower-case identifier "
                             f"(letters, digits, _; at most 63 characters)")
    return name


def _q(name: str) -> str:
    """A checked identifier, quoted (so that even a reserved word is a name)."""
    return f'"{check_identifier("identifier", name)}"'


def generate_password() -> str:
    return secrets.token_urlsafe(32)


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (as `\\password` in psql
    computes it): the server then never sees the password itself."""
    if not password or not password.isascii() or not password.isprintable():
        # PostgreSQL normalises other passwords (SASLprep) before hashing: not done here.
        raise RoleSetupError("the password must be printable ASCII, not empty")
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def with_credentials(dsn: str, user: str, password: str | None) -> str:
    """`dsn` (a postgresql:// URL) connecting as `user` (with `password`, if any)
    instead: same host, port, database and options."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise RoleSetupError("the database address must be a postgresql:// URL")
    hostport = parts.netloc.rpartition("@")[2]
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{hostport}"))


def user_of(dsn: str) -> str | None:
    parts = urlsplit(dsn)
    return parts.username


# ---------------------------------------------------------------------------- set-up


async def ensure_service_role(admin_dsn: str, schema: str, *, role: str | None = None,
                              password: str | None = None, rotate_password: bool = False,
                              connection_limit: int = DEFAULT_CONNECTION_LIMIT) -> ServiceRole:
    """The role of the service whose schema is `schema` (default name
    `relais_<schema>`), set up as the module says; returns the service's DSN."""
    check_identifier("schema", schema)
    role = check_identifier("role", role or role_name(schema))
    if connection_limit < 2:
        raise RoleSetupError("the connection limit must be at least 2 (a pool and its start-up check)")
    conn = await asyncpg.connect(admin_dsn)
    try:
        for attempt in range(1, _RETRIES + 1):
            try:
                async with conn.transaction():
                    new_password = await _set_up(conn, schema, role, password, rotate_password, connection_limit)
                break
            except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError,
                    asyncpg.InternalServerError, asyncpg.SerializationError) as exc:
                # Another set-up of the same role at the same moment ("tuple concurrently
                # updated", "role already exists"): once it committed, ours goes through.
                if attempt == _RETRIES:
                    raise RoleSetupError(f"could not set up role {role}: {exc}") from exc
                await asyncio.sleep(0.1 * attempt)
    finally:
        await conn.close()
    log.info("db_role_ready", role=role, schema=schema, password_set=new_password is not None)
    return ServiceRole(role, schema, with_credentials(admin_dsn, role, new_password),
                       password_set=new_password is not None)


async def _set_up(conn: asyncpg.Connection, schema: str, role: str, password: str | None,
                  rotate_password: bool, connection_limit: int) -> str | None:
    admin = await conn.fetchval("SELECT session_user")
    if role == admin:
        raise RoleSetupError(f"role {role} is the administrator's own: a service needs a role of its own")
    r, s = _q(role), _q(schema)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('relais.dbroles'))")
    exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
    if password is None and (not exists or rotate_password):
        password = generate_password()
    attributes = (f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
                  f" CONNECTION LIMIT {int(connection_limit)}")
    if password is not None:
        # A verifier, not the password: PostgreSQL stores it as it is. Literal quoting
        # is safe here (base64 and `$:` only), parameters are not allowed in ALTER ROLE.
        attributes += f" PASSWORD '{scram_verifier(password)}'"
    await conn.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {r} {attributes}")
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {r}')
    await conn.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
    if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = 'public'"):
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
        await conn.execute(f"ALTER SCHEMA {s} OWNER TO {r}")
        await _hand_over(conn, schema, role)
    else:
        await conn.execute(f"CREATE SCHEMA {s} AUTHORIZATION {r}")
    await conn.execute(f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC")
    for kind in ("TABLES", "SEQUENCES", "ROUTINES"):
        await conn.execute(f"REVOKE ALL ON ALL {kind} IN SCHEMA {s} FROM PUBLIC")
    await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {r} REVOKE EXECUTE ON ROUTINES FROM PUBLIC")
    await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {r} REVOKE USAGE ON TYPES FROM PUBLIC")
    await conn.execute(f'ALTER ROLE {r} IN DATABASE "{database}" SET search_path = {s}')
    return password


async def _hand_over(conn: asyncpg.Connection, schema: str, role: str) -> None:
    """Everything in `schema` not yet owned by `role` becomes its own (tables take their
    indexes, triggers and sequences along)."""
    r = _q(role)
    statement = {"r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
    for row in await conn.fetch(
            "SELECT c.oid::regclass::text AS name, c.relkind::text AS relkind FROM pg_class c"
            " WHERE c.relnamespace = $1::regnamespace AND c.relowner <> $2::regrole"
            " AND c.relkind IN ('r', 'p', 'f', 'v', 'm')", schema, role):
        await conn.execute(f"ALTER {statement[row['relkind']]} {row['name']} OWNER TO {r}")
    queries = [  # what is left once the tables moved with theirs
        ("SEQUENCE", "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = $1::regnamespace"
                     " AND c.relowner <> $2::regrole AND c.relkind = 'S'"),
        ("ROUTINE", "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = $1::regnamespace"
                    " AND p.proowner <> $2::regrole"),
        ("TYPE", "SELECT t.oid::regtype::text FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid"
                 " WHERE t.typnamespace = $1::regnamespace AND t.typowner <> $2::regrole"
                 " AND (t.typtype IN ('e', 'd', 'r') OR c.relkind = 'c')"),
    ]
    for kind, query in queries:
        for name in [row[0] for row in await conn.fetch(query, schema, role)]:
            await conn.execute(f"ALTER {kind} {name} OWNER TO {r}")


async def drop_service_role(admin_dsn: str, role: str) -> None:
    """Drops the role and, in the database of `admin_dsn`, everything it owns — its
    schema and the service's data with it. For tests and decommissioning; a role that
    still owns objects in another database is refused by PostgreSQL."""
    r = _q(check_identifier("role", role))
    conn = await asyncpg.connect(admin_dsn)
    try:
        if await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f"DROP OWNED BY {r} CASCADE")
            await conn.execute(f"DROP ROLE {r}")
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- check


async def isolation_problems(admin_dsn: str, roles: Mapping[str, str]) -> list[str]:
    """For `roles` (role -> its schema), in the database of `admin_dsn`: every way one
    of them exceeds its own schema (empty: isolated)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        return [problem for role, schema in roles.items() for problem in await _problems_of(conn, role, schema)]
    finally:
        await conn.close()


async def _problems_of(conn: asyncpg.Connection, role: str, schema: str) -> list[str]:
    found: list[str] = []
    info = await conn.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", role)
    if info is None:
        return [f"role {role} does not exist"]
    for attribute in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls"):
        if info[attribute]:
            found.append(f"role {role} has {attribute[3:].upper()}")
    owner = await conn.fetchval("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", schema)
    if owner != role:
        found.append(f"schema {schema} is owned by {owner or 'nobody (missing)'}, not {role}")
    if await conn.fetchval("SELECT has_database_privilege($1, current_database(), 'CREATE')", role):
        found.append(f"role {role} may create schemas in the database")
    for row in await conn.fetch(
            "SELECT nspname, has_schema_privilege($1, oid, 'USAGE') AS usage,"
            " has_schema_privilege($1, oid, 'CREATE') AS create FROM pg_namespace"
            " WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', $2)"
            " ORDER BY nspname", role, schema):
        if row["usage"] or row["create"]:
            what = " and ".join(w for w in ("usage", "create") if row[w])
            found.append(f"role {role} has {what} on schema {row['nspname']}")
    for other in await conn.fetch(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " WHERE m.member = $1::regrole ORDER BY 1", role):
        found.append(f"role {role} is a member of {other['rolname']}")
    for grant in await conn.fetch(
            "SELECT c.relname, coalesce(g.rolname, 'PUBLIC') AS grantee, a.privilege_type"
            " FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee"
            " WHERE c.relnamespace = $1::regnamespace AND a.grantee <> c.relowner ORDER BY 1, 2, 3", schema):
        found.append(f"{grant['privilege_type']} on {schema}.{grant['relname']} is granted to {grant['grantee']}")
    return found


# ---------------------------------------------------------------------------- CLI


def _admin_dsn(given: str | None) -> str:
    dsn = given or os.environ.get("RELAIS_DB_ADMIN_URL") or os.environ.get("DATABASE_URL")
    if not dsn:
        raise RoleSetupError("no administrator's connection: set RELAIS_DB_ADMIN_URL (or pass --admin-url)")
    return dsn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relais_kit.dbroles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", help="administrator's postgresql:// URL (default: RELAIS_DB_ADMIN_URL, "
                                            "then DATABASE_URL; prefer the variable: arguments show in `ps`)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create or repair a service's role; prints the service's DSN")
    create.add_argument("schema", help="the service's schema (referral, sites, notifications, desk_<operator>)")
    create.add_argument("--role", help="role name (default: relais_<schema>)")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from stdin (else RELAIS_DB_PASSWORD, else generated for a new role)")
    create.add_argument("--rotate-password", action="store_true", help="set a new generated password")
    create.add_argument("--connection-limit", type=int, default=DEFAULT_CONNECTION_LIMIT)
    check = commands.add_parser("check", help="report any way the services' roles exceed their schema")
    check.add_argument("schemas", nargs="+", help="schema (role relais_<schema>) or role=schema")
    args = parser.parse_args(argv)
    configure_logging("dbroles")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: the DSN alone
    try:
        admin = _admin_dsn(args.admin_url)
        if args.command == "create":
            password = (sys.stdin.readline().rstrip("\n") if args.password_stdin
                        else os.environ.get("RELAIS_DB_PASSWORD") or None)
            made = asyncio.run(ensure_service_role(admin, args.schema, role=args.role, password=password,
                                                   rotate_password=args.rotate_password,
                                                   connection_limit=args.connection_limit))
            if not made.password_set:
                print(f"role {made.role} kept its password (--rotate-password for a new one)", file=sys.stderr)
            print(made.dsn)
            return 0
        roles = dict(s.split("=", 1) if "=" in s else (role_name(s), s) for s in args.schemas)
        problems = asyncio.run(isolation_problems(admin, roles))
        for problem in problems:
            print(problem)
        print(f"{len(roles)} roles checked, {len(problems)} problems", file=sys.stderr)
        return 1 if problems else 0
    except (RoleSetupError, asyncpg.PostgresError, OSError) as exc:
        print(f"relais_kit.dbroles: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
