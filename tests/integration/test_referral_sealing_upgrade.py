"""Upgrading a referral service whose database holds personal data in clear (written
before encryption at rest): the migration keeps every row, the re-sealing loop seals the
values at start, and they still read — on a real PostgreSQL and the real broker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg

from relais_kit.db import create_pool, migrate
from relais_kit.sessions import SESSIONS_MIGRATIONS
from relais_referral.app import MIGRATIONS
from tests.referral_app import SITE, privacy_command, referral_api
from tests.support import dump_schema, eventually

SEALED_COLUMNS = (("visits", "citizen"), ("referrals", "summary"), ("referral_timeline", "detail"))


async def test_rows_stored_in_clear_before_are_sealed_at_start_and_still_read(
        database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    visit_id, referral_id = str(uuid.uuid4()), str(uuid.uuid4())
    question = "Pouvez-vous joindre l'avis d'imposition de Bérénice Ancienne ?"
    summary = "Demande enregistrée avant le chiffrement au repos, pour Bérénice Ancienne."
    await _the_schema_before_encryption_at_rest(database_url, tmp_path, visit_id, referral_id, question, summary)

    async with referral_api(database_url, kafka_bootstrap) as api:
        async with api.app.state.runtime.pool.acquire() as conn:  # type: ignore[attr-defined]
            await eventually(lambda: _all_sealed(conn), what="the clear values sealed by the re-sealing loop")
        body = (await api.get(f"/api/v1/referrals/{referral_id}")).json()
        code, out = await privacy_command(api, "find", "--by", "ops.test", "--visit", visit_id)
    assert [e["detail"] for e in body["timeline"]] == [{}, {"question": question}]
    assert code == 0 and referral_id in out
    dump = dump_schema(database_url, "referral")
    for secret in ("Bérénice", "Ancienne", question, summary, "berenice@example.org"):
        assert secret not in dump


async def _the_schema_before_encryption_at_rest(database_url: str, tmp_path: Path, visit_id: str,
                                                referral_id: str, question: str, summary: str) -> None:
    """The referral schema as the migrations before 007 left it, with a visit, a referral
    and its timeline written in clear."""
    before = tmp_path / "relais_referral" / "migrations"
    before.mkdir(parents=True)
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name < "007":
            (before / path.name).write_text(path.read_text())
    pool = await create_pool(database_url, "referral")
    try:
        await migrate(pool, SESSIONS_MIGRATIONS, before)
        async with pool.acquire() as conn:
            citizen = {"given_name": "Bérénice", "family_name": "Ancienne", "contact_channel": "email",
                       "email": "berenice@example.org", "birth_date": "1949-12-01", "phone": None,
                       "postal_address": None}
            await conn.execute(
                "INSERT INTO visits (visit_id, site_id, adviser_id, channel, citizen, opened_at)"
                " VALUES ($1, $2, 'demo-adviser', 'in_person', $3::jsonb, now())",
                visit_id, SITE["site_id"], json.dumps(citizen))
            await conn.execute(
                "INSERT INTO referrals (referral_id, visit_id, operator, procedure, site_id, adviser_id, summary,"
                " consent_given_at, requested_at, status) VALUES ($1, $2, 'caf', 'caf.prime-activite', $3,"
                " 'demo-adviser', $4, now(), now(), 'info_requested')", referral_id, visit_id, SITE["site_id"], summary)
            for event, detail in (("requested", {}), ("info_requested", {"question": question})):
                await conn.execute(
                    "INSERT INTO referral_timeline (referral_id, event, status, actor, at, detail)"
                    " VALUES ($1, $2, $2, 'platform', now(), $3::jsonb)", referral_id, event, json.dumps(detail))
    finally:
        await pool.close()


async def _all_sealed(conn: asyncpg.Connection) -> bool:
    for table, column in SEALED_COLUMNS:
        clear = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} NOT LIKE 'rv1:%'")
        if clear:
            return False
    return True
