"""Where the citizen's texts come from: the templates shipped in the package, each of
which an ops person may replace by a file of the same name in the directory
`RELAIS_NOTIFICATIONS_TEMPLATES` (no code, no release: the service reads it at start).
Every template is tried at start on sample moments, so that a broken one stops the
service with its name rather than failing a citizen's message later."""

from __future__ import annotations

from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)

from relais_kit.logs import log
from relais_notifications.domain import easy_to_read, texts


def environment(override: Path | None = None) -> Environment:
    loaders = [FileSystemLoader(str(override))] if override else []
    env = Environment(
        loader=ChoiceLoader([*loaders, PackageLoader("relais_notifications", "templates")]),
        # Plain text (the printed letter's HTML escapes it itself); HTML, should one come, escaped.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shortened"] = texts.shortened
    return env


class BrokenTemplate(ValueError):
    """A template that cannot be rendered: its name and why."""


def wordings(override: Path | None = None) -> texts.Wordings:
    """The texts, every template tried on the samples first (BrokenTemplate if one fails)
    and reviewed against the easy-to-read rules (a warning in the log for each problem)."""
    if override is not None and not override.is_dir():
        raise BrokenTemplate(f"RELAIS_NOTIFICATIONS_TEMPLATES={override} is not a directory")
    found = texts.Wordings(environment(override))
    reviews: set[tuple[str, str]] = set()
    for step in texts.samples():
        for site in (None, texts.SAMPLE_SITE):
            for name, write in ((f"{step.wording}.txt.j2", lambda s=step, t=site: found.citizen_text(s, site=t)),
                                (f"{step.wording}.txt.j2", lambda s=step, t=site: found.citizen_text(
                                    s, letter=True, site=t)),
                                (f"sms/{step.wording}.txt.j2", lambda s=step, t=site: found.sms_text(s, t))):
                try:
                    text = write()
                except TemplateError as exc:
                    raise BrokenTemplate(f"template {name}: {exc}") from exc
                for problem in easy_to_read.review(text, quoted=texts.operator_words(step)):
                    reviews.add((name, problem))
    for name, problem in sorted(reviews):
        # Said, not refused: the rules a machine checks are a guide, a person decides.
        log.warning("template_not_easy_to_read", template=name, problem=problem)
    return found
