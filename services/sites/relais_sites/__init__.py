"""Relais sites service: the registry of France Services sites (fixed sites, post
offices, mobile permanences, buses), their operators and schedules, published as
`site.upserted` / `site.retired` events on the compacted `sites` topic."""
