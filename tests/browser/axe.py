"""Accessibility checks of the browser tests: axe-core (npm, a devDependency of
libs/relais_kit, installed by `make install`) run in the page as it is on screen.

    from tests.browser.axe import accessible_at_both_widths, assert_accessible
    assert_accessible(page, "aujourd'hui, 375 px")   # the page as it is
    accessible_at_both_widths(page, "aujourd'hui")   # at 375 px, then at 1280 px

The pages' Content-Security-Policy forbids inline scripts: axe's source is evaluated
through the DevTools protocol (page.evaluate), which the CSP does not govern, rather than
added as a <script> element."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, ViewportSize

AXE_JS = Path(__file__).resolve().parents[2] / "libs" / "relais_kit" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.1 A and AA (what the RGAA follows) and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

_RUN = """async (tags) => {
  const results = await window.axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.map(t => Array.isArray(t) ? t.join(" >> ") : String(t)),
                              summary: n.failureSummary || "", html: n.html}))}));
}"""


@cache
def _axe_source() -> str:
    if not AXE_JS.exists():
        raise AssertionError(f"axe-core is not installed ({AXE_JS} missing): run `make install` "
                             f"(npm ci in libs/relais_kit)")
    # A trailing expression so that page.evaluate gets a string, not the last function.
    return AXE_JS.read_text(encoding="utf-8") + '\n;"axe-core loaded"'


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.1 A/AA and best practices)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    found: list[dict[str, Any]] = page.evaluate(_RUN, TAGS)
    return found


def describe(found: list[dict[str, Any]]) -> str:
    """A readable list: rule id, impact, help, then each target with axe's summary."""
    lines: list[str] = []
    for v in found:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{v['helpUrl']}]")
        for node in v["nodes"][:10]:
            lines.append(f"    {', '.join(node['target'])}  {node['html'][:160]}")
            for line in node["summary"].splitlines():
                if line.strip():
                    lines.append(f"        {line.strip()}")
        if len(v["nodes"]) > 10:
            lines.append(f"    ... and {len(v['nodes']) - 10} more elements")
    return "\n".join(lines)


def assert_accessible(page: Page, context: str) -> None:
    """Fails, listing each violation, when axe-core finds any on the page; `context`
    says which page at which width, for the message (e.g. "demande, 375 px")."""
    found = violations(page)
    if found:
        count = sum(len(v["nodes"]) for v in found)
        raise AssertionError(f"axe-core: {len(found)} rule(s) violated on {count} element(s) on {context} "
                             f"({page.url}, {page.viewport_size}):\n{describe(found)}")


PHONE: ViewportSize = {"width": 375, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


def accessible_at_both_widths(page: Page, context: str) -> None:
    """assert_accessible at 375 px then at 1280 px; the page left at the width it had."""
    was = page.viewport_size or DESKTOP
    for width, size in (("375 px", PHONE), ("1280 px", DESKTOP)):
        page.set_viewport_size(size)
        assert_accessible(page, f"{context}, {width}")
    page.set_viewport_size(was)
