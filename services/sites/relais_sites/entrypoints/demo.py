"""Demo data: the sites of `deploy/demo/sites.yaml`, upserted at start when
RELAIS_DEMO_DATA is true, by the service itself (not through the API, whose writers
are bound to their department). Idempotent: a site already described the same way
publishes nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from pydantic import TypeAdapter

from relais_kit.logs import log
from relais_kit.runtime import Runtime
from relais_sites.domain import Site
from relais_sites.domain.permissions import THE_SERVICE
from relais_sites.entrypoints.schemas import SiteBody
from relais_sites.service_layer.sites import upsert_site

_FILE = TypeAdapter(list[SiteBody])


def load_demo_sites(path: Path) -> list[Site]:
    """The file's sites, parents before the sites depending on them."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [body.to_domain() for body in _FILE.validate_python(doc["sites"])]


async def seed_demo_sites(runtime: Runtime, path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for site in load_demo_sites(path):
        outcome = await upsert_site(runtime, site, by=THE_SERVICE)
        counts["created" if outcome.created else "updated" if outcome.changed else "unchanged"] += 1
    log.info("demo_sites_seeded", file=path.name, **counts)
    return counts
