"""The contract guards with their real tools (tools/contract/): the official AsyncAPI parser
accepts schemas/asyncapi.yaml and refuses broken copies, the HTML reference names every
event type and topic, and check.sh fails on an incompatible change.

Needs node and npm; the npm packages are installed once (`npm ci`) if missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "contract"
SCHEMAS = ROOT / "schemas"


def run(*args: str | Path, timeout: float = 180, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module", autouse=True)
def npm_packages() -> None:
    """tools/contract's npm packages, installed from package-lock.json when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the contract guards need node and npm on the PATH (node >= 18)")
    done = run("bash", "-c", "source tools/contract/npm-deps.sh && contract_npm_deps", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def copy_contract(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for sub in ("events", "personal"):
        if (SCHEMAS / sub).is_dir():
            shutil.copytree(SCHEMAS / sub, target / sub)
    shutil.copy2(SCHEMAS / "asyncapi.yaml", target / "asyncapi.yaml")
    return target


def validate(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("node", TOOLS / "validate-asyncapi.mjs", *extra, path, timeout=120)


def test_the_repository_asyncapi_document_is_valid() -> None:
    done = validate(SCHEMAS / "asyncapi.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid (AsyncAPI 3." in done.stdout


BROKEN = {
    "message $ref to nothing": (
        ("#/components/messages/visitClosed'", "#/components/messages/nothingHere'"),
        "'#/components/messages/nothingHere' does not exist",
    ),
    "unsupported asyncapi version": (("asyncapi: 3.0.0", "asyncapi: 9.9.9"), 'Version "9.9.9" is not supported'),
    "channel address of the wrong type": (("address: visits", "address: 42"), '"address" property type must be'),
    "channel address parameter not declared": (
        ("address: operator.{operator}.inbox", "address: operator.{code}.inbox"),
        "Not all channel's parameters are described",
    ),
    "payload schema file missing": (
        ("$ref: ./events/visit.opened.v1.json", "$ref: ./events/visit.gone.v1.json"),
        "no such file",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_asyncapi_document_fails_with_the_validators_message(tmp_path: Path, case: str) -> None:
    (old, new), expected = BROKEN[case]
    contract = copy_contract(tmp_path / "schemas")
    text = (contract / "asyncapi.yaml").read_text()
    assert old in text, f"the test's anchor {old!r} is gone from asyncapi.yaml"
    (contract / "asyncapi.yaml").write_text(text.replace(old, new, 1))
    done = validate(contract / "asyncapi.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "INVALID" in done.stderr
    assert expected in done.stderr, done.stderr


def test_fail_severity_is_a_knob() -> None:
    """Errors and warnings fail by default; informational diagnostics only when asked."""
    default = validate(SCHEMAS / "asyncapi.yaml")
    strict = validate(SCHEMAS / "asyncapi.yaml", "--fail-severity", "hint")
    if re.search(r"^(info|hint) ", default.stdout, re.MULTILINE):
        assert default.returncode == 0 and strict.returncode == 1, strict.stdout + strict.stderr
    else:
        assert strict.returncode == 0, strict.stdout + strict.stderr
    assert validate(SCHEMAS / "asyncapi.yaml", "--fail-severity", "nonsense").returncode == 2


def test_the_html_reference_names_every_event_type_and_topic(tmp_path: Path) -> None:
    out = tmp_path / "reference"
    done = run("bash", TOOLS / "reference.sh", "--out", out, SCHEMAS / "asyncapi.yaml", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    doc = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    event_types = {p.name.removesuffix(".json").rsplit(".v", 1)[0] for p in (SCHEMAS / "events").glob("*.v*.json")}
    assert event_types, "no event schema found"
    missing_events = sorted(name for name in event_types if name not in html)
    assert missing_events == []
    message_names = {m["name"] for m in doc["components"]["messages"].values()}
    assert sorted(n for n in message_names if n not in html) == []
    addresses = {c["address"] for c in doc["channels"].values()}
    assert sorted(a for a in addresses if a not in html) == []
    assert doc["info"]["title"].split(" — ")[0] in html
    # The JSON Schemas ship next to the page.
    for sub in ("events", "personal"):
        if (SCHEMAS / sub).is_dir():
            copied = sorted(p.name for p in (out / "schemas" / sub).glob("*.json"))
            assert copied == sorted(p.name for p in (SCHEMAS / sub).glob("*.json"))


def test_check_fails_on_an_incompatible_change(tmp_path: Path) -> None:
    """check.sh, the CI entry point: a released snapshot, then an enum shrunk and a property removed."""
    contract = copy_contract(tmp_path / "schemas")
    released = run(sys.executable, TOOLS / "compat.py", "release", "1.0.0", "--current", contract)
    assert released.returncode == 0, released.stderr
    assert (contract / "released" / "1.0.0" / "asyncapi.yaml").is_file()

    path = contract / "events" / "visit.opened.v1.json"
    schema = json.loads(path.read_text())
    schema["properties"]["channel"]["enum"].remove("video")
    removed = sorted(p for p in schema["properties"] if p not in schema.get("required", []))[0]
    del schema["properties"][removed]
    path.write_text(json.dumps(schema, indent=2))

    env = {"CONTRACT_SCHEMAS": str(contract), "CONTRACT_OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    done = run("bash", TOOLS / "check.sh", env=env, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert re.search(r"contract: FAILED: compatibility$", done.stderr, re.MULTILINE), output
    assert "events/visit.opened.v1.json#/properties/channel/enum" in output
    assert f"events/visit.opened.v1.json#/properties/{removed}" in output
    assert "asyncapi validation: ok" in output and "html reference: ok" in output
    assert (tmp_path / "out" / "index.html").is_file()
