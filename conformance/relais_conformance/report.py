"""The report: a table for people (stdout) and a JSON document for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relais_conformance.checks import FAIL, PASS, SKIP, CheckResult


def summary(results: list[CheckResult]) -> dict[str, int]:
    return {status.lower(): sum(r.status == status for r in results) for status in (PASS, FAIL, SKIP)}


def passed(results: list[CheckResult]) -> bool:
    return not any(r.status == FAIL for r in results)


def render(results: list[CheckResult], header: dict[str, Any]) -> str:
    width = max(len(r.name) for r in results)
    lines = [
        f"Relais conformance kit — operator {header['operator']} on {header['bootstrap']}",
        f"run of {header['duration_s']:.1f} s, {header['replies']} reply(ies) read from operator."
        f"{header['operator']}.outbox. The kit's referrals (look them up in your logs):",
        *(f"  {role:<18} {ref}" for role, ref in header["referrals"].items()),
        "",
        f"{'CHECK'.ljust(width)}  RESULT  WHAT IS CHECKED",
    ]
    for r in results:
        lines.append(f"{r.name.ljust(width)}  {r.status:<6}  {r.title}")
        for reason in r.failures:
            lines.append(f"{''.ljust(width)}    - {reason}")
        for note in r.notes:
            lines.append(f"{''.ljust(width)}    · {note}")
    if not header["replies"]:
        lines += ["", f"Nothing at all came back on operator.{header['operator']}.outbox. Is your consumer running, "
                  f"subscribed to operator.{header['operator']}.inbox, and does its private key match --public-key "
                  f"(kid {header.get('public_key_kid') or '-'})?"]
    counts = summary(results)
    lines += ["", f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped: "
              + ("CONFORMANT" if passed(results) else "NOT CONFORMANT")]
    return "\n".join(lines)


def write_json(path: Path, results: list[CheckResult], header: dict[str, Any]) -> None:
    document = dict(header)
    document.update(passed=passed(results), summary=summary(results),
                    failed=[r.name for r in results if r.status == FAIL],
                    checks=[r.as_dict() for r in results])
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
