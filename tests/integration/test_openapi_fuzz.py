"""Bad input everywhere, over HTTP: schemathesis drives each service's OpenAPI
document against the running service (real PostgreSQL, real broker), as the demo
adviser, as ops, as the demo supervisor (department 47: the sites and notifications
services), and without a token — real tokens, from the referral service's sign-in. No
5xx; documented responses conform to their schema; every 4xx is a JSON body with a
`detail` saying what is wrong."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from relais_kit.embedded import free_port
from relais_notifications.app import create_app as notifications_app
from relais_notifications.settings import NotificationsSettings
from relais_referral.app import create_app as referral_app
from relais_referral.settings import ReferralSettings
from relais_sites.app import create_app as sites_app
from relais_sites.settings import SitesSettings
from tests.tokens_support import JWKS_URL, KEYS_FILE

EXAMPLES_PER_MODE = 20  # per operation, auth and generation mode: the file stays under ~90 s
USERS = {"adviser": "demo-adviser", "ops": "demo-ops", "supervisor": "demo-supervisor", "anonymous": None}
# The referral service's API is the advisers' (a supervisor reads through its pages).
NOT_FOR = {"referral": {"supervisor"}}
_tokens: dict[str, str] = {}
FACTORIES: dict[str, Callable[[], FastAPI]] = {
    # The apps are built here only to read their OpenAPI documents (no I/O).
    "referral": lambda: referral_app(ReferralSettings()),
    "sites": lambda: sites_app(SitesSettings()),  # type: ignore[call-arg]
    "notifications": lambda: notifications_app(NotificationsSettings()),
}
SCHEMAS = {name: schemathesis.openapi.from_dict(factory().openapi()) for name, factory in FACTORIES.items()}
OPERATIONS = [(name, op.method.upper(), op.path) for name, schema in SCHEMAS.items()
              for op in (result.ok() for result in schema.get_all_operations())]  # type: ignore[union-attr]

# Known bugs, each failing its test (strict xfail) until fixed.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}
UNDOCUMENTED_422: dict[str, str] = {}


@dataclass
class Running:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread


def _serve(app: FastAPI) -> Running:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"{app.title} did not start")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{app.title} did not start in 60 s")
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    # The service starts its runtime in the background (503 until then): wait until healthy.
    while requests.get(f"{base_url}/healthz", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{app.title} not healthy in 60 s")
        time.sleep(0.1)
    return Running(base_url, server, thread)


@pytest.fixture(scope="module")
def services(module_database_url: str, kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    """The three services, each in a thread of its own with its lifespan, sharing the
    module's database (a schema each) and the broker, as under `make run`."""
    common: dict[str, Any] = {"DATABASE_URL": module_database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                              "RELAIS_LOG_LEVEL": "warning"}
    # The referral service signs with the test keys, whose JWKS the other two read from a file.
    tokens = {"RELAIS_TOKEN_KEYS_FILE": str(KEYS_FILE), "RELAIS_TOKEN_JWKS_URL": JWKS_URL}
    spool = Path(tempfile.mkdtemp(prefix="relais-fuzz-sms-"))
    apps = {
        # Demo sites: the registry and the referral service's view are not empty.
        "sites": sites_app(SitesSettings(**common, **tokens, RELAIS_DEMO_DATA=True)),
        # The fuzzer signs in more often than people do.
        "referral": referral_app(ReferralSettings(**common, **tokens,
                                                  RELAIS_SIGNIN_LIMIT_PER_ACCOUNT="100000 per minute",
                                                  RELAIS_SIGNIN_LIMIT_PER_ADDRESS="100000 per minute")),
        "notifications": notifications_app(NotificationsSettings(**common, **tokens, RELAIS_SMS_SPOOL=spool,
                                                                 RELAIS_SMTP_PORT=free_port())),
    }
    running: dict[str, Running] = {}
    _tokens.clear()
    try:
        for name, app in apps.items():
            running[name] = _serve(app)
        yield {name: r.base_url for name, r in running.items()}
    finally:
        for r in running.values():
            r.server.should_exit = True
        for r in running.values():
            r.thread.join(timeout=20)


def _auth(services: dict[str, str], who: str, *, fresh: bool = False) -> dict[str, str]:
    """A real bearer token (a session of the account); `fresh`: not the one the other
    tests share (for the operation that revokes it)."""
    user = USERS[who]
    if user is None:
        return {}
    if fresh or who not in _tokens:
        response = requests.post(f"{services['referral']}/api/v1/auth/token",
                                 data={"username": user, "password": "demo"}, timeout=30)
        assert response.status_code == 200, response.text
        if fresh:
            return {"Authorization": f"Bearer {response.json()['access_token']}"}
        _tokens[who] = response.json()["access_token"]
    return {"Authorization": f"Bearer {_tokens[who]}"}


def _clear_client_error(response: Any) -> None:
    """A 4xx says what is wrong: a JSON object with a non-empty `detail`."""
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])  # schemathesis: lists of values
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/json"), (response.status_code, content_type)
        body = response.json()
        assert isinstance(body, dict) and body.get("detail"), (response.status_code, response.text[:300])


def _params() -> list[Any]:
    params = []
    for service, method, path in OPERATIONS:
        for who in (w for w in USERS if w not in NOT_FOR.get(service, ())):
            marks = []
            if bug := KNOWN_BUGS.get((service, method, path)):
                marks.append(pytest.mark.xfail(strict=True, reason=bug))
            params.append(pytest.param(service, method, path, who, marks=marks,
                                       id=f"{service}-{method}-{path}-{who}"))
    return params


def _fuzz(service: str, operation: Any, base_url: str, headers: dict[str, str],
          path_parameters: dict[str, str] | None = None) -> None:
    session = requests.Session()
    failures: list[str] = []

    def run(mode: GenerationMode) -> None:
        @settings(max_examples=EXAMPLES_PER_MODE, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            try:
                checks: list[CheckFunction] = [not_a_server_error]
                if not (response.status_code == 422 and service in UNDOCUMENTED_422):  # tested below
                    checks.append(response_schema_conformance)
                case.validate_response(response, checks=checks)
                _clear_client_error(response)
            except Exception as exc:  # AssertionError, or schemathesis' FailureGroup
                failures.append(f"{mode.value}: {case.method} {case.formatted_path} "
                                f"query={case.query} body={str(case.body)[:300]} -> "
                                f"{response.status_code} {response.text[:300]}\n  {str(exc)[:600]}")
                raise

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing in the request can be made invalid
        except Exception:
            if not failures:
                raise  # not a finding: a broken test

    run(GenerationMode.POSITIVE)
    run(GenerationMode.NEGATIVE)
    assert not failures, "\n".join(failures[:3])


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


@pytest.mark.parametrize(("service", "method", "path", "who"), _params())
def test_bad_input_gets_a_clear_4xx_never_a_5xx(services: dict[str, str], service: str, method: str,
                                                path: str, who: str) -> None:
    headers = _auth(services, who, fresh=path.endswith("/revoke"))
    _fuzz(service, SCHEMAS[service][path][method], services[service], headers)


VISIT: dict[str, Any] = {"site_id": "agen-leon-blum-poste", "channel": "in_person",
         "citizen": {"given_name": "Michel", "family_name": "Cordier", "birth_date": "1963-04-02",
                     "contact": {"channel": "email", "email": "michel.cordier@example.org",
                                 "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}}}
REFERRAL: dict[str, Any] = {"operator": "caf", "procedure": "caf.prime-activite",
            "summary": "Le montant de la prime d'activité a baissé sans explication.",
            "consent": {"given": True}}


@pytest.fixture(scope="module")
def real_ids(services: dict[str, str]) -> dict[str, str]:
    """A real visit and referral of the demo adviser's site (known to the referral
    service once the demo sites reached it over the `sites` topic)."""
    base, headers = services["referral"], _auth(services, "adviser")
    deadline = time.monotonic() + 60
    while (visit := requests.post(f"{base}/api/v1/visits", json=VISIT, headers=headers, timeout=10)).status_code != 201:
        assert time.monotonic() < deadline, visit.text
        time.sleep(0.2)
    visit_id = visit.json()["visit_id"]
    referral = requests.post(f"{base}/api/v1/visits/{visit_id}/referrals", json=REFERRAL, headers=headers,
                             timeout=10)
    assert referral.status_code == 201, referral.text
    return {"visit_id": visit_id, "referral_id": referral.json()["referral_id"]}


DEEP = [(method, path) for service, method, path in OPERATIONS
        if service == "referral" and ("{visit_id}" in path or "{referral_id}" in path)]


@pytest.mark.parametrize(("method", "path", "who"), [
    pytest.param(method, path, who, id=f"referral-{method}-{path}-{who}")
    for method, path in DEEP for who in ("adviser", "ops")])
def test_bad_input_on_real_visits_and_referrals(services: dict[str, str], real_ids: dict[str, str],
                                                method: str, path: str, who: str) -> None:
    """The same, with the path naming a real visit or referral: past the 404s, into the domain."""
    wanted = {k: v for k, v in real_ids.items() if f"{{{k}}}" in path}
    _fuzz("referral", SCHEMAS["referral"][path][method], services["referral"], _auth(services, who), wanted)


# One request per service that its API must refuse with a 422.
UNPROCESSABLE: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "referral": ("POST", "/api/v1/visits", "adviser", {"body": {"site_id": "agen-leon-blum-poste"}}),
    "sites": ("GET", "/api/v1/sites", "ops", {"query": {"kind": "castle"}}),
    "notifications": ("GET", "/api/v1/notifications", "adviser", {"query": {"adviser_id": "x", "limit": 0}}),
}


@pytest.mark.parametrize("service", [
    pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=UNDOCUMENTED_422[name])]
                 if name in UNDOCUMENTED_422 else [])
    for name in FACTORIES])
def test_422_bodies_are_what_the_openapi_document_says(services: dict[str, str], service: str) -> None:
    method, path, who, request = UNPROCESSABLE[service]
    case = SCHEMAS[service][path][method].Case(**request)
    response = case.call(base_url=services[service], headers=_auth(services, who), timeout=30)
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["errors"][0]["field"]
    case.validate_response(response, checks=[response_schema_conformance])


def _nul_cases() -> list[Any]:
    with_nul = "Mi\x00chel"
    cases: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("referral", "POST", "/api/v1/visits", "citizen-name",
         {"json": {**VISIT, "citizen": {**VISIT["citizen"], "given_name": with_nul}}}),
        ("referral", "POST", "/api/v1/visits/{visit_id}/referrals", "summary",
         {"json": {**REFERRAL, "summary": f"Le montant a baissé {with_nul}"}}),
        ("referral", "POST", "/api/v1/referrals/{referral_id}/cancel", "reason", {"json": {"reason": with_nul}}),
        ("referral", "POST", "/api/v1/auth/token", "username", {"data": {"username": with_nul, "password": "demo"}}),
        ("sites", "POST", "/api/v1/sites", "name",
         {"json": {"site_id": "nul-poste", "name": with_nul, "kind": "fixed", "department": "47",
                   "address": {"postcode": "47000", "city": "Agen"}, "operators": ["caf"]}}),
        ("sites", "POST", "/api/v1/sites", "schedule-place",
         {"json": {"site_id": "nul-bus", "name": "Bus", "kind": "bus", "department": "47",
                   "address": {"postcode": "47000", "city": "Agen"}, "operators": ["caf"],
                   "schedule": [{"weekday": 1, "opens": "09:00", "closes": "12:00", "place": with_nul}]}}),
        ("notifications", "GET", "/api/v1/notifications", "adviser_id", {"params": {"adviser_id": with_nul}}),
    ]
    return [pytest.param(*case, id=f"{case[0]}-{case[3]}") for case in cases]


@pytest.mark.parametrize(("service", "method", "path", "field", "request_kwargs"), _nul_cases())
def test_a_nul_character_in_text_is_a_clear_4xx(services: dict[str, str], real_ids: dict[str, str], service: str,
                                                method: str, path: str, field: str,
                                                request_kwargs: dict[str, Any]) -> None:
    """What the fuzzer found in the sites service (PostgreSQL refuses NUL in text), everywhere."""
    # A referral of its own: cancelling must be allowed, so the reason reaches the database.
    ids = dict(real_ids)
    if "{referral_id}" in path:
        ids["referral_id"] = requests.post(
            f"{services['referral']}/api/v1/visits/{ids['visit_id']}/referrals", json=REFERRAL,
            headers=_auth(services, "adviser"), timeout=10).json()["referral_id"]
    url = services[service] + path.format(**ids)
    who = "ops" if service == "sites" else "adviser"
    response = requests.request(method, url, headers=_auth(services, who), timeout=10, **request_kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    _clear_client_error(_Plain(response))


@dataclass
class _Plain:
    """A requests response seen like schemathesis' (headers as lists of values)."""

    response: requests.Response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> dict[str, list[str]]:
        return {k.lower(): [v] for k, v in self.response.headers.items()}

    def json(self) -> Any:
        return self.response.json()
