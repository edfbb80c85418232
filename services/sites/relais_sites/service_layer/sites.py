"""The registry's use cases. Each runs in ONE PostgreSQL transaction that writes the
sites table and, only when something changed, records the event announcing it in
the outbox; the outbox relay publishes it on the `sites` topic afterwards. Each write
first asks `domain.permissions` whether its editor may make it, on the registry as it
stands inside that transaction. After a broker loss, `reannounce_registry` announces
the whole registry again (the outbox window does not hold every site's last event)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from structlog.contextvars import bound_contextvars

from relais_kit import outbox
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.runtime import Runtime
from relais_sites.adapters.store import SiteFilter, SiteStore
from relais_sites.domain import InvalidSite, Site, SiteRecord
from relais_sites.domain import events as ev
from relais_sites.domain.permissions import Editor, NotAllowed, retire_refusal, upsert_refusal
from relais_sites.domain.rules import kind_change_problems, parent_problems


class SiteNotFound(LookupError):
    def __init__(self, site_id: str) -> None:
        super().__init__(f"unknown site {site_id!r}")
        self.site_id = site_id


class SiteHasDependents(Exception):
    """A site cannot be retired while active permanences or buses depend on it."""

    def __init__(self, site_id: str, children: list[str]) -> None:
        super().__init__(f"site {site_id!r} still has active dependent sites: {', '.join(children)}; "
                         "retire or move them first")
        self.site_id = site_id
        self.children = children


@dataclass(frozen=True)
class Outcome:
    record: SiteRecord
    created: bool   # the site did not exist before
    changed: bool   # an event was recorded


async def upsert_site(runtime: Runtime, site: Site, *, by: Editor) -> Outcome:
    """Creates or updates a site (and brings a retired one back). Describing a site
    exactly as it already is changes nothing and publishes nothing."""
    with bound_contextvars(site_id=site.site_id, by=by.user_id):
        async with runtime.pool.acquire() as conn, conn.transaction():
            store = SiteStore(conn)
            # The parent is locked too, so that it cannot be retired meanwhile.
            await store.lock(site.site_id, *filter(None, [site.parent_site_id]))
            before = await store.get(site.site_id)
            parent = await store.get(site.parent_site_id) if site.parent_site_id else None
            _refuse_if(upsert_refusal(by, site, before.site if before else None,
                                      parent.site if parent else None), by)
            problems = parent_problems(site, parent)
            if before is not None and before.site.kind != site.kind:
                problems += kind_change_problems(site, await store.active_children(site.site_id))
            if problems:
                raise InvalidSite(problems)
            if before is not None and before.active and before.site == site:
                log.info("site_unchanged")
                return Outcome(before, created=False, changed=False)
            at = now()
            record = SiteRecord(site, created_at=before.created_at if before else at, updated_at=at)
            await store.save(record)
            await outbox.record(conn, ev.TOPIC, runtime.contract.event(
                ev.UPSERTED, source=runtime.source, subject=site.site_id, data=ev.upserted_data(record)),
                runtime.vault)
        log.info("site_upserted", created=before is None, revived=before is not None and not before.active,
                 kind=site.kind)
        return Outcome(record, created=before is None, changed=True)


async def retire_site(runtime: Runtime, site_id: str, *, by: Editor) -> Outcome:
    """Retires a site for good; retiring a retired site changes nothing."""
    with bound_contextvars(site_id=site_id, by=by.user_id):
        async with runtime.pool.acquire() as conn, conn.transaction():
            store = SiteStore(conn)
            await store.lock(site_id)
            before = await store.get(site_id)
            _refuse_if(retire_refusal(by, before.site if before else None), by)
            if before is None:
                raise SiteNotFound(site_id)
            if not before.active:
                return Outcome(before, created=False, changed=False)
            children = await store.active_children(site_id)
            if children:
                raise SiteHasDependents(site_id, children)
            at = now()
            record = SiteRecord(before.site, created_at=before.created_at, updated_at=at, retired_at=at)
            await store.save(record)
            await outbox.record(conn, ev.TOPIC, runtime.contract.event(
                ev.RETIRED, source=runtime.source, subject=site_id, data=ev.retired_data(site_id, at)),
                runtime.vault)
        log.info("site_retired")
        return Outcome(record, created=False, changed=True)


async def reannounce_registry(runtime: Runtime, conn: asyncpg.Connection) -> None:
    """After the broker was lost (a `relais_kit.recovery` hook, in the repair's
    transaction, after the outbox window was marked for re-publication): every site
    announced again through the outbox, an active one as `site.upserted`, a retired one
    as `site.retired`, so that the compacted `sites` topic holds every site again, not
    only those changed within the window. Coming last in outbox order, these are the
    last event of each key on the topic. Their data is the registry's (same
    `updated_at`, same `retired_at`): a consumer that already had it changes nothing.

    The table is locked against writers (SHARE) until the repair commits: a change
    in flight commits first and is read here, a later one is recorded after these."""
    await conn.execute("LOCK TABLE sites IN SHARE MODE")
    records = await SiteStore(conn).list(SiteFilter(include_retired=True))
    for record in records:
        site_id = record.site.site_id
        if record.retired_at is None:
            event = runtime.contract.event(ev.UPSERTED, source=runtime.source, subject=site_id,
                                           data=ev.upserted_data(record))
        else:
            event = runtime.contract.event(ev.RETIRED, source=runtime.source, subject=site_id,
                                           data=ev.retired_data(site_id, record.retired_at))
        await outbox.record(conn, ev.TOPIC, event, runtime.vault)
    retired = sum(1 for r in records if r.retired_at is not None)
    log.warning("sites_reannounced", active=len(records) - retired, retired=retired)


def _refuse_if(refusal: str | None, by: Editor) -> None:
    if refusal is not None:
        log.warning("site_change_refused", role=by.role, reason=refusal)
        raise NotAllowed(refusal)


async def get_site(runtime: Runtime, site_id: str) -> SiteRecord:
    async with runtime.pool.acquire() as conn:
        record = await SiteStore(conn).get(site_id)
    if record is None:
        raise SiteNotFound(site_id)
    return record


async def list_sites(runtime: Runtime, where: SiteFilter) -> list[SiteRecord]:
    async with runtime.pool.acquire() as conn:
        return await SiteStore(conn).list(where)
