"""The console's overview: sparklines (domain/sparkline.py), the rows built from what
Prometheus answers (domain/overview.py, service_layer/overview.py fed by a fake of the
Prometheus port), the Prometheus adapter's reading of the HTTP API (over a fake
transport), and the page as rendered (French, a text alternative for every chart, the
lag still shown when Prometheus does not answer). Signing in against a real referral
service: tests/integration/test_ops_console.py."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from relais_kit.envelope import now
from relais_kit.tokenkeys import TokenKeySet, new_key
from relais_kit.tokens import FixedKeys, TokenSigner
from relais_kit.webui import new_session
from relais_ops.adapters.prometheus import PrometheusClient, PrometheusUnavailable, Sample, Series
from relais_ops.domain import overview as o
from relais_ops.domain.french import fr_duration, fr_number
from relais_ops.domain.lag import GroupObservation, Observation, PartitionId, PartitionOffsets
from relais_ops.domain.sparkline import sparkline
from relais_ops.entrypoints.console.pages import NAVIGATION, make_pages
from relais_ops.service_layer.lag_monitor import LagMetrics, LagMonitor
from relais_ops.service_layer.overview import overview

AT = 1_800_000_000.0
START = AT - o.HISTORY_S
P0 = PartitionId("referrals", 0)


class FakePrometheus:
    """Answers each query from a table (an empty vector for what it does not know);
    `down` makes every query fail as an unreachable Prometheus does."""

    def __init__(self, vectors: Mapping[str, Sequence[Sample]] | None = None,
                 matrices: Mapping[str, Sequence[Series]] | None = None, *, down: bool = False) -> None:
        self.vectors = dict(vectors or {})
        self.matrices = dict(matrices or {})
        self.down = down
        self.asked: list[str] = []

    async def query(self, expr: str) -> list[Sample]:
        self.asked.append(expr)
        if self.down:
            raise PrometheusUnavailable("ConnectError: connection refused")
        return list(self.vectors.get(expr, ()))

    async def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        self.asked.append(expr)
        if self.down:
            raise PrometheusUnavailable("ConnectError: connection refused")
        assert (end - start, step_s) == (o.HISTORY_S, o.STEP_S)
        return list(self.matrices.get(expr, ()))


def s(value: float, **labels: str) -> Sample:
    return Sample(labels, value)


def a_platform() -> FakePrometheus:
    return FakePrometheus({
        o.THROUGHPUT_NOW: [s(42.0)],
        o.THROUGHPUT_BY_TOPIC: [s(12.0, messaging_destination_name="referrals"),
                                s(30.0, messaging_destination_name="operator.caf.inbox")],
        o.INBOX_UNACKNOWLEDGED: [s(3, operator="caf"), s(0, operator="justice")],
        o.INBOX_OLDEST: [s(7300, operator="caf"), s(0, operator="justice")],
        o.OVERDUE: [s(0, operator="caf"), s(2, operator="justice")],
        o.DEAD_LETTERS: [s(1, source_topic="referrals", error="schema"), s(0, source_topic="x", error="y"),
                         s(4, source_topic="operator.caf.outbox", error="handler_failed")],
        o.OUTBOX_PENDING: [s(5, schema="referral")],
        o.OUTBOX_OLDEST: [s(125, schema="referral")],
        o.OUTBOX_PARKED: [s(1, schema="referral"), s(0, schema="sites")],
        o.UP: [s(1, service="referral", instance="referral"), s(0, service="sites", instance="sites"),
               s(1, service="notifications", instance="notifications")],
        o.LOOPS: [s(1, service="referral", instance="referral", loop="outbox"),
                  s(0, service="notifications", instance="notifications", loop="consumer:notify")],
    }, {
        o.THROUGHPUT_HISTORY: [Series({}, ((START + 300, 10.0), (START + 600, 20.0), (AT, 42.0)))],
        o.GROUP_LAG_HISTORY: [Series({"group": "operator-caf-inbox"}, ((START + 300, 0.0), (AT - 300, 90.0)))],
    })


def a_monitor() -> LagMonitor:
    monitor = LagMonitor(FakeOffsets(), interval_s=10, window=3, metrics=LagMetrics(CollectorRegistry()))
    monitor._record(Observation(AT - 5, (
        GroupObservation("relais-referral-outboxes", "Stable", 1, None, (PartitionOffsets(P0, 7, 7),)),
        GroupObservation("operator-caf-inbox", "Empty", 0, None, (PartitionOffsets(P0, 2, 7, unread_age_s=95.0),)),
    ), {P0: 7}))
    return monitor


class FakeOffsets:
    async def observe(self) -> Observation:
        raise AssertionError("not sampled here")


# --------------------------------------------------------------------------- sparklines

def test_a_sparkline_spans_the_window_starts_at_zero_and_breaks_where_figures_are_missing() -> None:
    spark = sparkline([(0.0, 0.0), (300.0, 10.0), (600.0, 5.0), (1800.0, 10.0), (2100.0, 0.0)],
                      start=0.0, end=2100.0, step_s=300, width=212, height=44, pad=2)
    # x: 2 + t / 2100 * 208; y: 42 - v / 10 * 40
    assert spark.line == "M2 42 L31.7 2 L61.4 22 M180.3 2 L210 42"
    assert spark.area.startswith("M2 42 L2 42 L31.7 2") and spark.area.count("Z") == 2
    assert (spark.low, spark.high, spark.last, spark.empty) == (0.0, 10.0, 0.0, False)


def test_a_sparkline_leaves_out_points_outside_the_window_and_shows_a_lone_point() -> None:
    spark = sparkline([(-10.0, 99.0), (500.0, 4.0), (5000.0, 99.0)], start=0.0, end=1000.0, step_s=300,
                      width=104, height=24, pad=2)
    assert spark.points == ((500.0, 4.0),)
    assert spark.line == "M50.5 2 L53.5 2"  # a short dash at its time, at the top of its own scale
    empty = sparkline([], start=0.0, end=1000.0, step_s=300)
    assert empty.empty and empty.line == "" and empty.last is None


def test_figures_in_french() -> None:
    assert fr_number(1234567) == "1\u202f234\u202f567"
    assert fr_number(12.25, 1) == "12,2" or fr_number(12.25, 1) == "12,3"
    assert fr_number(None) == "—" and fr_number(-0.01) == "0"
    assert [fr_duration(x) for x in (0, 42.4, 185, 7300, 90000, 172800)] == \
        ["0 s", "42 s", "3 min 05 s", "2 h 01 min", "1 j 1 h", "2 j"]


# --------------------------------------------------------------------------- the overview

async def test_the_overview_gathers_every_figure_and_puts_trouble_first() -> None:
    view = await overview(a_monitor(), a_platform(), at=AT)
    assert view.prometheus_problem is None and view.lag_problem is None
    f = view.figures
    assert f is not None
    assert f.throughput.per_minute == 42.0
    assert [(r.topic, r.per_minute) for r in f.throughput.by_topic] == [("operator.caf.inbox", 30.0),
                                                                        ("referrals", 12.0)]
    assert f.throughput.history.points == ((START + 300, 10.0), (START + 600, 20.0), (AT, 42.0))
    assert [(r.operator, r.unacknowledged, r.oldest_age_s, r.overdue) for r in f.inboxes] == \
        [("justice", 0, 0, 2), ("caf", 3, 7300, 0)]
    assert [(r.topic, r.error, r.count) for r in f.dead_letters] == \
        [("operator.caf.outbox", "handler_failed", 4), ("referrals", "schema", 1)]
    assert f.dead_letters_total == 5
    assert [(r.schema, r.pending, r.oldest_age_s, r.parked, r.attention) for r in f.outboxes] == \
        [("referral", 5, 125, 1, True), ("sites", None, None, 0, False)]
    assert [(r.service, r.up, r.stalled_loops) for r in f.processes] == \
        [("notifications", True, ("consumer:notify",)), ("sites", False, ()), ("referral", True, ())]
    assert f.processes_down == 2
    assert [(g.name, g.status, g.status_label, g.lag_records, g.max_lag_seconds) for g in view.groups] == \
        [("operator-caf-inbox", "STOP", "Arrêté", 5, 95.0), ("relais-referral-outboxes", "OK", "À jour", 0, 0.0)]
    caf = view.groups[0]
    assert caf.history is not None and caf.history.high == 90.0
    assert view.groups[1].history is None
    assert view.groups_in_trouble == 1


async def test_without_prometheus_the_overview_still_has_the_lag_and_says_why() -> None:
    prometheus = FakePrometheus(down=True)
    view = await overview(a_monitor(), prometheus, at=AT)
    assert view.figures is None
    assert view.prometheus_problem == "ConnectError: connection refused"
    assert [g.name for g in view.groups] == ["operator-caf-inbox", "relais-referral-outboxes"]
    assert view.groups[0].history is None


async def test_an_empty_platform_gives_empty_rows() -> None:
    view = await overview(None, FakePrometheus(), at=AT)
    assert view.groups == () and view.lag_problem
    assert view.figures is not None and view.figures.throughput.per_minute is None
    assert view.figures.throughput.history.empty and view.figures.inboxes == ()


# --------------------------------------------------------------------------- the adapter

def answering(handler: Any) -> PrometheusClient:
    return PrometheusClient("http://prometheus:9090/", transport=httpx.MockTransport(handler))


async def test_the_adapter_reads_vectors_and_matrices_of_the_http_api() -> None:
    asked: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if request.url.path == "/api/v1/query":
            return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"operator": "caf"}, "value": [AT, "3"]},
                {"metric": {"operator": "x"}, "value": [AT, "NaN"]}]}})
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[START, "1.5"], [AT, "2"]]}]}})

    client = answering(handler)
    assert await client.query(o.INBOX_UNACKNOWLEDGED) == [Sample({"operator": "caf"}, 3.0)]
    assert await client.query_range(o.THROUGHPUT_HISTORY, START, AT, 300) == \
        [Series({}, ((START, 1.5), (AT, 2.0)))]
    assert asked[0].url.params["query"] == o.INBOX_UNACKNOWLEDGED
    assert asked[1].url.path == "/api/v1/query_range" and asked[1].url.params["step"] == "300"


@pytest.mark.parametrize("answer", [
    httpx.Response(503, text="unavailable"),
    httpx.Response(200, text="<html>"),
    httpx.Response(400, json={"status": "error", "error": "parse error"}),
    httpx.Response(200, json={"status": "error", "error": "query timed out"}),
    httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}}),
])
async def test_the_adapter_says_prometheus_is_unavailable_rather_than_guessing(answer: httpx.Response) -> None:
    with pytest.raises(PrometheusUnavailable):
        await answering(lambda _: answer).query("up")


async def test_the_adapter_says_so_when_nothing_listens() -> None:
    client = PrometheusClient("http://127.0.0.1:9", timeout_s=1.0)
    with pytest.raises(PrometheusUnavailable):
        await client.query("up")


# --------------------------------------------------------------------------- the page

def rendered(view: o.Overview) -> str:
    pages = make_pages(TokenSigner(FixedKeys(TokenKeySet.of(new_key("o1"))), "relais-ops"), production=False)
    session = new_session(now(), timedelta(hours=1), user_id="demo-ops", display_name="Équipe d'exploitation",
                          session_id="s1")
    return pages.env.get_template("overview.html.j2").render(
        session=session, csrf_token=session.csrf, navigation=NAVIGATION, current_path="/console", view=view, at=AT)


async def test_the_page_shows_the_figures_with_a_text_alternative_for_each_chart() -> None:
    html = rendered(await overview(a_monitor(), a_platform(), at=AT))
    assert "<h1>Vue d'ensemble</h1>" in html and "Prometheus ne répond pas" not in html
    assert 'aria-current="page"' in html and "Se déconnecter" in html
    charts = re.findall(r'<svg class="ops-spark" id="([^"]+)"', html)
    assert charts == ["retard-1", "debit-6h"]  # the groups first, then the throughput
    for chart in charts:
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in html
    assert "De 10 à 42 par minute" in html  # the throughput chart's description
    assert "dernière valeur à" in html and "1 min 30 s" in html  # the caf group's lag chart, in words
    assert "operator-caf-inbox" in html and "Arrêté" in html and "no member reads it" in html
    assert "2 h 01 min" in html and "handler_failed" in html and "consumer:notify" in html
    assert "Ne répond pas" in html and "/console/lettres-mortes" in html and "/console/en-attente" in html


async def test_the_page_without_prometheus_keeps_the_groups_and_says_prometheus_does_not_answer() -> None:
    html = rendered(await overview(a_monitor(), FakePrometheus(down=True), at=AT))
    assert "Prometheus ne répond pas" in html and "connection refused" in html
    assert "operator-caf-inbox" in html and "relais-referral-outboxes" in html
    assert "<svg" not in html and "Lettres mortes</h2>" not in html
