"""One PostgreSQL role per service (relais_kit.dbroles), on the real PostgreSQL: each
role owns its schema, reads no other one, creates nothing elsewhere; a service started
with its own role's URL migrates and works; a compromised service cannot reach the
citizens' data of another; the embedded PostgreSQL asks every role for its password.

Role names are cluster-wide: each test uses names of its own (`relais_t<random>_...`)
and drops them; the schemas live in the test's own database."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from deploy.local import pgroles
from relais_kit import dbroles
from relais_kit.db import DatabaseAccessError, create_pool, migrate
from relais_kit.embedded import start_postgres
from relais_kit.runtime import until_ready
from relais_kit.sessions import SESSIONS_MIGRATIONS
from relais_kit.settings import REPO_ROOT

SERVICES = REPO_ROOT / "services"
MIGRATIONS = {
    "referral": [SESSIONS_MIGRATIONS, SERVICES / "referral" / "relais_referral" / "migrations"],
    "notifications": [SERVICES / "notifications" / "relais_notifications" / "migrations"],
    "sites": [SERVICES / "sites" / "relais_sites" / "migrations"],
    "desk_caf": [SESSIONS_MIGRATIONS, SERVICES / "desk" / "relais_desk" / "migrations"],
}
CITIZEN = {"first_name": "Camille", "last_name": "Martin", "email": "camille.martin@example.fr"}

RoleMaker = Callable[[str], Awaitable[dbroles.ServiceRole]]


@pytest_asyncio.fixture
async def make_role(database_url: str) -> AsyncIterator[RoleMaker]:
    """`await make_role(schema)`: the role of that schema in the test's database, under
    a name of this test's own; every one dropped afterwards."""
    prefix = f"relais_t{uuid.uuid4().hex[:8]}_"
    made: list[str] = []

    async def make(schema: str) -> dbroles.ServiceRole:
        role = await dbroles.ensure_service_role(database_url, schema, role=prefix + schema)
        made.append(role.role)
        return role

    yield make
    for role in made:
        await dbroles.drop_service_role(database_url, role)


async def migrated(role: dbroles.ServiceRole) -> asyncpg.Pool:
    pool = await create_pool(role.dsn, role.schema, max_size=2)
    await migrate(pool, *MIGRATIONS[role.schema])
    return pool


async def a_visit_of(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO visits (visit_id, site_id, adviser_id, channel, citizen, opened_at)"
            " VALUES ($1, 'nerac-poste', 'adviser-1', 'in_person', $2, $3)",
            uuid.uuid4(), json.dumps(CITIZEN), datetime.now(UTC))


async def test_each_role_owns_its_schema_and_nothing_else(database_url: str, make_role: RoleMaker) -> None:
    roles = [await make_role(schema) for schema in MIGRATIONS]
    for role in roles:
        await (await migrated(role)).close()
    admin = await asyncpg.connect(database_url)
    try:
        for role in roles:
            assert await admin.fetchval("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1",
                                        role.schema) == role.role
            strangers = await admin.fetch(
                "SELECT c.relname, c.relowner::regrole::text AS owner FROM pg_class c"
                " WHERE c.relnamespace = $1::regnamespace AND c.relowner <> $2::regrole", role.schema, role.role)
            assert strangers == [], f"{role.schema}: objects owned by someone else: {strangers}"
            assert await admin.fetchval("SELECT count(*) FROM pg_class WHERE relnamespace = $1::regnamespace",
                                        role.schema) > 5  # the migrations ran, as the role
    finally:
        await admin.close()
    assert await dbroles.isolation_problems(database_url, {r.role: r.schema for r in roles}) == []


async def test_referral_and_notifications_cannot_read_each_other(make_role: RoleMaker) -> None:
    referral = await migrated(await make_role("referral"))
    notifications = await migrated(await make_role("notifications"))
    try:
        await a_visit_of(referral)
        for pool, other in ((referral, "notifications.deliveries"), (notifications, "referral.visits"),
                            (referral, "notifications.outbox"), (notifications, "referral.accounts")):
            async with pool.acquire() as conn:
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.fetch(f"SELECT * FROM {other}")
    finally:
        await referral.close()
        await notifications.close()


async def test_no_role_creates_anything_outside_its_schema(database_url: str, make_role: RoleMaker) -> None:
    admin = await asyncpg.connect(database_url)
    try:  # something an administrator left readable to everyone in `public`
        await admin.execute("CREATE TABLE public.left_open (secret text); GRANT SELECT ON public.left_open TO PUBLIC")
    finally:
        await admin.close()
    pool = await migrated(await make_role("sites"))
    try:
        async with pool.acquire() as conn:
            for statement in ("CREATE TABLE public.planted (id int)", "CREATE SCHEMA planted",
                              "SELECT * FROM public.left_open"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
    finally:
        await pool.close()


async def test_an_existing_schema_is_handed_over_to_its_role(database_url: str, make_role: RoleMaker) -> None:
    """A schema made by an earlier version as the administrator (tables, sequences,
    the kit's trigger function) becomes the role's, data included."""
    before = await create_pool(database_url, "notifications")
    await migrate(before, *MIGRATIONS["notifications"])
    await before.close()
    role = await make_role("notifications")
    pool = await create_pool(role.dsn, role.schema)
    try:
        assert await migrate(pool, *MIGRATIONS["notifications"]) == []
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == role.role
            await conn.execute("INSERT INTO audit (user_id, role, action, referral_id)"
                               " VALUES ('ops-1', 'ops', 'list', $1)", uuid.uuid4())  # its sequence too
            await conn.execute("CREATE TABLE scratch (id int)")  # the schema is the role's own
    finally:
        await pool.close()
    assert await dbroles.isolation_problems(database_url, {role.role: role.schema}) == []


async def test_an_ops_command_run_as_the_administrator_acts_as_the_owner(database_url: str,
                                                                         make_role: RoleMaker) -> None:
    role = await make_role("desk_caf")
    pool = await create_pool(database_url, role.schema)  # e.g. `python -m relais_desk add-expert`
    try:
        await migrate(pool, *MIGRATIONS["desk_caf"])
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == role.role
    finally:
        await pool.close()
    assert await dbroles.isolation_problems(database_url, {role.role: role.schema}) == []


async def test_a_role_refused_its_schema_is_told_what_to_do(make_role: RoleMaker) -> None:
    sites = await make_role("sites")
    with pytest.raises(DatabaseAccessError, match=r"relais_kit\.dbroles create referral"):
        await create_pool(sites.dsn, "referral")  # missing: it may not create it
    await make_role("notifications")
    with pytest.raises(DatabaseAccessError, match="may not use schema notifications"):
        await create_pool(sites.dsn, "notifications")


async def test_setting_up_twice_changes_nothing(database_url: str, make_role: RoleMaker) -> None:
    first = await make_role("sites")
    again = await dbroles.ensure_service_role(database_url, "sites", role=first.role)
    assert first.password_set and not again.password_set  # the existing role kept its password
    assert await dbroles.isolation_problems(database_url, {first.role: "sites"}) == []


async def test_a_compromised_sites_service_cannot_reach_the_citizens_data(database_url: str,
                                                                          make_role: RoleMaker) -> None:
    """The attacker holds the sites service's URL (read from its environment) and tries
    every door to the referral service's visits."""
    referral_role = await make_role("referral")
    referral = await migrated(referral_role)
    await a_visit_of(referral)
    await referral.close()
    admin = await asyncpg.connect(database_url)
    await admin.execute("ANALYZE referral.visits")  # statistics hold sample values of the column
    await admin.close()
    sites = await make_role("sites")
    attacker = await asyncpg.connect(sites.dsn)
    try:
        for attempt in ("SELECT citizen FROM referral.visits",
                        f"SET ROLE {referral_role.role}",
                        "COPY referral.visits TO STDOUT",
                        "SELECT pg_read_file('pg_hba.conf')",
                        f"ALTER ROLE {sites.role} SUPERUSER",
                        f"GRANT {referral_role.role} TO {sites.role}",
                        "CREATE SCHEMA referral_copy"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await attacker.execute(attempt)
        await attacker.execute("SET search_path = referral")
        with pytest.raises(asyncpg.UndefinedTableError):  # the schema is out of its search path
            await attacker.execute("SELECT citizen FROM visits")
        # The statistics views show only what the role may read.
        assert await attacker.fetchval("SELECT count(*) FROM pg_stats WHERE schemaname = 'referral'") == 0
    finally:
        await attacker.close()


async def test_a_service_started_with_its_own_url_migrates_and_works(
        database_url: str, kafka_bootstrap: str, make_role: RoleMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    from relais_sites.app import create_app
    from relais_sites.settings import load_settings

    role = await make_role("sites")
    monkeypatch.setenv("DATABASE_URL", role.dsn)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RELAIS_DEMO_DATA", "1")  # seeds the registry at start: writes and publishes
    app = create_app(load_settings())
    async with app.router.lifespan_context(app):
        await until_ready(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sites") as client:
            health = (await client.get("/healthz")).json()
        assert health["database"] == "ok", health
        async with app.state.runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == role.role
            assert await conn.fetchval("SELECT count(*) FROM sites") > 0
            # the outbox relay, as the role, published what the seeding wrote
            for _ in range(100):
                if await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0:
                    break
                await asyncio.sleep(0.1)
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert await dbroles.isolation_problems(database_url, {role.role: "sites"}) == []


async def test_the_embedded_postgres_asks_every_role_for_its_password() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="relais-test-pgroles-"))
    server, url = start_postgres(data_dir / "postgres")
    try:
        secrets = pgroles.Secrets(data_dir)
        admin = await pgroles.require_passwords(url, secrets)
        urls = await pgroles.service_urls(admin, {"referral": "referral"}, {"referral": 1}, secrets)
        assert (data_dir / pgroles.SECRETS_FILE).stat().st_mode & 0o077 == 0
        for who, password in (("postgres", None), ("relais_referral", None), ("relais_referral", "wrong")):
            with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
                await asyncpg.connect(dbroles.with_credentials(url, who, password))
        conn = await asyncpg.connect(urls["referral"])
        assert await conn.fetchval("SELECT current_user") == "relais_referral"
        await conn.close()
        # A second start with the same data folder finds its passwords again.
        again = await pgroles.require_passwords(url, pgroles.Secrets(data_dir))
        assert again == admin
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_command_prints_the_service_url_alone_and_reports_a_leak(database_url: str) -> None:
    role = f"relais_t{uuid.uuid4().hex[:8]}_cli"
    env = {**os.environ, "RELAIS_DB_ADMIN_URL": database_url, "PYTHONPATH": str(REPO_ROOT / "libs" / "relais_kit")}

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "relais_kit.dbroles", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    async def as_role(dsn: str) -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("SELECT current_user"))
        finally:
            await conn.close()

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        created = command("create", "sites", "--role", role)
        assert created.returncode == 0, created.stderr
        dsn = created.stdout.strip()  # `DATABASE_URL=$(python -m relais_kit.dbroles create sites)`
        assert dsn.startswith(f"postgresql://{role}:") and "\n" not in dsn
        assert dsn.split(":")[2].split("@")[0] not in created.stderr  # the password only on stdout
        assert asyncio.run(as_role(dsn)) == role
        assert command("check", f"{role}=sites").returncode == 0
        asyncio.run(admin("CREATE SCHEMA reporting; GRANT USAGE ON SCHEMA reporting TO PUBLIC"))
        leaking = command("check", f"{role}=sites")
        assert leaking.returncode == 1
        assert f"role {role} has usage on schema reporting" in leaking.stdout
    finally:
        asyncio.run(dbroles.drop_service_role(database_url, role))
