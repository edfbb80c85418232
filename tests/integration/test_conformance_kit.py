"""The operator conformance kit (`conformance/`, package `relais-conformance`) against
real consumers on the real broker: the two examples pass; each deliberately broken
consumer (tests/conformance_consumers/) fails, with the expected check named in the
report. The kit runs as operators run it: a separate process, with only its own
package on the path, outside the repository."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "conformance"
SCHEMAS = ROOT / "schemas"
KEYS = ROOT / "deploy" / "demo" / "operator-keys"
PYTHON_EXAMPLE = ROOT / "examples" / "python-confluent" / "operator_consumer.py"
NODE_EXAMPLE = ROOT / "examples" / "node-kafkajs" / "operator-consumer.mjs"
BROKEN = ROOT / "tests" / "conformance_consumers" / "broken_consumer.py"
TIMINGS = ["--ack-within", "10", "--answer-within", "15", "--quiet-period", "3"]

# Each broken consumer, on an operator code of its own (they run at the same time),
# and the check that must catch it. `exact`: no other check may fail.
DEFECTS: dict[str, tuple[str, str, bool]] = {
    "never-ack": ("la-poste", "acknowledged", False),
    "double-ack": ("france-travail", "duplicate-delivery", True),
    "wrong-source": ("cnam", "reply-headers", True),
    "wrong-key": ("cnav", "reply-key", True),
    "invalid-reply": ("msa", "reply-schema", True),
    "crash-on-unknown-type": ("ants", "unknown-event-type", False),
    "reject-unknown-fields": ("justice", "unknown-fields", True),
    "reply-after-cancel": ("crous", "cancellation", True),
    "foreign-referral": ("banque-de-france", "reply-referral", True),
}


@dataclass
class KitRun:
    exit_code: int
    report: dict[str, Any] | None
    output: str
    consumer_log: str
    seconds: float

    @property
    def failed(self) -> set[str]:
        return set(self.report["failed"]) if self.report else {"(no report)"}

    def __str__(self) -> str:
        return f"kit exit {self.exit_code}\n{self.output}\n--- consumer log (tail) ---\n{self.consumer_log[-3000:]}"


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def run_kit(bootstrap: str, operator: str, consumer_cmd: list[str], workdir: Path,
            kit_args: list[str] | None = None) -> KitRun:
    """Starts the consumer, waits until it has its partitions, runs the kit once."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    log = workdir / "consumer.log"
    with log.open("wb") as out:
        consumer = subprocess.Popen(consumer_cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "assigned" in log.read_text(errors="replace") or consumer.poll() is not None, 45)
        report = workdir / "report.json"
        started = time.monotonic()
        kit = subprocess.run(
            [sys.executable, "-m", "relais_conformance", "--operator", operator,
             "--public-key", str(KEYS / f"{operator}.public.jwk.json"), "--bootstrap-servers", bootstrap,
             "--report-json", str(report), *TIMINGS, *(kit_args or [])],
            cwd=workdir, env=env | {"PYTHONPATH": str(KIT)}, capture_output=True, text=True, timeout=150)
        seconds = time.monotonic() - started
    finally:
        if consumer.poll() is None:
            consumer.terminate()
            try:
                consumer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                consumer.kill()
                consumer.wait()
    return KitRun(kit.returncode, json.loads(report.read_text()) if report.exists() else None,
                  kit.stdout + kit.stderr, log.read_text(errors="replace"), seconds)


def consumer_args(operator: str) -> list[str]:
    return ["--operator", operator, "--schemas", str(SCHEMAS), "--private-key",
            str(KEYS / f"{operator}.private.jwk.json"), "--group", f"kit-test-{uuid.uuid4().hex[:8]}",
            "--idle-exit", "120"]


def test_the_kit_imports_nothing_from_this_repository() -> None:
    allowed = {"aiokafka", "jsonschema", "joserfc", "rfc3339_validator", "relais_conformance"}
    for path in (KIT / "relais_conformance").glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for alias in node.names}
        modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert modules - set(sys.stdlib_module_names) - {"__future__"} <= allowed, path.name


def test_the_python_example_is_conformant(kafka_bootstrap: str, tmp_path: Path) -> None:
    # No --schemas: the kit finds the schemas/ folder next to it in the repository.
    run = run_kit(kafka_bootstrap, "caf", [sys.executable, str(PYTHON_EXAMPLE), *consumer_args("caf")], tmp_path)
    assert run.exit_code == 0, run
    assert run.report and run.report["passed"] and run.report["summary"]["fail"] == 0, run
    assert {c["name"] for c in run.report["checks"] if c["status"] == "PASS"} >= {
        "acknowledged", "answered", "duplicate-delivery", "unknown-fields", "unknown-event-type", "info-provided",
        "cancellation", "reminder", "personal-data-binding", "reply-schema", "reply-headers", "reply-key",
        "reply-referral"}
    assert "CONFORMANT" in run.output and run.seconds < 30, run


def test_the_node_example_is_conformant(kafka_bootstrap: str, tmp_path: Path) -> None:
    if not NODE_EXAMPLE.exists():
        pytest.skip("examples/node-kafkajs/operator-consumer.mjs is not there")
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js 20+ and npm are needed for the Node.js example"
    if not (NODE_EXAMPLE.parent / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--prefix", str(NODE_EXAMPLE.parent), "--no-audit", "--no-fund"],
                       check=True, capture_output=True, timeout=300)
    run = run_kit(kafka_bootstrap, "dgfip", [node, str(NODE_EXAMPLE), *consumer_args("dgfip")], tmp_path,
                  ["--schemas", str(SCHEMAS)])
    assert run.exit_code == 0, run
    assert run.report and run.report["passed"], run


def test_a_consumer_that_asks_for_information_first_is_conformant(kafka_bootstrap: str, tmp_path: Path) -> None:
    # caf again, after the Python example stopped: this consumer ignores records older than itself.
    cmd = [sys.executable, str(BROKEN), *consumer_args("caf"), "--ask-first"]
    run = run_kit(kafka_bootstrap, "caf", cmd, tmp_path, ["--schemas", str(SCHEMAS)])
    assert run.exit_code == 0, run
    info = next(c for c in (run.report or {})["checks"] if c["name"] == "info-provided")
    assert info["notes"] == ["operator.info_requested then operator.answered"], run


@pytest.fixture(scope="module")
def broken_runs(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, KitRun]:
    """Every broken consumer against the kit, all at the same time."""
    base = tmp_path_factory.mktemp("broken")

    def one(defect: str) -> KitRun:
        operator = DEFECTS[defect][0]
        cmd = [sys.executable, str(BROKEN), *consumer_args(operator), "--defect", defect]
        return run_kit(kafka_bootstrap, operator, cmd, base / defect, ["--schemas", str(SCHEMAS)])

    with ThreadPoolExecutor(max_workers=len(DEFECTS)) as pool:
        return dict(zip(DEFECTS, pool.map(one, DEFECTS), strict=True))


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_broken_consumer_is_caught(broken_runs: dict[str, KitRun], defect: str) -> None:
    _, check, exact = DEFECTS[defect]
    run = broken_runs[defect]
    assert run.exit_code == 1, run
    assert run.report is not None and not run.report["passed"], run
    assert check in run.failed, run
    if exact:
        assert run.failed == {check}, run
    failing = next(c for c in run.report["checks"] if c["name"] == check)
    assert failing["status"] == "FAIL" and failing["failures"], run
    # The table names the check and gives the reason.
    assert f"{check}" in run.output and failing["failures"][0][:60] in run.output, run
    assert run.seconds < 60, run


def test_the_kit_says_when_it_cannot_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(KIT)}
    result = subprocess.run(
        [sys.executable, "-m", "relais_conformance", "--operator", "caf", "--schemas", str(SCHEMAS),
         "--public-key", str(KEYS / "caf.public.jwk.json"), "--bootstrap-servers", "127.0.0.1:1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach the broker" in result.stderr
