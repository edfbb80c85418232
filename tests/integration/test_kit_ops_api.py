"""The kit's ops API (relais_kit.ops_api) on a real service: the referral service
in-process, real PostgreSQL, the real broker, real tokens from its sign-in. Ops list a
parked outbox row and retry it (audited), and see one referral's journey: what the
service published (where to) and what its consumers handled (from where)."""

from __future__ import annotations

import uuid

import jwt

from relais_kit import outbox
from relais_kit.contract import load_contract
from relais_kit.settings import REPO_ROOT
from tests.referral_app import SITE, refer, referral_api, sign_in
from tests.support import eventually

CONTRACT = load_contract(REPO_ROOT / "schemas")
OPS = "/api/v1/ops"


async def test_ops_see_and_retry_parked_rows_and_follow_a_referral(database_url: str, kafka_bootstrap: str) -> None:
    async with referral_api(database_url, kafka_bootstrap) as client:  # signed in as the demo adviser
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        token = await sign_in(client, "demo-ops")
        ops = {"Authorization": f"Bearer {token}"}

        # A row the relay set aside (as if the broker had refused it), in the service's outbox.
        site_id = f"site-parked-{uuid.uuid4().hex[:8]}"
        event = CONTRACT.event("site.retired", source="/relais/referral", subject=site_id,
                               data={"site_id": site_id, "retired_at": "2026-11-20T10:00:00+01:00"})
        async with runtime.pool.acquire() as conn, conn.transaction():
            await outbox.record(conn, "sites", event, runtime.vault)
            outbox_id = await conn.fetchval(
                "UPDATE outbox SET parked_at = now(), park_reason = 'RecordTooLargeError: test'"
                " WHERE event_id = $1 RETURNING id", event.id)

        assert (await client.get(f"{OPS}/parked")).status_code == 403, "advisers may not"
        assert (await client.get(f"{OPS}/parked", headers={"Authorization": ""})).status_code == 401
        listed = await client.get(f"{OPS}/parked", headers=ops)
        assert listed.status_code == 200, listed.text
        assert listed.json()["schema"] == "referral"
        [row] = [r for r in listed.json()["rows"] if r["id"] == outbox_id]
        assert (row["topic"], row["event_type"], row["reason"]) == ("sites", event.type, "RecordTooLargeError: test")

        retry = f"{OPS}/parked/{outbox_id}/retry"
        for body in ({"reason": "  "}, {}):
            refused = await client.post(retry, json=body, headers=ops)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "reason", refused.text
        assert (await client.post(retry, json={"reason": "limit raised"})).status_code == 403
        assert (await client.post(retry, json={"reason": "limit raised"}, headers=ops)).status_code == 204
        again = await client.post(retry, json={"reason": "twice"}, headers=ops)
        assert again.status_code == 404 and "not parked" in again.json()["detail"]
        audit = await runtime.pool.fetch("SELECT action, outbox_id, requested_by, reason FROM outbox_actions")
        sub = jwt.decode(token, options={"verify_signature": False})["sub"]
        assert [tuple(a) for a in audit] == [("retry", outbox_id, sub, "limit raised")]

        async def published(subject: str) -> dict | None:
            body = (await client.get(f"{OPS}/journey/{subject}", headers=ops)).json()
            return body if body["published"] and all(p["status"] == "published" for p in body["published"]) else None

        handed_back = await eventually(lambda: published(site_id), what="the retried row to be published")
        assert handed_back["published"][0]["partition"] is not None and not handed_back["published"][0]["parked"]

        # One referral: what the service published about it, and its own router consuming it.
        referral_id = await refer(client)

        async def consumed(subject: str) -> dict | None:
            body = await published(subject)
            return body if body and body["consumed"] else None

        journey = await eventually(lambda: consumed(referral_id), what="the referral's events published and consumed")
        assert journey["service"] == "referral" and journey["subject"] == referral_id
        positions = {p["event_id"]: (p["topic"], p["partition"], p["offset"]) for p in journey["published"]}
        assert all(isinstance(p[1], int) and isinstance(p[2], int) for p in positions.values())
        for c in journey["consumed"]:  # read where it was written
            assert positions[c["event_id"]] == (c["topic"], c["partition"], c["offset"]), c
            assert c["event_type"] and c["processed_at"]
        assert not any(key in str(journey) for key in ("data", "citizen", "Cordier")), "ids and positions only"
        # The site, as the referral service's consumer of `sites` read it.
        site = (await client.get(f"{OPS}/journey/{SITE['site_id']}", headers=ops)).json()
        assert [(c["topic"], c["event_type"]) for c in site["consumed"]] == [
            ("sites", "fr.franceservices.site.upserted.v1")]
        assert isinstance(site["consumed"][0]["offset"], int)
        assert (await client.get(f"{OPS}/journey/{referral_id}")).status_code == 403
